"""The metrics log of a run (JSON lines) and its training-curve plot (PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq.plots import new_figure


class MetricsLog:
    """Appends one JSON object per line to ``path``; a resumed run drops what came after its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
        return records

    def truncate_after(self, step: int) -> None:
        """Keep only records up to ``step`` (the checkpoint a run resumes from)."""
        kept = [record for record in self.read() if record.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")


def plot_training_curve(records: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Training and validation loss against steps, and the learning rate below."""
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    valid = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    rates = [(r["step"], r["lr"]) for r in records if "lr" in r]
    figure = new_figure(8, 6)
    loss_axis, lr_axis = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if train:
        loss_axis.plot(*zip(*train), label="train", alpha=0.7)
    if valid:
        loss_axis.plot(*zip(*valid), "o-", label="validation")
    loss_axis.set_ylabel("loss (nats/token)")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    loss_axis.set_title(title)
    if rates:
        lr_axis.plot(*zip(*rates), color="gray")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
