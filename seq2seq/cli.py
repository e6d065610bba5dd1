"""What every recipe's command line shares: logging, errors for users, run directories."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from seq2seq.config import ConfigError, config_differences, from_dict
from seq2seq.data.text_files import DataError
from seq2seq.text import UnknownTokensError
from seq2seq.training.checkpoint import CheckpointError, CheckpointManager, load_metadata, resolve_checkpoint

ConfigT = TypeVar("ConfigT")

#: Errors that are the user's to fix: printed as one clear line, no traceback.
USER_ERRORS = (ConfigError, DataError, CheckpointError, UnknownTokensError, FileNotFoundError, ValueError)


def setup_logging(run_dir: Path | None = None, is_main: bool = True) -> None:
    """INFO to stderr on the main process (warnings elsewhere) and to ``run_dir/train.log``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None and is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=handlers,
        force=True,
    )


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """A recipe's command line: parse, log warnings for the commands other than train (which
    sets up its own logging), run the chosen command and return its exit status."""
    args = parser.parse_args(argv)
    if args.command != "train":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return run_command(args.func, args)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def run_command(command: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """Run a subcommand; a user error ends it with its message and exit status 2."""
    try:
        command(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept, and the same command resumes from it", file=sys.stderr)
        return 130
    return 0


def add_train_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", default=default_config, help=f"YAML config file (default: {default_config})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.001 --set data.path=my.txt (repeatable)",
    )
    parser.add_argument("--run-dir", help="where checkpoints and logs go (default: runs/<config name>)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete the run directory's checkpoints and start over instead of resuming",
    )


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint (a run directory or one step directory) and --device."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a run directory (its best checkpoint is used) or one checkpoint directory",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")


def prepare_run_dir(
    run_dir: Path, fresh: bool, is_main: bool, best_metric: str = "val_loss", best_mode: str = "min"
) -> dict[str, Any] | None:
    """Empty the run directory when ``fresh``; else return the metadata of its latest checkpoint.

    best_metric, best_mode: how the run ranks its checkpoints (train.best_metric and
    train.best_mode); a run directory ranked another way is refused.
    """
    if fresh and is_main and run_dir.exists():
        shutil.rmtree(run_dir)
    latest = CheckpointManager(run_dir, metric=best_metric, mode=best_mode).latest() if run_dir.exists() else None
    return None if latest is None else load_metadata(latest)


def check_resumable(saved_config: dict[str, Any], config: dict[str, Any], frozen_sections: tuple[str, ...]) -> None:
    """Refuse to resume when a section that shapes the model or data changed."""
    changed = config_differences(
        {key: saved_config.get(key) for key in frozen_sections}, {key: config.get(key) for key in frozen_sections}
    )
    if changed:
        raise ConfigError(
            "the run directory holds a run with a different configuration:\n  "
            + "\n  ".join(changed)
            + "\nResume with the original config, pick another --run-dir, or pass --fresh to start over."
        )


def load_run(checkpoint: str | Path, task: str, config_class: type[ConfigT]) -> tuple[Path, dict[str, Any], ConfigT]:
    """The checkpoint to use (a run directory's best, or the checkpoint directory given), its
    metadata and its config; a checkpoint of another task is refused."""
    directory = resolve_checkpoint(Path(checkpoint), prefer="best")
    metadata = load_metadata(directory)
    if metadata.get("task") != task:
        raise ValueError(
            f"{directory} holds a {metadata.get('task')!r} model, not a {task!r} model: "
            f"use recipes/{metadata.get('task')}.py with it, or pick a {task} checkpoint"
        )
    return directory, metadata, from_dict(config_class, metadata["config"])
