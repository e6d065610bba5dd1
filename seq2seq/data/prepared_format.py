"""The on-disk format of prepared (tokenised, binarised) training data, shared by the tasks.

A prepared folder holds shards of token ids as NumPy ``.npy`` arrays, read back as memory
maps, and ``manifest.json``, written last: the settings the data was made with, the codecs
(tokenizers and vocabularies), counts, and each shard's files with their size and SHA-256.
A folder without a manifest is unfinished (the same ``prepare`` command continues it).

Within a shard the ids index the shard's own list of distinct tokens; ``<name>.<side>_lookup.npy``
maps them to vocabulary ids. The shards are written before the vocabulary is known (it needs
every shard's counts), so this small table is all that the vocabulary changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seq2seq.config import ConfigError
from seq2seq.data.text_files import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ID_DTYPE = np.int32  # token ids in a shard (indices into its own token list)
OFFSET_DTYPE = np.int64  # where each sequence starts in a shard's ids


def write_json_atomically(path: Path, content: Any) -> None:
    """Write ``content`` as JSON to ``path`` under a temporary name first, so that a killed process
    leaves either the old file or the new one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content), encoding="utf-8")
    os.replace(temporary, path)


def save_array_atomically(path: Path, array: np.ndarray) -> None:
    """``np.save`` under a temporary name, then renamed to ``path``."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": digest}}`` of files in ``folder``."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_of(folder / name)} for name in names}


def check_files(folder: Path, files: dict[str, dict[str, Any]], checksums: bool, remedy: str) -> None:
    """Refuse a file of ``files`` (as ``describe_files`` gives them) that is missing, of another
    size or, with ``checksums``, of other content; the error names the file and says ``remedy``."""
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"prepared data file {path} is missing. {remedy}")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise DataError(
                f"prepared data file {path} has {size:,} bytes, but the manifest says {expected['bytes']:,}: "
                f"it is truncated or was replaced. {remedy}"
            )
        if checksums and sha256_of(path) != expected["sha256"]:
            raise DataError(f"prepared data file {path} is corrupt: its SHA-256 is not the manifest's. {remedy}")


def load_array(path: Path, remedy: str, mode: Literal["r", "c"] = "r") -> np.ndarray:
    """The ``.npy`` file as a memory map, read-only or copy-on-write (``mode``); a file NumPy cannot
    read is named with ``remedy``."""
    try:
        return np.load(path, mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"prepared data file {path} cannot be read ({error}). {remedy}") from None


@dataclass
class Manifest:
    """What ``manifest.json`` holds.

    kind: "parallel" (translation) or "stream" (language modelling)
    settings: the data settings the ids depend on, as the config gave them
    codecs: each side's ``{"tokenizer": ..., "vocab": ...}``
    counts: lines read, pairs or tokens kept and dropped
    shards: each shard's name, size and files (``describe_files``)
    inputs: the text files it was made from (path, size, modification time)
    shard_pairs: lines per shard
    """

    kind: str
    settings: dict[str, Any]
    codecs: dict[str, dict[str, Any]]
    counts: dict[str, int]
    shards: list[dict[str, Any]]
    inputs: dict[str, Any]
    shard_pairs: int

    def write(self, folder: Path) -> None:
        write_json_atomically(folder / MANIFEST, {"format_version": FORMAT_VERSION, **vars(self)})

    @classmethod
    def read(cls, folder: Path, kind: str, command: str) -> Manifest:
        """The manifest of ``folder``, a prepared set of ``kind``; ``command`` is what makes one."""
        path = folder / MANIFEST
        if not path.is_file():
            state = "is unfinished (no manifest.json)" if folder.is_dir() else "does not exist"
            raise DataError(f"prepared data folder {folder} {state}: run `{command}` to prepare it (again).")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            fields = ("kind", "settings", "codecs", "counts", "shards", "inputs", "shard_pairs")
            manifest = cls(*(raw[field] for field in fields))
            version = raw["format_version"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise DataError(f"{path} is not a prepared data manifest ({error}): run `{command}` again.") from None
        if version != FORMAT_VERSION or manifest.kind != kind:
            raise DataError(
                f"{folder} holds {manifest.kind!r} data of format {version}, not {kind!r} data of format "
                f"{FORMAT_VERSION}: run `{command}` to prepare it for this task and version."
            )
        return manifest

    def verify(self, folder: Path, checksums: bool, command: str) -> None:
        """Every shard file is there with its size (and, with ``checksums``, its SHA-256)."""
        remedy = f"Prepare the data again: {command}"
        for shard in self.shards:
            check_files(folder, shard["files"], checksums, remedy)


def settings_differences(made_with: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``data.KEY: prepared VALUE, config VALUE`` for each setting that differs."""
    keys = sorted(set(made_with) | set(wanted))
    return [
        f"data.{key}: prepared with {made_with.get(key)!r}, the config says {wanted.get(key)!r}"
        for key in keys
        if made_with.get(key) != wanted.get(key)
    ]


def prepare_command(task: str, folder: Path) -> str:
    """The command that (re)makes ``folder`` for ``task`` (translate, textgen), for messages."""
    return f"seq2seq {task} prepare --config CONFIG --output {folder}"


def settings_of(config: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The data settings ``keys`` of ``config``: what prepared ids depend on."""
    return {key: getattr(config, key) for key in keys}


def open_manifest(prepared: str | None, kind: str, task: str, settings: dict[str, Any]) -> tuple[Path, Manifest]:
    """The folder that ``data.prepared`` names and its manifest, once the manifest's settings are
    ``settings`` (the config's) and its files have the sizes it gives."""
    if prepared is None:
        raise ConfigError("data.prepared is not set: there is no prepared data to open")
    folder = Path(prepared)
    command = prepare_command(task, folder)
    manifest = Manifest.read(folder, kind, command)
    differences = settings_differences(manifest.settings, settings)
    if differences:
        raise DataError(
            f"the prepared data in {folder} was made with other data settings than the config's:\n  "
            + "\n  ".join(differences)
            + f"\nPrepare it again with this config (`{command}`), or point data.prepared at data prepared "
            "with these settings."
        )
    manifest.verify(folder, checksums=False, command=command)
    return folder, manifest


def verified_manifest(folder: Path, kind: str, task: str) -> Manifest:
    """The manifest of ``folder`` once every file it lists has its size and SHA-256 (``--verify``)."""
    command = prepare_command(task, folder)
    manifest = Manifest.read(folder, kind, command)
    manifest.verify(folder, checksums=True, command=command)
    return manifest
