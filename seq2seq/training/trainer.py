"""The shared training loop.

A task (language modelling, translation, captioning) supplies batches, the loss of a batch
and a validation; the ``Trainer`` does everything else: optimisation, clipping, gradient
accumulation, the learning-rate schedule, mixed precision, data-parallel processes,
validation, early stopping, checkpoints, exact resume, logs and the training-curve plot.

A run may have a second phase (``TrainingPhase``, e.g. captioning's self-critical training):
from its first step on, another task supplies the batches and the loss, at the phase's own
constant learning rate. The step it starts at is validated and checkpointed, and the data
position restarts at the phase's own first batch, so a run resumes exactly in either phase.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seq2seq.checkpoint import CheckpointManager, ResumePoint, find_resume_point, load_training_state, load_weights
from seq2seq.config import TrainConfig, check_config
from seq2seq.data.text_files import DataError
from seq2seq.devices import resolve_precision
from seq2seq.training.host_memory import keep_dynamo_out_without_cuda, keep_triton_out_without_cuda, step_optimizer
from seq2seq.training.metrics_log import MetricsLog, plot_training_curve
from seq2seq.training.runtime import Runtime, any_process, gather_objects
from seq2seq.training.schedule import learning_rate
from seq2seq.training.tensorboard_log import TensorBoardLog

log = logging.getLogger(__name__)


@dataclass
class BatchLoss:
    """loss: scalar mean loss to backpropagate; tokens: how many target tokens it covers;
    stats: figures of the batch (e.g. a mean reward) that the training log averages over its window."""

    loss: Tensor
    tokens: int
    stats: dict[str, float] = field(default_factory=dict)


class TrainingTask(Protocol):
    """What a task gives the trainer."""

    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        """The batches of ``epoch`` from position ``start`` on (deterministic given the epoch)."""

    def batch_loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        """Forward one batch through ``model`` (possibly DDP-wrapped)."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics; must include ``val_loss`` and the config's ``best_metric``."""

    def state_dict(self) -> dict[str, Tensor]:
        """Task state that a resume needs (e.g. the carried hidden state)."""

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already consumed
    elapsed: float = 0.0  # seconds of training, over all restarts
    best_metric: float = math.nan  # best value of the config's best_metric so far
    validations_without_improvement: int = 0
    lr_scale: float = 1.0  # reductions by the plateau schedule
    phase: str = ""  # the name of the TrainingPhase in progress; "" before it (or without one)


@dataclass(frozen=True)
class TrainingPhase:
    """A later phase of a run: its own task (batches, loss, validation) and constant learning rate.

    name: recorded in ``Progress.phase`` once the phase has begun
    task, lr: its task and learning rate
    start_step, start_seconds: it begins once this many optimizer steps are done and this many
        seconds of training have passed (both 0: the whole run is this phase); the first
        phase's learning-rate schedule spans those steps or seconds
    """

    name: str
    task: TrainingTask
    lr: float
    start_step: int = 0
    start_seconds: float = 0.0

    def due(self, progress: Progress) -> bool:
        """Whether training has reached the phase's start."""
        return progress.step >= self.start_step and progress.elapsed >= self.start_seconds

    def share_before(self, progress: Progress) -> float:
        """How much of the training before the phase is done, 0 to 1."""
        steps = progress.step / self.start_step if self.start_step else 0.0
        seconds = progress.elapsed / self.start_seconds if self.start_seconds else 0.0
        return min(max(steps, seconds), 1.0)


class TrainingBar:
    """The progress bar of ``Trainer.fit``.

    Without a time budget it counts steps up to train.max_steps. With train.max_minutes it
    measures seconds of the budget instead: its position is the larger of the share of the
    budget spent and the share of train.max_steps done, so that it fills up, and its ETA
    points, at whichever limit comes first; the step count is shown beside it.
    """

    def __init__(self, config: TrainConfig, progress: Progress, enabled: bool) -> None:
        self.budget = config.max_minutes * 60  # seconds; 0 without a budget
        self.max_steps = config.max_steps
        self.stats: dict[str, str] = {}
        shared: dict[str, Any] = {"desc": "train", "disable": not enabled, "dynamic_ncols": True, "mininterval": 1.0}
        if self.budget > 0:
            bar_format = "{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]"
            start = self._position(progress)
            postfix = self._postfix(progress)
            self.bar = tqdm(
                total=self.budget, initial=start, unit="s", bar_format=bar_format, postfix=postfix, **shared
            )
        else:
            self.bar = tqdm(total=self.max_steps, initial=progress.step, unit="step", **shared)

    def show(self, **stats: str) -> None:
        """Shows these figures (loss, tokens per second, ...) from the next refresh on."""
        self.stats = stats
        if self.budget <= 0:
            self.bar.set_postfix(stats, refresh=False)

    def advance(self, progress: Progress) -> None:
        """Moves the bar to where training stands after an optimizer step."""
        if self.budget <= 0:
            self.bar.update(1)
            return
        self.bar.set_postfix(self._postfix(progress), refresh=False)
        self.bar.update(max(self._position(progress) - self.bar.n, 0.0))

    def close(self) -> None:
        self.bar.close()

    def _position(self, progress: Progress) -> float:
        """Seconds of the budget, ahead of the time spent when max_steps is nearer."""
        done = max(progress.elapsed / self.budget, progress.step / max(self.max_steps, 1))
        return self.budget * min(done, 1.0)

    def _postfix(self, progress: Progress) -> dict[str, str]:
        return {"step": f"{progress.step}/{self.max_steps}", **self.stats}


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        task: TrainingTask,
        config: TrainConfig,
        run_dir: Path,
        metadata: dict[str, Any],
        runtime: Runtime,
        phase: TrainingPhase | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.phase = phase
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = metadata
        self.runtime = runtime
        self.trained_model = (
            DistributedDataParallel(model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)
            if runtime.distributed
            else model
        )
        check_config(config, "train")  # choices and ranges, as the config loader checks them
        self.optimizer = build_optimizer(model, config)
        self.checkpoints = CheckpointManager(
            self.run_dir, config.keep_latest, config.keep_best, mode=config.best_mode, metric=config.best_metric
        )
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.tensorboard: TensorBoardLog | None = None  # opened by fit() when train.tensorboard is set
        self.progress = Progress()
        self.precision = resolve_precision(config.precision, runtime.device)

    def _autocast(self) -> torch.autocast:
        """bf16 autocast (on the CPU or a GPU) when the precision resolves to bf16; a no-op otherwise.
        Weights, gradients and optimizer state stay fp32; the loss's softmax runs in fp32."""
        enabled = self.precision == "bf16" and self.runtime.device.type in ("cpu", "cuda")
        return torch.autocast(device_type=self.runtime.device.type, dtype=torch.bfloat16, enabled=enabled)

    # ---- resume -------------------------------------------------------------------------

    def resume_if_possible(self) -> bool:
        """Continue from the run directory's newest checkpoint that verifies, if there is one."""
        point = find_resume_point(self.run_dir, self.config.best_metric, self.config.best_mode)
        if point is not None:
            self.resume(point)
        return point is not None

    def resume(self, point: ResumePoint) -> None:
        """Continue from ``point``; the main process takes the newer checkpoints it skipped out
        of the index, keeping their files under another name."""
        latest = point.directory
        load_weights(latest, self.model, self.runtime.device)
        state = load_training_state(latest)
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        processes = state["processes"]
        if len(processes) == self.runtime.world_size:
            own = processes[self.runtime.rank]
            self._current_task().load_state_dict(own["task"])
        else:
            own = processes[0]
            log.warning(
                "the checkpoint was written by %d processes and this run has %d: task state "
                "(e.g. carried hidden state) starts fresh",
                len(processes),
                self.runtime.world_size,
            )
        restore_rng(own["rng"])
        if self.runtime.is_main:
            self.metrics.truncate_after(self.progress.step)
            for skipped, _ in point.skipped:
                kept = self.checkpoints.set_aside(skipped)
                log.warning("%s could not be resumed; its files are kept as %s", skipped.name, kept)
        log.info("resumed from %s at step %d", latest, self.progress.step)

    # ---- phases -------------------------------------------------------------------------------

    def _in_phase(self) -> bool:
        return self.phase is not None and self.progress.phase == self.phase.name

    def _current_task(self) -> TrainingTask:
        """The task of the phase in progress."""
        return self.phase.task if self.phase is not None and self._in_phase() else self.task

    def _phase_begins(self) -> bool:
        """Begins the later phase when its start step is reached: its data from its first batch on."""
        phase, progress = self.phase, self.progress
        if phase is None or self._in_phase():
            return False
        due = phase.due(progress)
        if phase.start_seconds > 0:  # each process measures its own time: they begin when the first is due
            due = any_process(due, self.runtime)
        if not due:
            return False
        progress.phase, progress.epoch, progress.position = phase.name, 0, 0
        log.info("step %d: %s begins (learning rate %.3g)", progress.step, phase.name, phase.lr)
        return True

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self) -> Progress:
        """Train until max_steps, the time budget or early stopping; returns the final progress."""
        self.model.train()
        if self.config.tensorboard and self.runtime.is_main:
            self.tensorboard = TensorBoardLog(self.run_dir, self.progress.step)
        bar = TrainingBar(self.config, self.progress, enabled=self.runtime.is_main)
        try:
            self._train(bar)
        finally:
            bar.close()  # before an error is reported, so that the error is the last line printed
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.progress

    def _train(self, bar: TrainingBar) -> None:
        config, progress = self.config, self.progress
        started = time.perf_counter() - progress.elapsed
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        window_stats = StatsWindow()
        micro_batch = 0
        done = progress.step >= config.max_steps
        self._phase_begins()  # a run that is the later phase from its first step
        while not done:
            task = self._current_task()
            for batch in task.batches(progress.epoch, progress.position):
                progress.position += 1
                with self._autocast():
                    result = task.batch_loss(self.trained_model, batch)
                (result.loss / config.accumulate_steps).backward()
                micro_batch += 1
                window_loss += result.loss.item() * result.tokens
                window_tokens += result.tokens
                window_stats.add(result.stats)
                self._check_finite(result.loss)
                if micro_batch % config.accumulate_steps:
                    continue
                progress.elapsed = time.perf_counter() - started
                lr = self._optimizer_step()
                progress.step += 1
                if progress.step % config.log_every == 0:
                    seconds = time.perf_counter() - window_start
                    train_loss = window_loss / max(window_tokens, 1)
                    tokens_per_second = window_tokens * self.runtime.world_size / max(seconds, 1e-9)
                    self._log_train(train_loss, lr, tokens_per_second, window_stats.means())
                    bar.show(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_second:,.0f}", lr=f"{lr:.2e}")
                    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
                    window_stats = StatsWindow()
                bar.advance(progress)
                out_of_time = config.max_minutes > 0 and progress.elapsed >= config.max_minutes * 60
                done = progress.step >= config.max_steps or any_process(out_of_time, self.runtime)
                phase_begins = not done and self._phase_begins()
                if progress.step % config.validate_every == 0 or done or phase_begins:
                    stop_early = self._validate_and_save()
                    done = done or stop_early
                if phase_begins:  # the next log record is the new phase's alone
                    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
                    window_stats = StatsWindow()
                if done or phase_begins:
                    break
            else:
                if progress.position == 0:  # a whole epoch, from its start, without a batch
                    raise DataError(f"epoch {progress.epoch} of the training data gave no batch: nothing to train on")
                progress.epoch += 1
                progress.position = 0

    def _optimizer_step(self) -> float:
        config, progress = self.config, self.progress
        lr = progress.lr_scale * (self.phase.lr if self.phase is not None and self._in_phase() else self._first_lr())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if config.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad_norm)
        try:
            step_optimizer(self.optimizer)
        except RuntimeError as error:  # an update too large for the weights' dtype
            if "overflow" not in str(error):
                raise
            raise self._diverged(
                f"the update at step {progress.step + 1} overflowed (learning rate {lr:.3g})"
            ) from None
        self.optimizer.zero_grad(set_to_none=True)
        return lr

    def _first_lr(self) -> float:
        """The schedule's learning rate before any later phase: over the phase's steps when one
        follows, else over max_steps or the time budget, whichever is nearer its end."""
        config, progress = self.config, self.progress
        if self.phase is not None:
            done = self.phase.share_before(progress)
        else:
            budget_progress = progress.elapsed / (config.max_minutes * 60) if config.max_minutes > 0 else 0.0
            done = max(progress.step / config.max_steps, budget_progress)
        return learning_rate(config.lr, config.schedule, progress.step, done, config.warmup_steps, config.min_lr_ratio)

    def _check_finite(self, loss: Tensor) -> None:
        if not torch.isfinite(loss):
            raise self._diverged(f"the training loss became {loss.item()} at step {self.progress.step + 1}")

    def _diverged(self, what: str) -> TrainingDiverged:
        latest = self.checkpoints.latest()
        return TrainingDiverged(
            f"training diverged: {what}. Lower train.lr, keep train.clip_grad_norm above 0, or train in fp32. "
            + (f"The last good checkpoint is {latest}." if latest else "No checkpoint was written yet.")
        )

    # ---- validation, checkpoints, logs ----------------------------------------------------------

    def _validate_and_save(self) -> bool:
        """Validate, log, checkpoint; True when early stopping says to stop."""
        progress = self.progress
        self.model.eval()
        with torch.no_grad(), self._autocast():
            metrics = self._current_task().validate(self.model)
        self.model.train()
        self._track_best(metrics)
        record = {"step": progress.step, "epoch": progress.epoch, **metrics}
        summary = "  ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        log.info("step %d  %s  (best %s %.4f)", progress.step, summary, self.config.best_metric, progress.best_metric)
        training_state = self._training_state()
        if self.runtime.is_main:
            self._write_record(record)
            metadata = {**self.metadata, "metrics": record}
            value = metrics[self.config.best_metric]
            self.checkpoints.save(progress.step, self.model, metadata, training_state, value)
            plot_training_curve(self.metrics.read(), self.run_dir / "training_curve.png", self.run_dir.name)
        patience = self.config.early_stopping_patience
        if patience and progress.validations_without_improvement >= patience:
            log.info("early stopping: no improvement in %d validations", patience)
            return True
        return False

    def _track_best(self, metrics: dict[str, float]) -> None:
        """Update the best metric, the patience count and (plateau schedule) the lr scale."""
        config, progress = self.config, self.progress
        if config.best_metric not in metrics:
            raise ValueError(
                f"train.best_metric {config.best_metric!r} is not among the validation metrics {sorted(metrics)}"
            )
        value = metrics[config.best_metric]
        better = value < progress.best_metric if config.best_mode == "min" else value > progress.best_metric
        if better or math.isnan(progress.best_metric):
            progress.best_metric = value
            progress.validations_without_improvement = 0
            return
        progress.validations_without_improvement += 1
        if config.schedule == "plateau" and progress.validations_without_improvement % config.plateau_patience == 0:
            progress.lr_scale *= config.plateau_factor
            log.info(
                "no improvement in %d validations: learning rate scaled to %.3g",
                config.plateau_patience,
                progress.lr_scale,
            )

    def _training_state(self) -> dict[str, Any]:
        """Optimizer and progress (shared), and each process's RNG and task state."""
        own = {"rng": rng_state(), "task": _to_cpu(self._current_task().state_dict())}
        return {
            "optimizer": self.optimizer.state_dict(),
            "progress": vars(self.progress).copy(),
            "processes": gather_objects(own, self.runtime),
        }

    def _log_train(self, train_loss: float, lr: float, tokens_per_second: float, stats: dict[str, float]) -> None:
        record = {
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "train_loss": train_loss,
            "lr": lr,
            "tokens_per_s": tokens_per_second,
            "elapsed_s": self.progress.elapsed,
            **stats,
        }
        if self.runtime.is_main:
            self._write_record(record)
        log.debug("%s", record)

    def _write_record(self, record: dict[str, Any]) -> None:
        """Into metrics.jsonl, and the TensorBoard event files when they are on (main process only)."""
        self.metrics.write(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)


class StatsWindow:
    """The batches' ``BatchLoss.stats`` since the last training log record, averaged per batch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.batches = 0

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.batches += 1 if stats else 0

    def means(self) -> dict[str, float]:
        return {key: total / self.batches for key, total in self.sums.items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def _to_cpu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.detach().cpu() for key, value in state.items()}


#: Devices where PyTorch's fused Adam kernels run: one kernel over all parameters instead of
#: about ten tensor operations per parameter (on 2 CPU cores, 8 ms instead of 37 ms per step for
#: 12M parameters; the updates are the same Adam).
FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if config.optimizer not in optimizers:
        raise ValueError(f"train.optimizer must be one of {sorted(optimizers)}, got {config.optimizer!r}")
    keep_triton_out_without_cuda()  # building a torch.optim optimizer would import it (see host_memory)
    keep_dynamo_out_without_cuda()  # and torch._dynamo, to no use without compiling
    parameters = list(model.parameters())
    fused = all(parameter.device.type in FUSED_OPTIMIZER_DEVICES for parameter in parameters)
    return optimizers[config.optimizer](
        parameters, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay, fused=fused or None
    )
