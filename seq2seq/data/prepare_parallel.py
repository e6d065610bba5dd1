"""``seq2seq translate prepare``: tokenise a parallel training corpus once into memory-mappable shards.

The main process reads both training files a chunk of ``shard_pairs`` lines at a time and
hands each chunk to a pool of worker processes (``shard_writer``), which tokenise it with the
run's tokenizers, drop the pairs training would drop (an empty side, more than
``data.max_length`` tokens) and write the shard's ids. At most two chunks per worker are in
flight, so memory stays bounded whatever the corpus size. Once every shard is written, the
vocabularies are built from the shards' token counts (as ``load_parallel_corpus`` builds them
from the kept pairs), each shard gets its lookup table into them, and ``manifest.json`` is
written last.

Resuming: each finished shard leaves ``shard_NNNNN.json``; the same command on the same folder
(same settings, same input files) keeps the shards whose files still match and makes only the
rest. A folder that holds a finished preparation with the same settings is verified and kept.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import shutil
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from io import BufferedReader
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seq2seq.data.parallel import ParallelDataConfig, TextCodec, make_tokenizers, split_files
from seq2seq.data.prepared_format import (
    ID_DTYPE,
    MANIFEST,
    Manifest,
    check_files,
    describe_files,
    save_array_atomically,
    write_json_atomically,
)
from seq2seq.data.shard_writer import ChunkOfPairs, WorkerSettings, shard_name, start_worker, write_parallel_shard
from seq2seq.data.text_files import DataError
from seq2seq.text import Tokenizer, Vocab, tokenizer_from_dict

log = logging.getLogger(__name__)

KIND = "parallel"
PROGRESS = "progress.json"  # the settings, inputs and tokenizers of a preparation under way
#: The data settings that the prepared ids depend on; training refuses a prepared set whose differ.
PREPARED_SETTINGS = (
    "source_lang",
    "target_lang",
    "tokenizer",
    "joint_sentencepiece",
    "sentencepiece_vocab_size",
    "sentencepiece_model_type",
    "sentencepiece_sample_size",
    "source_sentencepiece_model",
    "target_sentencepiece_model",
    "lowercase",
    "min_freq",
    "max_length",
)


def prepared_settings(config: ParallelDataConfig) -> dict[str, Any]:
    return {key: getattr(config, key) for key in PREPARED_SETTINGS}


def prepare_command(folder: Path) -> str:
    """The command that (re)makes ``folder``, for error messages."""
    return f"seq2seq translate prepare --config CONFIG --output {folder}"


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Inputs:
    """The training files and what identifies their content (size and modification time)."""

    source: Path
    target: Path

    def describe(self) -> dict[str, Any]:
        return {
            side: {"path": str(path), "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
            for side, path in (("source", self.source), ("target", self.target))
        }


def prepare_parallel(
    config: ParallelDataConfig, folder: Path, workers: int = 0, shard_pairs: int = 100_000
) -> Manifest:
    """Prepare the training split of ``config`` into ``folder`` (see the module's docstring).

    workers: tokenising processes (0: one per available core); shard_pairs: lines per shard.
    """
    if shard_pairs < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_pairs}")
    workers = workers or available_cores()
    folder.mkdir(parents=True, exist_ok=True)
    inputs = Inputs(*split_files(config, "train"))
    wanted = {"settings": prepared_settings(config), "inputs": inputs.describe(), "shard_pairs": shard_pairs}
    finished = finished_preparation(folder, wanted)
    if finished is not None:
        return finished
    tokenizers = tokenizers_of_progress(folder, wanted) or start_over(config, folder, wanted)
    records = write_shards(folder, inputs, tokenizers, config.max_length, workers, shard_pairs)
    manifest = finish(folder, config, wanted, tokenizers, records)
    (folder / PROGRESS).unlink()
    return manifest


def finished_preparation(folder: Path, wanted: dict[str, Any]) -> Manifest | None:
    """The folder's manifest when it was made with ``wanted`` settings and its files verify."""
    if not (folder / MANIFEST).is_file():
        return None
    manifest = Manifest.read(folder, KIND, prepare_command(folder))
    if {"settings": manifest.settings, "inputs": manifest.inputs, "shard_pairs": manifest.shard_pairs} != wanted:
        log.info("%s was prepared with other settings or input files: preparing it again", folder)
        return None
    manifest.verify(folder, checksums=True, command=prepare_command(folder))
    log.info("%s is already prepared with these settings, and its files verify", folder)
    return manifest


def tokenizers_of_progress(folder: Path, wanted: dict[str, Any]) -> tuple[Tokenizer, Tokenizer] | None:
    """The tokenizers of a preparation under way in ``folder`` with the same settings, if any."""
    path = folder / PROGRESS
    if not path.is_file():
        return None
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
        same = {key: progress[key] for key in wanted} == wanted
        described = progress["tokenizers"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not same:
        return None
    log.info("continuing the preparation under way in %s", folder)
    return tokenizer_from_dict(described[0]), tokenizer_from_dict(described[1])


def start_over(config: ParallelDataConfig, folder: Path, wanted: dict[str, Any]) -> tuple[Tokenizer, Tokenizer]:
    """Clear what an earlier preparation left in ``folder`` and make the tokenizers (training
    SentencePiece into ``folder`` when the config asks for it)."""
    for path in folder.iterdir():
        if path.name.startswith(("shard_", ".shard_", "sentencepiece", MANIFEST, PROGRESS)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    tokenizers = make_tokenizers(config, folder)
    write_json_atomically(folder / PROGRESS, {**wanted, "tokenizers": [t.to_dict() for t in tokenizers]})
    return tokenizers


def write_shards(
    folder: Path,
    inputs: Inputs,
    tokenizers: tuple[Tokenizer, Tokenizer],
    max_length: int,
    workers: int,
    shard_pairs: int,
) -> list[dict[str, Any]]:
    """Every shard's record, making those that are not already done, ``workers`` at a time."""
    settings = WorkerSettings(folder, inputs.source, inputs.target, max_length)
    records: dict[int, dict[str, Any]] = {}
    pending: deque[tuple[int, Future[dict[str, Any]]]] = deque()
    with (
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker,
            initargs=(tokenizers[0].to_dict(), tokenizers[1].to_dict(), settings),
        ) as pool,
        tqdm(desc="prepare", unit="pair", unit_scale=True, dynamic_ncols=True, mininterval=1.0) as bar,
    ):
        for chunk in read_chunks(inputs, shard_pairs):
            done = finished_shard(folder, chunk.index)
            if done is not None:
                records[chunk.index] = done
                bar.update(done["lines"])
                continue
            pending.append((chunk.index, pool.submit(write_parallel_shard, chunk)))
            while len(pending) >= 2 * workers:
                collect(folder, *pending.popleft(), records, bar)
        while pending:
            collect(folder, *pending.popleft(), records, bar)
    return [records[index] for index in sorted(records)]


def collect(
    folder: Path, index: int, future: Future[dict[str, Any]], records: dict[int, dict[str, Any]], bar: tqdm
) -> None:
    """Wait for shard ``index`` and mark it done with its record."""
    record = future.result()
    write_json_atomically(folder / f"{shard_name(index)}.json", record)
    records[index] = record
    bar.update(record["lines"])


def finished_shard(folder: Path, index: int) -> dict[str, Any] | None:
    """The record of shard ``index`` when an earlier run finished it and its files still match."""
    path = folder / f"{shard_name(index)}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        check_files(folder, record["files"], checksums=True, remedy="")
    except (json.JSONDecodeError, KeyError, TypeError, DataError):
        return None
    return record


def read_chunks(inputs: Inputs, shard_pairs: int) -> Iterator[ChunkOfPairs]:
    """Consecutive chunks of ``shard_pairs`` lines of both files; refuses files of different lengths."""
    with open_binary(inputs.source) as sources, open_binary(inputs.target) as targets:
        first_line, index = 1, 0
        while True:
            source_lines = list(islice(sources, shard_pairs))
            target_lines = list(islice(targets, shard_pairs))
            if len(source_lines) != len(target_lines):
                source_count = first_line - 1 + len(source_lines) + sum(1 for _ in sources)
                target_count = first_line - 1 + len(target_lines) + sum(1 for _ in targets)
                raise DataError(
                    f"parallel files differ in length: {inputs.source} has {source_count:,} lines but "
                    f"{inputs.target} has {target_count:,}. Line i of one must translate line i of the other: "
                    "check that both files are the same split of the same release."
                )
            if not source_lines:
                return
            yield ChunkOfPairs(index, first_line, b"".join(source_lines), b"".join(target_lines))
            first_line += len(source_lines)
            index += 1


def open_binary(path: Path) -> gzip.GzipFile | BufferedReader:
    """``path`` for reading bytes, decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def finish(
    folder: Path,
    config: ParallelDataConfig,
    wanted: dict[str, Any],
    tokenizers: tuple[Tokenizer, Tokenizer],
    records: list[dict[str, Any]],
) -> Manifest:
    """Build the vocabularies from the shards' counts, write each shard's lookup tables into them
    and the manifest."""
    counts = {"lines": sum(record["lines"] for record in records)}
    for key in ("pairs", "dropped_empty", "dropped_long"):
        counts[key] = sum(record[key] for record in records)
    if not counts["pairs"]:
        raise DataError(
            f"no training pairs are left in {wanted['inputs']['source']['path']} / "
            f"{wanted['inputs']['target']['path']} after dropping empty and over-long ones "
            f"(data.max_length {config.max_length}): raise data.max_length or check the files"
        )
    codecs = {}
    for side, tokenizer in zip(("source", "target"), tokenizers):
        vocab = Vocab.from_counts(merged_counts(records, side), config.min_freq)
        codecs[side] = TextCodec(tokenizer, vocab).to_dict()
        counts[f"{side}_tokens"] = sum(sum(record[side]["counts"]) for record in records)
        for record in records:
            write_lookup(folder, record, side, vocab)
    shards = [{"name": r["name"], "pairs": r["pairs"], "files": r["files"]} for r in records if r["pairs"]]
    manifest = Manifest(KIND, wanted["settings"], codecs, counts, shards, wanted["inputs"], wanted["shard_pairs"])
    manifest.write(folder)
    log.info(
        "prepared %d of %d pairs (%d dropped with an empty side, %d with more than %d tokens) into %d shards in %s",
        counts["pairs"],
        counts["lines"],
        counts["dropped_empty"],
        counts["dropped_long"],
        config.max_length,
        len(shards),
        folder,
    )
    return manifest


def merged_counts(records: list[dict[str, Any]], side: str) -> Counter[str]:
    """How often each token occurs on ``side`` over all shards."""
    total: Counter[str] = Counter()
    for record in records:
        total.update(dict(zip(record[side]["types"], record[side]["counts"])))
    return total


def write_lookup(folder: Path, record: dict[str, Any], side: str, vocab: Vocab) -> None:
    """``<shard>.<side>_lookup.npy``: the vocabulary id of each of the shard's distinct tokens."""
    name = f"{record['name']}.{side}_lookup.npy"
    lookup = np.array([vocab.token_to_id(token) for token in record[side]["types"]], dtype=ID_DTYPE)  # (types,)
    save_array_atomically(folder / name, lookup)
    record["files"].update(describe_files(folder, [name]))
