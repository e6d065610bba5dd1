"""Ragged id sequences: many short 1-D id tensors stored as one flat tensor and its offsets.

A corpus of tens of thousands of sentences kept as a list of small tensors spends most of
its memory on per-tensor overhead. :class:`RaggedIds` keeps every id in one flat int64
tensor and the sentence boundaries in a second one, yet reads like that list: ``len``,
indexing (a view of the flat tensor), slicing and iteration.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from typing import overload

import torch
from torch import Tensor


class RaggedIds:
    """Sequences of token ids of varying length, sequence i being ``ids[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, ids: Tensor, offsets: Tensor) -> None:
        """``ids`` (N,) every sequence's ids back to back; ``offsets`` (n + 1,) where each one starts,
        from 0 up to N, non-decreasing."""
        if ids.dim() != 1 or offsets.dim() != 1 or len(offsets) == 0:
            raise ValueError(
                f"ragged ids need a 1-D ids tensor and a non-empty 1-D offsets tensor, got shapes "
                f"{tuple(ids.shape)} and {tuple(offsets.shape)}"
            )
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(ids) or bool((offsets.diff() < 0).any()):
            raise ValueError(
                f"offsets must rise from 0 to the number of ids ({len(ids)}) without going down; "
                f"got {offsets[:3].tolist()} ... {offsets[-3:].tolist()}"
            )
        self.ids = ids.long()  # (N,)
        self.offsets = offsets.long()  # (n + 1,)

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int] | Tensor]) -> RaggedIds:
        """Pack id sequences (lists of ints or 1-D tensors), in order; empty ones are kept."""
        flat, lengths = array("q"), array("q")
        for sequence in sequences:
            values = sequence.tolist() if isinstance(sequence, Tensor) else sequence
            flat.extend(values)
            lengths.append(len(values))
        offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)  # (n + 1,)
        if lengths:
            torch.cumsum(_tensor(lengths), 0, out=offsets[1:])
        return cls(_tensor(flat), offsets)

    @property
    def lengths(self) -> Tensor:
        """(n,) how many ids each sequence holds."""
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> RaggedIds: ...

    def __getitem__(self, index: int | slice) -> Tensor | RaggedIds:
        """Sequence ``index`` as a view (S_i,) of the flat ids, or a slice as RaggedIds."""
        if isinstance(index, slice):
            return self._slice(index)
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"sequence index {index} is out of range for {count} sequences")
        start, end = self.offsets[index % count : index % count + 2].tolist()
        return self.ids[start:end]

    def __iter__(self) -> Iterator[Tensor]:
        bounds = self.offsets.tolist()
        for start, end in pairwise(bounds):
            yield self.ids[start:end]

    def __repr__(self) -> str:
        return f"RaggedIds({len(self)} sequences, {len(self.ids)} ids)"

    def take(self, indices: Sequence[int] | Tensor) -> RaggedIds:
        """The sequences ``indices``, in that order, copied into a new RaggedIds."""
        index = torch.as_tensor(indices, dtype=torch.long)  # (m,)
        lengths = self.lengths[index]  # (m,)
        offsets = torch.zeros(len(index) + 1, dtype=torch.long)  # (m + 1,)
        torch.cumsum(lengths, 0, out=offsets[1:])
        # Id j of the result sits at self.offsets[index[k]] + (j - offsets[k]) for its sequence k.
        shift = torch.repeat_interleave(offsets[:-1] - self.offsets[index], lengths)  # (M,)
        positions = torch.arange(int(offsets[-1])) - shift  # (M,)
        return RaggedIds(self.ids[positions], offsets)

    def _slice(self, index: slice) -> RaggedIds:
        """Consecutive sequences, their ids a view of this flat tensor."""
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError(f"ragged ids slice with step 1 only (got step {step}); use take() to pick sequences")
        stop = max(start, stop)
        offsets = self.offsets[start : stop + 1]  # (m + 1,)
        first, last = int(offsets[0]), int(offsets[-1])
        return RaggedIds(self.ids[first:last], offsets - first)


def _tensor(values: array) -> Tensor:
    """An int64 tensor copy of an ``array("q")``."""
    if not values:
        return torch.zeros(0, dtype=torch.long)
    return torch.frombuffer(values, dtype=torch.long).clone()
