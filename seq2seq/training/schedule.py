"""Learning-rate schedules as a function of training progress.

Progress is the larger of step / max_steps and elapsed / max_minutes, so a run with a
wall-clock budget decays its learning rate over that budget.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "linear", "plateau")


def learning_rate(
    base_lr: float,
    schedule: str,
    step: int,
    progress: float,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.1,
) -> float:
    """The learning rate for ``step`` (0-based) at ``progress`` in [0, 1]."""
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    if schedule in ("constant", "plateau"):  # plateau reductions are the trainer's (they follow validation)
        factor = 1.0
    elif schedule == "cosine":
        factor = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = 1.0 - (1.0 - min_lr_ratio) * progress
    return base_lr * factor
