"""The timing rounds of the decoding-modes benchmark: order and choice of the counted run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from benchmarks.decoding_modes import ModeRun, ensemble_speed_ratio, in_rounds


def recorded_job(name: str, seconds: list[float], order: list[str]) -> Callable[[], ModeRun]:
    """A job that logs its name and takes the next of ``seconds`` each time it runs."""
    times = iter(seconds)

    def run() -> ModeRun:
        order.append(name)
        return ModeRun(name, "beam5", next(times), sentences=100, bleu=30.0)

    return run


def test_rounds_alternate_their_order_and_keep_each_jobs_fastest_run() -> None:
    order: list[str] = []
    jobs = [
        recorded_job("a", [4.0, 2.0], order),
        recorded_job("b", [1.0, 3.0], order),
        recorded_job("c", [5.0, 5.0], order),
    ]
    runs = in_rounds(jobs, rounds=2)
    assert order == ["a", "b", "c", "c", "b", "a"]
    assert [(run.mode, run.seconds) for run in runs] == [("a", 2.0), ("b", 1.0), ("c", 5.0)]


def test_the_ensembles_speed_is_set_against_its_members_mean_speed() -> None:
    members = [ModeRun(f"member {i}", "beam5", seconds, 100, 30.0) for i, seconds in enumerate((1.0, 2.0), 1)]
    ensemble = ModeRun("ensemble of 2", "beam5", 4.0, 100, 31.0)
    # members 100 and 50 sentences/s (mean 75), the ensemble 25
    assert ensemble_speed_ratio([*members, ensemble]) == pytest.approx(25 / 75)
