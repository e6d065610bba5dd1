"""Training on prepared parallel data (``data.prepared``): the folder checked against the config,
its shards read lazily as memory maps, and length-bucketed batches from a bounded pool.

Batches of an epoch: the shards are taken in an order shuffled by (seed, epoch); each shard's
pairs are shuffled and cut into pools of about ``pool_size``; each pool is sorted by target,
then source length, cut into batches under the token budget (as ``TokenBudgetBatcher`` cuts
them), and its batches are shuffled. Only the shard being read is mapped, and only the rows a
process collates are read from it, so memory does not grow with the corpus. The order is fixed
by (seed, epoch), so that training resumes at any batch, and every process computes the same
plan and takes rows r, r + W, ... of each batch (a batch with fewer rows than processes, which
only a shard smaller than that can give, is left out).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seq2seq.data.parallel import Batch, ParallelDataConfig, TextCodec, check_batching, collate_pairs, cut_batches
from seq2seq.data.prepare_parallel import KIND, PREPARED_SETTINGS, TASK
from seq2seq.data.prepared_format import Manifest, load_array, open_manifest, prepare_command, settings_of
from seq2seq.data.text_files import DataError


@dataclass
class PreparedParallel:
    """A prepared training split: its folder, manifest and codecs."""

    folder: Path
    manifest: Manifest
    source: TextCodec
    target: TextCodec

    def __len__(self) -> int:
        return int(self.manifest.counts["pairs"])

    @property
    def shard_names(self) -> list[str]:
        return [shard["name"] for shard in self.manifest.shards]

    @property
    def shard_starts(self) -> list[int]:
        """The global index of each shard's first pair."""
        sizes = [int(shard["pairs"]) for shard in self.manifest.shards]
        return [sum(sizes[:k]) for k in range(len(sizes))]


def open_prepared_parallel(config: ParallelDataConfig) -> PreparedParallel:
    """The prepared set at ``config.prepared``, once its settings are the config's and its files
    have the sizes its manifest gives (``seq2seq translate prepare --verify`` also checks their content)."""
    folder, manifest = open_manifest(config.prepared, KIND, TASK, settings_of(config, PREPARED_SETTINGS))
    source, target = (TextCodec.from_dict(manifest.codecs[side]) for side in ("source", "target"))
    return PreparedParallel(folder, manifest, source, target)


class MappedShard:
    """One shard's arrays as read-only memory maps; its pairs' ids in vocabulary ids."""

    def __init__(self, folder: Path, name: str, remedy: str) -> None:
        self.source = load_array(folder / f"{name}.source.npy", remedy)  # (N,) ids into the shard's source types
        self.target = load_array(folder / f"{name}.target.npy", remedy)  # (M,)
        self.offsets = load_array(folder / f"{name}.offsets.npy", remedy)  # (n + 1, 2) source, target starts
        self.source_lookup = np.array(load_array(folder / f"{name}.source_lookup.npy", remedy))  # (types,) vocab ids
        self.target_lookup = np.array(load_array(folder / f"{name}.target_lookup.npy", remedy))  # (target types,)
        if (
            self.offsets.ndim != 2
            or self.offsets.shape[1] != 2
            or self.offsets[-1].tolist()
            != [
                len(self.source),
                len(self.target),
            ]
        ):
            raise DataError(f"prepared data file {folder / name}.offsets.npy does not fit its shard's ids. {remedy}")

    def lengths(self) -> np.ndarray:
        """(n, 2) each pair's source and target token counts."""
        return np.diff(self.offsets, axis=0)

    def pair(self, i: int) -> tuple[Tensor, Tensor]:
        """Pair ``i``'s source (S_i,) and target (T_i,) vocabulary ids."""
        (source_start, target_start), (source_end, target_end) = self.offsets[i], self.offsets[i + 1]
        source = self.source_lookup[self.source[source_start:source_end]]
        target = self.target_lookup[self.target[target_start:target_end]]
        return torch.from_numpy(source.astype(np.int64)), torch.from_numpy(target.astype(np.int64))


class ShardedBatcher:
    """Training batches of a prepared split for one process of ``world_size`` (see the module's docstring)."""

    def __init__(
        self,
        data: PreparedParallel,
        batch_tokens: int = 4096,
        batch_sentences: int = 0,
        pool_size: int = 10_000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_batching(batch_tokens, batch_sentences, pool_size, world_size)
        self.data = data
        self.batch_tokens = batch_tokens
        self.batch_sentences = batch_sentences
        self.pool_size = pool_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.remedy = f"Prepare the data again: {prepare_command(TASK, data.folder)}"

    def plan(self, epoch: int = 0) -> Iterator[tuple[MappedShard, int, np.ndarray]]:
        """Every batch of ``epoch`` in order: its shard, that shard's first global index, and the
        batch's pairs (all processes' rows) as indices into the shard."""
        names, starts = self.data.shard_names, self.data.shard_starts
        for number in np.random.default_rng([self.seed, epoch]).permutation(len(names)).tolist():
            shard = MappedShard(self.data.folder, names[number], self.remedy)
            generator = np.random.default_rng([self.seed, epoch, number])
            lengths = shard.lengths()  # (n, 2)
            costs = np.maximum(lengths[:, 0], lengths[:, 1] + 1)  # (n,) padded tokens per row: the longer side
            shuffled = generator.permutation(len(lengths))
            for pool in np.array_split(shuffled, math.ceil(len(lengths) / self.pool_size)):
                order = pool[np.lexsort((lengths[pool, 0], lengths[pool, 1]))]  # by target, then source length
                spans = cut_batches(costs[order].tolist(), self.batch_tokens, self.batch_sentences, self.world_size)
                for k in generator.permutation(len(spans)).tolist():
                    start, end = spans[k]
                    if end - start >= self.world_size:
                        yield shard, starts[number], order[start:end]

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """This process's part of each batch of ``epoch``, from batch ``start`` on (to resume)."""
        for index, (shard, first, pairs) in enumerate(self.plan(epoch)):
            if index < start:
                continue
            rows = pairs[self.rank :: self.world_size].tolist()
            sources, targets = zip(*(shard.pair(i) for i in rows))
            yield collate_pairs(list(sources), list(targets), [first + i for i in rows], index)
