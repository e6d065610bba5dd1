"""Reading a trained model's checkpoint: which directory, its metadata, its config, its weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from seq2seq.checkpoint import CheckpointError, load_metadata, load_weights, resolve_checkpoint
from seq2seq.config import from_dict
from seq2seq.devices import resolve_device
from seq2seq.inference.numerics import with_numerics
from seq2seq.models import Seq2Seq
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.ensemble import Ensemble
from seq2seq.run_configs import METADATA_ENTRIES, TASK_CONFIGS, upgrade_config
from seq2seq.text.tokenizers import canonical_descriptions

#: One checkpoint (a run directory or a step directory), or several to decode as an ensemble.
Checkpoints = str | Path | Sequence[str | Path]
#: What the inference classes decode with: one model, or an ensemble of several.
DecodableModel = Seq2Seq | Ensemble


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


def read_trained_runs(checkpoints: Checkpoints, task: str) -> list[TrainedRun]:
    """``read_trained_run`` for each of ``checkpoints``; several must share their tokenizers and
    vocabularies (they will decode as an ensemble)."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not paths:
        raise ValueError("give at least one checkpoint")
    runs = [read_trained_run(path, task) for path in paths]
    check_same_vocabularies(runs, task)
    return runs


def check_same_vocabularies(runs: Sequence[TrainedRun], task: str) -> None:
    """Refuses checkpoints whose tokenizers or vocabularies differ, naming the two."""
    first = runs[0]
    for run in runs[1:]:
        for key in METADATA_ENTRIES[task]:
            if canonical_descriptions(run.metadata[key]) != canonical_descriptions(first.metadata[key]):
                raise CheckpointError(
                    f"{run.directory} and {first.directory} have different {key!r} entries (tokenizer and "
                    "vocabulary): an ensemble decodes with one vocabulary, so its checkpoints must come from runs "
                    "that share it (the same data and tokenizer settings, e.g. several checkpoints of one run, "
                    "or runs that differ only in their seed)"
                )


def decoding_model(
    runs: Sequence[TrainedRun],
    build: Callable[[TrainedRun], Seq2Seq],
    device: str | torch.device,
    dtype: str | torch.dtype = "float32",
    quantize: str | None = None,
) -> DecodableModel:
    """The model of each run (``build`` makes it from the run's config) with its weights; an
    ``Ensemble`` of several. What every ``from_checkpoint`` of the inference classes means:

    device: auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps. Several
    checkpoints of runs that share the vocabulary decode as an ensemble (at each step the
    normalised geometric mean of their distributions; the first checkpoint's decoding settings
    are the defaults). dtype: float32, or bfloat16 where the CPU (AMX, AVX512-BF16) or GPU has bf16
    units; quantize="int8": int8 linear and recurrent layers on the CPU (``with_numerics``).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    models = [with_numerics(ready_for_decoding(build(run), run, device), dtype, quantize) for run in runs]
    return models[0] if len(models) == 1 else Ensemble(models).eval()


def metadata_entry(run: TrainedRun, key: str) -> Any:
    """An entry of the checkpoint's metadata that decoding needs, or a CheckpointError naming it."""
    if key not in run.metadata:
        raise CheckpointError(f"{run.directory / 'model.json'} has no {key!r} entry: the checkpoint is incomplete")
    return run.metadata[key]


ModelT = TypeVar("ModelT", bound=nn.Module)


def ready_for_decoding(model: ModelT, run: TrainedRun, device: torch.device) -> ModelT:
    """``model`` with the checkpoint's weights, on ``device``, in eval mode, its decoder's
    embedding gates folded into a table (``RNNDecoder.fold_embedding_gates``)."""
    load_weights(run.directory, model, device)
    model = model.to(device).eval()
    for module in model.modules():
        if isinstance(module, RNNDecoder):
            module.fold_embedding_gates()
    return model


class LoadedModel:
    """What the inference classes share: the model (or ensemble), its config and the
    checkpoint directories it was loaded from."""

    def __init__(self, model: DecodableModel, config: Any, checkpoints: Sequence[Path]) -> None:
        self.model = model
        self.config = config
        self.checkpoints = list(checkpoints)

    @property
    def checkpoint(self) -> Path:
        """The (first) checkpoint's directory."""
        return self.checkpoints[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
