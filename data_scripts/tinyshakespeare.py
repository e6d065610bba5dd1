"""Get Tiny Shakespeare, the 1,115,394-character corpus for character-level language modelling.

Usage (from the project root)::

    python data_scripts/tinyshakespeare.py                      # download
    python data_scripts/tinyshakespeare.py --source input.txt   # use a local copy
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/tinyshakespeare.py   # copy DIR/tinyshakespeare/input.txt

The file lands at ``data/tinyshakespeare/input.txt`` (or under ``--dest-dir``) and is checked
against a pinned sha256 and its known length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.fetch import DataError, fetch

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
NUM_CHARS = 1_115_394
MIRROR_SUBPATH = "tinyshakespeare/input.txt"
DEFAULT_DEST_DIR = Path("data/tinyshakespeare")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Download (or copy from --source / $SEQ2SEQ_DATA_MIRROR) the Tiny Shakespeare corpus "
            "and verify its sha256 and length."
        )
    )
    parser.add_argument("--source", type=Path, help="local copy of input.txt to use instead of downloading")
    parser.add_argument(
        "--dest-dir",
        type=Path,
        default=DEFAULT_DEST_DIR,
        help=f"folder to write input.txt into (default: {DEFAULT_DEST_DIR})",
    )
    return parser.parse_args(argv)


def prepare(dest_dir: Path, source: Path | None = None) -> Path:
    """Place ``input.txt`` in ``dest_dir``, verify checksum and length, and return its path."""
    path = fetch("tinyshakespeare", URL, SHA256, dest_dir / "input.txt", source, MIRROR_SUBPATH)
    num_chars = len(path.read_text(encoding="utf-8"))
    if num_chars != NUM_CHARS:
        raise DataError(
            f"{path} has {num_chars:,} characters, expected {NUM_CHARS:,}: "
            "delete it and run this script again, or point --source at the original input.txt."
        )
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    args = parse_args(argv)
    try:
        path = prepare(args.dest_dir, args.source)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"tinyshakespeare: {path}")
    print(f"  size: {NUM_CHARS:,} characters, {path.stat().st_size:,} bytes")
    print(f"  sha256: {SHA256} (matches the pinned checksum)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
