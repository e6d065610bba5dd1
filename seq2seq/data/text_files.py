"""Reading text files (plain or gzipped) with errors a user can act on."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says what to do."""


def read_text(path: str | Path, what: str = "text file", empty: str = "there is nothing to train on") -> str:
    """The whole file as text. ``.gz`` files are decompressed. Empty files are refused, with
    ``empty`` saying why that matters."""
    path = Path(path)
    text = decode_utf8(read_bytes(path, what), f"{what} {path}", path)
    if not text.strip():
        raise DataError(f"{what} {path} is empty: {empty}.")
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


#: Byte-order marks of the encodings a text editor may save in instead of UTF-8, longest first.
BYTE_ORDER_MARKS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def decode_utf8(raw: bytes, where: str, path: Path | None = None) -> str:
    """UTF-8 bytes as text without a byte-order mark; invalid bytes are reported with their line,
    and a UTF-16 or UTF-32 file by its encoding, with the command that converts ``path``."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        encoding = next((name for mark, name in BYTE_ORDER_MARKS if raw.startswith(mark)), None)
        files = f"{path} > {path.name}.utf8" if path is not None else "< input > output"
        if encoding is not None:
            raise DataError(
                f"{where} is {encoding} (it starts with a {encoding} byte-order mark), not UTF-8. "
                f"Convert it first: `iconv -f {encoding} -t UTF-8 {files}`."
            ) from None
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{where}, line {line}: not valid UTF-8 (byte {error.start}: {raw[error.start : error.start + 4]!r}). "
            f"Convert it first, e.g. from Latin-1 with `iconv -f latin1 -t UTF-8 {files}`."
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines ending at ``\\n`` only (a ``\\r`` before it is dropped), so that Unicode line separators
    inside a sentence cannot break the alignment of parallel files."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    return [line.removesuffix("\r") for line in lines]
