"""Get a Project Gutenberg book as plain text for word-level generation.

Usage (from the project root)::

    python data_scripts/gutenberg.py                     # Alice's Adventures in Wonderland (#11)
    python data_scripts/gutenberg.py --book-id 1342      # any other ebook number
    python data_scripts/gutenberg.py --source pg11.txt   # use a local copy
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/gutenberg.py   # copy DIR/gutenberg/pg11.txt

Writes ``data/gutenberg/pg{N}.txt`` (the file as published) and ``data/gutenberg/pg{N}.clean.txt``
(the book's body only: the Project Gutenberg header and license are cut at the
``*** START OF THE PROJECT GUTENBERG EBOOK`` and ``*** END OF THE PROJECT GUTENBERG EBOOK`` lines,
and line ends are normalised to LF).

Project Gutenberg revises its files now and then, so no checksum is pinned here: the file is
checked structurally (both marker lines present, a non-empty body) and its sha256 is printed.
Pass that value back with ``--sha256 HEX`` to insist on exactly that version.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.fetch import DataError, fetch, sha256_of

DEFAULT_BOOK_ID = 11  # Alice's Adventures in Wonderland, by Lewis Carroll
DEFAULT_DEST_DIR = Path("data/gutenberg")
START_MARKER = "*** START OF THE PROJECT GUTENBERG EBOOK"
END_MARKER = "*** END OF THE PROJECT GUTENBERG EBOOK"
# Older files say "THIS PROJECT" instead of "THE PROJECT"; both are accepted.
_START_LINE = re.compile(r"^\*{3}\s*START OF TH(?:E|IS) PROJECT GUTENBERG EBOOK.*$", re.IGNORECASE | re.MULTILINE)
_END_LINE = re.compile(r"^\*{3}\s*END OF TH(?:E|IS) PROJECT GUTENBERG EBOOK.*$", re.IGNORECASE | re.MULTILINE)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def book_url(book_id: int) -> str:
    """Return the plain-text (UTF-8) download address of Gutenberg ebook ``book_id``."""
    return f"https://www.gutenberg.org/cache/epub/{book_id}/pg{book_id}.txt"


def extract_body(text: str, origin: str = "the text") -> str:
    """Return the book between the START and END marker lines, with LF line ends.

    Leading and trailing blank lines are dropped; the result ends with one newline.

    Raises:
        DataError: a marker line is missing, out of order, or nothing lies between them.
    """
    text = text.replace("\r\n", "\n")
    start = _START_LINE.search(text)
    end = _END_LINE.search(text, start.end()) if start else None
    if start is None or end is None:
        missing = f"'{START_MARKER} ...'" if start is None else f"'{END_MARKER} ...' after the START line"
        raise DataError(
            f"{origin} has no line {missing}: it does not look like a Project Gutenberg plain-text "
            "ebook. Check --book-id, or point --source at the book's 'Plain Text UTF-8' file (pg{N}.txt)."
        )
    body = text[start.end() : end.start()].strip("\n")
    if not body.strip():
        raise DataError(f"{origin} has nothing between its START and END marker lines: the book body is empty.")
    return body + "\n"


def prepare(book_id: int, dest_dir: Path, source: Path | None = None, sha256: str | None = None) -> tuple[Path, Path]:
    """Fetch ebook ``book_id`` into ``dest_dir`` and write its cleaned body; return (raw, clean) paths."""
    name = f"gutenberg #{book_id}"
    raw = fetch(name, book_url(book_id), sha256, dest_dir / f"pg{book_id}.txt", source, f"gutenberg/pg{book_id}.txt")
    try:
        text = raw.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{raw} is not UTF-8 text ({err.reason} at byte {err.start}): use the book's 'Plain Text UTF-8' file."
        ) from err
    clean = dest_dir / f"pg{book_id}.clean.txt"
    clean.write_text(extract_body(text, str(raw)), encoding="utf-8", newline="\n")
    return raw, clean


def _sha256_arg(value: str) -> str:
    """argparse type: a 64-digit hex sha256, returned in lower case."""
    if not _SHA256_HEX.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected 64 hexadecimal digits, got {value!r}")
    return value.lower()


def _book_id_arg(value: str) -> int:
    """argparse type: a positive ebook number."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive ebook number such as 11, got {value!r}")
    return int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Download (or copy from --source / $SEQ2SEQ_DATA_MIRROR) a Project Gutenberg ebook and write "
            "pg{N}.txt (as published) and pg{N}.clean.txt (body only, LF line ends)."
        ),
        epilog=(
            "Project Gutenberg revises its files (headers change), so no checksum is pinned: the file is "
            "checked structurally (START/END marker lines, non-empty body) and its sha256 is printed. "
            "Pass it back with --sha256 HEX to insist on that exact version."
        ),
    )
    parser.add_argument(
        "--book-id",
        type=_book_id_arg,
        default=DEFAULT_BOOK_ID,
        help=f"Gutenberg ebook number (default: {DEFAULT_BOOK_ID}, Alice's Adventures in Wonderland)",
    )
    parser.add_argument("--source", type=Path, help="local copy of pg{N}.txt to use instead of downloading")
    parser.add_argument(
        "--dest-dir",
        type=Path,
        default=DEFAULT_DEST_DIR,
        help=f"folder to write pg{{N}}.txt and pg{{N}}.clean.txt into (default: {DEFAULT_DEST_DIR})",
    )
    parser.add_argument(
        "--sha256",
        type=_sha256_arg,
        metavar="HEX",
        help="expected sha256 of pg{N}.txt; without it the file is only checked structurally",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    args = parse_args(argv)
    try:
        raw, clean = prepare(args.book_id, args.dest_dir, args.source, args.sha256)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    body = clean.read_text(encoding="utf-8")
    status = "matches --sha256" if args.sha256 else "not pinned; pass --sha256 with this value to pin it"
    print(f"gutenberg #{args.book_id}: {raw}")
    print(f"  sha256: {sha256_of(raw)} ({status})")
    print(f"  body: {clean} ({len(body):,} characters, {len(body.split()):,} words, {len(body.splitlines()):,} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
