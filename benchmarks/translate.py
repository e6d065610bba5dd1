"""Translation benchmark: Multi30k German -> English on 2 CPU threads, measured as in BENCHMARKS.md.

  python -m benchmarks.translate                  # the full run: throughput, 20 minutes of training, translation
  python -m benchmarks.translate --reuse          # score and time the model already trained in --run-dir
  python -m benchmarks.translate --minutes 0.5 --warmup-steps 10 --throughput-steps 20   # a quick check
  python -m benchmarks.translate --peer opennmt   # OpenNMT-py measured before and after our rounds, ratios

The parts:

0. with ``--peer opennmt``: ``run_opennmt.py`` from ``--peer-scripts`` (OpenNMT-py 3.5.1, the same
   comparison model, 250 steps, then beam 5 and greedy translation) before the throughput part
   and again after it; every ratio to the peer is printed from this run, with the CPU's flags;

1. training throughput of the comparison model (the shipped config ``multi30k_de_en_comparison``,
   the model OpenNMT-py and Joey NMT were measured with) and of the default model, each trained
   by ``python -m seq2seq translate train`` in a child process (the shared ``Trainer``), interleaved
   (comparison, default, comparison, default): target tokens/s over steps 51-250 (by default)
   read from the run's metrics log, and the peak resident memory of the process;
2. the matmul GFLOP/s those runs achieve, beside the fp32 matmul peak measured here;
3. quality at a budget: the default config trained by ``seq2seq translate train`` for
   ``--minutes`` of wall clock from the training process's start, then test_2016_flickr
   translated with beam 5 and with greedy search: sacreBLEU BLEU and chrF, with their signatures;
4. translation speed of the 1,000 test sentences through ``seq2seq.Translator``: sentences/s of
   the search (model loaded first; tokenising, batching and detokenisation included) at 64
   sentences per batch and at each of BATCH_SIZES, the comparison model's speed at batch 64,
   and the wall time of one whole ``seq2seq translate translate`` process;
5. decoding modes of the budgeted model against fp32 in this run (``benchmarks/decoding_modes.py``):
   int8 speed and BLEU, token budgets against fixed sentence batches, and an ensemble of the
   run's last 3 checkpoints (and of ``--ensemble`` runs, e.g. three seeds): BLEU against the
   best member, speed against one model.

Training throughput is measured in fp32, and also in bf16 where the CPU has the units (AMX or
AVX512-BF16); the comparison model's decoding speed in fp32 and int8.

The last line printed holds every figure (``RESULT translate: key=value ...``); the same figures
go to ``<run-dir>/benchmark.json``. Run it from the project root, with the package installed, on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the project root as a module: python -m benchmarks.translate")

# Imported before torch: it pins the thread pools to THREADS.
from benchmarks import decoding_modes
from benchmarks.common import (
    GATES,
    THREADS,
    Figures,
    MatmulPeak,
    cpu_summary,
    has_checkpoint,
    matmul_peak,
    result_line,
    say,
    seq2seq_command,
)
from benchmarks.decoding_modes import BEAM, SEARCHES, SPEED_BATCH, ModeRun
from benchmarks.peak_memory import run_measured
from benchmarks.peers import PEER_SCRIPTS, PeerRun, describe, mean_peer, run_peer

# isort: split
import torch

from seq2seq import Hypothesis, Translator
from seq2seq.averaging import latest_checkpoints
from seq2seq.checkpoint import load_metadata
from seq2seq.commands.common import exit_status
from seq2seq.config import DecodeConfig, DecoderConfig, TextEncoderConfig, load_config
from seq2seq.data.parallel import (
    ParallelCorpus,
    language_file,
    load_parallel_corpus,
    make_tokenizers,
    read_lines,
)
from seq2seq.data.text_files import DataError
from seq2seq.devices import has_bf16_units
from seq2seq.inference.translator import DecodeBatching
from seq2seq.metrics import Score, corpus_bleu, corpus_chrf
from seq2seq.models import build_translation_model
from seq2seq.models.decoder import count_parameters
from seq2seq.run_configs import TranslationConfig
from seq2seq.text import Vocab
from seq2seq.training.metrics_log import MetricsLog
from seq2seq.training.runtime import Runtime
from seq2seq.training.translation_task import training_batcher

TASK = "translate"  # the seq2seq command line's name of the task
DEFAULT_CONFIG = "multi30k_de_en"  # shipped configs, by name
COMPARISON_CONFIG = "multi30k_de_en_comparison"
DEFAULT_DATA_DIR = "data/multi30k"
DEFAULT_RUN_DIR = "runs/bench_multi30k_de_en"
SPLIT_PREFIXES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
CPU = torch.device("cpu")
ROUNDS = 2  # (comparison, default) pairs in the throughput part
LOG_EVERY = 10  # steps per throughput record of the trainer's metrics log
BATCH_SIZES = (64, 128, 256)  # searched for the fastest batch size
MIN_TRAINING_MINUTES = 0.1  # the least training a budget leaves after the process's set-up
ENSEMBLE_CHECKPOINTS = 3  # the budgeted run's last checkpoints that decode as an ensemble
DEFAULT_PEER_SCRIPTS = "../shared/peers"
GIB = 2**30


# ---- setup --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; bad values stop with a usage message."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.translate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="the budgeted (default) model's config: a shipped config's name or a YAML file "
        f"(default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="folder of the Multi30k files {train,val,test_2016_flickr}.{de,en}[.gz] "
        f"(default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget in minutes (default: 20)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help=f"the budgeted run (default: {DEFAULT_RUN_DIR})")
    parser.add_argument("--reuse", action="store_true", help="skip training when --run-dir already holds a checkpoint")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the training-throughput part")
    parser.add_argument("--skip-modes", action="store_true", help="skip the decoding-modes part")
    parser.add_argument(
        "--peer",
        choices=sorted(PEER_SCRIPTS),
        help="also run this peer toolkit's script before and after the throughput part, and print ratios",
    )
    parser.add_argument(
        "--peer-scripts",
        default=DEFAULT_PEER_SCRIPTS,
        help=f"the folder of the peer scripts (default: {DEFAULT_PEER_SCRIPTS})",
    )
    parser.add_argument(
        "--ensemble",
        nargs="+",
        metavar="RUN_DIR",
        help="also decode these runs (e.g. the default config trained with three seeds) as an ensemble",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=50,
        help=f"training steps before the measured ones, a multiple of {LOG_EVERY} (default: 50)",
    )
    parser.add_argument(
        "--throughput-steps",
        type=int,
        default=200,
        help=f"measured training steps per throughput run, a multiple of {LOG_EVERY} (default: 200: steps 51-250)",
    )
    args = parser.parse_args(argv)
    steps = (("--warmup-steps", args.warmup_steps, 0), ("--throughput-steps", args.throughput_steps, LOG_EVERY))
    for flag, value, least in steps:
        if value < least or value % LOG_EVERY:
            parser.error(f"{flag} must be a multiple of {LOG_EVERY} of at least {least}, got {value}")
    if args.minutes <= 0:
        parser.error(f"--minutes must be above 0, got {args.minutes}")
    if args.peer and args.skip_throughput:
        parser.error("--peer compares with the throughput part: drop --skip-throughput")
    return args


def data_overrides(data_dir: str) -> list[str]:
    """Config overrides that read every split from ``data_dir``."""
    return [f"data.{split}_prefix={Path(data_dir) / name}" for split, name in SPLIT_PREFIXES.items()]


def check_data(data_dir: str) -> None:
    """Stop early, saying how to get the files, when a split of German -> English is missing."""
    try:
        for name in SPLIT_PREFIXES.values():
            for lang in ("de", "en"):
                language_file(Path(data_dir) / name, lang)
    except DataError as error:
        raise FileNotFoundError(
            f"{error} Get Multi30k with `python data_scripts/multi30k.py` (offline: add --source DIR, or set "
            "SEQ2SEQ_DATA_MIRROR=DIR), or point --data-dir at a folder that holds the files."
        ) from None


def task_config(name_or_path: str, data_dir: str) -> TranslationConfig:
    """A translation config (a shipped name or a YAML file) with its data read from ``data_dir``."""
    return load_config(TranslationConfig, name_or_path, data_overrides(data_dir))


# ---- child processes ------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    seconds: float  # wall clock from start to exit
    peak_rss_bytes: int  # the kernel's maximum resident set size of the process

    @property
    def peak_rss_gib(self) -> float:
        return self.peak_rss_bytes / GIB


def run_seq2seq(verb: str, arguments: list[str], output: Path | None = None) -> ProcessRun:
    """Run ``python -m seq2seq translate <verb> <arguments>`` in a child process on THREADS threads.

    Its stdout and stderr go to ``output`` when given, else to ours. The peak memory is the
    child's own maximum resident set size, as ``/usr/bin/time -v`` prints it, measured through
    ``benchmarks/peak_memory.py`` so that this process's size does not leak into it.
    """
    command = seq2seq_command(TASK, verb, arguments)
    run = run_measured(command, output)
    if run.exit_code:
        where = f"; its output is in {output}:\n{tail(output)}" if output is not None else " (see above)"
        raise RuntimeError(f"`{' '.join(command)}` failed with exit status {run.exit_code}{where}")
    return ProcessRun(run.seconds, run.peak_rss_bytes)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a text file."""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def train_arguments(config_path: str, run_dir: Path, data_dir: str, overrides: list[str]) -> list[str]:
    """The arguments of ``train`` from scratch on the CPU with THREADS threads, data from ``data_dir``."""
    settings = [*data_overrides(data_dir), "train.device=cpu", f"train.threads={THREADS}", *overrides]
    arguments = ["--config", config_path, "--run-dir", str(run_dir), "--fresh"]
    for setting in settings:
        arguments += ["--set", setting]
    return arguments


# ---- 1. training throughput --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFlops:
    """Matmul FLOPs of one forward pass (a multiply-add is 2), by what they scale with."""

    per_sentence: float  # the bridge from the encoder summary to the decoder state
    per_source_token: float  # encoder layers, attention keys
    per_target_token: float  # decoder layers, attention query, attentional vector, output layer
    per_pair: float  # attention score and context of one (target position, source position) pair

    def training(self, source_length: int, target_length: int) -> float:
        """One sentence pair's training FLOPs: the backward pass is taken as twice the forward."""
        forward = (
            self.per_sentence
            + source_length * self.per_source_token
            + target_length * self.per_target_token
            + source_length * target_length * self.per_pair
        )
        return 3 * forward


def rnn_layer_flops(cell: str, input_size: int, hidden_size: int) -> float:
    """One recurrent layer, one direction, one token: the input and recurrent products."""
    return 2 * GATES[cell] * hidden_size * (input_size + hidden_size)


def model_flops(encoder: TextEncoderConfig, decoder: DecoderConfig, target_vocab_size: int) -> ModelFlops:
    """The matmul FLOPs of a translation model with the ``encoder`` (kind rnn) and ``decoder`` sections.

    Counted: the encoder's recurrent layers (both directions), the bridge, the attention
    (Bahdanau: keys W_m m per source token, query W_q q per target token, v . tanh(...) per
    pair; general: keys per source token, q . k per pair; dot: q . m per pair; every kind: the
    context per pair and the attentional vector tanh(W [h; c]) per target token), the decoder's
    recurrent layers (the first reading the input feed too, with input feeding), the
    pre-output projection of tied embeddings and the output layer. Left out: embedding
    lookups, nonlinearities, softmax, dropout and the optimizer, all elementwise.
    """
    if encoder.kind != "rnn":
        raise ValueError(f"the FLOP count covers the rnn encoder only, not encoder.kind {encoder.kind!r}")
    directions = 2 if encoder.bidirectional else 1
    memory, hidden = directions * encoder.hidden_size, decoder.hidden_size
    source = 0.0
    for layer in range(encoder.num_layers):
        layer_input = encoder.embedding_size if layer == 0 else memory
        source += directions * rnn_layer_flops(encoder.cell, layer_input, encoder.hidden_size)
    target = 0.0
    for layer in range(decoder.num_layers):
        first_input = decoder.embedding_size + (hidden if decoder.input_feeding else 0)
        target += rnn_layer_flops(decoder.cell, first_input if layer == 0 else hidden, hidden)
    pair = 0.0
    if decoder.attention != "none":
        target += 2 * hidden * (hidden + memory)  # the attentional vector
        pair += 2 * memory  # the context
        if decoder.attention in ("bahdanau", "general"):
            source += 2 * memory * hidden  # the keys
        if decoder.attention == "bahdanau":
            target += 2 * hidden * hidden  # the query projection
        pair += 2 * (memory if decoder.attention == "dot" else hidden)  # the score
    if decoder.tie_embeddings and hidden != decoder.embedding_size:
        target += 2 * hidden * decoder.embedding_size
    output_input = decoder.embedding_size if decoder.tie_embeddings else hidden
    target += 2 * output_input * target_vocab_size
    bridge = 2 * memory * hidden if decoder.bridge == "linear" else 0.0
    return ModelFlops(bridge, source, target, pair)


@dataclass
class StepWork:
    tokens: int  # non-pad target tokens, eos included
    flops: float  # training matmul FLOPs


def planned_work(config: TranslationConfig, corpus: ParallelCorpus, steps: int) -> list[StepWork]:
    """The work of each of the first ``steps`` training steps, from the batches the package's
    translation task gives (the same seed, so the same batches the child process trains on)."""
    batcher = training_batcher(config, corpus.train, Runtime(CPU))
    flops = model_flops(config.encoder, config.decoder, len(corpus.target.vocab))
    per_step = config.train.accumulate_steps
    targets = corpus.train.targets
    assert targets is not None  # training pairs have targets
    work: list[StepWork] = []
    epoch = 0
    while len(work) < steps:
        plan = batcher.plan(epoch)
        for first in range(0, len(plan) - per_step + 1, per_step):
            pairs = [i for batch in plan[first : first + per_step] for i in batch]
            source_lengths = [len(corpus.train.sources[i]) for i in pairs]
            target_lengths = [len(targets[i]) + 1 for i in pairs]  # + eos
            step_flops = sum(flops.training(s, t) for s, t in zip(source_lengths, target_lengths))
            work.append(StepWork(sum(target_lengths), step_flops))
            if len(work) == steps:
                break
        epoch += 1
    return work


@dataclass
class ThroughputRun:
    tokens_per_second: float  # target tokens, over the measured steps
    gflops: float  # achieved training matmul GFLOP/s over the same steps
    peak_rss_bytes: int  # of the whole training process


@dataclass
class ModelThroughput:
    name: str
    config: str
    parameters: int
    runs: list[ThroughputRun]

    @property
    def tokens_per_second(self) -> float:
        return sum(run.tokens_per_second for run in self.runs) / len(self.runs)

    @property
    def gflops(self) -> float:
        return sum(run.gflops for run in self.runs) / len(self.runs)

    @property
    def peak_rss_gib(self) -> float:
        return max(run.peak_rss_bytes for run in self.runs) / GIB


@dataclass
class ThroughputSetup:
    """One model's side of the throughput part."""

    name: str
    config_path: str
    work: list[StepWork]  # of every step a run takes, warm-up included
    parameters: int
    precision: str  # fp32 | bf16


def throughput_setup(
    name: str, config_path: str, args: argparse.Namespace, sentencepiece: Path, total_steps: int, precision: str
) -> ThroughputSetup:
    """Read the corpus as the child process will (with the shared SentencePiece model) and plan its steps."""
    config = task_config(config_path, args.data_dir)
    config.data.source_sentencepiece_model = str(sentencepiece)
    corpus = load_parallel_corpus(config.data, make_tokenizers(config.data, sentencepiece.parent))
    model = build_translation_model(
        config.encoder, config.decoder, len(corpus.source.vocab), len(corpus.target.vocab), Vocab.pad_id
    )
    work = planned_work(config, corpus, total_steps)
    return ThroughputSetup(name, config_path, work, count_parameters(model), precision)


def throughput_run(
    setup: ThroughputSetup, args: argparse.Namespace, sentencepiece: Path, run_dir: Path
) -> ThroughputRun:
    """Train ``setup``'s model for warm-up + measured steps in a child process, without validation
    until the end; target tokens/s and GFLOP/s of the measured steps from its metrics log."""
    total_steps = args.warmup_steps + args.throughput_steps
    overrides = [
        f"data.source_sentencepiece_model={sentencepiece}",
        f"train.max_steps={total_steps}",
        f"train.precision={setup.precision}",
        "train.max_minutes=0",
        f"train.log_every={LOG_EVERY}",
        f"train.validate_every={total_steps}",
        "validation.bleu=false",
        "train.best_metric=val_loss",
        "train.best_mode=min",
    ]
    arguments = train_arguments(setup.config_path, run_dir, args.data_dir, overrides)
    process = run_seq2seq("train", arguments, run_dir.with_name(run_dir.name + ".log"))
    records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "tokens_per_s" in r]
    measured = [r for r in records if r["step"] > args.warmup_steps]
    expected = args.throughput_steps // LOG_EVERY
    if len(measured) != expected:
        raise RuntimeError(
            f"{run_dir / 'metrics.jsonl'} holds {len(measured)} throughput records after the warm-up, not {expected}"
        )
    tokens, flops, seconds = 0, 0.0, 0.0
    for record in measured:  # each record covers the LOG_EVERY steps up to its step
        window = setup.work[record["step"] - LOG_EVERY : record["step"]]
        window_tokens = sum(step.tokens for step in window)
        tokens += window_tokens
        flops += sum(step.flops for step in window)
        seconds += window_tokens / record["tokens_per_s"]
    return ThroughputRun(tokens / seconds, flops / seconds / 1e9, process.peak_rss_bytes)


def measure_throughput(args: argparse.Namespace, work_dir: Path) -> dict[str, ModelThroughput]:
    """Interleaved runs of the comparison and the default model, sharing one SentencePiece model."""
    total_steps = args.warmup_steps + args.throughput_steps
    say(
        f"[1/5] training throughput: {ROUNDS} x (comparison, default), {args.warmup_steps} warm-up + "
        f"{args.throughput_steps} measured steps each, through `seq2seq translate train`"
    )
    comparison = task_config(COMPARISON_CONFIG, args.data_dir)
    pieces = comparison.data.sentencepiece_vocab_size
    say(f"  training the joint SentencePiece model of {pieces} pieces, shared by all runs")
    make_tokenizers(comparison.data, work_dir)
    sentencepiece = work_dir / "sentencepiece.model"
    models = [("comparison", COMPARISON_CONFIG), ("default", args.config)]
    precisions = ["fp32", "bf16"] if has_bf16_units(CPU) else ["fp32"]
    if len(precisions) == 1:
        say("  this CPU has no bf16 matrix units (AMX, AVX512-BF16): fp32 only, as train.precision=auto trains here")
    setups = [
        throughput_setup(
            name if precision == "fp32" else f"{name}_bf16", path, args, sentencepiece, total_steps, precision
        )
        for precision in precisions
        for name, path in models
    ]
    results = {s.name: ModelThroughput(s.name, s.config_path, s.parameters, []) for s in setups}
    for round_index in range(1, ROUNDS + 1):
        for setup in setups:
            run = throughput_run(setup, args, sentencepiece, work_dir / f"throughput_{setup.name}_{round_index}")
            results[setup.name].runs.append(run)
            say(
                f"  round {round_index} {setup.name:<10}: {run.tokens_per_second:,.0f} target tokens/s, "
                f"{run.gflops:.1f} GFLOP/s, peak RSS {run.peak_rss_bytes / GIB:.2f} GiB"
            )
    for result in results.values():
        say(
            f"  {result.name:<10} ({result.parameters / 1e6:.2f}M parameters): {result.tokens_per_second:,.0f} target "
            f"tokens/s, peak RSS {result.peak_rss_gib:.2f} GiB"
        )
    say("  target for the comparison model in fp32: peak RSS <= 1 GiB; speed ratios to the peer with --peer")
    return results


# ---- 2. achieved GFLOP/s and the machine's matmul peak -----------------------------------------


def measure_peak(throughput: dict[str, ModelThroughput] | None) -> MatmulPeak:
    """The fp32 matmul peak at the comparison model's recurrent step, beside the achieved GFLOP/s."""
    say("[2/5] fp32 matmul peak and achieved training GFLOP/s")
    comparison = load_config(TranslationConfig, COMPARISON_CONFIG)
    rows, hidden, cell = comparison.data.batch_sentences, comparison.decoder.hidden_size, comparison.decoder.cell
    peak = matmul_peak(rows, hidden, cell)
    say(f"  peak 2048 x 2048 x 2048: {peak.square:.1f} GFLOP/s")
    say(f"  peak ({rows}, {hidden}) x ({hidden}, {GATES[cell] * hidden}): {peak.recurrent_step:.1f} GFLOP/s")
    for result in (throughput or {}).values():
        say(
            f"  {result.name} training: {result.gflops:.1f} GFLOP/s ({result.gflops / peak.square:.0%} of the square "
            f"peak, {result.gflops / peak.recurrent_step:.0%} of the {rows}-row peak)"
        )
    return peak


# ---- 3. quality after a fixed training budget --------------------------------------------------


@dataclass
class BudgetTraining:
    setup_seconds: float  # a training process's start-up before its first step
    train_minutes: float  # the budget given to the trainer: --minutes less the set-up
    process: ProcessRun  # the whole training process


def setup_seconds(args: argparse.Namespace, work_dir: Path) -> float:
    """Wall time of a training process that stops before its first step: start-up, SentencePiece
    training, reading the corpus and building the model."""
    run_dir = work_dir / "setup_probe"
    stop_at_once = ["train.max_steps=0", "train.max_minutes=0"]  # no steps, so no time budget either
    arguments = train_arguments(args.config, run_dir, args.data_dir, stop_at_once)
    return run_seq2seq("train", arguments, run_dir.with_name(run_dir.name + ".log")).seconds


def train_budgeted(args: argparse.Namespace, work_dir: Path) -> BudgetTraining:
    """Train ``--config`` through ``seq2seq translate train`` so that the process ends its training
    ``--minutes`` after it starts: the trainer's budget is what the process's set-up leaves."""
    say(f"[3/5] training {args.config} for {args.minutes:g} minutes from process start into {args.run_dir} (fresh)")
    setup = setup_seconds(args, work_dir)
    minutes = max(args.minutes - setup / 60, MIN_TRAINING_MINUTES)
    say(f"  a training process spends {setup:.0f} s before its first step: the trainer gets {minutes:.2f} minutes")
    if minutes == MIN_TRAINING_MINUTES:
        say(f"  note: --minutes {args.minutes:g} does not cover the set-up; training {MIN_TRAINING_MINUTES} minutes")
    arguments = train_arguments(args.config, Path(args.run_dir), args.data_dir, [f"train.max_minutes={minutes}"])
    process = run_seq2seq("train", arguments)
    say(f"  training process: {process.seconds / 60:.2f} minutes, peak RSS {process.peak_rss_gib:.2f} GiB")
    return BudgetTraining(setup, minutes, process)


def ensure_trained(args: argparse.Namespace, work_dir: Path) -> BudgetTraining | None:
    """Train a fresh model, unless --reuse finds one in the run directory (then None)."""
    run_dir = Path(args.run_dir)
    if args.reuse and has_checkpoint(run_dir):
        say(f"[3/5] --reuse: scoring the model already trained in {run_dir}")
        return None
    if args.reuse:
        say(f"  --reuse: {run_dir} holds no checkpoint yet, so it is trained now")
    return train_budgeted(args, work_dir)


# ---- 4. translation speed (and the quality of those translations) ------------------------------


@dataclass
class TestSet:
    source_file: Path
    sources: list[str]
    references: list[str]


def read_test_set(translator: Translator, data_dir: str) -> TestSet:
    """test_2016_flickr in the model's source and target languages, raw text."""
    prefix = Path(data_dir) / SPLIT_PREFIXES["test"]
    source_file = language_file(prefix, translator.config.data.source_lang)
    target_file = language_file(prefix, translator.config.data.target_lang)
    return TestSet(source_file, read_lines(source_file), read_lines(target_file))


@dataclass
class SearchRun:
    search: str  # "beam5" | "greedy"
    batch_size: int
    seconds: float  # the search of the whole test set, batching and detokenisation included
    sentences: int
    mean_length: float  # target pieces per translation, eos included
    translations: list[str]

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds


def search_configs(translator: Translator) -> dict[str, DecodeConfig]:
    """Beam 5 and greedy search with the model's decoding settings (length penalty, limits)."""
    beam, greedy = SEARCHES
    return {beam: translator.decode_config(beam=BEAM), greedy: translator.decode_config(greedy=True)}


def translate_lines(
    translator: Translator, lines: list[str], decode: DecodeConfig, batching: DecodeBatching
) -> list[list[Hypothesis]]:
    """Raw lines to their translations: tokenising, batching by length, the search, detokenising."""
    return translator.translate_data(translator.encode(lines), decode, batching)


def time_search(
    translator: Translator, lines: list[str], search: str, decode: DecodeConfig, batch_size: int
) -> SearchRun:
    """Translate ``lines`` raw text to raw text, timing the whole call."""
    started = time.perf_counter()
    results = translate_lines(translator, lines, decode, DecodeBatching(batch_size))
    seconds = time.perf_counter() - started
    mean_length = sum(len(best.token_ids) for best, *_ in results) / len(results)
    return SearchRun(search, batch_size, seconds, len(lines), mean_length, [best.text for best, *_ in results])


def warm_up(translator: Translator, lines: list[str]) -> None:
    """One small untimed translation, so that one-off costs fall outside the timings."""
    translate_lines(translator, lines[:SPEED_BATCH], translator.decode_config(beam=BEAM), DecodeBatching(SPEED_BATCH))


def measure_speed(translator: Translator, test: TestSet, batch_sizes: tuple[int, ...]) -> list[SearchRun]:
    """Beam 5 and greedy search over the test sources at each of ``batch_sizes``."""
    warm_up(translator, test.sources)
    runs = []
    for search, decode in search_configs(translator).items():
        for batch_size in batch_sizes:
            run = time_search(translator, test.sources, search, decode, batch_size)
            runs.append(run)
            say(
                f"  {search:<6} batch {batch_size:>3}: {run.seconds:6.2f} s, "
                f"{run.sentences_per_second:6.1f} sentences/s, {run.mean_length:.1f} pieces per translation"
            )
    return runs


def comparison_speed(checkpoint: Path, test: TestSet, quantize: str | None = None) -> list[SearchRun]:
    """The comparison model's speed at SPEED_BATCH, with the weights its first throughput run
    left, in fp32 or with ``quantize="int8"``."""
    translator = Translator.from_checkpoint(checkpoint, CPU, quantize=quantize)
    step = load_metadata(translator.checkpoint)["step"]
    say(f"  the comparison model after the {step} steps of its throughput run (not converged), {quantize or 'fp32'}:")
    return measure_speed(translator, test, (SPEED_BATCH,))


def at_speed_batch(runs: list[SearchRun], search: str) -> SearchRun:
    """The run of ``search`` at SPEED_BATCH."""
    return next(run for run in runs if run.search == search and run.batch_size == SPEED_BATCH)


def speed_at_speed_batch(runs: list[SearchRun] | None, search: str) -> float | None:
    """Sentences/s of ``search`` at SPEED_BATCH; None when ``runs`` were not measured."""
    return None if runs is None else at_speed_batch(runs, search).sentences_per_second


def fastest(runs: list[SearchRun], search: str) -> SearchRun:
    """The run of ``search`` at the batch size that translated the most sentences per second."""
    return max((run for run in runs if run.search == search), key=lambda run: run.sentences_per_second)


@dataclass
class Quality:
    bleu: Score
    chrf: Score


def score_translations(runs: list[SearchRun], references: list[str]) -> dict[str, Quality]:
    """sacreBLEU BLEU and chrF of each search's translations at SPEED_BATCH, against the raw references."""
    scores = {}
    for search in SEARCHES:
        translations = at_speed_batch(runs, search).translations
        scores[search] = Quality(corpus_bleu(translations, references), corpus_chrf(translations, references))
        say(f"  {search:<6} {scores[search].bleu}")
        say(f"  {search:<6} {scores[search].chrf}")
    return scores


def translate_process(run_dir: str, test: TestSet, work_dir: Path) -> ProcessRun:
    """One whole ``seq2seq translate translate`` process over the test sources, beam 5, batch 64."""
    plain_input = work_dir / "test_source.txt"  # translate reads plain UTF-8, not gzip
    plain_input.write_text("".join(line + "\n" for line in test.sources), encoding="utf-8")
    output = work_dir / "test_hypotheses.txt"
    arguments = ["--checkpoint", run_dir, "--input", str(plain_input), "--output", str(output)]
    arguments += ["--beam", str(BEAM), "--batch-size", str(SPEED_BATCH), "--device", "cpu"]
    process = run_seq2seq("translate", arguments, work_dir / "translate_process.log")
    say(
        f"  one whole translate process (beam {BEAM}, batch {SPEED_BATCH}): {process.seconds:.1f} s, "
        f"peak RSS {process.peak_rss_gib:.2f} GiB"
    )
    return process


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class DecodingModes:
    """Part 5: the budgeted model's decoding modes, each beside fp32 in this run."""

    int8: list[ModeRun]
    batching: list[ModeRun]
    last_checkpoints: list[ModeRun]  # members alone, then their ensemble
    seeds: list[ModeRun] | None  # --ensemble runs alone, then their ensemble


@dataclass
class Measurements:
    throughput: dict[str, ModelThroughput] | None  # by "comparison", "default" (and "*_bf16"); None when skipped
    peak: MatmulPeak
    training: BudgetTraining | None  # None when --reuse scored an existing run
    parameters: int  # of the budgeted model
    checkpoint: Path  # the budgeted model's checkpoint that was scored and timed
    step: int  # its training step
    runs: list[SearchRun]  # the budgeted model's searches
    quality: dict[str, Quality]  # by search
    comparison_runs: list[SearchRun] | None  # the comparison model's searches; None without throughput
    comparison_int8_runs: list[SearchRun] | None  # the same in int8
    translate_process: ProcessRun
    modes: DecodingModes | None  # None with --skip-modes
    peers: list[PeerRun]  # before and after the throughput part; empty without --peer


def measure(args: argparse.Namespace, work_dir: Path) -> Measurements:
    """Every part; ``work_dir`` holds the throughput runs and other scratch files."""
    peers = [peer_run(args, work_dir, "before the throughput part")] if args.peer else []
    throughput = None if args.skip_throughput else measure_throughput(args, work_dir)
    if args.peer:
        peers.append(peer_run(args, work_dir, "after the throughput part"))
    peak = measure_peak(throughput)
    training = ensure_trained(args, work_dir)
    translator = Translator.from_checkpoint(args.run_dir, CPU)
    step = load_metadata(translator.checkpoint)["step"]
    test = read_test_set(translator, args.data_dir)
    say(f"[4/5] translating the {len(test.sources):,} sentences of {test.source_file}")
    say(f"  with {translator.checkpoint} (step {step}: the best {translator.config.train.best_metric} of the run)")
    runs = measure_speed(translator, test, BATCH_SIZES)
    quality = score_translations(runs, test.references)
    comparison = work_dir / "throughput_comparison_1"
    comparison_runs = None if throughput is None else comparison_speed(comparison, test)
    comparison_int8 = None if throughput is None else comparison_speed(comparison, test, "int8")
    process = translate_process(args.run_dir, test, work_dir)
    modes = None if args.skip_modes else measure_modes(args, translator.checkpoint, test)
    parameters = count_parameters(translator.model)
    return Measurements(
        throughput,
        peak,
        training,
        parameters,
        translator.checkpoint,
        step,
        runs,
        quality,
        comparison_runs,
        comparison_int8,
        process,
        modes,
        peers,
    )


def peer_run(args: argparse.Namespace, work_dir: Path, when: str) -> PeerRun:
    say(f"[0/5] {args.peer} {when}: {Path(args.peer_scripts) / PEER_SCRIPTS[args.peer]} (its log: {work_dir}/peer.log)")
    run = run_peer(args.peer, Path(args.peer_scripts), work_dir / "peer.log")
    say(f"  {describe(run)}")
    return run


# ---- 5. decoding modes -----------------------------------------------------------------------------


def measure_modes(args: argparse.Namespace, checkpoint: Path, test: TestSet) -> DecodingModes:
    """int8 against fp32, batching choices, and ensembles, of the budgeted model."""
    say(f"[5/5] decoding modes of {checkpoint}")
    say("  int8 against fp32, batches of 64 sentences:")
    int8 = decoding_modes.int8_against_fp32(checkpoint, test.sources, test.references)
    say("  fixed sentence batches against token budgets (padded source tokens):")
    batching = decoding_modes.batching_runs(checkpoint, test.sources, test.references)
    last = latest_checkpoints(Path(args.run_dir), ENSEMBLE_CHECKPOINTS)
    say(f"  the run's last {len(last)} checkpoints, alone and as an ensemble (beam {BEAM}, batch {SPEED_BATCH}):")
    last_checkpoints = decoding_modes.ensemble_against_members(last, test.sources, test.references)
    seeds = None
    if args.ensemble:
        say(f"  the --ensemble runs, alone and as an ensemble (beam {BEAM}, batch {SPEED_BATCH}):")
        seeds = decoding_modes.ensemble_against_members(
            [Path(run) for run in args.ensemble], test.sources, test.references
        )
    modes = DecodingModes(int8, batching, last_checkpoints, seeds)
    for line in mode_summary(modes):
        say(line)
    return modes


def mode_summary(modes: DecodingModes) -> list[str]:
    """The part's ratios and targets."""
    pick, fastest_of = decoding_modes.pick, decoding_modes.fastest
    lines = []
    for search in SEARCHES:
        fp32, int8 = pick(modes.int8, "fp32", search), pick(modes.int8, "int8", search)
        lines.append(
            f"  int8 {search}: {int8.sentences_per_second / fp32.sentences_per_second:.2f}x fp32's speed, BLEU "
            f"{int8.bleu:.2f} vs {fp32.bleu:.2f} ({int8.bleu - fp32.bleu:+.2f})"
        )
        tokens, sentences = fastest_of(modes.batching, search, "tokens"), fastest_of(modes.batching, search, "sent")
        lines.append(
            f"  {search}: fastest token budget ({tokens.mode}) {tokens.sentences_per_second:.1f} sentences/s, fastest "
            f"fixed batch ({sentences.mode}) {sentences.sentences_per_second:.1f}: "
            f"{tokens.sentences_per_second / sentences.sentences_per_second:.2f}x"
        )
    for name, runs in (("last checkpoints", modes.last_checkpoints), ("--ensemble runs", modes.seeds)):
        if runs:
            ensemble, members = runs[-1], runs[:-1]
            best = max(members, key=lambda run: run.bleu)
            lines.append(
                f"  {ensemble.mode} ({name}): BLEU {ensemble.bleu:.2f} vs the best member's {best.bleu:.2f} "
                f"({ensemble.bleu - best.bleu:+.2f}); {ensemble.sentences_per_second:.1f} sentences/s, "
                f"{decoding_modes.ensemble_speed_ratio(runs):.2f}x its members' mean speed alone"
            )
    lines.append(
        "  targets: int8 beam 5 >= 1.4x fp32 with BLEU within 0.3; token budget at least as fast as the best "
        "fixed batch; an ensemble of 3 at >= 0.4x one model's speed"
    )
    return lines


# ---- peers -----------------------------------------------------------------------------------------


def peer_ratios(m: Measurements) -> Figures:
    """Our figures over the peer's (the mean of its runs), all measured in this run."""
    if not m.peers or m.throughput is None or m.comparison_runs is None or m.comparison_int8_runs is None:
        return {}
    peer = mean_peer(m.peers)
    ours = m.throughput["comparison"]
    bf16 = m.throughput.get("comparison_bf16")
    beam, greedy = SEARCHES
    fastest_training = (bf16 or ours).tokens_per_second
    return {
        "peer_train_tok_s": peer.tokens_per_second,
        "peer_train_rss_gib": peer.peak_rss_gib,
        "peer_beam5_sent_s": peer.beam5_sentences_per_second,
        "peer_greedy_sent_s": peer.greedy_sentences_per_second,
        "ratio_train": ours.tokens_per_second / peer.tokens_per_second,
        "ratio_beam5": at_speed_batch(m.comparison_runs, beam).sentences_per_second / peer.beam5_sentences_per_second,
        "ratio_greedy": at_speed_batch(m.comparison_runs, greedy).sentences_per_second
        / peer.greedy_sentences_per_second,
        "ratio_train_fastest": fastest_training / peer.tokens_per_second,
        "ratio_beam5_int8": at_speed_batch(m.comparison_int8_runs, beam).sentences_per_second
        / peer.beam5_sentences_per_second,
        "ratio_greedy_int8": at_speed_batch(m.comparison_int8_runs, greedy).sentences_per_second
        / peer.greedy_sentences_per_second,
    }


def report_peer(m: Measurements) -> None:
    ratios = peer_ratios(m)
    if not ratios or m.throughput is None:
        return
    ours = m.throughput["comparison"]
    say(f"comparison with {m.peers[0].toolkit} on this machine in this run ({cpu_summary()}):")
    for index, run in enumerate(m.peers, start=1):
        say(f"  peer run {index}: {describe(run)}")
    say(
        f"  training: {ours.tokens_per_second:,.0f} vs {ratios['peer_train_tok_s']:,.0f} target tokens/s = "
        f"{ratios['ratio_train']:.2f}x (target >= 1.5x); peak RSS {ours.peak_rss_gib:.2f} vs "
        f"{ratios['peer_train_rss_gib']:.2f} GiB (target <= 1 GiB)"
    )
    say(
        f"  after 250 steps, batch 64, fp32: beam 5 {ratios['ratio_beam5']:.2f}x, greedy {ratios['ratio_greedy']:.2f}x "
        "(target >= 2x each)"
    )
    bf16 = "bf16" if "comparison_bf16" in m.throughput else "fp32 (no bf16 units on this CPU)"
    say(
        f"  fastest exact-enough modes: training in {bf16} {ratios['ratio_train_fastest']:.2f}x (target >= 3x), "
        f"int8 beam 5 {ratios['ratio_beam5_int8']:.2f}x (target >= 4x), int8 greedy {ratios['ratio_greedy_int8']:.2f}x"
    )


def collect_figures(m: Measurements, args: argparse.Namespace) -> Figures:
    """The figures of the RESULT line, in its order; n/a (None) for parts that did not run."""
    comparison = None if m.throughput is None else m.throughput["comparison"]
    default = None if m.throughput is None else m.throughput["default"]
    bf16 = None if m.throughput is None else m.throughput.get("comparison_bf16")
    beam, greedy = SEARCHES
    best_beam, best_greedy = fastest(m.runs, beam), fastest(m.runs, greedy)
    figures: Figures = {
        "params": None if comparison is None else comparison.parameters,
        "train_tok_s": None if comparison is None else comparison.tokens_per_second,
        "train_rss_gib": None if comparison is None else comparison.peak_rss_gib,
        "train_bf16_tok_s": None if bf16 is None else bf16.tokens_per_second,
        "gflops": None if comparison is None else comparison.gflops,
        "peak_gflops_2048": m.peak.square,
        "peak_gflops_64row": m.peak.recurrent_step,
        "default_params": m.parameters,
        "default_train_tok_s": None if default is None else default.tokens_per_second,
        "default_train_rss_gib": None if default is None else default.peak_rss_gib,
        "default_gflops": None if default is None else default.gflops,
        "minutes": None if m.training is None else args.minutes,
        "train_wall_min": None if m.training is None else m.training.process.seconds / 60,
        "steps": m.step,
        "bleu_beam5": m.quality[beam].bleu.score,
        "chrf_beam5": m.quality[beam].chrf.score,
        "bleu_greedy": m.quality[greedy].bleu.score,
        "chrf_greedy": m.quality[greedy].chrf.score,
        "beam5_sent_s": speed_at_speed_batch(m.runs, beam),
        "greedy_sent_s": speed_at_speed_batch(m.runs, greedy),
        "best_batch_beam5": best_beam.batch_size,
        "best_beam5_sent_s": best_beam.sentences_per_second,
        "best_batch_greedy": best_greedy.batch_size,
        "best_greedy_sent_s": best_greedy.sentences_per_second,
        "cmp_beam5_sent_s": speed_at_speed_batch(m.comparison_runs, beam),
        "cmp_greedy_sent_s": speed_at_speed_batch(m.comparison_runs, greedy),
        "cmp_int8_beam5_sent_s": speed_at_speed_batch(m.comparison_int8_runs, beam),
        "cmp_int8_greedy_sent_s": speed_at_speed_batch(m.comparison_int8_runs, greedy),
        "translate_wall_s": m.translate_process.seconds,
    }
    if m.modes is not None:
        figures.update(mode_figures(m.modes))
    return {**figures, **peer_ratios(m)}


def mode_figures(modes: DecodingModes) -> Figures:
    pick, fastest_of = decoding_modes.pick, decoding_modes.fastest
    figures: Figures = {}
    for search in SEARCHES:
        fp32, int8 = pick(modes.int8, "fp32", search), pick(modes.int8, "int8", search)
        figures[f"int8_{search}_speedup"] = int8.sentences_per_second / fp32.sentences_per_second
        figures[f"int8_{search}_bleu_change"] = int8.bleu - fp32.bleu
        tokens, sentences = fastest_of(modes.batching, search, "tokens"), fastest_of(modes.batching, search, "sent")
        figures[f"tokens_vs_batch_{search}"] = tokens.sentences_per_second / sentences.sentences_per_second
        figures[f"best_budget_{search}"] = int(tokens.mode.split()[-1])
    ensemble, members = modes.last_checkpoints[-1], modes.last_checkpoints[:-1]
    figures["ensemble_bleu"] = ensemble.bleu
    figures["ensemble_best_member_bleu"] = max(run.bleu for run in members)
    figures["ensemble_speed_ratio"] = decoding_modes.ensemble_speed_ratio(modes.last_checkpoints)
    if modes.seeds:
        seeds, seed_members = modes.seeds[-1], modes.seeds[:-1]
        figures["seeds_ensemble_bleu"] = seeds.bleu
        figures["seeds_best_member_bleu"] = max(run.bleu for run in seed_members)
    return figures


def run_summary(run: SearchRun) -> dict[str, float | int | str]:
    """A search run for the JSON report: its figures without the translations."""
    return {
        "search": run.search,
        "batch_size": run.batch_size,
        "seconds": run.seconds,
        "sentences_per_second": run.sentences_per_second,
        "mean_length": run.mean_length,
    }


def write_report(m: Measurements, figures: Figures, args: argparse.Namespace) -> Path:
    """``<run-dir>/benchmark.json``: the figures and every measurement behind them."""
    report = {
        "figures": figures,
        "throughput": None if m.throughput is None else {name: asdict(model) for name, model in m.throughput.items()},
        "training": None if m.training is None else asdict(m.training),
        "scores": {search: {"bleu": asdict(q.bleu), "chrf": asdict(q.chrf)} for search, q in m.quality.items()},
        "search_runs": [run_summary(run) for run in m.runs],
        "comparison_search_runs": None if m.comparison_runs is None else [run_summary(r) for r in m.comparison_runs],
        "comparison_int8_search_runs": (
            None if m.comparison_int8_runs is None else [run_summary(r) for r in m.comparison_int8_runs]
        ),
        "decoding_modes": None if m.modes is None else asdict(m.modes),
        "peers": [asdict(run) for run in m.peers],
        "cpu": cpu_summary(),
        "translate_process": asdict(m.translate_process),
        "config": args.config,
        "comparison_config": COMPARISON_CONFIG,
        "data_dir": args.data_dir,
        "checkpoint": str(m.checkpoint),
        "threads": THREADS,
        "torch": torch.__version__,
    }
    path = Path(args.run_dir) / "benchmark.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def run_benchmark(args: argparse.Namespace) -> None:
    """All four parts, then ``<run-dir>/benchmark.json`` and the figures line."""
    check_data(args.data_dir)
    torch.set_num_threads(THREADS)
    say(
        f"translate benchmark: {args.config} and {COMPARISON_CONFIG}, data {args.data_dir}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    say(f"  CPU: {cpu_summary()}")
    with tempfile.TemporaryDirectory(prefix="bench_translate_") as work_dir:
        measurements = measure(args, Path(work_dir))
    figures = collect_figures(measurements, args)
    report_peer(measurements)
    say(f"figures written to {write_report(measurements, figures, args)}")
    say(result_line("translate", figures))


def main(argv: list[str] | None = None) -> int:
    return exit_status(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
