"""Tests for seq2seq.training.schedule: warm-up, decay shapes, end points, clamping, errors."""

from __future__ import annotations

from itertools import pairwise

import pytest

from seq2seq.training.schedule import SCHEDULES, learning_rate

LR, MIN_RATIO = 0.01, 0.2
PROGRESS = [i / 20 for i in range(21)]


def rates(schedule: str, min_lr_ratio: float = MIN_RATIO) -> list[float]:
    return [learning_rate(LR, schedule, step=100, progress=p, min_lr_ratio=min_lr_ratio) for p in PROGRESS]


def test_warm_up_rises_linearly_to_the_base_rate() -> None:
    warmup = 10
    during = [learning_rate(LR, "cosine", step, progress=0.0, warmup_steps=warmup) for step in range(warmup)]
    steps = [b - a for a, b in pairwise(during)]
    assert all(step > 0 for step in steps)
    assert max(steps) == pytest.approx(min(steps))  # equal increments: a straight line
    assert during[0] > 0
    assert during[-1] == pytest.approx(LR)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warm_up_applies_to_every_schedule_and_ends(schedule: str) -> None:
    warm = learning_rate(LR, schedule, step=2, progress=0.5, warmup_steps=10)
    after = learning_rate(LR, schedule, step=10, progress=0.5, warmup_steps=10)
    assert warm == pytest.approx(LR * 3 / 10)
    assert after == pytest.approx(learning_rate(LR, schedule, step=10, progress=0.5))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_starts_at_lr_and_ends_at_the_minimum(schedule: str) -> None:
    values = rates(schedule)
    assert values[0] == pytest.approx(LR)
    assert values[-1] == pytest.approx(MIN_RATIO * LR)
    assert all(later <= earlier for earlier, later in pairwise(values))
    assert all(MIN_RATIO * LR - 1e-12 <= value <= LR + 1e-12 for value in values)


def test_linear_decays_in_equal_steps() -> None:
    values = rates("linear")
    steps = [a - b for a, b in pairwise(values)]
    assert max(steps) == pytest.approx(min(steps))


def test_cosine_is_flat_at_both_ends_and_halfway_at_the_middle() -> None:
    values = rates("cosine")
    steps = [a - b for a, b in pairwise(values)]
    assert steps[0] < steps[len(steps) // 2] and steps[-1] < steps[len(steps) // 2]
    assert values[10] == pytest.approx((LR + MIN_RATIO * LR) / 2)


def test_constant_stays_constant() -> None:
    assert all(value == pytest.approx(LR) for value in rates("constant"))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_progress_is_clamped_to_zero_one(schedule: str) -> None:
    assert learning_rate(LR, schedule, 5, progress=-3.0) == pytest.approx(learning_rate(LR, schedule, 5, 0.0))
    assert learning_rate(LR, schedule, 5, progress=7.0) == pytest.approx(learning_rate(LR, schedule, 5, 1.0))


def test_min_ratio_of_one_keeps_the_rate() -> None:
    assert all(value == pytest.approx(LR) for value in rates("cosine", min_lr_ratio=1.0))


def test_unknown_schedule_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"train.schedule.*constant.*cosine.*linear.*'step'"):
        learning_rate(LR, "step", 0, 0.0)
