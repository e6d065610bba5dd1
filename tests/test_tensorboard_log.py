"""TensorBoard event files beside metrics.jsonl (train.tensorboard), and the error without the package."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from seq2seq.config import ConfigError
from seq2seq.training import tensorboard_log
from seq2seq.training.run_files import run_files
from tests.test_trainer import make_trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
event_file_loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag of the run directory's event files: {tag: {step: value}}."""
    events = event_accumulator.EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_event_files_hold_the_records_of_metrics_jsonl(tmp_path: Path) -> None:
    make_trainer(tmp_path, max_steps=10, validate_every=5, log_every=5, tensorboard=True).fit()
    run_dir = tmp_path / "run"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    found = scalars(run_dir)
    train = {r["step"]: r["train_loss"] for r in records if "train_loss" in r}
    valid = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert sorted(train) == [5, 10] and sorted(valid) == [5, 10]
    assert found["train/train_loss"] == pytest.approx(train)
    assert found["valid/val_loss"] == pytest.approx(valid)
    assert set(found["train/lr"]) == set(train) and "train/tokens_per_s" in found
    assert any(path.name.startswith("events.out.tfevents.") for path in run_files(run_dir))  # --fresh removes them


def test_resuming_drops_what_came_after_the_checkpoint(tmp_path: Path) -> None:
    make_trainer(tmp_path, max_steps=10, validate_every=5, log_every=5, keep_latest=2, tensorboard=True).fit()
    run_dir = tmp_path / "run"
    shutil.rmtree(run_dir / "checkpoints" / "step_000010")  # as if killed after step 5's checkpoint
    trainer = make_trainer(tmp_path, max_steps=10, validate_every=5, log_every=5, tensorboard=True, lr=0.05)
    assert trainer.resume_if_possible() and trainer.progress.step == 5
    trainer.fit()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r["train_loss"] for r in records if "train_loss" in r}
    assert scalars(run_dir)["train/train_loss"] == pytest.approx(train)  # the second run's step 10 only
    newest = max(run_dir.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime_ns)
    starts = [
        event.step
        for event in event_file_loader.EventFileLoader(str(newest)).Load()
        if event.HasField("session_log") and event.session_log.status == event.session_log.START
    ]
    assert starts == [6]  # tells every reader to drop the killed run's events from step 6 on


def test_without_the_package_the_error_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        tensorboard_log.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"pip install 'seq2seq\[tensorboard\]'.*train.tensorboard=false"):
        make_trainer(tmp_path, max_steps=5, tensorboard=True).fit()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
