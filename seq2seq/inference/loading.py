"""Reading a trained model's checkpoint: which directory, its metadata, its config, its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from seq2seq.checkpoint import CheckpointError, load_metadata, load_weights, resolve_checkpoint
from seq2seq.config import from_dict
from seq2seq.run_configs import METADATA_ENTRIES, TASK_CONFIGS, upgrade_config


@dataclass
class TrainedRun:
    """A checkpoint chosen for decoding.

    directory: the step directory whose weights are used (a run directory's best checkpoint)
    metadata:  its model.json (task, config, tokenizers and vocabularies, metrics, versions)
    config:    the run's config, as the task's config class
    """

    directory: Path
    metadata: dict[str, Any]
    config: Any


def read_trained_run(checkpoint: str | Path, task: str) -> TrainedRun:
    """The checkpoint to use for ``checkpoint`` (a run directory's best, or the step directory
    given), its metadata and config; a checkpoint of another task is refused."""
    directory = resolve_checkpoint(Path(checkpoint), prefer="best")
    metadata = load_metadata(directory)
    if "task" not in metadata:
        raise CheckpointError(f"{directory / 'model.json'} has no 'task' entry: the checkpoint is incomplete")
    found = metadata["task"]
    if found != task:
        raise CheckpointError(
            f"{directory} holds a {found!r} model, not a {task!r} model: use it with `seq2seq {found}` "
            f"(or the {found} class of the Python API), or pick a {task} checkpoint"
        )
    missing = [key for key in ("config", *METADATA_ENTRIES[task]) if key not in metadata]
    if missing:
        names = ", ".join(map(repr, missing))
        raise CheckpointError(f"{directory / 'model.json'} has no {names} entry: the checkpoint is incomplete")
    return TrainedRun(directory, metadata, from_dict(TASK_CONFIGS[task], upgrade_config(task, metadata["config"])))


def metadata_entry(run: TrainedRun, key: str) -> Any:
    """An entry of the checkpoint's metadata that decoding needs, or a CheckpointError naming it."""
    if key not in run.metadata:
        raise CheckpointError(f"{run.directory / 'model.json'} has no {key!r} entry: the checkpoint is incomplete")
    return run.metadata[key]


ModelT = TypeVar("ModelT", bound=nn.Module)


def ready_for_decoding(model: ModelT, run: TrainedRun, device: torch.device) -> ModelT:
    """``model`` with the checkpoint's weights, on ``device``, in eval mode."""
    load_weights(run.directory, model, device)
    return model.to(device).eval()
