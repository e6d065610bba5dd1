"""Tests for seq2seq.data.feature_cache: stored features read back as computed, shards, fingerprints,
skipped keys, and builds that fail or are killed leaving no cache behind."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import Tensor

import seq2seq.data.feature_cache as feature_cache_module
from seq2seq.data.feature_cache import FeatureCache

GRID, CHANNELS = 4, 3  # features of one image: (S, C) = (4, 3)
FINGERPRINT = {"backbone": "resnet18", "image_size": 32, "grid": [2, 2]}
KEYS = [f"images/{index:03d}.jpg" for index in range(10)]


def features_of(key: str) -> Tensor:
    """The features a fake encoder gives the image ``key``: (S, C), fixed by the key."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return torch.randn(GRID, CHANNELS, generator=generator) * 10


class FakeEncoder:
    """A ``compute`` callable that records its calls and cannot load the images in ``bad``."""

    def __init__(self, bad: Sequence[str] = ()) -> None:
        self.bad = set(bad)
        self.batches: list[list[str]] = []

    def __call__(self, keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        self.batches.append(list(keys))
        loaded = [key for key in keys if key not in self.bad]
        skipped = [key for key in keys if key in self.bad]
        return torch.stack([features_of(key) for key in loaded]) if loaded else torch.empty(0), skipped


def build(directory: Path, keys: Sequence[str] = KEYS, encoder: FakeEncoder | None = None, **options) -> FeatureCache:
    return FeatureCache.build(directory, keys, encoder or FakeEncoder(), FINGERPRINT, progress=False, **options)


def test_features_read_back_as_computed_to_float16_precision(tmp_path: Path) -> None:
    built = build(tmp_path / "cache", batch_size=3)
    reopened = FeatureCache.open(tmp_path / "cache", FINGERPRINT)
    assert reopened is not None
    for cache in (built, reopened):
        assert len(cache) == len(KEYS) and all(key in cache for key in KEYS)
        for key in KEYS:
            stored = cache[key]
            assert stored.dtype == torch.float16 and stored.shape == (GRID, CHANNELS)
            assert torch.equal(stored, features_of(key).half())
            assert torch.allclose(stored.float(), features_of(key), rtol=1e-3, atol=1e-3)


def test_shards_split_at_shard_size(tmp_path: Path) -> None:
    cache = build(tmp_path / "cache", batch_size=3, shard_size=4)
    shards = sorted(path.name for path in (tmp_path / "cache").glob("*.safetensors"))
    assert shards == ["shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"]
    rows = []
    for name in shards:
        with safe_open(str(tmp_path / "cache" / name), framework="pt") as shard:
            assert list(shard.keys()) == ["features"]
            tensor = shard.get_tensor("features")
            assert tensor.dtype == torch.float16 and tensor.shape[1:] == (GRID, CHANNELS)
            rows.append(tensor.shape[0])
    assert rows == [4, 4, 2]
    assert all(torch.equal(cache[key], features_of(key).half()) for key in KEYS)


def test_index_records_fingerprint_locations_skips_and_shape(tmp_path: Path) -> None:
    build(tmp_path / "cache", encoder=FakeEncoder(bad=[KEYS[1]]), shard_size=5)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["fingerprint"] == FINGERPRINT
    assert index["shape"] == [GRID, CHANNELS]
    assert index["skipped"] == [KEYS[1]]
    assert index["keys"][KEYS[0]] == [0, 0] and index["keys"][KEYS[2]] == [0, 1] and index["keys"][KEYS[9]] == [1, 3]


def test_get_batch_keeps_the_order_asked_for(tmp_path: Path) -> None:
    cache = build(tmp_path / "cache", shard_size=3)
    order = [KEYS[7], KEYS[0], KEYS[4], KEYS[0], KEYS[9]]  # across shards, backwards, repeated
    batch = cache.get_batch(order)
    assert batch.dtype == torch.float32 and batch.shape == (len(order), GRID, CHANNELS)
    assert torch.equal(batch, torch.stack([features_of(key).half().float() for key in order]))


def test_changed_fingerprint_is_refused_and_the_change_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build(tmp_path / "cache")
    assert FeatureCache.open(tmp_path / "cache", {**FINGERPRINT, "grid": (2, 2)}) is not None  # tuple == list
    with caplog.at_level(logging.INFO, logger="seq2seq.data.feature_cache"):
        assert FeatureCache.open(tmp_path / "cache", {**FINGERPRINT, "image_size": 64}) is None
    assert "image_size: 32 -> 64" in caplog.text
    assert FeatureCache.open(tmp_path / "cache", {**FINGERPRINT, "weights": "IMAGENET1K_V1"}) is None


def test_absent_or_damaged_cache_is_not_opened(tmp_path: Path) -> None:
    assert FeatureCache.open(tmp_path / "nothing", FINGERPRINT) is None
    build(tmp_path / "cache", shard_size=4)
    (tmp_path / "cache" / "shard_00001.safetensors").unlink()
    assert FeatureCache.open(tmp_path / "cache", FINGERPRINT) is None
    (tmp_path / "cache" / "index.json").write_text("{not json")
    assert FeatureCache.open(tmp_path / "cache", FINGERPRINT) is None


def test_skipped_keys_are_recorded_and_explained(tmp_path: Path) -> None:
    bad = [KEYS[2], KEYS[5], KEYS[6]]
    build(tmp_path / "cache", encoder=FakeEncoder(bad=bad), batch_size=4, shard_size=3)
    cache = FeatureCache.open(tmp_path / "cache", FINGERPRINT)
    assert cache is not None
    assert cache.skipped == bad
    assert len(cache) == len(KEYS) - len(bad)
    assert all(key not in cache for key in bad)
    good = [key for key in KEYS if key not in bad]
    assert torch.equal(cache.get_batch(good), torch.stack([features_of(key).half().float() for key in good]))
    with pytest.raises(KeyError, match="skipped"):
        cache[KEYS[5]]
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache["images/never_listed.jpg"]


def test_a_build_that_fails_midway_leaves_no_cache(tmp_path: Path) -> None:
    def failing(keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        if KEYS[6] in keys:
            raise RuntimeError("out of memory")
        return torch.stack([features_of(key) for key in keys]), []

    with pytest.raises(RuntimeError, match="out of memory"):
        FeatureCache.build(tmp_path / "cache", KEYS, failing, FINGERPRINT, batch_size=2, shard_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the cache nor its temporary directory
    assert FeatureCache.open(tmp_path / "cache", FINGERPRINT) is None


def test_a_failed_rebuild_keeps_the_previous_cache(tmp_path: Path) -> None:
    build(tmp_path / "cache")

    def failing(keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FeatureCache.build(tmp_path / "cache", KEYS, failing, {"other": 1}, progress=False)
    cache = FeatureCache.open(tmp_path / "cache", FINGERPRINT)
    assert cache is not None and torch.equal(cache[KEYS[3]], features_of(KEYS[3]).half())
    assert [path.name for path in tmp_path.iterdir()] == ["cache"]


def test_a_killed_build_leaves_nothing_that_opens(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, torch
        from seq2seq.data.feature_cache import FeatureCache

        def compute(keys):
            if "k6" in keys:
                os._exit(9)  # killed: no exception handler, no clean-up runs
            return torch.ones(len(keys), 4, 3), []

        FeatureCache.build({str(tmp_path / "cache")!r}, [f"k{{i}}" for i in range(10)], compute, {{"a": 1}},
                           batch_size=2, shard_size=2, progress=False)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    assert not (tmp_path / "cache").exists()
    assert FeatureCache.open(tmp_path / "cache", {"a": 1}) is None


def test_open_or_build_reuses_a_matching_cache_and_rebuilds_for_new_keys(tmp_path: Path) -> None:
    encoder = FakeEncoder(bad=[KEYS[0]])
    first = FeatureCache.open_or_build(tmp_path / "cache", KEYS, encoder, FINGERPRINT, progress=False)
    calls = len(encoder.batches)
    assert calls > 0 and len(first) == len(KEYS) - 1

    again = FeatureCache.open_or_build(tmp_path / "cache", KEYS[:5], encoder, FINGERPRINT, progress=False)
    assert len(encoder.batches) == calls  # a skipped key counts as covered: nothing recomputed
    assert torch.equal(again[KEYS[3]], first[KEYS[3]])

    more = [*KEYS, "images/new.jpg"]
    grown = FeatureCache.open_or_build(tmp_path / "cache", more, encoder, FINGERPRINT, progress=False)
    assert len(encoder.batches) > calls
    assert "images/new.jpg" in grown and torch.equal(grown["images/new.jpg"], features_of("images/new.jpg").half())

    other = {**FINGERPRINT, "image_size": 64}
    FeatureCache.open_or_build(tmp_path / "cache", more, encoder, other, progress=False)
    assert FeatureCache.open(tmp_path / "cache", other) is not None
    assert FeatureCache.open(tmp_path / "cache", FINGERPRINT) is None


def test_opening_maps_shards_only_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(tmp_path / "cache", shard_size=3)
    opened: list[str] = []
    real_safe_open = feature_cache_module.safe_open

    def recording_safe_open(path: str, framework: str):
        opened.append(Path(path).name)
        return real_safe_open(path, framework=framework)

    monkeypatch.setattr(feature_cache_module, "safe_open", recording_safe_open)
    cache = FeatureCache.open(tmp_path / "cache", FINGERPRINT)
    assert cache is not None and opened == []
    cache.get_batch([KEYS[4], KEYS[5], KEYS[3]])  # all in the second shard
    assert opened == ["shard_00001.safetensors"]


def test_cache_pickles_for_data_loading_workers(tmp_path: Path) -> None:
    cache = build(tmp_path / "cache", shard_size=4)
    cache[KEYS[0]]  # opens a shard
    copy = pickle.loads(pickle.dumps(cache))
    assert torch.equal(copy.get_batch(KEYS), cache.get_batch(KEYS))


def test_compute_that_breaks_its_contract_is_refused(tmp_path: Path) -> None:
    def too_few_rows(keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        return torch.zeros(len(keys) - 1, GRID, CHANNELS), []

    def foreign_skips(keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        return torch.zeros(len(keys), GRID, CHANNELS), ["somewhere/else.jpg"]

    for compute, message in [(too_few_rows, "one row per key"), (foreign_skips, "not in its batch")]:
        with pytest.raises(ValueError, match=message):
            FeatureCache.build(tmp_path / "cache", KEYS, compute, FINGERPRINT, progress=False)
    assert not (tmp_path / "cache").exists()


def test_features_beyond_float16_are_refused(tmp_path: Path) -> None:
    def huge(keys: Sequence[str]) -> tuple[Tensor, list[str]]:
        return torch.full((len(keys), GRID, CHANNELS), 1e6), []

    with pytest.raises(ValueError, match="float16"):
        FeatureCache.build(tmp_path / "cache", KEYS, huge, FINGERPRINT, progress=False)


def test_fingerprint_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON-serialisable"):
        FeatureCache.build(tmp_path / "cache", KEYS, FakeEncoder(), {"path": tmp_path}, progress=False)
