"""One training run of any task: the skeleton the three tasks share.

``train(task, config, run_dir)`` checks the config, starts the runtime (devices, torchrun),
locks the run directory (one training at a time), moves the previous run's files aside when
asked to start fresh (or finds the newest checkpoint that verifies and checks that the resumed
run's model and data settings did not change), lets the task build its data, model and
training task (a fresh run that fails here puts the previous run back), then resumes, fits,
and reports. The per-task pieces are ``TaskTraining`` entries: what each task checks, which
config sections a resumed run must keep, how it prepares.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import CheckpointError, ResumePoint, find_resume_point
from seq2seq.config import ConfigError, config_differences, to_dict
from seq2seq.models import Seq2Seq
from seq2seq.models.decoder import count_parameters
from seq2seq.run_configs import METADATA_ENTRIES, upgrade_config
from seq2seq.training.run_files import Previous, move_run_files_aside
from seq2seq.training.run_lock import hold_run_lock
from seq2seq.training.runtime import Runtime, peers_watched, seed_everything, start_runtime, stop_runtime
from seq2seq.training.tensorboard_log import check_tensorboard_installed
from seq2seq.training.trainer import Progress, Trainer, TrainingPhase, TrainingTask

log = logging.getLogger("seq2seq.train")


@dataclass
class PreparedRun:
    """What a task builds for one training process.

    model: the model, initialised and on the runtime's device
    task: its batches, loss and validation (``TrainingTask``)
    metadata: what checkpoints must carry besides the task and config (tokenizers, vocabularies)
    description: one line for the log (data sizes, vocabularies)
    phase: a later phase of training with a task of its own (captioning's self-critical
        training), or None
    """

    model: Seq2Seq
    task: TrainingTask
    metadata: dict[str, Any]
    description: str
    phase: TrainingPhase | None = None


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
    if config.train.tensorboard:
        check_tensorboard_installed()
    runtime = start_runtime(config.train.device, config.train.threads, config.train.collective_timeout_s)
    try:
        with peers_watched(runtime, config.train.collective_timeout_s), hold_run_lock(run_dir, runtime):
            return train_locked(name, training, config, run_dir, runtime, fresh)
    finally:
        stop_runtime(runtime)


def train_locked(
    name: str, training: TaskTraining, config: Any, run_dir: Path, runtime: Runtime, fresh: bool
) -> TrainingResult:
    """``run_training`` once the run directory is this run's."""
    previous = move_run_files_aside(run_dir) if fresh and runtime.is_main else None
    setup_logging(run_dir, runtime.is_main)
    point = None if fresh else resume_point(name, training, run_dir, config)
    prepared = prepare_or_restore(training, config, run_dir, runtime, point, previous)
    metadata = {"task": name, "config": to_dict(config), **prepared.metadata}
    trainer = Trainer(prepared.model, prepared.task, config.train, run_dir, metadata, runtime, prepared.phase)
    log.info(
        "%s: %s, %.2fM trainable parameters, device %s, %s, %d process(es)",
        config.name,
        prepared.description,
        count_parameters(prepared.model) / 1e6,
        runtime.device,
        trainer.precision,
        runtime.world_size,
    )
    if point is not None:
        trainer.resume(point)
    progress = trainer.fit()
    best = trainer.checkpoints.best()
    if runtime.is_main:
        print(
            f"done: step {progress.step}, best {config.train.best_metric} {progress.best_metric:.4f}; "
            f"best checkpoint {best}"
        )
    return TrainingResult(run_dir, progress, best)


def resume_point(name: str, training: TaskTraining, run_dir: Path, config: Any) -> ResumePoint | None:
    """The newest checkpoint of ``run_dir`` that verifies, once its run is known to be resumable
    with ``config``; None when there is no checkpoint yet."""
    entries = ("task", "config", *METADATA_ENTRIES[name])
    point = find_resume_point(run_dir, config.train.best_metric, config.train.best_mode, entries)
    if point is not None:
        check_resumable(name, run_dir, point.metadata, to_dict(config), training.frozen_sections)
    return point


def prepare_or_restore(
    training: TaskTraining,
    config: Any,
    run_dir: Path,
    runtime: Runtime,
    point: ResumePoint | None,
    previous: Previous | None,
) -> PreparedRun:
    """The task's data, model and training task; a fresh run whose preparation fails (unusable
    data, say) puts the previous run's files back, else they are deleted now."""
    try:
        prepared = training.prepare(config, run_dir, runtime, None if point is None else point.metadata)
    except BaseException:
        if previous is not None:
            previous.restore()
        raise
    if previous is not None:
        previous.discard()
    return prepared


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
