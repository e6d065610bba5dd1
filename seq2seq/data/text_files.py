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
    if not path.is_file():
        raise DataError(f"{what} not found: {path}. Check the path, or run the matching data_scripts/ script.")
    raw = _decompress(path, what) if path.suffix == ".gz" else path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{what} {path} is not valid UTF-8 (byte {error.start}: {raw[error.start:error.start + 4]!r}). "
            "Convert it, e.g. with `iconv -f latin1 -t utf-8`."
        ) from None
    if not text.strip():
        raise DataError(f"{what} {path} is empty: there is nothing to train on.")
    return text


def _decompress(path: Path, what: str) -> bytes:
    """The decompressed bytes of a ``.gz`` file; a broken or non-gzip file is refused by name."""
    compressed = path.read_bytes()
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{what} {path} is not a readable gzip file ({error}). "
            "Download it again, or drop the .gz suffix if it is plain text."
        ) from None
