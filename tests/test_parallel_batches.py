"""Tests for seq2seq.inference.parallel_batches: batches decoded side by side on the CPU."""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Iterator

import pytest
import torch

import seq2seq.inference.translator as translator_module
from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import encode_sources
from seq2seq.inference.parallel_batches import CPU_PARALLEL_BATCHES, default_parallel_batches, run_batches
from seq2seq.inference.translator import DecodeBatching
from seq2seq.models import Seq2Seq
from seq2seq.training.translation_task import translate_data
from tests.test_translation_task import tiny_model, toy_data


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_workers_share_the_threads_and_the_process_gets_them_back() -> None:
    seen: dict[int, tuple[str, int, bool]] = {}
    weights = torch.randn(64, 64)
    both_started = threading.Barrier(2, timeout=30)

    def decode(batch: int) -> None:
        if batch < 2:  # the first two batches are decoded at the same time, one per worker
            both_started.wait()
        weights @ weights  # a parallel operation: the worker takes its thread count here
        seen[batch] = (threading.current_thread().name, torch.get_num_threads(), bool(torch.backends.mkldnn.enabled))

    mkldnn_before = torch.backends.mkldnn.enabled
    run_batches(range(7), decode, parallel=2)
    assert sorted(seen) == list(range(7))
    workers = {name for name, _, _ in seen.values()}
    assert len(workers) == 2 and threading.current_thread().name not in workers
    assert {threads for _, threads, _ in seen.values()} == {1}  # 2 threads // 2 batches
    assert {mkldnn for _, _, mkldnn in seen.values()} == {False}  # held off for every step
    assert torch.get_num_threads() == 2 and torch.backends.mkldnn.enabled == mkldnn_before


@pytest.mark.usefixtures("two_threads")
def test_one_batch_at_a_time_runs_in_the_calling_thread() -> None:
    names: list[str] = []

    def decode(_: int) -> None:
        names.append(threading.current_thread().name)

    for batches, parallel in ((range(5), 1), (range(1), 2)):
        names.clear()
        run_batches(batches, decode, parallel)
        assert names == [threading.current_thread().name] * len(batches)
    run_batches([], lambda _: pytest.fail("no batch to decode"), 2)
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        run_batches(range(3), lambda _: None, 0)


@pytest.mark.usefixtures("two_threads")
def test_an_error_in_a_batch_stops_the_workers_and_is_raised() -> None:
    decoded: list[int] = []

    def decode(batch: int) -> None:
        if batch == 2:
            raise RuntimeError("batch 2 failed")
        time.sleep(0.01)  # long enough for the failing worker to stop the other
        decoded.append(batch)

    with pytest.raises(RuntimeError, match="batch 2 failed"):
        run_batches(range(100), decode, parallel=2)
    assert len(decoded) < 10  # the other worker stopped after its batch
    assert torch.get_num_threads() == 2


def test_default_is_parallel_on_a_cpu_with_the_threads_for_it(two_threads: None) -> None:
    assert default_parallel_batches(torch.device("cpu")) == CPU_PARALLEL_BATCHES
    assert default_parallel_batches(torch.device("cuda")) == 1
    torch.set_num_threads(1)
    assert default_parallel_batches(torch.device("cpu")) == 1
    assert DecodeBatching(parallel_batches=3).parallel_on(torch.device("cpu")) == 3
    assert DecodeBatching().parallel_on(torch.device("cpu")) == 1
    with pytest.raises(ValueError, match="parallel_batches must be >= 0"):
        DecodeBatching(parallel_batches=-1)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize(
    "decode",
    [DecodeConfig(method="greedy", max_length=12), DecodeConfig(method="beam", beam_size=3, n_best=2, max_length=12)],
)
def test_translations_in_parallel_batches_are_those_of_one_batch_at_a_time(decode: DecodeConfig) -> None:
    data, source, target = toy_data(40, seed=5)
    model = typing.cast(Seq2Seq, tiny_model(source, target))
    lines = [*data.source_lines[:20], "", *data.source_lines[20:]]
    inputs = encode_sources(lines, source)
    alone = translate_data(model, inputs, target, decode, DecodeBatching(batch_sentences=4, parallel_batches=1))
    side_by_side = translate_data(model, inputs, target, decode, DecodeBatching(batch_sentences=4, parallel_batches=2))
    assert [[h.token_ids for h in found] for found in side_by_side] == [[h.token_ids for h in found] for found in alone]
    scores = [h.score for found in side_by_side for h in found]
    assert scores == pytest.approx([h.score for found in alone for h in found], abs=1e-4)
    assert side_by_side[20][0].text == ""


@pytest.mark.usefixtures("two_threads")
def test_translate_data_hands_its_batches_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    data, source, target = toy_data(12, seed=6)
    model = typing.cast(Seq2Seq, tiny_model(source, target))
    decoding_threads: set[str] = set()
    search = translator_module.generate
    both_decoding = threading.Barrier(2, timeout=30)  # so that one worker cannot take every batch

    def recorded(*args: object, **kwargs: object) -> object:
        name = threading.current_thread().name
        first_in_thread = name not in decoding_threads
        decoding_threads.add(name)
        if parallel == 2 and first_in_thread:
            both_decoding.wait()
        return search(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(translator_module, "generate", recorded)
    greedy = DecodeConfig(method="greedy", max_length=12)
    for parallel, expected_threads in ((2, 2), (1, 1)):
        decoding_threads.clear()
        translate_data(model, data, target, greedy, DecodeBatching(batch_sentences=2, parallel_batches=parallel))
        assert len(decoding_threads) == expected_threads
        assert (threading.current_thread().name in decoding_threads) == (parallel == 1)


def test_batching_says_how_many_batches_run_at_once(two_threads: None) -> None:
    cpu = torch.device("cpu")
    assert DecodeBatching(batch_tokens=5000).describe(cpu) == "batches of 5,000 source tokens, 2 at once"
    assert DecodeBatching(64, parallel_batches=1).describe(cpu) == "batches of 64 sentences, 1 at once"
