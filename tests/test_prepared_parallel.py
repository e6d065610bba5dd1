"""Batches of prepared parallel data: every pair once per epoch, the budget, a fixed order, resuming
mid-epoch, processes sharing batches; and a prepared run killed with SIGKILL resuming to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config import load_config
from seq2seq.data import prepare_parallel as preparing
from seq2seq.data.parallel import Batch, ParallelDataConfig
from seq2seq.data.prepared_parallel import PreparedParallel, ShardedBatcher, open_prepared_parallel
from seq2seq.run_configs import TranslationConfig
from tests.conftest import REPO_ROOT, overrides
from tests.test_prepare_parallel import write_awkward_corpus
from tests.test_textgen_recipe import latest_weights, wait_for_checkpoint
from tests.test_translate_recipe import TINY_TRANSLATE, write_corpus


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedParallel:
    folder = tmp_path_factory.mktemp("prepared")
    config = write_awkward_corpus(folder / "text")
    config.max_length = 0
    preparing.prepare_parallel(config, folder / "shards", workers=1, shard_pairs=60)
    return open_prepared_parallel(ParallelDataConfig(**{**vars(config), "prepared": str(folder / "shards")}))


def rows(batch: Batch) -> list[int]:
    return batch.indices.tolist()


def test_every_pair_appears_once_per_epoch_within_the_budget(prepared: PreparedParallel) -> None:
    batcher = ShardedBatcher(prepared, batch_tokens=60, pool_size=25, seed=1)
    batches = list(batcher.batches(epoch=0))
    seen = sorted(i for batch in batches for i in rows(batch))
    assert seen == list(range(len(prepared)))
    for batch in batches:
        assert batch.target_out is not None
        widest = max(batch.source.shape[1], batch.target_out.shape[1])
        assert widest * len(rows(batch)) <= 60 or len(rows(batch)) == 1
    assert [batch.index for batch in batches] == list(range(len(batches)))


def test_pools_keep_padding_small(prepared: PreparedParallel) -> None:
    bucketed = list(ShardedBatcher(prepared, batch_sentences=8, pool_size=60, seed=1).batches())
    unsorted = list(ShardedBatcher(prepared, batch_sentences=8, pool_size=8, seed=1).batches())

    def padding(batches: list[Batch]) -> int:
        return sum(int((batch.target_out == 0).sum()) for batch in batches if batch.target_out is not None)

    assert padding(bucketed) < padding(unsorted) / 2


def test_the_order_is_fixed_by_seed_and_epoch(prepared: PreparedParallel) -> None:
    def order(seed: int, epoch: int) -> list[list[int]]:
        return [rows(batch) for batch in ShardedBatcher(prepared, 60, pool_size=25, seed=seed).batches(epoch)]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)


def test_resuming_mid_epoch_gives_the_rest_of_the_same_batches(prepared: PreparedParallel) -> None:
    batcher = ShardedBatcher(prepared, 60, pool_size=25, seed=3)
    whole = [(batch.index, rows(batch)) for batch in batcher.batches(epoch=2)]
    resumed = [(batch.index, rows(batch)) for batch in batcher.batches(epoch=2, start=7)]
    assert resumed == whole[7:]


def test_processes_share_each_batch(prepared: PreparedParallel) -> None:
    batchers = [ShardedBatcher(prepared, 60, pool_size=25, seed=1, rank=r, world_size=2) for r in range(2)]
    plan = [(first + pairs).tolist() for _, first, pairs in batchers[0].plan()]  # every process's rows
    ranks = [[rows(batch) for batch in batcher.batches()] for batcher in batchers]
    assert len(ranks[0]) == len(ranks[1]) == len(plan)
    for whole, first, second in zip(plan, *ranks):
        assert first == whole[0::2] and second == whole[1::2] and second
    assert sorted(i for batch in plan for i in batch) == list(range(len(prepared)))


def test_a_killed_run_on_prepared_data_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """Killed with SIGKILL after a checkpoint and run again, training on prepared shards ends where
    the uninterrupted run did."""
    data = write_corpus(tmp_path / "text")
    folder = tmp_path / "prepared"
    config = load_config(TranslationConfig, "multi30k_de_en", [*TINY_TRANSLATE, *data])
    preparing.prepare_parallel(config.data, folder, workers=1, shard_pairs=70)
    common = ["--config", "multi30k_de_en", *overrides(*TINY_TRANSLATE, *data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "seq2seq", "translate"]
    settings = overrides("train.max_steps=45", "data.pool_size=40", f"data.prepared={folder}", "validation.bleu=false")
    settings += overrides("train.best_metric=val_loss", "train.best_mode=min")

    def train(run_dir: Path) -> list[str]:
        return [*command, "train", *common, *settings, "--run-dir", str(run_dir)]

    reference = tmp_path / "reference"
    subprocess.run(train(reference), cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=180)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        train(killed), cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_at = wait_for_checkpoint(killed, min_step=15, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed_at < 45, "the run finished before it could be killed"
    result = subprocess.run(train(killed), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "prepared training pairs" in result.stderr
    expected, actual = latest_weights(reference), latest_weights(killed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
