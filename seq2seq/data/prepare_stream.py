"""``seq2seq textgen prepare``: tokenise a language-model text once into one memory-mappable stream of ids.

The text is read a chunk of ``shard_lines`` lines at a time and tokenised in worker processes
(``shard_pool``, ``shard_writer``), newlines kept, so that the char and word tokenizers give the
ids of tokenising the whole text at once. The vocabulary is built from the tokens before the
validation cut (the last ``data.validation_fraction`` of the tokens, as ``load_lm_corpus`` cuts
them), then every shard's ids are mapped into it and written, in order, into ``tokens.npy``;
``manifest.json`` is written last and the shards are removed. Training reads ``tokens.npy`` as a
memory map (``open_prepared_stream``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seq2seq.data.lm_corpus import make_tokenizer
from seq2seq.data.lm_stream import LMDataConfig, split_point
from seq2seq.data.prepared_format import (
    ID_DTYPE,
    Manifest,
    describe_files,
    load_array,
    open_manifest,
    prepare_command,
    settings_of,
)
from seq2seq.data.shard_pool import (
    PROGRESS,
    available_cores,
    describe_inputs,
    finished_preparation,
    make_shards,
    tokenizers_under_way,
)
from seq2seq.data.shard_writer import WorkerSettings, write_stream_shard
from seq2seq.data.text_files import DataError
from seq2seq.text import Tokenizer, Vocab, tokenizer_from_dict

log = logging.getLogger(__name__)

KIND = "stream"
TOKENS = "tokens.npy"
#: The data settings that the prepared ids depend on; training refuses a prepared stream whose differ.
PREPARED_SETTINGS = (
    "tokenizer",
    "lowercase",
    "sentencepiece_model",
    "sentencepiece_vocab_size",
    "sentencepiece_sample_size",
    "min_freq",
    "validation_fraction",
)


TASK = "textgen"  # whose prepare verb makes such a folder


def prepare_stream(config: LMDataConfig, folder: Path, workers: int = 0, shard_lines: int = 100_000) -> Manifest:
    """Prepare the text of ``config`` into ``folder`` (see the module's docstring)."""
    if shard_lines < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_lines}")
    folder.mkdir(parents=True, exist_ok=True)
    text = Path(config.path)
    if not text.is_file():
        raise DataError(f"text file not found: {text}. Check data.path, or run the matching data_scripts/ script.")
    wanted = {
        "settings": settings_of(config, PREPARED_SETTINGS),
        "inputs": describe_inputs({"text": text}),
        "shard_pairs": shard_lines,
    }
    finished = finished_preparation(folder, KIND, wanted, prepare_command(TASK, folder))
    if finished is not None:
        return finished
    tokenizers = tokenizers_under_way(folder, wanted, lambda: [make_tokenizer(config, folder)])
    records = make_shards(
        WorkerSettings(folder, (text,)), tokenizers, write_stream_shard, workers or available_cores(), shard_lines
    )
    manifest = finish(folder, config, wanted, tokenizers[0], records)
    for record in records:
        for name in (*record["files"], f"{record['name']}.json"):
            (folder / name).unlink()
    (folder / PROGRESS).unlink()
    return manifest


def finish(
    folder: Path, config: LMDataConfig, wanted: dict[str, Any], tokenizer: Tokenizer, records: list[dict[str, Any]]
) -> Manifest:
    """The vocabulary from the tokens before the validation cut, ``tokens.npy`` and the manifest."""
    total = sum(record["tokens"] for record in records)
    cut = split_point(total, config.validation_fraction)
    if total - cut < 2:
        raise DataError(
            f"{config.path}: the validation part ({config.validation_fraction:.0%}) holds under 2 tokens; "
            "use a longer text or a larger data.validation_fraction"
        )
    vocab = Vocab.from_counts(training_counts(folder, records, cut), config.min_freq)
    write_tokens(folder, records, vocab, total)
    counts = {"lines": sum(r["lines"] for r in records), "tokens": total, "train_tokens": cut}
    shards = [{"name": "tokens", "tokens": total, "files": describe_files(folder, [TOKENS])}]
    codecs = {"text": {"tokenizer": tokenizer.to_dict(), "vocab": vocab.to_dict()}}
    manifest = Manifest(KIND, wanted["settings"], codecs, counts, shards, wanted["inputs"], wanted["shard_pairs"])
    manifest.write(folder)
    log.info("prepared %d tokens (%d for training), vocabulary %d, into %s", total, cut, len(vocab), folder)
    return manifest


def training_counts(folder: Path, records: list[dict[str, Any]], cut: int) -> Counter[str]:
    """How often each token occurs before token ``cut`` (the training part)."""
    counts: Counter[str] = Counter()
    start = 0
    for record in records:
        types, shard_counts = record["text"]["types"], record["text"]["counts"]
        if start + record["tokens"] > cut:  # the shard the cut falls in: count its training part only
            ids = np.load(folder / f"{record['name']}.tokens.npy")[: max(cut - start, 0)]
            shard_counts = np.bincount(ids, minlength=len(types)).tolist()
        counts.update(dict(zip(types, shard_counts)))
        start += record["tokens"]
    return counts


def write_tokens(folder: Path, records: list[dict[str, Any]], vocab: Vocab, total: int) -> None:
    """``tokens.npy``: every shard's ids mapped into ``vocab``, in order, one shard in memory at a time."""
    temporary = folder / f".{TOKENS}.tmp"
    tokens = np.lib.format.open_memmap(temporary, mode="w+", dtype=ID_DTYPE, shape=(total,))  # (N,)
    start = 0
    for record in records:
        lookup = np.array([vocab.token_to_id(token) for token in record["text"]["types"]], dtype=ID_DTYPE)
        ids = np.load(folder / f"{record['name']}.tokens.npy")
        tokens[start : start + len(ids)] = lookup[ids]
        start += len(ids)
    tokens.flush()
    del tokens
    os.replace(temporary, folder / TOKENS)


@dataclass
class PreparedStream:
    """A prepared text: its tokenizer, vocabulary, and the training and validation ids (memory-mapped)."""

    folder: Path
    tokenizer: Tokenizer
    vocab: Vocab
    train_ids: Tensor  # (N_train,) int32, a view of the memory map
    validation_ids: Tensor  # (N_validation,)


def open_prepared_stream(config: LMDataConfig) -> PreparedStream:
    """The prepared text at ``config.prepared``, once its settings are the config's and its file
    has the size its manifest gives."""
    folder, manifest = open_manifest(config.prepared, KIND, TASK, settings_of(config, PREPARED_SETTINGS))
    command = prepare_command(TASK, folder)
    # Copy-on-write: a writable array for torch, whose pages stay those of the file (nothing writes to them).
    stream = torch.from_numpy(load_array(folder / TOKENS, f"Prepare the data again: {command}", mode="c"))  # (N,)
    cut = int(manifest.counts["train_tokens"])
    codec = manifest.codecs["text"]
    return PreparedStream(
        folder, tokenizer_from_dict(codec["tokenizer"]), Vocab.from_dict(codec["vocab"]), stream[:cut], stream[cut:]
    )
