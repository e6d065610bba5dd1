"""Scale benchmark: a German -> English corpus of 10 million pairs, prepared once and trained from shards.

  python -m benchmarks.scale                                  # 10 M pairs, 300 training steps
  python -m benchmarks.scale --pairs 200000 --steps 60        # a quick check that it all runs

Four parts:

1. the corpus: ``--pairs`` pairs built deterministically from the Multi30k training data
   (``--data-dir``): each pair is a Multi30k pair as it is, the first half of one pair spliced to
   the second half of another (on both sides), or a pair with one word left out on each side,
   drawn by a seeded generator, so that the corpus is not copies of the same 29,000 lines while
   its sentence lengths stay Multi30k's (written once into ``--work-dir``, reused while
   ``--pairs`` and the recipe are the same); a joint SentencePiece model of the default config's size is
   learnt from ``--sample-sentences`` sentences of it (timed apart from the preparations);
2. ``seq2seq translate prepare`` of the corpus with that model, with 1 and with 2 workers: wall
   time, speed-up, and the peak resident memory of the largest of its processes;
3. the default config (``multi30k_de_en``, on THREADS threads, validation by loss only) trained for
   ``--steps`` steps from the prepared shards, and the same on Multi30k's text files (with the same
   SentencePiece model), ``--rounds`` times each in the order prepared, Multi30k, Multi30k,
   prepared, ... so that a drift of the machine's speed falls on both alike: peak resident memory
   of the training process, time from its start to the end of its first step (the largest of the
   rounds), and target tokens/s over the steps after the first ``--warmup-steps`` (the mean of the
   rounds);
4. the figures against the targets: preparation >= 1.8 x faster with 2 workers, preparation peak
   <= 1 GiB, training peak within 10% of Multi30k's, first step within 15 s of the start,
   tokens/s within 5% of Multi30k's.

The last line printed holds every figure (``RESULT scale: key=value ...``); the same figures go to
``<work-dir>/benchmark.json``. Run it from the project root on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the project root as a module: python -m benchmarks.scale")

# Imported before torch: it pins the thread pools to THREADS.
from benchmarks.common import THREADS, Figures, result_line, say, seq2seq_command
from benchmarks.peak_memory import run_measured

# isort: split
from seq2seq.commands.common import exit_status
from seq2seq.data.parallel import read_parallel
from seq2seq.text import SentencePieceTokenizer
from seq2seq.training.metrics_log import MetricsLog

CONFIG = "multi30k_de_en"
DEFAULT_DATA_DIR = "data/multi30k"
DEFAULT_WORK_DIR = "runs/bench_scale"
CORPUS_SEED = 14
CORPUS_RECIPE = "as-is 0.4, spliced halves 0.3, one word left out 0.3"
GIB = 2**30
TARGETS = "speed-up >= 1.8, preparation peak <= 1 GiB, training peak <= 1.1 x, first step <= 15 s, tokens/s >= 0.95 x"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000_000, help="pairs in the built corpus (default: 10 M)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run (default: 300)")
    parser.add_argument("--warmup-steps", type=int, default=20, help="first steps left out of tokens/s (default: 20)")
    parser.add_argument(
        "--sample-sentences",
        type=int,
        default=1_000_000,
        help="sentences the SentencePiece model learns from (default: 1 M)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="training runs on each corpus (default: 2)")
    parser.add_argument("--shard-size", type=int, default=100_000, help="pairs per shard (default: 100000)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"Multi30k (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR, help=f"corpus, shards, runs ({DEFAULT_WORK_DIR})")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup_steps:
        parser.error("--steps must be more than --warmup-steps")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


# ---- 1. the corpus ------------------------------------------------------------------------------


def build_corpus(data_dir: Path, pairs: int, prefix: Path) -> None:
    """``<prefix>.de`` and ``<prefix>.en``: ``pairs`` pairs recombined and perturbed from Multi30k's
    training pairs by a generator seeded with CORPUS_SEED (see the module's docstring)."""
    marker = prefix.with_suffix(".json")
    recipe = {"pairs": pairs, "seed": CORPUS_SEED, "recipe": CORPUS_RECIPE}
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        say(f"corpus: {pairs:,} pairs already in {prefix}.de/.en")
        return
    sources, targets = read_parallel(data_dir / "train.de.gz", data_dir / "train.en.gz")
    generator = random.Random(CORPUS_SEED)
    started = time.perf_counter()
    with open(f"{prefix}.de", "w", encoding="utf-8") as de, open(f"{prefix}.en", "w", encoding="utf-8") as en:
        for _ in range(pairs):
            source, target = recombined_pair(sources, targets, generator)
            de.write(source + "\n")
            en.write(target + "\n")
    marker.write_text(json.dumps(recipe))
    say(f"corpus: {pairs:,} pairs written to {prefix}.de/.en in {time.perf_counter() - started:.0f} s")


def recombined_pair(sources: list[str], targets: list[str], generator: random.Random) -> tuple[str, str]:
    """A Multi30k pair as it is (40%), the halves of two pairs spliced (30%), or a pair missing a word
    on each side (30%): the mix of CORPUS_RECIPE, whose lengths are close to Multi30k's."""
    first = generator.randrange(len(sources))
    kind = generator.random()
    if kind < 0.4:
        return sources[first], targets[first]
    if kind < 0.7:
        second = generator.randrange(len(sources))
        return spliced(sources[first], sources[second]), spliced(targets[first], targets[second])
    return without_a_word(sources[first], generator), without_a_word(targets[first], generator)


def spliced(head: str, tail: str) -> str:
    """The first half of ``head``'s words followed by the second half of ``tail``'s: on average as
    long as the two sentences."""
    head_words, tail_words = head.split(), tail.split()
    return " ".join(head_words[: len(head_words) // 2] + tail_words[len(tail_words) // 2 :])


def without_a_word(sentence: str, generator: random.Random) -> str:
    words = sentence.split()
    if len(words) > 2:
        del words[generator.randrange(len(words))]
    return " ".join(words)


def learn_sentencepiece(prefix: Path, sample: int, model_prefix: Path) -> float:
    """Seconds to learn the joint SentencePiece model of the default config from ``sample`` sentences."""
    started = time.perf_counter()
    SentencePieceTokenizer.train(
        [Path(f"{prefix}.de"), Path(f"{prefix}.en")],
        8000,
        "unigram",
        model_prefix=model_prefix,
        sample_sentences=sample,
    )
    return time.perf_counter() - started


# ---- 2. preparation -------------------------------------------------------------------------------


@dataclass
class Measured:
    seconds: float
    peak_rss_gib: float


def run_command(verb: str, arguments: list[str], log: Path) -> Measured:
    """``python -m seq2seq translate VERB ...`` in a measured child process, its output in ``log``."""
    command = seq2seq_command("translate", verb, arguments)
    run = run_measured(command, log)
    if run.exit_code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(command)}` failed with exit status {run.exit_code}:\n{tail}")
    return Measured(run.seconds, run.peak_rss_bytes / GIB)


def data_settings(args: argparse.Namespace, train_prefix: Path, model: Path) -> list[str]:
    data_dir = Path(args.data_dir)
    return [
        f"data.train_prefix={train_prefix}",
        f"data.valid_prefix={data_dir / 'val'}",
        f"data.test_prefix={data_dir / 'test_2016_flickr'}",
        f"data.source_sentencepiece_model={model}",
    ]


def as_arguments(settings: list[str]) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def prepare(args: argparse.Namespace, work: Path, corpus: Path, model: Path, workers: int) -> Measured:
    output = work / f"prepared_{workers}"
    arguments = ["--config", CONFIG, *as_arguments(data_settings(args, corpus, model)), "--output", str(output)]
    arguments += ["--workers", str(workers), "--shard-size", str(args.shard_size)]
    for stale in output.glob("*") if output.is_dir() else []:
        stale.unlink()  # prepare from scratch, not the check of a finished folder
    measured = run_command("prepare", arguments, work / f"prepare_{workers}.log")
    say(f"prepare, {workers} worker(s): {measured.seconds:.1f} s, peak RSS {measured.peak_rss_gib:.2f} GiB")
    return measured


# ---- 3. training ----------------------------------------------------------------------------------


@dataclass
class Training:
    peak_rss_gib: float
    first_step_s: float  # from the process's start to its first metrics record (step 1)
    tokens_per_s: float


def first_record_time(metrics: Path, started: float, found: list[float], done: threading.Event) -> None:
    """Append to ``found`` the seconds from ``started`` until ``metrics`` exists and is not empty."""
    while not done.is_set():
        if metrics.is_file() and metrics.stat().st_size > 0:
            found.append(time.perf_counter() - started)
            return
        time.sleep(0.01)


def train(args: argparse.Namespace, work: Path, name: str, settings: list[str], round_number: int) -> Training:
    """Train the default config for ``--steps`` steps; log every step, validate once at the end by loss."""
    run_dir = work / f"run_{name}"
    fixed = [
        "train.device=cpu",
        f"train.threads={THREADS}",
        f"train.max_steps={args.steps}",
        "train.max_minutes=0",
        "train.log_every=1",
        f"train.validate_every={args.steps}",
        "validation.bleu=false",
        "train.best_metric=val_loss",
        "train.best_mode=min",
    ]
    arguments = ["--config", CONFIG, "--run-dir", str(run_dir), "--fresh", *as_arguments([*settings, *fixed])]
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    found: list[float] = []
    done = threading.Event()
    watcher = threading.Thread(
        target=first_record_time, args=(run_dir / "metrics.jsonl", time.perf_counter(), found, done)
    )
    watcher.start()
    try:
        measured = run_command("train", arguments, work / f"train_{name}_{round_number}.log")
    finally:
        done.set()
        watcher.join()
    records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "tokens_per_s" in r]
    timed = [(b["tokens_per_s"], b["elapsed_s"] - a["elapsed_s"]) for a, b in pairwise(records)]
    timed = timed[args.warmup_steps :]
    tokens_per_s = sum(rate * seconds for rate, seconds in timed) / max(sum(seconds for _, seconds in timed), 1e-9)
    result = Training(measured.peak_rss_gib, found[0] if found else float("nan"), tokens_per_s)
    say(
        f"train on {name}, round {round_number}: peak RSS {result.peak_rss_gib:.2f} GiB, first step "
        f"{result.first_step_s:.1f} s after the start, {result.tokens_per_s:,.0f} target tokens/s"
    )
    return result


def train_rounds(args: argparse.Namespace, work: Path, corpora: dict[str, list[str]]) -> dict[str, Training]:
    """Each of the two ``corpora`` (name: data settings) trained ``--rounds`` times, in the order A B B A
    A B ...; per corpus the largest peak and first step of its rounds and the mean of their tokens/s."""
    names = list(corpora)
    runs: dict[str, list[Training]] = {name: [] for name in names}
    for round_number in range(1, args.rounds + 1):
        for name in names if round_number % 2 else reversed(names):
            runs[name].append(train(args, work, name, corpora[name], round_number))
    return {
        name: Training(
            max(run.peak_rss_gib for run in trained),
            max(run.first_step_s for run in trained),
            sum(run.tokens_per_s for run in trained) / len(trained),
        )
        for name, trained in runs.items()
    }


# ---- 4. figures -----------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> None:
    data_dir, work = Path(args.data_dir), Path(args.work_dir)
    if not (data_dir / "train.de.gz").is_file():
        raise FileNotFoundError(
            f"{data_dir / 'train.de.gz'} not found: get Multi30k with python data_scripts/multi30k.py"
        )
    work.mkdir(parents=True, exist_ok=True)
    say(f"scale benchmark: {args.pairs:,} pairs, {args.steps} training steps, {THREADS} threads, work in {work}")
    corpus = work / "corpus"
    build_corpus(data_dir, args.pairs, corpus)
    model = work / "sentencepiece"
    sentencepiece_s = learn_sentencepiece(corpus, args.sample_sentences, model)
    say(f"SentencePiece model learnt from {args.sample_sentences:,} sampled sentences in {sentencepiece_s:.1f} s")
    model_file = model.with_name(model.name + ".model")
    one, two = (prepare(args, work, corpus, model_file, workers) for workers in (1, 2))
    trained = train_rounds(
        args,
        work,
        {
            "prepared": [*data_settings(args, corpus, model_file), f"data.prepared={work}/prepared_2"],
            "multi30k": data_settings(args, data_dir / "train", model_file),
        },
    )
    scaled, multi30k = trained["prepared"], trained["multi30k"]
    figures: Figures = {
        "pairs": args.pairs,
        "training_rounds": args.rounds,
        "sentencepiece_s": round(sentencepiece_s, 1),
        "prepare_1_worker_s": round(one.seconds, 1),
        "prepare_2_workers_s": round(two.seconds, 1),
        "prepare_speedup": round(one.seconds / two.seconds, 3),
        "prepare_peak_rss_gib": round(max(one.peak_rss_gib, two.peak_rss_gib), 3),
        "train_peak_rss_gib": round(scaled.peak_rss_gib, 3),
        "multi30k_peak_rss_gib": round(multi30k.peak_rss_gib, 3),
        "train_peak_rss_ratio": round(scaled.peak_rss_gib / multi30k.peak_rss_gib, 3),
        "first_step_s": round(scaled.first_step_s, 1),
        "multi30k_first_step_s": round(multi30k.first_step_s, 1),
        "tokens_per_s": round(scaled.tokens_per_s),
        "multi30k_tokens_per_s": round(multi30k.tokens_per_s),
        "tokens_per_s_ratio": round(scaled.tokens_per_s / multi30k.tokens_per_s, 3),
    }
    say(f"targets: {TARGETS}")
    for key, value in figures.items():
        say(f"  {key}: {value}")
    (work / "benchmark.json").write_text(json.dumps(figures, indent=2) + "\n")
    say(result_line("scale", figures))


def main(argv: list[str] | None = None) -> int:
    return exit_status(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
