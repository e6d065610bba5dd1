"""Tests for seq2seq.data.ragged: RaggedIds reads like a list of 1-D id tensors."""

from __future__ import annotations

import pytest
import torch

from seq2seq.data.ragged import RaggedIds

SEQUENCES = [[5, 6, 7], [], [8], [9, 10, 11, 12], []]


@pytest.fixture
def ragged() -> RaggedIds:
    return RaggedIds.from_sequences(SEQUENCES)


def test_indexing_matches_the_lists(ragged: RaggedIds) -> None:
    assert len(ragged) == len(SEQUENCES)
    for i, ids in enumerate(SEQUENCES):
        assert ragged[i].tolist() == ids
        assert ragged[i - len(SEQUENCES)].tolist() == ids  # negative indices count from the end
        assert ragged[i].dtype == torch.long and ragged[i].dim() == 1


def test_items_are_views_of_one_flat_tensor(ragged: RaggedIds) -> None:
    assert ragged.ids.tolist() == [i for ids in SEQUENCES for i in ids]
    assert ragged[3].data_ptr() == ragged.ids.data_ptr() + 4 * ragged.ids.element_size()  # after 3 + 0 + 1 ids


@pytest.mark.parametrize("index", [5, -6, 100])
def test_index_out_of_range_says_how_many(ragged: RaggedIds, index: int) -> None:
    with pytest.raises(IndexError, match="5 sequences"):
        ragged[index]


def test_lengths_and_iteration(ragged: RaggedIds) -> None:
    assert ragged.lengths.tolist() == [len(ids) for ids in SEQUENCES]
    assert [ids.tolist() for ids in ragged] == SEQUENCES


def test_empty_collection() -> None:
    empty = RaggedIds.from_sequences([])
    assert len(empty) == 0 and list(empty) == [] and empty.lengths.tolist() == []
    only_empty = RaggedIds.from_sequences([[], []])
    assert [ids.tolist() for ids in only_empty] == [[], []] and len(only_empty.ids) == 0


def test_tensors_and_lists_pack_alike() -> None:
    from_tensors = RaggedIds.from_sequences(torch.tensor(ids, dtype=torch.long) for ids in SEQUENCES)
    from_lists = RaggedIds.from_sequences(iter(SEQUENCES))  # any iterable, read once
    assert torch.equal(from_tensors.ids, from_lists.ids) and torch.equal(from_tensors.offsets, from_lists.offsets)


@pytest.mark.parametrize(("start", "stop"), [(0, 5), (1, 4), (2, 2), (3, None), (None, -2), (4, 1)])
def test_slices_are_ragged_ids_like_list_slices(ragged: RaggedIds, start: int | None, stop: int | None) -> None:
    part = ragged[start:stop]
    assert isinstance(part, RaggedIds)
    assert [ids.tolist() for ids in part] == SEQUENCES[start:stop]
    assert part.ids.tolist() == [i for ids in SEQUENCES[start:stop] for i in ids]


def test_slices_with_a_step_are_refused(ragged: RaggedIds) -> None:
    with pytest.raises(ValueError, match="take"):
        ragged[::2]


@pytest.mark.parametrize("indices", [[3, 0], [1, 4], [], [2, 2, 0, 3]])
def test_take_picks_sequences_in_the_given_order(ragged: RaggedIds, indices: list[int]) -> None:
    picked = ragged.take(indices)
    assert [ids.tolist() for ids in picked] == [SEQUENCES[i] for i in indices]
    assert picked.lengths.tolist() == [len(SEQUENCES[i]) for i in indices]


@pytest.mark.parametrize(
    "offsets", [[1, 3], [0, 2], [0, 3, 2, 3], []], ids=["not from 0", "not to the end", "falling", "empty"]
)
def test_inconsistent_offsets_are_refused(offsets: list[int]) -> None:
    with pytest.raises(ValueError, match="offsets"):
        RaggedIds(torch.arange(3), torch.tensor(offsets, dtype=torch.long))
