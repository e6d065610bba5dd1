"""Reading text files (plain or gzipped) with errors a user can act on."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says what to do."""


def read_text(path: str | Path, what: str = "text file") -> str:
    """The whole file as text. ``.gz`` files are decompressed. Empty files are refused."""
    path = Path(path)
    text = decode_utf8(read_bytes(path, what), f"{what} {path}")
    if not text.strip():
        raise DataError(f"{what} {path} is empty: there is nothing to train on.")
    return text


def read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``; missing or broken files refused by name."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}. Check the path, or run the matching data_scripts/ script.")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{what} {path} is not a readable gzip file ({error}). "
            "Download it again, or drop the .gz suffix if it is plain text."
        ) from None


def decode_utf8(raw: bytes, where: str) -> str:
    """UTF-8 bytes as text without a byte-order mark; invalid bytes are reported with their line."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{where}, line {line}: not valid UTF-8 (byte {error.start}: {raw[error.start : error.start + 4]!r}). "
            "Convert it first, e.g. with `iconv -f latin1 -t utf-8`."
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines ending at ``\\n`` only (a ``\\r`` before it is dropped), so that Unicode line separators
    inside a sentence cannot break the alignment of parallel files."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    return [line.removesuffix("\r") for line in lines]
