"""The one checkpoint format: safetensors weights, JSON metadata, a weights-only training state.

A run directory holds step checkpoints and an index that ranks them::

    runs/NAME/
      checkpoints/step_000500/model.safetensors   weights (tied tensors stored once)
      checkpoints/step_000500/model.json          caller's metadata + {"step", "versions"}
      checkpoints/step_000500/training_state.pt   optimizer, scheduler, RNG, data position
      checkpoints.json                            {"latest": [...], "best": [[metric, name], ...],
                                                   "metric": "val_loss", "mode": "min"}

Every file is written to a temporary name in its own directory and renamed into place, and a
step checkpoint is assembled in a temporary directory before it gets its final name, so a
process killed at any moment leaves the previous index and the checkpoints it lists intact.

Resuming takes the newest listed checkpoint that verifies (``find_resume_point``): one that is
truncated or incomplete is skipped, with the reason, and a listed checkpoint that is gone is
left out of the index rather than refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import shutil
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

import seq2seq

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
TRAINING_STATE_FILE = "training_state.pt"
INDEX_FILE = "checkpoints.json"
CHECKPOINTS_DIR = "checkpoints"
STEP_PREFIX = "step_"
STEP_NAME = re.compile(rf"{STEP_PREFIX}\d+")
TEMP_SUFFIX = ".tmp"  # a step directory still being written
REPLACED_SUFFIX = ".old"  # a step directory being replaced by a new save of the same step
SET_ASIDE_SUFFIX = ".corrupt"  # a step directory that a resume skipped, kept for inspection
MODES = ("min", "max")
PREFERENCES = ("best", "latest")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    with _atomic_target(Path(path)) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on success fsync it and rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync(path: Path) -> None:
    """Flush a written file's contents to disk."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk where the platform allows it."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------
# One checkpoint directory


def versions() -> dict[str, str]:
    """Versions of the software that wrote a checkpoint, stored in its model.json."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "seq2seq": seq2seq.__version__,
        "safetensors": safetensors.__version__,
    }


def save_checkpoint(directory: Path, model: nn.Module, metadata: dict, training_state: dict | None = None) -> None:
    """Write model.safetensors, training_state.pt (unless None) and model.json into `directory`.

    model.json holds `metadata` (which must be JSON-serialisable) plus {"versions": versions()}.
    `training_state` must hold only tensors, numbers, strings and plain containers, so that it
    loads with `torch.load(weights_only=True)`.
    """
    directory = Path(directory)
    metadata_text = _metadata_json(metadata)
    with _atomic_target(directory / WEIGHTS_FILE) as temporary:
        save_file(_unique_tensors(model), temporary)
    if training_state is not None:
        with _atomic_target(directory / TRAINING_STATE_FILE) as temporary:
            torch.save(training_state, temporary)
    atomic_write_text(directory / METADATA_FILE, metadata_text)


def load_metadata(directory: Path) -> dict:
    """The JSON object in `directory`/model.json."""
    path = Path(directory) / METADATA_FILE
    data = _read_json(path, "delete this checkpoint or pass another one")
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} holds {type(data).__name__}, not a JSON object; the checkpoint is corrupt: "
            "delete it or pass another one."
        )
    return data


def load_weights(directory: Path, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Load `directory`/model.safetensors into `model` (strictly), reading tensors onto `device`.

    Tied parameters stay tied: the tensor stored once is copied into the shared parameter.
    A checkpoint whose names or shapes differ from the model's raises CheckpointError
    listing every difference.
    """
    expected = model.state_dict()
    with _open_weights(Path(directory), device) as file:
        sources = _match_stored_names(_stored_shapes(file), expected)
        state = {name: file.get_tensor(source) for name, source in sources.items()}
    model.load_state_dict(state, strict=True)


def check_weights(directory: Path) -> None:
    """Refuse a model.safetensors that is missing, truncated or not a safetensors file."""
    with _open_weights(Path(directory), "cpu") as file:
        _stored_shapes(file)


@contextmanager
def _open_weights(directory: Path, device: torch.device | str) -> Iterator[Any]:
    """`directory`/model.safetensors opened for reading; CheckpointError when it cannot be read."""
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no weights at {path}; pass a step directory that holds {WEIGHTS_FILE} "
            "(or a run directory to resolve_checkpoint)."
        )
    try:
        with safe_open(path, framework="pt", device=str(torch.device(device))) as file:
            yield file
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read weights from {path} ({_describe(error)}); the file is corrupt or "
            "truncated: delete this checkpoint or pass another one."
        ) from error


def _stored_shapes(file: Any) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in an open safetensors file."""
    # safe_open has keys() but is not iterable itself.
    return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118


def load_training_state(directory: Path) -> dict:
    """The training state in `directory`/training_state.pt, every tensor on the CPU."""
    path = Path(directory) / TRAINING_STATE_FILE
    advice = "start a fresh run, or resume from another checkpoint"
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}, so this checkpoint cannot resume training; {advice}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for corrupt or unsafe files
        # torch's own message is not shown: it may suggest weights_only=False, which runs any code in the file.
        raise CheckpointError(
            f"cannot load training state from {path} ({type(error).__name__}): it is truncated or corrupt, "
            f"or it is not a training state this toolkit wrote; {advice}."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds {type(state).__name__}, not a dict; {advice}.")
    return state


def _describe(error: Exception) -> str:
    """An exception's type and the first line of its message, for wrapping library errors."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _metadata_json(metadata: dict) -> str:
    """model.json text: the caller's metadata plus the writing software's versions."""
    try:
        return json.dumps({**metadata, "versions": versions()}, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint metadata is not plain JSON ({error}); convert it to dicts, lists, "
            "strings, finite numbers, booleans and None (e.g. dataclasses.asdict for configs)."
        ) from error


def _storage_key(tensor: Tensor) -> tuple:
    """Equal for tensors that are the same memory seen the same way (tied parameters)."""
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _alias_groups(state: dict[str, Tensor]) -> list[list[str]]:
    """State-dict names grouped by shared memory, in state-dict order; tied names share a group."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(_storage_key(tensor), []).append(name)
    return list(groups.values())


def _unique_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state with each tied tensor kept once, under its first name."""
    state = model.state_dict()
    return {group[0]: state[group[0]].contiguous() for group in _alias_groups(state)}


def _match_stored_names(stored_shapes: dict[str, tuple[int, ...]], expected: dict[str, Tensor]) -> dict[str, str]:
    """Map every model state name to the stored tensor that fills it, or raise listing differences."""
    sources: dict[str, str] = {}
    problems: list[str] = []
    for group in _alias_groups(expected):
        present = [name for name in group if name in stored_shapes]
        model_shape = tuple(expected[group[0]].shape)
        if not present:
            problems.append(f"{group[0]}: missing from checkpoint, model {model_shape}")
        elif len(present) > 1:
            problems.append(f"{', '.join(present)}: stored separately in checkpoint, tied in model")
        elif stored_shapes[present[0]] != model_shape:
            problems.append(f"{present[0]}: checkpoint {stored_shapes[present[0]]} vs model {model_shape}")
        else:
            sources.update({name: present[0] for name in group})
    known = set(expected)
    problems += [
        f"{name}: in checkpoint {shape}, not in model" for name, shape in stored_shapes.items() if name not in known
    ]
    if problems:
        raise CheckpointError(
            "checkpoint weights do not fit the model:\n  "
            + "\n  ".join(problems)
            + "\nThe checkpoint was trained with another vocabulary or model config: build the "
            "model from the checkpoint's model.json (its config and vocabulary), or pick a "
            "matching checkpoint."
        )
    return sources


def _read_json(path: Path, advice: str) -> object:
    """Parsed JSON from `path`, or CheckpointError naming the file and what to do (`advice`)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} does not exist; {advice}.") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); {advice}.") from error


# ---------------------------------------------------------------------------------------------
# A run directory: many step checkpoints and the index that ranks them


@dataclass
class _Index:
    """checkpoints.json: names newest first, and (metric, name) pairs best first."""

    metric: str
    mode: str
    latest: list[str] = field(default_factory=list)
    best: list[tuple[float, str]] = field(default_factory=list)

    def to_json(self) -> str:
        best = [[value, name] for value, name in self.best]
        data = {"latest": self.latest, "best": best, "metric": self.metric, "mode": self.mode}
        return json.dumps(data, indent=2)

    @classmethod
    def read(cls, path: Path) -> _Index:
        """Parse and check an index file; anything malformed raises CheckpointError."""
        advice = (
            "delete it to start the run afresh, or pass a step directory "
            f"(like {path.parent / CHECKPOINTS_DIR / 'step_000500'}) instead of the run directory"
        )
        data: Any = _read_json(path, advice)  # any shape: a malformed one raises below
        try:
            index = cls(
                metric=data["metric"],
                mode=data["mode"],
                latest=list(data["latest"]),
                best=[(float(value), name) for value, name in data["best"]],
            )
        except (TypeError, KeyError, ValueError) as error:
            raise CheckpointError(f"{path} is not a valid checkpoint index ({_describe(error)}); {advice}.") from error
        names = [*index.latest, *(name for _, name in index.best)]
        well_formed = isinstance(index.metric, str) and index.mode in MODES
        if not (well_formed and all(map(_is_step_name, names))):
            raise CheckpointError(f"{path} is not a valid checkpoint index; {advice}.")
        return index

    def listed(self) -> list[str]:
        """Every checkpoint the index names, once, newest step first."""
        names = {*self.latest, *(name for _, name in self.best)}
        return sorted(names, key=lambda name: int(name.removeprefix(STEP_PREFIX)), reverse=True)

    def drop(self, names: Collection[str]) -> None:
        """Forget these checkpoints."""
        self.latest = [name for name in self.latest if name not in names]
        self.best = [(value, name) for value, name in self.best if name not in names]


def _read_present(path: Path, warn: bool = True) -> _Index:
    """The index at `path` without the checkpoints it lists that are gone (deleted by hand, say)."""
    index = _Index.read(path)
    gone = [name for name in index.listed() if not (path.parent / CHECKPOINTS_DIR / name).is_dir()]
    if gone and warn:
        log.warning("%s lists %s, which no longer exist(s); left out", path, ", ".join(gone))
    index.drop(gone)
    return index


def _read_run_index(run_dir: Path, metric: str, mode: str, warn: bool = True) -> _Index:
    """The run's index (an empty one before the first save), checked against the requested ranking."""
    path = run_dir / INDEX_FILE
    if not path.exists():
        return _Index(metric=metric, mode=mode)
    index = _read_present(path, warn)
    if (index.metric, index.mode) != (metric, mode):
        raise CheckpointError(
            f"{path} ranks checkpoints by {index.metric} ({index.mode}), but this run asks for "
            f"{metric} ({mode}); use the same metric and mode, or another run directory."
        )
    return index


def _is_step_name(name: object) -> bool:
    """True for names of step directories, like step_000500."""
    return isinstance(name, str) and STEP_NAME.fullmatch(name) is not None


class CheckpointManager:
    """Saves step checkpoints into a run directory and keeps the newest and the best few.

    keep_latest: how many of the most recent checkpoints to keep (at least 1, to resume from).
    keep_best: how many checkpoints with the best `metric` to keep (0 disables ranking).
    mode: "min" when a lower metric is better (a loss), "max" when higher is better (BLEU).
    """

    def __init__(
        self,
        run_dir: Path,
        keep_latest: int = 1,
        keep_best: int = 1,
        mode: str = "min",
        metric: str = "val_loss",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if keep_latest < 1 or keep_best < 0:
            raise ValueError(f"keep_latest must be >= 1 and keep_best >= 0, got {keep_latest} and {keep_best}")
        self.run_dir = Path(run_dir)
        self.checkpoints_dir = self.run_dir / CHECKPOINTS_DIR
        self.keep_latest = keep_latest
        self.keep_best = keep_best
        self.index = _read_run_index(self.run_dir, metric, mode, warn=False)  # resuming warned already
        self._finish_interrupted_saves()

    def save(
        self,
        step: int,
        model: nn.Module,
        metadata: dict,
        training_state: dict,
        metric_value: float | None,
    ) -> Path:
        """Write checkpoints/step_{step:06d}/, update the index, prune; returns the new directory.

        metric_value ranks the checkpoint among the best; None (or a non-finite value, such as
        the NaN loss of a diverged run) leaves it out of the ranking.
        """
        self._finish_interrupted_saves()
        name = f"{STEP_PREFIX}{step:06d}"
        final = self.checkpoints_dir / name
        temporary = self.checkpoints_dir / f".{name}{TEMP_SUFFIX}"
        save_checkpoint(temporary, model, {**metadata, "step": step}, training_state)
        replaced = self.checkpoints_dir / f".{name}{REPLACED_SUFFIX}"
        if final.exists():
            os.rename(final, replaced)
        os.rename(temporary, final)
        _fsync_directory(self.checkpoints_dir)
        self._record(name, metric_value)
        atomic_write_text(self.run_dir / INDEX_FILE, self.index.to_json())
        shutil.rmtree(replaced, ignore_errors=True)
        self._delete_unlisted()
        return final

    def latest(self) -> Path | None:
        """The most recent checkpoint directory, or None before the first save."""
        return self.checkpoints_dir / self.index.latest[0] if self.index.latest else None

    def best(self) -> Path | None:
        """The checkpoint directory with the best metric, or None when none was ranked."""
        return self.checkpoints_dir / self.index.best[0][1] if self.index.best else None

    def set_aside(self, directory: Path) -> Path:
        """Take a checkpoint that cannot be resumed out of the index, and keep its files under a
        name that is not a step's (``step_N.corrupt``); returns that new path."""
        target = directory.with_name(directory.name + SET_ASIDE_SUFFIX)
        number = 1
        while target.exists():
            number += 1
            target = directory.with_name(f"{directory.name}{SET_ASIDE_SUFFIX}{number}")
        os.rename(directory, target)  # before the index: a killed process leaves no unlisted step to prune
        self.index.drop({directory.name})
        atomic_write_text(self.run_dir / INDEX_FILE, self.index.to_json())
        return target

    def _record(self, name: str, metric_value: float | None) -> None:
        """Put `name` first among the latest and, when it has a finite metric, among the best."""
        self.index.latest = [name, *(n for n in self.index.latest if n != name)][: self.keep_latest]
        best = [(value, n) for value, n in self.index.best if n != name]
        if metric_value is not None and math.isfinite(metric_value):
            best.append((float(metric_value), name))
        sign = 1.0 if self.index.mode == "min" else -1.0
        best.sort(key=lambda entry: sign * entry[0])  # stable: on ties the older stays ahead
        self.index.best = best[: self.keep_best]

    def _finish_interrupted_saves(self) -> None:
        """Clean up after a save that was killed part-way.

        A half-written `.step_N.tmp` is deleted. A `.step_N.old` is the previous copy of a step
        being saved again: it is deleted when the new copy made it into place, else restored.
        """
        if not self.checkpoints_dir.is_dir():
            return
        for path in self.checkpoints_dir.iterdir():
            if path.name.endswith(TEMP_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith(REPLACED_SUFFIX):
                original = self.checkpoints_dir / path.name[1 : -len(REPLACED_SUFFIX)]
                if original.exists():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.rename(path, original)

    def _delete_unlisted(self) -> None:
        """Delete step directories the index no longer lists (dropped, or orphaned by a crash)."""
        listed = {*self.index.latest, *(name for _, name in self.index.best)}
        for path in self.checkpoints_dir.iterdir():
            if path.is_dir() and _is_step_name(path.name) and path.name not in listed:
                shutil.rmtree(path)


# ---------------------------------------------------------------------------------------------
# Finding a checkpoint from a user-given path


def resolve_checkpoint(path: Path, prefer: str = "best") -> Path:
    """The step directory to load for `path`.

    path: a step directory (holds model.safetensors), that file itself, or a run directory
    (holds checkpoints.json). For a run directory the best checkpoint is returned, or the
    latest when prefer="latest" or when no checkpoint was ranked.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {PREFERENCES}, got {prefer!r}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist; pass a run directory (with {INDEX_FILE}) or a step "
            f"directory (with {WEIGHTS_FILE})."
        )
    if path.is_file() and path.name == WEIGHTS_FILE:
        return path.parent
    if (path / WEIGHTS_FILE).is_file():
        return path
    if not (path / INDEX_FILE).is_file():
        raise CheckpointError(
            f"{path} holds no checkpoint yet (neither {INDEX_FILE} nor {WEIGHTS_FILE}); train "
            "first, or pass a run directory or a step directory such as "
            f"runs/NAME/{CHECKPOINTS_DIR}/step_000500."
        )
    index = _read_present(path / INDEX_FILE)
    names = index.latest if prefer == "latest" or not index.best else [index.best[0][1]]
    if not names:
        raise CheckpointError(f"{path / INDEX_FILE} lists no checkpoint yet; train first.")
    chosen = path / CHECKPOINTS_DIR / names[0]
    if not (chosen / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{path / INDEX_FILE} lists {names[0]}, but {chosen / WEIGHTS_FILE} is missing; "
            f"pass another step directory from {path / CHECKPOINTS_DIR}."
        )
    return chosen


# ---------------------------------------------------------------------------------------------
# Where a run resumes


def verify_checkpoint(directory: Path, entries: Sequence[str] = ()) -> dict:
    """The metadata of a checkpoint that training can resume from: its model.json holds
    ``entries``, its weights are whole and its training state loads; else CheckpointError."""
    metadata = load_metadata(directory)
    missing = [key for key in entries if key not in metadata]
    if missing:
        names = ", ".join(map(repr, missing))
        raise CheckpointError(f"{Path(directory) / METADATA_FILE} has no {names} entry: the checkpoint is incomplete")
    check_weights(directory)
    load_training_state(directory)
    return metadata


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from: the newest listed one that verifies.

    skipped: the newer listed checkpoints that did not verify, each with the reason
    """

    directory: Path
    metadata: dict
    skipped: list[tuple[Path, str]]


def find_resume_point(
    run_dir: Path, metric: str = "val_loss", mode: str = "min", entries: Sequence[str] = ()
) -> ResumePoint | None:
    """Where training in ``run_dir`` resumes: None before the first checkpoint. A checkpoint that
    does not verify (``verify_checkpoint``) is skipped with a warning saying why; when none
    verifies, CheckpointError lists the reasons."""
    run_dir = Path(run_dir)
    skipped: list[tuple[Path, str]] = []
    for name in _read_run_index(run_dir, metric, mode).listed():
        directory = run_dir / CHECKPOINTS_DIR / name
        try:
            metadata = verify_checkpoint(directory, entries)
        except CheckpointError as error:
            log.warning("skipping checkpoint %s: %s", directory, error)
            skipped.append((directory, str(error)))
        else:
            return ResumePoint(directory, metadata, skipped)
    if skipped:
        reasons = " ".join(f"{directory.name}: {reason}" for directory, reason in skipped)
        raise CheckpointError(
            f"none of the checkpoints in {run_dir} can be resumed. {reasons} "
            "Start a fresh run (the command line's --fresh) or choose another run directory."
        )
    return None
