"""Tests for seq2seq.data.lm_stream: rows, windows, epoch offsets, resuming, ranks, evaluation."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from seq2seq.data.lm_stream import LMStream, Window, cut_rows, split_point

BATCH, WINDOW = 4, 5


def arange_stream(length: int) -> torch.Tensor:
    """A stream whose token at position i is i, so positions can be read off the values."""
    return torch.arange(length)


def all_windows(stream: LMStream, epoch: int = 0, start: int = 0) -> list[Window]:
    return list(stream.windows(epoch, start))


# --- split_point and cut_rows -----------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_split_point_leaves_the_last_fraction_for_validation(fraction: float) -> None:
    cut = split_point(1000, fraction)
    assert 0 < cut < 1000
    assert abs((1000 - cut) - 1000 * fraction) <= 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_point_rejects_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="data.validation_fraction"):
        split_point(1000, fraction)


@pytest.mark.parametrize(("length", "rows"), [(21, 4), (23, 4), (10, 1), (100, 7)])
def test_cut_rows_shapes_and_targets_shifted_by_one(length: int, rows: int) -> None:
    inputs, targets = cut_rows(arange_stream(length), rows)
    row_length = (length - 1) // rows
    assert inputs.shape == targets.shape == (rows, row_length)
    assert torch.equal(targets, inputs + 1)
    assert torch.equal(inputs.flatten(), torch.arange(rows * row_length))  # rows are consecutive text


def test_cut_rows_refuses_a_stream_shorter_than_the_rows() -> None:
    with pytest.raises(ValueError, match="too short for 4 rows"):
        cut_rows(arange_stream(4), 4)


# --- training windows -------------------------------------------------------------------------


def test_windows_cover_the_rows_in_order_and_continue_each_other() -> None:
    stream = LMStream(arange_stream(103), BATCH, WINDOW, shift_per_epoch=False)
    windows = all_windows(stream)
    rows, _ = cut_rows(arange_stream(103), BATCH)
    assert [window.index for window in windows] == list(range(len(windows)))
    assert len(windows) == rows.shape[1] // WINDOW
    for window in windows:
        assert window.inputs.shape == window.targets.shape == (BATCH, WINDOW)
        assert torch.equal(window.targets, window.inputs + 1)
    for before, after in pairwise(windows):
        assert torch.equal(after.inputs[:, 0], before.inputs[:, -1] + 1)  # each row goes on where it stopped
    joined = torch.cat([window.inputs for window in windows], dim=1)  # (B, count * T)
    assert torch.equal(joined, rows[:, : joined.shape[1]])


def test_epoch_offsets_are_below_the_window_deterministic_and_vary() -> None:
    window = 16
    stream = LMStream(arange_stream(1000), BATCH, window, seed=3)
    offsets = [stream.offset(epoch) for epoch in range(12)]
    assert all(0 <= offset < window for offset in offsets)
    assert offsets == [LMStream(arange_stream(1000), BATCH, window, seed=3).offset(epoch) for epoch in range(12)]
    assert len(set(offsets)) > 1
    other_seed = [LMStream(arange_stream(1000), BATCH, window, seed=4).offset(epoch) for epoch in range(12)]
    assert other_seed != offsets


def test_epoch_windows_start_at_the_epoch_offset() -> None:
    stream = LMStream(arange_stream(500), BATCH, WINDOW, seed=1)
    for epoch in range(5):
        first = next(stream.windows(epoch))
        assert int(first.inputs[0, 0]) == stream.offset(epoch)


def test_without_shift_every_epoch_starts_at_zero() -> None:
    stream = LMStream(arange_stream(500), BATCH, WINDOW, shift_per_epoch=False)
    assert {stream.offset(epoch) for epoch in range(10)} == {0}


@pytest.mark.parametrize("start", [0, 1, 3, 7])
def test_resuming_from_start_yields_the_tail_of_the_epoch(start: int) -> None:
    stream = LMStream(arange_stream(211), BATCH, WINDOW, seed=5)
    full = all_windows(stream, epoch=2)
    resumed = all_windows(stream, epoch=2, start=start)
    assert len(resumed) == len(full) - start
    for expected, got in zip(full[start:], resumed):
        assert expected.index == got.index
        assert torch.equal(expected.inputs, got.inputs) and torch.equal(expected.targets, got.targets)


def test_two_ranks_split_the_rows_and_together_equal_one_process() -> None:
    tokens = torch.randint(0, 50, (300,), generator=torch.Generator().manual_seed(0))
    single = all_windows(LMStream(tokens, BATCH, WINDOW, seed=2), epoch=1)
    ranks = [all_windows(LMStream(tokens, BATCH, WINDOW, seed=2, rank=r, world_size=2), epoch=1) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, first, second in zip(single, *ranks):
        assert first.inputs.shape == (BATCH // 2, WINDOW)
        assert torch.equal(torch.cat([first.inputs, second.inputs]), whole.inputs)
        assert torch.equal(torch.cat([first.targets, second.targets]), whole.targets)


def test_batch_size_must_divide_among_processes() -> None:
    with pytest.raises(ValueError, match="data.batch_size.*divisible"):
        LMStream(arange_stream(100), 3, WINDOW, world_size=2)


@pytest.mark.parametrize("length", [2, BATCH + 1, BATCH * WINDOW])
@pytest.mark.parametrize("shift", [False, True])
def test_too_short_text_names_the_settings_to_change(length: int, shift: bool) -> None:
    stream = LMStream(arange_stream(length), BATCH, WINDOW, shift_per_epoch=shift)
    with pytest.raises(ValueError, match=rf"{length} tokens.*data.batch_size.*data.window.*Lower them"):
        all_windows(stream)


def test_text_just_long_enough_gives_a_window_in_every_epoch() -> None:
    stream = LMStream(arange_stream(BATCH * WINDOW + 2), BATCH, WINDOW, seed=0)
    for epoch in range(20):
        windows = all_windows(stream, epoch)
        assert len(windows) == 1
        assert windows[0].inputs.shape == (BATCH, WINDOW)


# --- evaluation windows -----------------------------------------------------------------------


@pytest.mark.parametrize(("length", "rows", "window"), [(41, 4, 5), (41, 4, 3), (40, 2, 7), (13, 1, 4)])
def test_evaluation_windows_read_every_token_once_in_order(length: int, rows: int, window: int) -> None:
    stream = LMStream(arange_stream(length), rows, window, seed=9)
    windows = list(stream.evaluation_windows())
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(w.inputs.shape[1] <= window for w in windows)
    assert all(w.inputs.shape[1] == window for w in windows[:-1])
    targets = torch.cat([w.targets for w in windows], dim=1).flatten()  # row by row, in text order
    inputs = torch.cat([w.inputs for w in windows], dim=1).flatten()
    assert torch.equal(targets, inputs + 1)
    assert torch.equal(targets, torch.arange(1, len(targets) + 1))  # each predicted token once, in order
    assert length - 1 - len(targets) < rows  # only a remainder too short for a row is left out
    if (length - 1) % rows == 0:
        assert len(targets) == length - 1


def test_evaluation_ignores_the_epoch_offset() -> None:
    stream = LMStream(arange_stream(61), BATCH, WINDOW, seed=11)
    first = next(stream.evaluation_windows())
    assert int(first.inputs[0, 0]) == 0
