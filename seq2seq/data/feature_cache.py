"""A disk cache of frozen image-encoder features: computed once, stored as float16, read back for training.

Layout of a cache directory::

    index.json                {"fingerprint": {...}, "keys": {key: [shard, row]}, "skipped": [key, ...],
                               "shape": [S, C]}
    shard_00000.safetensors   one tensor "features" (n, S, C) float16, n <= shard_size
    shard_00001.safetensors   ...

Keys are the caller's names for images (for example their paths relative to the image root).
A key is either stored or skipped (its image could not be loaded); ``shape`` is null when
nothing was stored.

Fingerprint. The caller describes everything the features depend on in a JSON-serialisable
dict: the backbone and its weights, the image size and transform, the grid size, a digest of
the image list, and so on. :meth:`FeatureCache.open` accepts a cache only when its stored
fingerprint equals the one given (compared after a JSON round trip, so tuples equal lists);
otherwise the caller rebuilds it. Whatever the fingerprint leaves out is not checked: a
change it does not name leaves stale features in use.

Writing is atomic: shards and index go to a temporary sibling directory
(``.<name>.building-*``) that is renamed into place once complete, so a build that fails or is
killed leaves the previous cache, or none, never half of one. One process builds a given cache;
with several training processes, build on one and let the others wait, then open it.

Reading memory-maps the shards (``safetensors.safe_open``), each on first use, so opening a
cache reads only the index, and every data-loading worker maps the files itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
TENSOR_NAME = "features"

# keys -> (features (b', S, C) of the keys that loaded, in order; the keys that had to be skipped)
ComputeFeatures = Callable[[Sequence[str]], tuple[Tensor, list[str]]]


def shard_file(shard: int) -> str:
    return f"shard_{shard:05d}.safetensors"


class FeatureCache:
    """Read access to a built cache: ``cache[key]`` (S, C) float16, ``cache.get_batch(keys)`` (B, S, C) float32."""

    def __init__(self, directory: Path, index: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.fingerprint: dict[str, Any] = index["fingerprint"]
        self.locations: dict[str, tuple[int, int]] = {key: (shard, row) for key, (shard, row) in index["keys"].items()}
        self.skipped_in_order: list[str] = list(index["skipped"])
        self.skipped_keys: set[str] = set(self.skipped_in_order)
        self.shape: tuple[int, int] | None = tuple(index["shape"]) if index["shape"] else None  # (S, C)
        self.handles: dict[int, Any] = {}  # shard -> its open safetensors file, opened on first use

    # ---- building and opening -----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        directory: Path,
        keys: Sequence[str],
        compute: ComputeFeatures,
        fingerprint: dict[str, Any],
        batch_size: int = 64,
        shard_size: int = 4096,
        progress: bool = True,
    ) -> FeatureCache:
        """Compute the features of ``keys`` (``batch_size`` at a time) and store them in ``directory``,
        replacing whatever cache is there once the new one is complete."""
        directory = Path(directory)
        if batch_size < 1 or shard_size < 1:
            raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
        fingerprint = json_round_trip(fingerprint)
        keys = list(dict.fromkeys(keys))  # a key listed twice is stored once
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.building-", dir=directory.parent))
        try:
            shard_size = min(shard_size, max(1, len(keys)))  # no larger a buffer than the cache needs
            index = write_shards(staging, keys, compute, batch_size, shard_size, f"features for {directory}", progress)
            index = {"fingerprint": fingerprint, **index}
            (staging / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
            replace_directory(staging, directory)
        except BaseException:  # also on KeyboardInterrupt: no half-built cache stays behind
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("feature cache %s: %d images stored, %d skipped", directory, len(index["keys"]), len(index["skipped"]))
        return cls(directory, index)

    @classmethod
    def open(cls, directory: Path, fingerprint: dict[str, Any]) -> FeatureCache | None:
        """The cache in ``directory``, or None (logged at INFO with the reason) when there is none,
        it is damaged, or it was built for another fingerprint."""
        directory = Path(directory)
        index_path = directory / INDEX_FILE
        if not index_path.is_file():
            log.info("no feature cache in %s yet", directory)
            return None
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            cache = cls(directory, index)
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.info("feature cache index %s is damaged (%s); it will be rebuilt", index_path, error)
            return None
        wanted = json_round_trip(fingerprint)
        if cache.fingerprint != wanted:
            changes = fingerprint_changes(cache.fingerprint, wanted)
            log.info("feature cache %s was built for other settings (%s); it will be rebuilt", directory, changes)
            return None
        missing = sorted(name for name in cache.shard_files() if not (directory / name).is_file())
        if missing:
            log.info("feature cache %s lacks %s; it will be rebuilt", directory, ", ".join(missing))
            return None
        return cache

    @classmethod
    def open_or_build(
        cls,
        directory: Path,
        keys: Sequence[str],
        compute: ComputeFeatures,
        fingerprint: dict[str, Any],
        batch_size: int = 64,
        shard_size: int = 4096,
        progress: bool = True,
    ) -> FeatureCache:
        """The cache in ``directory`` if it matches ``fingerprint`` and covers every key (stored or
        skipped); otherwise a new one built from ``keys``. Pass every key that will be read."""
        cache = cls.open(directory, fingerprint)
        if cache is not None:
            missing = [key for key in keys if key not in cache and key not in cache.skipped_keys]
            if not missing:
                return cache
            log.info(
                "feature cache %s lacks %d of the %d keys (e.g. %r); it will be rebuilt",
                directory,
                len(missing),
                len(keys),
                missing[0],
            )
        return cls.build(directory, keys, compute, fingerprint, batch_size, shard_size, progress)

    # ---- reading ------------------------------------------------------------------------------

    @property
    def skipped(self) -> list[str]:
        """The keys whose images could not be loaded when the cache was built, in build order."""
        return list(self.skipped_in_order)

    def __contains__(self, key: object) -> bool:
        return key in self.locations

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, key: str) -> Tensor:
        """The features of one key: (S, C) float16."""
        location = self.locations.get(key)
        if location is None:
            raise KeyError(self.absence(key))
        shard, row = location
        return self.handle(shard).get_slice(TENSOR_NAME)[row]  # (S, C)

    def get_batch(self, keys: Sequence[str]) -> Tensor:
        """The features of ``keys`` in their order: (B, S, C) float32."""
        return torch.stack([self[key] for key in keys]).float()

    def handle(self, shard: int) -> Any:
        """The shard's safetensors file, memory-mapped on first use."""
        if shard not in self.handles:
            self.handles[shard] = safe_open(str(self.directory / shard_file(shard)), framework="pt")
        return self.handles[shard]

    def shard_files(self) -> set[str]:
        return {shard_file(shard) for shard, _ in self.locations.values()}

    def absence(self, key: str) -> str:
        """Why ``key`` cannot be read, and what to do about it."""
        if key in self.skipped_keys:
            return (
                f"{key!r} was skipped when the feature cache {self.directory} was built (its image could not "
                "be loaded); leave it out of the data set"
            )
        return (
            f"{key!r} is not in the feature cache {self.directory}; build the cache with every key that will "
            "be read (FeatureCache.open_or_build rebuilds it when keys are missing)"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Open files do not travel to data-loading workers; each opens its own."""
        return {**self.__dict__, "handles": {}}


# ---- writing ----------------------------------------------------------------------------------


class ShardWriter:
    """Gathers float16 feature rows in a buffer of ``shard_size`` rows; each full buffer becomes a shard."""

    def __init__(self, directory: Path, shard_size: int) -> None:
        self.directory = directory
        self.shard_size = shard_size
        self.buffer: Tensor | None = None  # (shard_size, S, C) float16, allocated with the first rows
        self.filled = 0  # rows of the buffer in use
        self.shards = 0  # shards written
        self.locations: dict[str, list[int]] = {}  # key -> [shard, row]

    def add(self, keys: Sequence[str], features: Tensor) -> None:
        """Append the rows ``features`` (b, S, C) float16 of ``keys``."""
        if self.buffer is None:
            self.buffer = features.new_empty((self.shard_size, *features.shape[1:]))
        start = 0
        while start < len(keys):
            take = min(len(keys) - start, self.shard_size - self.filled)
            self.buffer[self.filled : self.filled + take] = features[start : start + take]
            for row, key in enumerate(keys[start : start + take], start=self.filled):
                self.locations[key] = [self.shards, row]
            self.filled += take
            start += take
            if self.filled == self.shard_size:
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows, if any, as the next shard."""
        if self.buffer is not None and self.filled:
            save_file({TENSOR_NAME: self.buffer[: self.filled]}, str(self.directory / shard_file(self.shards)))
            self.shards += 1
            self.filled = 0


def write_shards(
    directory: Path,
    keys: list[str],
    compute: ComputeFeatures,
    batch_size: int,
    shard_size: int,
    label: str,
    progress: bool,
) -> dict[str, Any]:
    """Compute and write every shard into ``directory``; the index entries (keys, skipped, shape).
    ``label`` names the work on the progress bar."""
    writer = ShardWriter(directory, shard_size)
    skipped: list[str] = []
    shape: tuple[int, int] | None = None  # (S, C)
    with tqdm(total=len(keys), desc=label, unit="image", disable=not progress) as bar:
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            features, batch_skipped = compute(batch)  # (b', S, C)
            loaded = check_computed(batch, features, batch_skipped, shape)
            if loaded:
                shape = (features.shape[1], features.shape[2])
                writer.add(loaded, to_float16(features, loaded))
            skipped.extend(batch_skipped)
            bar.update(len(batch))
    writer.flush()
    return {"keys": writer.locations, "skipped": skipped, "shape": list(shape) if shape else None}


def check_computed(
    batch: list[str], features: Tensor, skipped: Sequence[str], shape: tuple[int, int] | None
) -> list[str]:
    """The keys of ``batch`` that loaded, after checking that ``compute`` kept its contract."""
    strangers = set(skipped) - set(batch)
    if strangers:
        raise ValueError(f"compute skipped keys that were not in its batch: {sorted(strangers)[:5]}")
    skipped_set = set(skipped)
    loaded = [key for key in batch if key not in skipped_set]
    one_row_per_loaded_key = features.dim() == 3 and features.shape[0] == len(loaded)
    if not one_row_per_loaded_key and (loaded or features.numel()):  # an empty batch may come back any shape
        raise ValueError(
            f"compute returned features of shape {tuple(features.shape)} for a batch of {len(batch)} keys with "
            f"{len(skipped_set)} skipped; it must return (b, S, C), one row per key it did not skip, in order"
        )
    if loaded and shape is not None and tuple(features.shape[1:]) != shape:
        raise ValueError(f"compute returned rows of shape {tuple(features.shape[1:])} after rows of shape {shape}")
    return loaded


def to_float16(features: Tensor, keys: list[str]) -> Tensor:
    """``features`` (b, S, C) as float16 on the CPU; values float16 cannot hold are refused."""
    half = features.detach().to("cpu", torch.float16)
    if not torch.isfinite(half).all():
        raise ValueError(
            f"features of some of {keys[:3]}... are NaN or beyond float16's range (+-65504); "
            "check the encoder, or scale its output before caching"
        )
    return half


def replace_directory(new: Path, directory: Path) -> None:
    """Put the complete directory ``new`` at ``directory``, removing what was there."""
    if not directory.exists():
        new.rename(directory)
        return
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old)


def json_round_trip(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint as it reads back from JSON (tuples become lists); refuses what JSON cannot hold."""
    try:
        return json.loads(json.dumps(fingerprint, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise ValueError(f"the feature-cache fingerprint must be a JSON-serialisable dict: {error}") from None


def fingerprint_changes(stored: Any, wanted: dict[str, Any]) -> str:
    """E.g. "image_size: 224 -> 256": the fields of the stored fingerprint that differ from the wanted one."""
    if not isinstance(stored, dict):
        return f"stored fingerprint {stored!r} is not a dict"
    names = sorted(set(stored) | set(wanted))
    changed = [name for name in names if stored.get(name) != wanted.get(name)]
    return ", ".join(f"{name}: {stored.get(name)!r} -> {wanted.get(name)!r}" for name in changed)
