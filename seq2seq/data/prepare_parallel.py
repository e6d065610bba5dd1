"""``seq2seq translate prepare``: tokenise a parallel training corpus once into memory-mappable shards.

The training files are read a chunk of ``shard_pairs`` lines at a time and tokenised in worker
processes (``shard_pool``, ``shard_writer``), which drop the pairs training would drop (an empty
side, more than ``data.max_length`` tokens) and write each shard's ids. Once every shard is
written, the vocabularies are built from the shards' token counts (as ``load_parallel_corpus``
builds them from the kept pairs), each shard gets its lookup tables into them, and
``manifest.json`` is written last. An interrupted preparation continues with the shards it
finished; a finished one with the same settings is verified and kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.data.parallel import ParallelDataConfig, TextCodec, make_tokenizers, split_files
from seq2seq.data.prepared_format import (
    ID_DTYPE,
    Manifest,
    describe_files,
    prepare_command,
    save_array_atomically,
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
from seq2seq.data.shard_writer import WorkerSettings, write_parallel_shard
from seq2seq.data.text_files import DataError
from seq2seq.text import Tokenizer, Vocab

log = logging.getLogger(__name__)

KIND = "parallel"
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


TASK = "translate"  # whose prepare verb makes such a folder


def prepare_parallel(
    config: ParallelDataConfig, folder: Path, workers: int = 0, shard_pairs: int = 100_000
) -> Manifest:
    """Prepare the training split of ``config`` into ``folder`` (see the module's docstring).

    workers: tokenising processes (0: one per available core); shard_pairs: lines per shard.
    """
    if shard_pairs < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_pairs}")
    folder.mkdir(parents=True, exist_ok=True)
    files = split_files(config, "train")
    inputs = describe_inputs({"source": files[0], "target": files[1]})
    wanted = {"settings": settings_of(config, PREPARED_SETTINGS), "inputs": inputs, "shard_pairs": shard_pairs}
    finished = finished_preparation(folder, KIND, wanted, prepare_command(TASK, folder))
    if finished is not None:
        return finished
    tokenizers = tokenizers_under_way(
        folder, wanted, lambda: list(make_tokenizers(config, folder, read_files_first=False))
    )
    settings = WorkerSettings(folder, files, config.max_length)
    records = make_shards(settings, tokenizers, write_parallel_shard, workers or available_cores(), shard_pairs)
    manifest = finish(folder, config, wanted, tokenizers, records)
    (folder / PROGRESS).unlink()
    return manifest


def finish(
    folder: Path,
    config: ParallelDataConfig,
    wanted: dict[str, Any],
    tokenizers: list[Tokenizer],
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
