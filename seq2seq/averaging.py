"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one model.

The average of the last few checkpoints of a run often translates better than any one of
them. The result is a checkpoint directory in the one format (``model.safetensors`` and
``model.json``, without a training state), so that it loads wherever a step checkpoint does.
Its metadata is that of the first checkpoint given, with the step of the newest, without the
first one's validation metrics, and with ``averaged_from`` listing the sources.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from seq2seq.checkpoint import (
    CHECKPOINTS_DIR,
    METADATA_FILE,
    STEP_NAME,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_metadata,
    versions,
)
from seq2seq.config import config_differences
from seq2seq.run_configs import MODEL_SECTIONS, upgrade_config

# Metadata that may differ between checkpoints of the same model.
_PER_CHECKPOINT_KEYS = ("step", "metrics", "versions", "averaged_from", "config")
# Config sections that decide the model's shape and vocabulary (seq2seq.run_configs.MODEL_SECTIONS,
# per task); the others (train, decoding) may differ.

TensorSpec = tuple[tuple[int, ...], str]  # a stored tensor's shape and safetensors dtype, e.g. ((7, 4), "F32")


def latest_checkpoints(run_dir: Path, count: int) -> list[Path]:
    """The ``count`` step checkpoints of ``run_dir`` with the highest steps, newest first."""
    if count < 1:
        raise ValueError(f"the number of checkpoints to average must be >= 1, got {count}")
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        raise CheckpointError(f"{run_dir} holds no {CHECKPOINTS_DIR}/ folder; pass the run directory of a trained run.")
    steps = sorted(
        (path for path in folder.iterdir() if STEP_NAME.fullmatch(path.name) and (path / WEIGHTS_FILE).is_file()),
        key=lambda path: int(path.name.split("_")[1]),
        reverse=True,
    )
    if len(steps) < count:
        names = ", ".join(path.name for path in steps) or "none"
        raise CheckpointError(
            f"{folder} holds {len(steps)} checkpoint(s) ({names}), fewer than the {count} asked for. "
            "Average fewer, or train with a larger train.keep_latest."
        )
    return steps[:count]


def average_checkpoints(directories: Sequence[Path], output: Path) -> dict[str, Any]:
    """Write the mean of the checkpoints' weights to ``output``; returns its metadata.

    Refuses checkpoints of different models (config, vocabulary or tensors), naming what
    differs, and an ``output`` that already holds a checkpoint.
    """
    directories = [Path(directory) for directory in directories]
    if len(directories) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(directories)}")
    if len(set(map(Path.resolve, directories))) < len(directories):
        raise ValueError("the same checkpoint is listed twice; list each checkpoint once")
    output = Path(output)
    if (output / WEIGHTS_FILE).exists():
        raise CheckpointError(f"{output} already holds a checkpoint; choose another output directory or delete it.")
    metadata = [_step_metadata(directory) for directory in directories]
    specs = [_tensor_specs(directory) for directory in directories]
    for directory, other_specs, other in zip(directories[1:], specs[1:], metadata[1:]):
        _check_same_tensors(directories[0], specs[0], directory, other_specs)
        _check_same_model(directories[0], metadata[0], directory, other)
    averaged = _mean_weights(directories)
    steps = [step for entry in metadata if isinstance(step := entry.get("step"), int)]
    result = {key: value for key, value in metadata[0].items() if key not in ("metrics", "versions")}
    result["averaged_from"] = [str(directory) for directory in directories]
    if steps:
        result["step"] = max(steps)
    atomic_write_bytes(output / WEIGHTS_FILE, save(averaged))
    atomic_write_text(output / METADATA_FILE, json.dumps({**result, "versions": versions()}, indent=2))
    return result


def _step_metadata(directory: Path) -> dict[str, Any]:
    """The metadata of a checkpoint directory, which must hold weights."""
    if not (directory / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{directory} holds no {WEIGHTS_FILE}: pass step directories such as "
            f"RUN/{CHECKPOINTS_DIR}/step_000500 (or a run directory with --last N)."
        )
    return load_metadata(directory)


def _check_same_model(first: Path, first_metadata: dict[str, Any], other: Path, other_metadata: dict[str, Any]) -> None:
    """Refuses ``other`` unless its model config and vocabularies equal ``first``'s."""
    task = first_metadata.get("task")
    first_config, other_config = first_metadata.get("config") or {}, other_metadata.get("config") or {}
    sections: tuple[str, ...] = ("model", "encoder", "decoder", "image_encoder", "data")
    if task in MODEL_SECTIONS:  # compare in today's layout, whatever layout each checkpoint was written in
        first_config, other_config = upgrade_config(task, first_config), upgrade_config(task, other_config)
        sections = MODEL_SECTIONS[task]
    differences = config_differences(
        {key: first_config.get(key) for key in sections},
        {key: other_config.get(key) for key in sections},
    )
    keys = (set(first_metadata) | set(other_metadata)) - set(_PER_CHECKPOINT_KEYS)
    differences += [f"{key} differs" for key in sorted(keys) if first_metadata.get(key) != other_metadata.get(key)]
    if differences:
        raise CheckpointError(
            f"{other} is not a checkpoint of the same model as {first}:\n  "
            + "\n  ".join(differences)
            + "\nAverage only checkpoints of one run (or of runs with the same model, data and vocabulary)."
        )


def _tensor_specs(directory: Path) -> dict[str, TensorSpec]:
    """Each stored tensor's shape and dtype, read from the file's header."""
    path = directory / WEIGHTS_FILE
    try:
        with safe_open(path, framework="pt") as file:
            # safe_open has keys() but is not iterable itself.
            slices = {name: file.get_slice(name) for name in file.keys()}  # noqa: SIM118
            return {name: (tuple(piece.get_shape()), piece.get_dtype()) for name, piece in slices.items()}
    except (SafetensorError, OSError) as error:
        raise _unreadable(path, error) from None


def _check_same_tensors(
    first: Path, expected: dict[str, TensorSpec], other: Path, found: dict[str, TensorSpec]
) -> None:
    """Refuses weights whose tensor names, shapes or dtypes differ, naming each tensor."""
    problems = [f"{name}: only in {first}" for name in expected if name not in found]
    problems += [f"{name}: only in {other}" for name in found if name not in expected]
    problems += [
        f"{name}: {expected[name][0]} {expected[name][1]} in {first}, {found[name][0]} {found[name][1]} in {other}"
        for name in expected
        if name in found and expected[name] != found[name]
    ]
    if problems:
        raise CheckpointError(
            "the checkpoints hold different tensors, so they are not of the same model:\n  " + "\n  ".join(problems)
        )


def _mean_weights(directories: Sequence[Path]) -> dict[str, Tensor]:
    """The element-wise mean of every floating tensor (summed in float64); others are the first's."""
    first = _read_weights(directories[0])
    sums = {name: tensor.double() if tensor.is_floating_point() else tensor for name, tensor in first.items()}
    for directory in directories[1:]:
        for name, tensor in _read_weights(directory).items():
            if tensor.is_floating_point():
                sums[name] += tensor.double()
    count = len(directories)
    return {
        name: (total / count).to(first[name].dtype) if first[name].is_floating_point() else total
        for name, total in sums.items()
    }


def _read_weights(directory: Path) -> dict[str, Tensor]:
    path = directory / WEIGHTS_FILE
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(f"cannot read {path} ({error}); the file is corrupt: leave this checkpoint out.")
