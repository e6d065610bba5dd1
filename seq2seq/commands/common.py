"""What every task's command line shares: user errors as one line, train/average/checkpoint
arguments, and argparse types."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seq2seq.averaging import average_checkpoints, latest_checkpoints
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, load_config
from seq2seq.data.prepared_format import Manifest, verified_manifest
from seq2seq.data.text_files import DataError
from seq2seq.quantization import QuantizationUnavailable
from seq2seq.text import UnknownTokensError
from seq2seq.training.run import setup_logging
from seq2seq.training.run_lock import RunDirectoryBusy
from seq2seq.training.runtime import PeersLost
from seq2seq.training.tasks import DEFAULT_CONFIGS, train
from seq2seq.training.trainer import TrainingDiverged

#: Errors that are the user's to fix: printed as one clear line, no traceback.
USER_ERRORS = (
    ConfigError,
    DataError,
    CheckpointError,
    UnknownTokensError,
    OSError,  # files that cannot be read or written: a missing file, a folder given for a file, a full disk
    ValueError,
    RunDirectoryBusy,
    TrainingDiverged,
    QuantizationUnavailable,
    PeersLost,
)

Command = Callable[[argparse.Namespace], Any]


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run a subcommand; a user error ends it with its message and exit status 2."""
    if args.verb != "train":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return exit_status(command, args, "interrupted; the last checkpoint is kept, and the same command resumes from it")


def exit_status(command: Command, args: argparse.Namespace, interrupted: str = "interrupted") -> int:
    """Run ``command``: 0, or 2 with a user error's message as one line, or 130 with
    ``interrupted`` on Ctrl-C (what the command line and the benchmarks share)."""
    try:
        command(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0


def add_search_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """--beam and --greedy, in a group that a task may add other ways of decoding to."""
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--beam", type=positive_int, help="beam size (default: the config's decoding.beam_size)")
    search.add_argument("--greedy", action="store_true", help="greedy search (a beam of 1)")
    return search


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def add_train_verb(verbs: argparse._SubParsersAction, task: str, what: str, epilog: str | None = None) -> None:
    """``train``: a config (a shipped name or a YAML file), overrides, the run directory; ``epilog``:
    what else the task's training can do."""
    parser = verbs.add_parser(
        "train",
        help=f"train a {what} model (resumes when the run directory has a checkpoint)",
        description=f"Train a {what} model from a config. Running the same command again resumes from the "
        "latest checkpoint; under `torchrun --nproc_per_node N` the same command trains on N processes, and "
        "under `torchrun --nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT ...` on M machines (README: "
        "Several machines).",
        epilog=epilog,
    )
    add_config_arguments(
        parser, task, "override a config value, e.g. --set train.lr=0.001 --set data.path=my.txt (repeatable)"
    )
    parser.add_argument("--run-dir", help="where checkpoints and logs go (default: runs/<config name>)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over instead of resuming: once the new run's data is ready, delete the files the previous "
        "run wrote (checkpoints, logs, plot, SentencePiece models, feature cache); other files stay",
    )
    parser.set_defaults(func=lambda args: train(task, args.config, args.overrides, args.run_dir, args.fresh))


def add_config_arguments(parser: argparse.ArgumentParser, task: str, overrides_help: str) -> None:
    """--config (a shipped config's name or a YAML file, default the task's) and repeatable --set KEY=VALUE."""
    default = DEFAULT_CONFIGS[task]
    parser.add_argument(
        "--config",
        default=default,
        help=f"a shipped config's name (e.g. {default}) or a YAML file (default: {default})",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=overrides_help
    )


def add_prepare_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    """The arguments of ``prepare``: the run's config and overrides, the output folder, workers."""
    add_config_arguments(
        parser,
        task,
        "override a config value, as for train (repeatable); the data settings decide the prepared ids",
    )
    parser.add_argument("--output", required=True, help="the folder to write the shards and manifest.json into")
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="tokenising processes (default 0: one per available CPU core)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="instead of preparing: check every file of the prepared folder --output against its manifest "
        "(sizes and SHA-256)",
    )


def run_prepare(
    args: argparse.Namespace,
    task: str,
    kind: str,
    config_class: type[Any],
    prepare: Callable[[Any, Path, int, int], Manifest],
    describe: Callable[[Manifest], str],
) -> None:
    """``prepare``: the corpus of the config's data section tokenized into ``--output`` by
    ``prepare(data, folder, workers, shard_size)``, or with ``--verify`` that folder checked;
    ``describe`` says what a manifest holds (counts), for both messages."""
    folder = Path(args.output)
    if args.verify:
        print(f"{folder}: {describe(verified_manifest(folder, kind, task))}; every file verifies")
        return
    setup_logging()
    config = load_config(config_class, args.config, args.overrides)
    started = time.perf_counter()
    manifest = prepare(config.data, folder, args.workers, args.shard_size)
    print(f"prepared {describe(manifest)} into {folder} in {time.perf_counter() - started:.1f} s")
    print(f"train from it with: seq2seq {task} train --config {args.config} --set data.prepared={folder}")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, decoding: bool = True) -> None:
    """--checkpoint (a run directory or one step directory) and --device; for ``decoding``,
    several checkpoints (an ensemble) and the number format (--int8, --bf16)."""
    if not decoding:
        parser.add_argument(
            "--checkpoint",
            required=True,
            help="a run directory (its best checkpoint is used) or one checkpoint directory",
        )
    else:
        parser.add_argument(
            "--checkpoint",
            required=True,
            nargs="+",
            action="extend",
            metavar="DIR",
            help="a run directory (its best checkpoint is used) or one checkpoint directory; several (runs or "
            "checkpoints that share the vocabulary) decode as an ensemble: the normalised geometric mean of "
            "their distributions",
        )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    if decoding:
        add_number_format_arguments(parser)


def add_number_format_arguments(parser: argparse.ArgumentParser) -> None:
    """--int8 and --bf16, the number formats a model can decode in (fp32 without either)."""
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights for the linear and recurrent layers (dynamic quantization; CPU only): faster decoding "
        "for a small change in quality",
    )
    formats.add_argument(
        "--bf16",
        action="store_true",
        help="decode in bfloat16: faster on CPUs with AMX or AVX512-BF16 and on GPUs, slower on other CPUs",
    )


def loading_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``from_checkpoint`` that --device, --int8 and --bf16 choose."""
    return {
        "device": args.device,
        "dtype": "bfloat16" if args.bf16 else "float32",
        "quantize": "int8" if args.int8 else None,
    }


def describe_checkpoints(checkpoints: Sequence[Path]) -> str:
    """``checkpoint: DIR``, or for an ensemble ``ensemble of N checkpoints: DIR, DIR, ...``."""
    if len(checkpoints) == 1:
        return f"checkpoint: {checkpoints[0]}"
    return f"ensemble of {len(checkpoints)} checkpoints: {', '.join(map(str, checkpoints))}"


def add_average_verb(verbs: argparse._SubParsersAction, task: str) -> None:
    """``average``: the mean of several checkpoints' weights, as a new checkpoint."""
    parser = verbs.add_parser(
        "average",
        help="average the weights of checkpoints of one model into a new checkpoint",
        description="Average the weights of several checkpoints of the same model (e.g. the last few of a run) "
        f"into a new checkpoint directory, which the other `seq2seq {task}` commands load like any other.",
    )
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--checkpoints", nargs="+", metavar="DIR", help="step checkpoint directories to average")
    sources.add_argument("--run-dir", help="average the latest --last checkpoints of this run directory")
    parser.add_argument(
        "--last", type=positive_int, default=5, help="with --run-dir: how many checkpoints (default: 5)"
    )
    parser.add_argument("--output", required=True, help="the new checkpoint directory")
    parser.set_defaults(func=average)


def average(args: argparse.Namespace) -> None:
    if args.checkpoints:
        directories = [Path(directory) for directory in args.checkpoints]
    else:
        directories = latest_checkpoints(Path(args.run_dir), args.last)
    average_checkpoints(directories, Path(args.output))
    print(f"averaged {len(directories)} checkpoints:")
    for directory in directories:
        print(f"  {directory}")
    print(f"into {args.output}; use it with --checkpoint {args.output}")
