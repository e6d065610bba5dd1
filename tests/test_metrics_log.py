"""Tests for seq2seq.training.metrics_log: JSON-lines log, resume truncation, the curve plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.training.metrics_log import MetricsLog, plot_training_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample_records() -> list[dict[str, float]]:
    records: list[dict[str, float]] = []
    for step in range(1, 11):
        records.append({"step": step, "train_loss": 3.0 / step, "lr": 0.01 * (1 - step / 20)})
        if step % 5 == 0:
            records.append({"step": step, "val_loss": 3.5 / step, "val_bits": 5.0 / step})
    return records


@pytest.fixture
def log(tmp_path: Path) -> MetricsLog:
    return MetricsLog(tmp_path / "metrics.jsonl")


def test_read_of_a_missing_log_is_empty(log: MetricsLog) -> None:
    assert log.read() == []


def test_written_records_read_back_in_order(log: MetricsLog) -> None:
    for record in sample_records():
        log.write(record)
    assert log.read() == sample_records()
    assert len(log.path.read_text(encoding="utf-8").splitlines()) == len(sample_records())


def test_a_torn_last_line_is_skipped(log: MetricsLog) -> None:
    log.write({"step": 1, "train_loss": 2.0})
    log.write({"step": 2, "train_loss": 1.5})
    with log.path.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 3, "train_lo')  # the process died mid-write
    assert log.read() == [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}]


def test_truncate_after_keeps_records_up_to_the_step(log: MetricsLog) -> None:
    for record in sample_records():
        log.write(record)
    log.truncate_after(5)
    kept = log.read()
    assert kept == [record for record in sample_records() if record["step"] <= 5]
    assert any("val_loss" in record for record in kept)  # the validation at the resumed step stays
    log.write({"step": 6, "train_loss": 0.1})
    assert log.read()[-1] == {"step": 6, "train_loss": 0.1}


def test_truncate_after_drops_a_torn_line(log: MetricsLog) -> None:
    log.write({"step": 1, "train_loss": 2.0})
    with log.path.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 2')
    log.truncate_after(10)
    log.write({"step": 2, "train_loss": 1.0})
    assert log.read() == [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.0}]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    plot_training_curve(sample_records(), path, title="test run")
    assert path.is_file()
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_copes_with_training_records_only(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    plot_training_curve([record for record in sample_records() if "train_loss" in record], path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
