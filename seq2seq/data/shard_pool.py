"""Making the shards of a preparation in worker processes, resumably (what ``prepare`` of every task shares).

The main process reads the text files a chunk of lines at a time and hands each chunk to a pool
of worker processes (``shard_writer``), at most two chunks per worker in flight, so that memory
stays bounded whatever the corpus size; a progress bar counts the lines. Each finished shard
leaves ``shard_NNNNN.json`` (its record). ``progress.json`` holds what a preparation under way
was started with (settings, input files, tokenizers); the same command on the same folder then
keeps the shards whose files still match and makes only the rest.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from io import BufferedReader
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from seq2seq.data.prepared_format import MANIFEST, Manifest, check_files, write_json_atomically
from seq2seq.data.shard_writer import Chunk, WorkerSettings, shard_name, start_worker
from seq2seq.data.text_files import DataError
from seq2seq.text import Tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)

PROGRESS = "progress.json"  # the settings, inputs and tokenizers of a preparation under way


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe_inputs(files: dict[str, Path]) -> dict[str, Any]:
    """What identifies each input file's content: its path, size and modification time."""
    return {
        role: {"path": str(path), "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
        for role, path in files.items()
    }


def finished_preparation(folder: Path, kind: str, wanted: dict[str, Any], command: str) -> Manifest | None:
    """The folder's manifest when it was made with ``wanted`` (settings, inputs, shard size) and its
    files verify; None when there is none or it was made otherwise."""
    if not (folder / MANIFEST).is_file():
        return None
    manifest = Manifest.read(folder, kind, command)
    if {"settings": manifest.settings, "inputs": manifest.inputs, "shard_pairs": manifest.shard_pairs} != wanted:
        log.info("%s was prepared with other settings or input files: preparing it again", folder)
        return None
    manifest.verify(folder, checksums=True, command=command)
    log.info("%s is already prepared with these settings, and its files verify", folder)
    return manifest


def tokenizers_under_way(folder: Path, wanted: dict[str, Any], make: Callable[[], list[Tokenizer]]) -> list[Tokenizer]:
    """The tokenizers of the preparation under way in ``folder`` with ``wanted``; otherwise clear
    what an earlier preparation left there and ``make`` them (which may train SentencePiece into it)."""
    path = folder / PROGRESS
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
        if {key: progress[key] for key in wanted} == wanted:
            log.info("continuing the preparation under way in %s", folder)
            return [tokenizer_from_dict(described) for described in progress["tokenizers"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        pass
    for stale in folder.iterdir():
        if stale.name.startswith(("shard_", ".shard_", "sentencepiece", "tokens", MANIFEST, PROGRESS)):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    tokenizers = make()
    write_json_atomically(path, {**wanted, "tokenizers": [tokenizer.to_dict() for tokenizer in tokenizers]})
    return tokenizers


def make_shards(
    settings: WorkerSettings,
    tokenizers: list[Tokenizer],
    write: Callable[[Chunk], dict[str, Any]],
    workers: int,
    chunk_lines: int,
) -> list[dict[str, Any]]:
    """Every shard's record, in order, making with ``write`` (in ``workers`` processes) those that
    are not already done."""
    folder = settings.folder
    records: dict[int, dict[str, Any]] = {}
    pending: deque[tuple[int, Future[dict[str, Any]]]] = deque()
    with (
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_worker,
            initargs=([tokenizer.to_dict() for tokenizer in tokenizers], settings),
        ) as pool,
        tqdm(desc="prepare", unit=" lines", unit_scale=True, dynamic_ncols=True, mininterval=1.0) as bar,
    ):
        for chunk in read_chunks(settings.files, chunk_lines):
            done = finished_shard(folder, chunk.index)
            if done is not None:
                records[chunk.index] = done
                bar.update(done["lines"])
                continue
            pending.append((chunk.index, pool.submit(write, chunk)))
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


def read_chunks(files: tuple[Path, ...], chunk_lines: int) -> Iterator[Chunk]:
    """Consecutive chunks of ``chunk_lines`` lines of each file; refuses line-aligned files of
    different lengths."""
    handles = [open_binary(path) for path in files]
    try:
        first_line, index = 1, 0
        while True:
            blocks = [list(islice(handle, chunk_lines)) for handle in handles]
            if len({len(block) for block in blocks}) > 1:
                counts = [
                    first_line - 1 + len(block) + sum(1 for _ in handle) for block, handle in zip(blocks, handles)
                ]
                raise DataError(
                    f"parallel files differ in length: {files[0]} has {counts[0]:,} lines but {files[1]} has "
                    f"{counts[1]:,}. Line i of one must translate line i of the other: check that both files are "
                    "the same split of the same release."
                )
            if not blocks[0]:
                return
            yield Chunk(index, first_line, tuple(b"".join(block) for block in blocks))
            first_line += len(blocks[0])
            index += 1
    finally:
        for handle in handles:
            handle.close()


def open_binary(path: Path) -> gzip.GzipFile | BufferedReader:
    """``path`` for reading bytes, decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
