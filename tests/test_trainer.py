"""The shared trainer on a tiny language model: divergence, early stopping, budgets, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from tqdm import tqdm

from seq2seq.config import DecoderConfig, TrainConfig
from seq2seq.data.lm_stream import LMStream, Window
from seq2seq.models import build_language_model
from seq2seq.training import trainer as trainer_module
from seq2seq.training.lm_task import LanguageModelTask
from seq2seq.training.runtime import Runtime
from seq2seq.training.trainer import BatchLoss, Progress, Trainer, TrainingBar, TrainingDiverged, TrainingPhase

CPU = Runtime(torch.device("cpu"))


def tiny_task(vocab_size: int = 12, kind: type[LanguageModelTask] = LanguageModelTask) -> LanguageModelTask:
    torch.manual_seed(0)
    stream = torch.arange(4, 4 + 8).repeat(200)  # a repeating pattern of 8 tokens
    return kind(
        LMStream(stream[:1500], batch_size=4, window=8),
        LMStream(stream[1500:], 4, 8, shift_per_epoch=False),
        CPU.device,
    )


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_language_model(DecoderConfig(embedding_size=8, hidden_size=16), vocab_size=12, pad_id=0)


def make_trainer(tmp_path: Path, task=None, **train: object) -> Trainer:
    config = TrainConfig(**{"max_steps": 30, "validate_every": 10, "log_every": 5, "lr": 0.01, **train})
    return Trainer(tiny_model(), task or tiny_task(), config, tmp_path / "run", {"task": "test"}, CPU)


def test_fit_learns_a_repeating_pattern(tmp_path: Path) -> None:
    progress = make_trainer(tmp_path, max_steps=120, validate_every=40).fit()
    assert progress.best_metric < 0.5  # log(8) ~ 2.08 for a model that learnt nothing


class NaNTask(LanguageModelTask):
    def batch_loss(self, model: torch.nn.Module, batch: Window) -> BatchLoss:
        result = super().batch_loss(model, batch)
        return BatchLoss(result.loss * float("nan"), result.tokens)


def test_nan_loss_stops_with_clear_message(tmp_path: Path) -> None:
    base = tiny_task()
    task = NaNTask(base.train, base.validation, CPU.device)
    with pytest.raises(TrainingDiverged, match="lower train.lr|Lower train.lr"):
        make_trainer(tmp_path, task=task).fit()


class FlatValidationTask(LanguageModelTask):
    """Validation never improves after the first one."""

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"val_loss": 1.0}


def test_early_stopping_after_patience(tmp_path: Path) -> None:
    base = tiny_task()
    task = FlatValidationTask(base.train, base.validation, CPU.device)
    progress = make_trainer(tmp_path, task=task, max_steps=200, validate_every=5, early_stopping_patience=3).fit()
    assert progress.step == 20  # first validation sets the best, three more without improvement


class RecordedBar(tqdm):
    """A tqdm bar that keeps the bars made, so that a test can read them after the run."""

    made: ClassVar[list[tqdm]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        RecordedBar.made.append(self)


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[tqdm]:
    """The progress bars that the trainer makes during the test."""
    made: list[tqdm] = []
    monkeypatch.setattr(RecordedBar, "made", made)
    monkeypatch.setattr(trainer_module, "tqdm", RecordedBar)
    return made


def test_time_budget_stops_training(tmp_path: Path, bars: list[tqdm]) -> None:
    progress = make_trainer(tmp_path, max_steps=10_000, max_minutes=0.02).fit()
    assert progress.step < 10_000
    assert progress.elapsed >= 0.02 * 60
    [bar] = bars  # a bar of the budget's seconds, full when the time is up, with the steps beside it
    assert (bar.unit, bar.total) == ("s", pytest.approx(0.02 * 60))
    assert bar.n == pytest.approx(bar.total)
    assert f"step={progress.step}/10000" in bar.postfix


def test_without_a_budget_the_bar_counts_steps(tmp_path: Path, bars: list[tqdm]) -> None:
    make_trainer(tmp_path, max_steps=20).fit()
    [bar] = bars
    assert (bar.unit, bar.total, bar.n) == ("step", 20, 20)


def test_the_budget_bar_follows_whichever_limit_comes_first() -> None:
    config = TrainConfig(max_steps=1000, max_minutes=10)
    bar = TrainingBar(config, Progress(), enabled=True)
    assert (bar.bar.unit, bar.bar.total, bar.bar.n) == ("s", 600, 0)
    bar.advance(Progress(step=10, elapsed=60.0))  # the time runs out first: seconds spent
    assert bar.bar.n == pytest.approx(60.0)
    bar.advance(Progress(step=500, elapsed=90.0))  # the steps run out first: their share of the budget
    assert bar.bar.n == pytest.approx(300.0)
    bar.advance(Progress(step=1000, elapsed=100.0))
    assert bar.bar.n == pytest.approx(600.0)
    assert "step=1000/1000" in bar.bar.postfix
    bar.close()
    resumed = TrainingBar(config, Progress(step=100, elapsed=300.0), enabled=True)
    assert resumed.bar.n == pytest.approx(300.0)
    resumed.close()


def test_keeps_latest_and_best_checkpoints(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=40, validate_every=10, keep_latest=1, keep_best=1)
    trainer.fit()
    index = json.loads((tmp_path / "run" / "checkpoints.json").read_text())
    assert index["latest"][0] == "step_000040"
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert 1 <= len(kept) <= 2 and "step_000040" in kept


def test_accumulation_counts_updates_not_batches(tmp_path: Path) -> None:
    progress = make_trainer(tmp_path, max_steps=10, accumulate_steps=3, validate_every=10).fit()
    assert progress.step == 10
    assert progress.epoch == 0 and progress.position == 30  # 3 batches per update


def test_learning_rate_follows_schedule(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=20, schedule="linear", min_lr_ratio=0.5)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["lr"] for r in records if "lr" in r]
    assert rates == sorted(rates, reverse=True)
    assert math.isclose(rates[-1], 0.01 * (1 - 0.5 * 19 / 20), rel_tol=1e-6)


def test_resume_continues_from_latest(tmp_path: Path) -> None:
    make_trainer(tmp_path, max_steps=20).fit()
    trainer = make_trainer(tmp_path, max_steps=30)
    assert trainer.resume_if_possible()
    assert trainer.progress.step == 20
    assert trainer.fit().step == 30


def test_plateau_schedule_halves_lr_without_improvement(tmp_path: Path) -> None:
    base = tiny_task()
    task = FlatValidationTask(base.train, base.validation, CPU.device)
    trainer = make_trainer(
        tmp_path, task=task, max_steps=25, validate_every=5, schedule="plateau", plateau_patience=2, plateau_factor=0.5
    )
    progress = trainer.fit()
    assert progress.lr_scale == 0.25  # validations at 5..25: best, then 4 without improvement -> two halvings
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert rates[15] == pytest.approx(0.01) and rates[20] == pytest.approx(0.005)


def test_best_metric_in_max_mode_picks_highest(tmp_path: Path) -> None:
    class ScoredTask(LanguageModelTask):
        scores = iter([10.0, 30.0, 20.0])

        def validate(self, model: torch.nn.Module) -> dict[str, float]:
            return {"val_loss": 1.0, "bleu": next(self.scores)}

    base = tiny_task()
    task = ScoredTask(base.train, base.validation, CPU.device)
    make_trainer(tmp_path, task=task, max_steps=30, validate_every=10, best_metric="bleu", best_mode="max").fit()
    index = json.loads((tmp_path / "run" / "checkpoints.json").read_text())
    assert index["best"][0][1] == "step_000020"


class StatsTask(LanguageModelTask):
    """A later phase's task: the language model's loss, with a figure of each batch for the log."""

    batches_started: ClassVar[list[tuple[int, int]]] = []

    def batches(self, epoch: int, start: int):
        StatsTask.batches_started.append((epoch, start))
        return super().batches(epoch, start)

    def batch_loss(self, model: torch.nn.Module, batch: Window) -> BatchLoss:
        return BatchLoss(super().batch_loss(model, batch).loss, batch.targets.numel(), {"figure": 2.0})


def test_a_later_phase_takes_over_the_batches_and_loss_at_its_own_rate_and_is_checkpointed(tmp_path: Path) -> None:
    StatsTask.batches_started.clear()
    phase = TrainingPhase("second", tiny_task(kind=StatsTask), lr=0.001, start_step=7)
    trainer = make_trainer(tmp_path, max_steps=12, log_every=1, schedule="linear", min_lr_ratio=0.5)
    trainer.phase = phase
    progress = trainer.fit()
    assert progress.phase == "second" and StatsTask.batches_started == [(0, 0)]  # its own data from its start
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r for r in records if "lr" in r}
    assert logged[7]["lr"] == pytest.approx(0.01 * (1 - 0.5 * 6 / 7))  # the first schedule spans the 7 steps
    assert all(logged[step]["lr"] == 0.001 and logged[step]["figure"] == 2.0 for step in range(8, 13))
    assert "figure" not in logged[7]
    assert any(r["step"] == 7 and "val_loss" in r for r in records)  # validated and saved where it began

    resumed = make_trainer(tmp_path, max_steps=14)
    resumed.phase = phase
    assert resumed.resume_if_possible() and resumed.progress.phase == "second"
    assert resumed.fit().step == 14 and StatsTask.batches_started[-1][0] == progress.epoch


def test_a_phase_can_begin_after_some_time_or_at_once() -> None:
    phase = TrainingPhase("second", tiny_task(), lr=0.001, start_seconds=60.0)
    assert not phase.due(Progress(step=100, elapsed=30.0)) and phase.due(Progress(step=1, elapsed=61.0))
    assert phase.share_before(Progress(elapsed=15.0)) == 0.25
    assert TrainingPhase("whole run", tiny_task(), lr=0.001).due(Progress())
