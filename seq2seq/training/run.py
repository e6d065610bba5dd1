"""One training run of any task: the skeleton the three tasks share.

``train(task, config, run_dir)`` checks the config, starts the runtime (devices, torchrun),
empties the run directory when asked to start fresh (or checks that a resumed run's model and
data settings did not change), lets the task build its data, model and training task, then
resumes from the latest checkpoint, fits, and reports. The per-task pieces are ``TaskTraining``
entries: what each task checks, which config sections a resumed run must keep, how it prepares.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import CheckpointError, CheckpointManager, load_metadata
from seq2seq.config import ConfigError, config_differences, to_dict
from seq2seq.models import Seq2Seq
from seq2seq.models.decoder import count_parameters
from seq2seq.run_configs import upgrade_config
from seq2seq.training.runtime import Runtime, seed_everything, start_runtime, stop_runtime
from seq2seq.training.trainer import Progress, Trainer, TrainingTask

log = logging.getLogger("seq2seq.train")


@dataclass
class PreparedRun:
    """What a task builds for one training process.

    model: the model, initialised and on the runtime's device
    task: its batches, loss and validation (``TrainingTask``)
    metadata: what checkpoints must carry besides the task and config (tokenizers, vocabularies)
    description: one line for the log (data sizes, vocabularies)
    """

    model: Seq2Seq
    task: TrainingTask
    metadata: dict[str, Any]
    description: str


#: A task's preparation: (config, run_dir, runtime, saved metadata of a resumed run or None) -> PreparedRun.
Prepare = Callable[[Any, Path, Runtime, "dict[str, Any] | None"], PreparedRun]


@dataclass(frozen=True)
class TaskTraining:
    """How one task trains.

    check: refuses config settings that cannot work, before anything is written
    frozen_sections: the config sections a resumed run must not change
    prepare: builds the data, the model and the training task
    """

    check: Callable[[Any], None]
    frozen_sections: tuple[str, ...]
    prepare: Prepare


@dataclass
class TrainingResult:
    """Where a finished (or stopped) run ended: its progress and its best checkpoint."""

    run_dir: Path
    progress: Progress
    best_checkpoint: Path | None


def run_training(name: str, training: TaskTraining, config: Any, run_dir: Path, fresh: bool = False) -> TrainingResult:
    """Train (or resume) the run in ``run_dir``; under torchrun, this process's part of it."""
    training.check(config)
    runtime = start_runtime(config.train.device, config.train.threads)
    try:
        saved = prepare_run_dir(run_dir, fresh, runtime.is_main, config.train.best_metric, config.train.best_mode)
        setup_logging(run_dir, runtime.is_main)
        if saved is not None:
            check_resumable(name, run_dir, saved, to_dict(config), training.frozen_sections)
        prepared = training.prepare(config, run_dir, runtime, saved)
        log.info(
            "%s: %s, %.2fM trainable parameters, device %s, %d process(es)",
            config.name,
            prepared.description,
            count_parameters(prepared.model) / 1e6,
            runtime.device,
            runtime.world_size,
        )
        metadata = {"task": name, "config": to_dict(config), **prepared.metadata}
        trainer = Trainer(prepared.model, prepared.task, config.train, run_dir, metadata, runtime)
        trainer.resume_if_possible()
        progress = trainer.fit()
        best = trainer.checkpoints.best()
        if runtime.is_main:
            print(
                f"done: step {progress.step}, best {config.train.best_metric} {progress.best_metric:.4f}; "
                f"best checkpoint {best}"
            )
        return TrainingResult(run_dir, progress, best)
    finally:
        stop_runtime(runtime)


def seeded_model(build: Callable[[], Seq2Seq], runtime: Runtime, seed: int) -> Seq2Seq:
    """The model built with the same initial weights in every process, moved to the runtime's
    device; afterwards each process draws its own dropout masks."""
    seed_everything(seed)
    model = build().to(runtime.device)
    seed_everything(seed + runtime.rank)
    return model


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


def check_resumable(
    name: str, run_dir: Path, saved: dict[str, Any], config: dict[str, Any], frozen_sections: tuple[str, ...]
) -> None:
    """Refuse to resume a run of another task, or one whose model or data settings changed."""
    if saved.get("task") != name:
        raise CheckpointError(
            f"{run_dir} holds a {saved.get('task')!r} run, not a {name!r} run; "
            "pick another --run-dir, or pass --fresh to start over."
        )
    saved_config = upgrade_config(name, saved.get("config", {}))
    changed = config_differences(
        {key: saved_config.get(key) for key in frozen_sections}, {key: config.get(key) for key in frozen_sections}
    )
    if changed:
        raise ConfigError(
            "the run directory holds a run with a different configuration:\n  "
            + "\n  ".join(changed)
            + "\nResume with the original config, pick another --run-dir, or pass --fresh to start over."
        )
