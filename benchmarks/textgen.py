"""Text-generation benchmark: speed and quality of the character-level Shakespeare model on 2 CPU threads.

  python -m benchmarks.textgen                      # the full run: throughput, then 30 minutes of training
  python -m benchmarks.textgen --reuse              # score and time an already trained run
  python -m benchmarks.textgen --minutes 0.3 --throughput-steps 10   # a quick check that it all works

Four parts, for the model and data sizes of ``--config``:

1. training throughput of the toolkit (the shared ``Trainer`` with ``LanguageModelTask``) beside a
   plain PyTorch loop over the same windows, interleaved (toolkit, plain, toolkit, plain);
2. the GFLOP/s the toolkit's training achieves, beside the fp32 matmul peak measured here;
3. validation loss after ``--minutes`` of training through ``seq2seq.train`` (what
   ``seq2seq textgen train`` runs), with the hidden state carried across windows and with fresh
   256-character windows (nanoGPT's way);
4. generation speed: 500 characters, one sample and a batch of 16, timing only the search.

The last line printed holds every figure (``RESULT textgen: key=value ...``); the same figures go
to ``<run-dir>/benchmark.json``. Run it from the project root, with the package installed, on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the project root as a module: python -m benchmarks.textgen")

# Imported before torch: it pins the thread pools to THREADS.
from benchmarks.common import (
    GATES,
    THREADS,
    Figures,
    MatmulPeak,
    has_checkpoint,
    matmul_peak,
    result_line,
    say,
)

# isort: split
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq import TextGenerator, train
from seq2seq.checkpoint import load_metadata
from seq2seq.commands.common import exit_status
from seq2seq.config import DecodeConfig, DecoderConfig, load_config, to_dict
from seq2seq.data.lm_corpus import LMCorpus, load_lm_corpus, make_tokenizer
from seq2seq.data.lm_stream import LMStream, Window
from seq2seq.decoding import SpecialIds, generate
from seq2seq.models import build_language_model
from seq2seq.models.decoder import count_parameters
from seq2seq.models.encoders import RNN_CELLS, empty_source
from seq2seq.run_configs import TextGenConfig
from seq2seq.training.lm_task import LanguageModelTask, score_stream, validation_stream
from seq2seq.training.metrics_log import MetricsLog
from seq2seq.training.runtime import Runtime, seed_everything
from seq2seq.training.trainer import Trainer

TASK = "textgen"  # the seq2seq command line's name of the task
DEFAULT_CONFIG = "shakespeare_char"  # a shipped config, by name
DEFAULT_DATA = "data/tinyshakespeare/input.txt"
DEFAULT_RUN_DIR = "runs/bench_shakespeare_char"
CPU = torch.device("cpu")
ROUNDS = 2  # toolkit/plain pairs in the throughput comparison
LOG_WINDOW_STEPS = 10  # steps per throughput record; the first record of a run is its warm-up
FRESH_WINDOW = 256  # nanoGPT's shakespeare_char block size
GENERATED_CHARS = 500
GENERATION_BATCH = 16
GENERATION_TEMPERATURE = 0.8

RNNState = Tensor | tuple[Tensor, Tensor]  # (L, B, H), or LSTM's (hidden, cell)


# ---- setup --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; bad values stop with a usage message."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.textgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"text-generation config: a shipped config's name or a YAML file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"the training text (default: {DEFAULT_DATA})")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget in minutes (default: 30)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help=f"the trained run (default: {DEFAULT_RUN_DIR})")
    parser.add_argument("--reuse", action="store_true", help="skip training when --run-dir already holds a checkpoint")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the toolkit-vs-plain throughput part")
    parser.add_argument(
        "--throughput-steps",
        type=int,
        default=40,
        help=f"measured training steps per throughput run, a multiple of {LOG_WINDOW_STEPS} (default: 40); "
        f"each run first warms up for {LOG_WINDOW_STEPS} steps",
    )
    args = parser.parse_args(argv)
    if args.throughput_steps < LOG_WINDOW_STEPS or args.throughput_steps % LOG_WINDOW_STEPS:
        parser.error(
            f"--throughput-steps must be a positive multiple of {LOG_WINDOW_STEPS}, got {args.throughput_steps}"
        )
    if args.minutes <= 0:
        parser.error(f"--minutes must be above 0, got {args.minutes}")
    return args


def check_data(path: str) -> None:
    """Stop early, saying how to get the text, when ``path`` is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"the training text {path} does not exist. Get it with `python data_scripts/tinyshakespeare.py` "
            "(offline: add --source PATH/TO/input.txt, or set SEQ2SEQ_DATA_MIRROR=DIR), "
            "or point --data at a copy."
        )


# ---- 1. training throughput: toolkit vs plain PyTorch -------------------------------------------


class PlainLanguageModel(nn.Module):
    """Embedding -> stacked RNN -> Linear, written directly in PyTorch (the baseline)."""

    def __init__(self, config: DecoderConfig, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = RNN_CELLS[config.cell](
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_size, vocab_size)

    def forward(self, inputs: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        """inputs: (B, T) -> logits (B, T, V) and the state after the window."""
        embedded = self.embedding_dropout(self.embedding(inputs))  # (B, T, E)
        rnn_out, state = self.rnn(embedded, state)  # (B, T, H)
        return self.output(self.output_dropout(rnn_out)), state


def detached(state: RNNState) -> RNNState:
    """Cut the graph between windows (truncated backpropagation through time)."""
    return (state[0].detach(), state[1].detach()) if isinstance(state, tuple) else state.detach()


def endless_windows(stream: LMStream) -> Iterator[Window]:
    """The training windows, epoch after epoch."""
    epoch = 0
    while True:
        yield from stream.windows(epoch)
        epoch += 1


def plain_tokens_per_second(config: TextGenConfig, corpus: LMCorpus, measured_steps: int) -> float:
    """A minimal truncated-BPTT loop over the toolkit's windows: tokens/s after a warm-up."""
    seed_everything(config.train.seed)
    model = PlainLanguageModel(config.decoder, len(corpus.vocab))
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    optimizer = optimizers[config.train.optimizer](
        model.parameters(), lr=config.train.lr, betas=tuple(config.train.betas), weight_decay=config.train.weight_decay
    )
    stream = LMStream(corpus.train_ids, config.data.batch_size, config.data.window, seed=config.train.seed)
    windows = endless_windows(stream)
    state = None
    model.train()

    def train_step() -> int:
        nonlocal state
        window = next(windows)
        logits, state = model(window.inputs, state)  # (B, T, V)
        state = detached(state)
        loss = F.cross_entropy(logits.flatten(0, 1), window.targets.flatten())
        loss.backward()
        if config.train.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # a real loop logs the loss, which waits for the step
        return window.targets.numel()

    for _ in range(LOG_WINDOW_STEPS):
        train_step()
    started = time.perf_counter()
    tokens = sum(train_step() for _ in range(measured_steps))
    return tokens / (time.perf_counter() - started)


def toolkit_tokens_per_second(config: TextGenConfig, corpus: LMCorpus, measured_steps: int) -> float:
    """The shared Trainer on the same data: tokens/s from its metrics log, warm-up record left out."""
    seed_everything(config.train.seed)
    model = build_language_model(config.decoder, len(corpus.vocab), corpus.vocab.pad_id)
    train_stream = LMStream(corpus.train_ids, config.data.batch_size, config.data.window, seed=config.train.seed)
    # Validation only runs once, after the measured steps; a few windows keep it short.
    few_validation_ids = corpus.validation_ids[: config.data.batch_size * config.data.window + 1]
    task = LanguageModelTask(train_stream, validation_stream(few_validation_ids, config.data), CPU)
    steps = LOG_WINDOW_STEPS + measured_steps
    train_config = replace(
        config.train, max_steps=steps, max_minutes=0, log_every=LOG_WINDOW_STEPS, validate_every=steps, device="cpu"
    )
    metadata = {
        "task": TASK,
        "config": to_dict(replace(config, train=train_config)),
        "vocab": corpus.vocab.to_dict(),
        "tokenizer": corpus.tokenizer.to_dict(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_textgen_") as run_dir:
        Trainer(model, task, train_config, Path(run_dir), metadata, Runtime(CPU)).fit()
        records = [r for r in MetricsLog(Path(run_dir) / "metrics.jsonl").read() if "tokens_per_s" in r]
    measured = records[1:]  # every record covers the same number of tokens: average their times
    return len(measured) / sum(1.0 / r["tokens_per_s"] for r in measured)


@dataclass
class Throughput:
    toolkit: list[float]  # tokens/s of each toolkit run
    plain: list[float]  # tokens/s of each plain run
    flops_per_token: float  # matmul FLOPs of one training token

    @property
    def toolkit_mean(self) -> float:
        return sum(self.toolkit) / len(self.toolkit)

    @property
    def plain_mean(self) -> float:
        return sum(self.plain) / len(self.plain)

    @property
    def ratio(self) -> float:
        return self.toolkit_mean / self.plain_mean

    @property
    def toolkit_gflops(self) -> float:
        return self.toolkit_mean * self.flops_per_token / 1e9


def measure_throughput(config: TextGenConfig, measured_steps: int, work_dir: Path) -> Throughput:
    """Interleaved toolkit and plain runs; ``work_dir`` holds a SentencePiece model if the config trains one."""
    corpus = load_lm_corpus(config.data, make_tokenizer(config.data, work_dir))
    tokens_per_step = config.data.batch_size * config.data.window
    say(
        f"[1/4] training throughput: {ROUNDS} x (toolkit, plain), {LOG_WINDOW_STEPS} warm-up + {measured_steps} "
        f"measured steps of {config.data.batch_size} x {config.data.window} = {tokens_per_step:,} tokens each"
    )
    result = Throughput([], [], training_flops_per_token(config.decoder, len(corpus.vocab)))
    runs: list[tuple[str, Callable[[TextGenConfig, LMCorpus, int], float], list[float]]] = [
        ("toolkit", toolkit_tokens_per_second, result.toolkit),
        ("plain  ", plain_tokens_per_second, result.plain),
    ]
    for round_index in range(ROUNDS):
        for name, measure, figures in runs:
            figures.append(measure(config, corpus, measured_steps))
            say(f"  round {round_index + 1} {name}: {figures[-1]:,.0f} tokens/s")
    say(
        f"  toolkit {result.toolkit_mean:,.0f} tokens/s, plain {result.plain_mean:,.0f} tokens/s, "
        f"ratio {result.ratio:.3f} (target >= 0.9)"
    )
    return result


# ---- 2. achieved GFLOP/s and the machine's matmul peak -----------------------------------------


def training_flops_per_token(config: DecoderConfig, vocab_size: int) -> float:
    """Matmul FLOPs of one training token (multiply-add = 2 FLOPs).

    Counted: each recurrent layer's input and recurrent products, 2 * gates * H * (in + H) per
    token (gates: 4 LSTM, 3 GRU, 1 RNN; ``in`` is E for the first layer, H above), the optional
    pre-output projection and the output layer 2 * in * V. The backward pass is taken as twice
    the forward (gradients of inputs and of weights). Left out: embedding lookups, gate
    nonlinearities, dropout, softmax, the optimizer: all elementwise, small beside the matmuls.
    """
    hidden, gates = config.hidden_size, GATES[config.cell]
    forward = 0.0
    for layer in range(config.num_layers):
        layer_input = config.embedding_size if layer == 0 else hidden
        forward += 2 * gates * hidden * (layer_input + hidden)
    output_input = hidden
    if config.tie_embeddings and hidden != config.embedding_size:
        forward += 2 * hidden * config.embedding_size
        output_input = config.embedding_size
    forward += 2 * output_input * vocab_size
    return 3 * forward


def measure_peak(config: TextGenConfig, throughput: Throughput | None) -> MatmulPeak:
    """The fp32 matmul peak of this machine, printed beside the toolkit's achieved GFLOP/s."""
    say("[2/4] fp32 matmul peak and achieved training GFLOP/s")
    rows, hidden = config.data.batch_size, config.decoder.hidden_size
    columns = GATES[config.decoder.cell] * hidden
    peak = matmul_peak(rows, hidden, config.decoder.cell)
    say(f"  peak 2048 x 2048 x 2048: {peak.square:.1f} GFLOP/s")
    say(f"  peak ({rows}, {hidden}) x ({hidden}, {columns}): {peak.recurrent_step:.1f} GFLOP/s")
    if throughput is not None:
        achieved = throughput.toolkit_gflops
        say(
            f"  toolkit training: {throughput.flops_per_token / 1e6:.1f} MFLOP/token x "
            f"{throughput.toolkit_mean:,.0f} tokens/s = {achieved:.1f} GFLOP/s "
            f"({achieved / peak.square:.0%} of the square peak, "
            f"{achieved / peak.recurrent_step:.0%} of the {rows}-row peak)"
        )
    return peak


# ---- 3. validation loss after a fixed training budget ------------------------------------------


def train_budgeted(args: argparse.Namespace) -> None:
    """Train from scratch with the benchmark's budget, in this process, through ``seq2seq.train``
    (what ``seq2seq textgen train`` runs)."""
    say(f"[3/4] training {args.config} for {args.minutes:g} minutes into {args.run_dir} (fresh)")
    overrides = [
        f"data.path={args.data}",
        f"train.max_minutes={args.minutes}",
        "train.device=cpu",
        f"train.threads={THREADS}",
    ]
    train(TASK, args.config, overrides, args.run_dir, fresh=True)


def ensure_trained(args: argparse.Namespace) -> None:
    """Train a fresh model, unless --reuse finds one in the run directory."""
    run_dir = Path(args.run_dir)
    if args.reuse and has_checkpoint(run_dir):
        say(f"[3/4] --reuse: scoring the model already trained in {run_dir}")
        return
    if args.reuse:
        say(f"  --reuse: {run_dir} holds no checkpoint yet, so it is trained now")
    train_budgeted(args)


@dataclass
class ValidationLoss:
    carried_nats: float  # hidden state carried across windows of the training length
    carried_bits: float
    fresh_nats: float  # every FRESH_WINDOW-token window starts from a zero state
    fresh_bits: float
    characters: int  # tokens scored


def score_validation(generator: TextGenerator, data_path: str) -> ValidationLoss:
    """Validation loss with the state carried across windows, and over fresh 256-token windows."""
    data = replace(generator.config.data, path=data_path)
    validation_ids = load_lm_corpus(data, generator.tokenizer, generator.vocab).validation_ids  # (N,)
    carried = score_stream(generator.model, validation_stream(validation_ids, data), CPU, carry_state=True)
    fresh_stream = validation_stream(validation_ids, replace(data, window=FRESH_WINDOW))
    fresh = score_stream(generator.model, fresh_stream, CPU, carry_state=False)
    result = ValidationLoss(carried.nats, carried.bits, fresh.nats, fresh.bits, carried.tokens)
    say(
        f"  {result.characters:,} validation characters; state carried across windows of {data.window}: "
        f"{result.carried_nats:.4f} nats/char ({result.carried_bits:.4f} bits/char)"
    )
    say(
        f"  fresh windows of {FRESH_WINDOW}: {result.fresh_nats:.4f} nats/char ({result.fresh_bits:.4f} bits/char); "
        "target <= 1.48, nanoGPT 1.4697"
    )
    return result


@dataclass
class ValidationHistory:
    """The run's own validations (its metrics log): the best and the last one."""

    best_loss: float
    best_step: int
    final_loss: float
    final_step: int


def validation_history(run_dir: Path) -> ValidationHistory:
    """Whether the run held its best validation loss to the end of its budget."""
    records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "val_loss" in r]
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} holds no validation: train the run first")
    best = min(records, key=lambda record: record["val_loss"])
    final = records[-1]
    history = ValidationHistory(best["val_loss"], best["step"], final["val_loss"], final["step"])
    say(
        f"  the run's validations: best {history.best_loss:.4f} nats/char at step {history.best_step:,}, final "
        f"{history.final_loss:.4f} at step {history.final_step:,} ({history.final_loss - history.best_loss:+.4f}; "
        "target: the final one within the noise of the best)"
    )
    return history


# ---- 4. generation speed -------------------------------------------------------------------------


@dataclass
class GenerationTiming:
    seconds: float  # the search alone
    characters: int  # generated over all samples

    @property
    def chars_per_second(self) -> float:
        return self.characters / self.seconds


def time_generation(generator: TextGenerator, samples: int) -> GenerationTiming:
    """Sample GENERATED_CHARS characters for each of ``samples`` sequences after a newline; time the search only."""
    vocab = generator.vocab
    special = SpecialIds(vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id)
    prefix = torch.tensor([vocab.encode(generator.tokenizer.tokenize("\n"), unknown="unk")])  # (1, 1)
    decode = DecodeConfig(
        method="sample",
        max_length=GENERATED_CHARS,
        temperature=GENERATION_TEMPERATURE,
        num_samples=samples,
        seed=0,
    )
    generate(generator.model, empty_source(1), replace(decode, max_length=10), special, prefix)  # warm-up
    started = time.perf_counter()
    hypotheses = generate(generator.model, empty_source(1), decode, special, prefix)
    seconds = time.perf_counter() - started
    characters = int(hypotheses.lengths.sum())
    if characters < samples * GENERATED_CHARS:
        say(f"  note: end-of-sequence was drawn early; {characters} of {samples * GENERATED_CHARS} characters made")
    return GenerationTiming(seconds, characters)


def measure_generation(generator: TextGenerator) -> tuple[GenerationTiming, GenerationTiming]:
    """One sample, then a batch of GENERATION_BATCH samples."""
    say(f"[4/4] sampling {GENERATED_CHARS} characters at temperature {GENERATION_TEMPERATURE}")
    one = time_generation(generator, 1)
    say(f"  1 sample: {one.seconds:.3f} s ({one.chars_per_second:,.0f} chars/s); target < 1 s")
    batch = time_generation(generator, GENERATION_BATCH)
    say(f"  {GENERATION_BATCH} samples: {batch.seconds:.3f} s ({batch.chars_per_second:,.0f} chars/s in all)")
    return one, batch


def measure_int8_generation(run_dir: str, fp32: tuple[GenerationTiming, GenerationTiming]) -> tuple[float, float]:
    """The same samplings with the model in int8 (dynamic quantization): speed-ups over fp32."""
    int8 = TextGenerator.from_checkpoint(run_dir, CPU, quantize="int8")
    one, batch = time_generation(int8, 1), time_generation(int8, GENERATION_BATCH)
    speedups = (one.chars_per_second / fp32[0].chars_per_second, batch.chars_per_second / fp32[1].chars_per_second)
    say(
        f"  int8: 1 sample {one.seconds:.3f} s ({speedups[0]:.2f}x fp32), {GENERATION_BATCH} samples "
        f"{batch.seconds:.3f} s ({speedups[1]:.2f}x fp32)"
    )
    return speedups


# ---- the run -------------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> None:
    """All four parts, then the figures line and ``<run-dir>/benchmark.json``."""
    check_data(args.data)
    torch.set_num_threads(THREADS)
    config = load_config(TextGenConfig, args.config, [f"data.path={args.data}"])
    say(f"textgen benchmark: {args.config}, {args.data}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    throughput = None
    if not args.skip_throughput:
        with tempfile.TemporaryDirectory(prefix="bench_textgen_") as work_dir:
            throughput = measure_throughput(config, args.throughput_steps, Path(work_dir))
    peak = measure_peak(config, throughput)

    ensure_trained(args)
    generator = TextGenerator.from_checkpoint(args.run_dir, CPU)
    step = load_metadata(generator.checkpoint)["metrics"]["step"]
    say(f"  scoring {generator.checkpoint} (step {step}) on the validation split")
    validation = score_validation(generator, args.data)
    history = validation_history(Path(args.run_dir))
    one, batch = measure_generation(generator)
    int8_one, int8_batch = measure_int8_generation(args.run_dir, (one, batch))

    figures: Figures = {
        "train_tok_s": None if throughput is None else throughput.toolkit_mean,
        "plain_tok_s": None if throughput is None else throughput.plain_mean,
        "ratio": None if throughput is None else throughput.ratio,
        "gflops": None if throughput is None else throughput.toolkit_gflops,
        "peak_gflops_2048": peak.square,
        "peak_gflops_64row": peak.recurrent_step,
        "val_nats": validation.carried_nats,
        "val_bits": validation.carried_bits,
        "val_nats_fresh256": validation.fresh_nats,
        "val_bits_fresh256": validation.fresh_bits,
        "best_val_loss": history.best_loss,
        "best_val_step": history.best_step,
        "final_val_loss": history.final_loss,
        "final_val_step": history.final_step,
        "gen_500_s": one.seconds,
        "gen_16x500_s": batch.seconds,
        "gen_chars_s_1": one.chars_per_second,
        "gen_chars_s_16": batch.chars_per_second,
        "int8_gen_speedup_1": int8_one,
        "int8_gen_speedup_16": int8_batch,
        "params": count_parameters(generator.model),
        "minutes": generator.config.train.max_minutes,
        "steps": step,
    }
    report = {
        "figures": figures,
        "throughput_runs": None if throughput is None else {"toolkit": throughput.toolkit, "plain": throughput.plain},
        "config": args.config,
        "data": args.data,
        "checkpoint": str(generator.checkpoint),
        "threads": THREADS,
        "torch": torch.__version__,
    }
    report_path = Path(args.run_dir) / "benchmark.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    say(f"figures written to {report_path}")
    say(result_line("textgen", figures))


def main(argv: list[str] | None = None) -> int:
    return exit_status(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
