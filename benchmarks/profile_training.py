"""Where a training step of the comparison model spends its time, by the PyTorch profiler.

  python -m benchmarks.profile_training                  # 30 warm-up steps, 5 profiled, on 2 threads
  python -m benchmarks.profile_training --steps 3 --trace /tmp/trace.json.gz

Trains ``multi30k_de_en_comparison`` (the model of the peer comparison) on Multi30k as the
trainer does: the loss of ``seq2seq.training.translation_task``, backward, gradient clipping,
Adam. After the warm-up it profiles a few steps and prints:

- the operators by self CPU time, and the share of the profiled time in matrix products
  (mm, addmm, bmm and the linear layers' own matmuls) against everything else;
- every matrix product shape the steps ran: its count, its achieved GFLOP/s, and the fp32
  GFLOP/s of the same shape measured alone here, which is what that product could reach.

The trace (Chrome trace format, gzipped) is written to ``--trace`` (default
``docs/comparison_training_trace.json.gz``): open it in https://ui.perfetto.dev or
chrome://tracing.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the project root as a module: python -m benchmarks.profile_training")

# Imported before torch: it pins the thread pools to THREADS.
from benchmarks.common import THREADS, cpu_summary, matmul_gflops, say

# isort: split
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from seq2seq.commands.common import exit_status
from seq2seq.config import load_config
from seq2seq.data.parallel import Batch, load_parallel_corpus, make_tokenizers
from seq2seq.models import build_translation_model
from seq2seq.run_configs import TranslationConfig
from seq2seq.text import Vocab
from seq2seq.training.host_memory import step_optimizer
from seq2seq.training.runtime import Runtime
from seq2seq.training.trainer import build_optimizer
from seq2seq.training.translation_task import TranslationTask, task_of, training_batcher

CONFIG = "multi30k_de_en_comparison"
SPLIT_PREFIXES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::baddbmm")
DEFAULT_TRACE = "docs/comparison_training_trace.json.gz"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", default="data/multi30k", help="the Multi30k files (default: data/multi30k)")
    parser.add_argument("--warmup-steps", type=int, default=30, help="steps before profiling (default: 30)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default: 5)")
    parser.add_argument("--trace", default=DEFAULT_TRACE, help=f"the gzipped trace (default: {DEFAULT_TRACE})")
    parser.add_argument("--top", type=int, default=25, help="operators listed (default: 25)")
    return parser.parse_args(argv)


@dataclass
class Training:
    """The comparison model with what its training steps need."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: TranslationTask
    clip: float


def comparison_training(data_dir: str, work_dir: Path) -> Training:
    """The comparison model, its optimizer and its batches, with the data read from ``data_dir``."""
    overrides = [f"data.{split}_prefix={Path(data_dir) / name}" for split, name in SPLIT_PREFIXES.items()]
    config = load_config(TranslationConfig, CONFIG, [*overrides, "train.device=cpu"])
    corpus = load_parallel_corpus(config.data, make_tokenizers(config.data, work_dir))
    torch.manual_seed(config.train.seed)
    model = build_translation_model(
        config.encoder, config.decoder, len(corpus.source.vocab), len(corpus.target.vocab), Vocab.pad_id
    )
    runtime = Runtime(torch.device("cpu"))
    task = task_of(config, training_batcher(config, corpus.train, runtime), corpus.valid, corpus.target, runtime)
    return Training(model, build_optimizer(model, config.train), task, config.train.clip_grad_norm)


def train_steps(training: Training, batches: Iterator[Batch], steps: int) -> None:
    """``steps`` optimisation steps, as the trainer takes them (loss, backward, clipping, Adam)."""
    training.model.train()
    for _, batch in zip(range(steps), batches):
        training.optimizer.zero_grad(set_to_none=True)
        training.task.batch_loss(training.model, batch).loss.backward()
        nn.utils.clip_grad_norm_(training.model.parameters(), training.clip)
        step_optimizer(training.optimizer)


@dataclass
class ShapeTime:
    count: int = 0
    seconds: float = 0.0
    flops: float = 0.0


def matmul_shapes(prof: profile) -> dict[tuple[str, str], ShapeTime]:
    """(operator, input shapes) -> how often it ran, its self time and FLOPs."""
    shapes: dict[tuple[str, str], ShapeTime] = defaultdict(ShapeTime)
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key in MATMUL_OPS and event.flops:
            entry = shapes[(event.key, str(event.input_shapes))]
            entry.count += event.count
            entry.seconds += event.self_cpu_time_total / 1e6
            entry.flops += event.flops
    return shapes


def matmul_dimensions(operator: str, shapes: str) -> tuple[int, int, int] | None:
    """(rows, inner, columns) of an mm/addmm from the profiler's input shapes; None for others."""
    listed = ast.literal_eval(shapes)  # the profiler's repr of a list of lists of ints
    if operator == "aten::mm" and len(listed) >= 2 and len(listed[0]) == 2 and len(listed[1]) == 2:
        return listed[0][0], listed[0][1], listed[1][1]
    if operator == "aten::addmm" and len(listed) >= 3 and len(listed[1]) == 2 and len(listed[2]) == 2:
        return listed[1][0], listed[1][1], listed[2][1]
    return None


def report(prof: profile, top: int) -> None:
    averages = prof.key_averages()
    say(averages.table(sort_by="self_cpu_time_total", row_limit=top))
    total = sum(event.self_cpu_time_total for event in averages) / 1e6
    matmul = sum(event.self_cpu_time_total for event in averages if event.key in MATMUL_OPS) / 1e6
    say(
        f"profiled self CPU time {total:.2f} s: matrix products {matmul:.2f} s ({matmul / total:.0%}), "
        f"other {total - matmul:.2f} s"
    )
    say("matrix product shapes (rows x inner x columns): runs, achieved GFLOP/s, the shape's fp32 peak measured alone")
    shapes = sorted(matmul_shapes(prof).items(), key=lambda item: -item[1].seconds)
    for (operator, input_shapes), entry in shapes[:15]:
        dimensions = matmul_dimensions(operator, input_shapes)
        achieved = entry.flops / entry.seconds / 1e9 if entry.seconds else 0.0
        peak = f"{matmul_gflops(*dimensions, min_seconds=0.3):.1f}" if dimensions else "n/a"
        shown = " x ".join(map(str, dimensions)) if dimensions else input_shapes
        say(
            f"  {operator:<12} {shown:<22} {entry.count:>6} runs, {entry.seconds:6.3f} s, "
            f"{achieved:6.1f} GFLOP/s, peak {peak}"
        )


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    say(f"profiling a training step of {CONFIG}: {THREADS} threads, torch {torch.__version__}, {cpu_summary()}")
    with tempfile.TemporaryDirectory(prefix="profile_training_") as work_dir:
        training = comparison_training(args.data_dir, Path(work_dir))
        batches = training.task.batches(epoch=0, start=0)
        started = time.perf_counter()
        train_steps(training, batches, args.warmup_steps)
        say(f"{args.warmup_steps} warm-up steps: {time.perf_counter() - started:.1f} s")
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as profiled:
            train_steps(training, batches, args.steps)
        plain = Path(work_dir) / "trace.json"
        profiled.export_chrome_trace(str(plain))
        trace = Path(args.trace)
        trace.parent.mkdir(parents=True, exist_ok=True)
        with plain.open("rb") as source, gzip.open(trace, "wb") as target:
            shutil.copyfileobj(source, target)
    say(f"trace of {args.steps} steps: {trace} ({trace.stat().st_size / 2**20:.1f} MiB)")
    report(profiled, args.top)


def main(argv: list[str] | None = None) -> int:
    return exit_status(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
