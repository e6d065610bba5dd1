"""One shard of prepared data, made in a worker process: tokenise a chunk of lines and write the ids
as ``.npy`` arrays. Parallel text: line-aligned source and target lines, less the pairs training
would drop. A language-model stream: the lines of one text, newlines kept.

This module imports neither torch nor the rest of the package's training code, so that the
worker processes start quickly and stay small. ``start_worker`` runs once in each worker
(the tokenizers arrive as their ``to_dict()`` descriptions); ``write_parallel_shard`` or
``write_stream_shard`` runs once per chunk and returns the shard's record: its counts, each
side's distinct tokens with their frequencies (to build the vocabularies from), and its files.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.data.prepared_format import ID_DTYPE, OFFSET_DTYPE, describe_files, save_array_atomically
from seq2seq.data.text_files import decode_utf8, split_lines
from seq2seq.text import Tokenizer, tokenizer_from_dict


@dataclass(frozen=True)
class WorkerSettings:
    """What every chunk of one preparation shares."""

    folder: Path  # where the shards go
    files: tuple[Path, ...]  # the text files (source and target, or the one text), named in errors
    max_length: int = 0  # parallel text: pairs with more tokens on a side are dropped; 0 keeps all


@dataclass(frozen=True)
class Chunk:
    """Consecutive lines of each file, as read (UTF-8 bytes, each line with its ``\\n``)."""

    index: int  # the shard's number
    first_line: int  # line number (from 1) of the chunk's first line in the files
    lines: tuple[bytes, ...]  # one block per file


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


_worker: dict[str, Any] = {}  # this worker process's tokenizers and settings (set by start_worker)


def start_worker(tokenizers: list[dict[str, Any]], settings: WorkerSettings) -> None:
    """The initializer of a worker process: rebuild the tokenizers (one per file) once."""
    _worker.update(tokenizers=[tokenizer_from_dict(described) for described in tokenizers], settings=settings)


def write_parallel_shard(chunk: Chunk) -> dict[str, Any]:
    """Tokenise ``chunk`` with the worker's tokenizers and write its shard; returns its record."""
    settings: WorkerSettings = _worker["settings"]
    sources, targets = (
        split_lines(chunk_text(raw, path, chunk.first_line)) for raw, path in zip(chunk.lines, settings.files)
    )
    source_side, target_side = (SideWriter(tokenizer) for tokenizer in _worker["tokenizers"])
    empty = long = 0
    for source_line, target_line in zip(sources, targets):
        source_tokens = source_side.tokenizer.tokenize(source_line) if source_line.strip() else []
        target_tokens = target_side.tokenizer.tokenize(target_line) if target_line.strip() else []
        if not source_tokens or not target_tokens:
            empty += 1
        elif settings.max_length and max(len(source_tokens), len(target_tokens)) > settings.max_length:
            long += 1
        else:
            source_side.add(source_tokens)
            target_side.add(target_tokens)
    name = shard_name(chunk.index)
    offsets = np.stack([source_side.offsets(), target_side.offsets()], axis=1)  # (pairs + 1, 2)
    arrays = {f"{name}.source.npy": source_side.ids(), f"{name}.target.npy": target_side.ids()}
    arrays[f"{name}.offsets.npy"] = offsets
    for file_name, values in arrays.items():
        save_array_atomically(settings.folder / file_name, values)
    return {
        "name": name,
        "lines": len(sources),
        "pairs": len(offsets) - 1,
        "dropped_empty": empty,
        "dropped_long": long,
        "source": source_side.types_and_counts(),
        "target": target_side.types_and_counts(),
        "files": describe_files(settings.folder, list(arrays)),
    }


def write_stream_shard(chunk: Chunk) -> dict[str, Any]:
    """Tokenise the chunk of one text (newlines kept) and write its shard; returns its record."""
    settings: WorkerSettings = _worker["settings"]
    text = SideWriter(_worker["tokenizers"][0])
    text.add(text.tokenizer.tokenize(chunk_text(chunk.lines[0], settings.files[0], chunk.first_line)))
    name = shard_name(chunk.index)
    file_name = f"{name}.tokens.npy"
    save_array_atomically(settings.folder / file_name, text.ids())
    return {
        "name": name,
        "lines": chunk.lines[0].count(b"\n") + (not chunk.lines[0].endswith(b"\n")),
        "tokens": len(text.flat),
        "text": text.types_and_counts(),
        "files": describe_files(settings.folder, [file_name]),
    }


def chunk_text(raw: bytes, path: Path, first_line: int) -> str:
    """The chunk as text, without the byte-order mark a file may start with; invalid UTF-8 is named
    by file and line number."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        decode_utf8(raw, f"{path} (the part from line {first_line})", path)  # raises, naming the line
        raise
    if first_line == 1:
        text = text.removeprefix("\ufeff")
    return text


class SideWriter:
    """One side's ids (indices into its distinct tokens, in order of first appearance) and lengths."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.index: dict[str, int] = {}
        self.flat = array("i")
        self.lengths = array("q")

    def add(self, tokens: list[str]) -> None:
        self.flat.extend(self.index.setdefault(token, len(self.index)) for token in tokens)
        self.lengths.append(len(tokens))

    def ids(self) -> np.ndarray:
        """(N,) every kept sequence's ids back to back."""
        return np.frombuffer(self.flat, dtype=np.int32).astype(ID_DTYPE)

    def offsets(self) -> np.ndarray:
        """(n + 1,) where each sequence starts in ``ids``, then the total."""
        offsets = np.zeros(len(self.lengths) + 1, dtype=OFFSET_DTYPE)
        np.cumsum(np.frombuffer(self.lengths, dtype=np.int64), out=offsets[1:])
        return offsets

    def types_and_counts(self) -> dict[str, list[Any]]:
        """The distinct tokens (in id order) and how often each occurs."""
        counts = np.bincount(self.ids(), minlength=len(self.index)) if self.index else np.zeros(0, dtype=np.int64)
        return {"types": list(self.index), "counts": counts.tolist()}
