"""Get Multi30k task 1 (image descriptions in German, English, French and Czech) for translation.

Usage (from the project root)::

    python data_scripts/multi30k.py                          # German and English: download
    python data_scripts/multi30k.py --langs de en fr         # more languages
    python data_scripts/multi30k.py --source DIR             # DIR holds train.de.gz, val.de.gz, ...
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/multi30k.py  # copy DIR/multi30k/<file>.gz

The raw files of the multi30k/dataset repository (``data/task1/raw/``) land, still gzipped,
in ``data/multi30k/`` (or ``--dest-dir``) as ``{train,val,test_2016_flickr}.{lang}.gz``: the
file names the translation recipe's configs expect. Each file is checked against a pinned
sha256, each split's line count is checked, and the languages of a split must be aligned
(the same number of lines, and a line empty in one language only if it is empty in all).
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.fetch import DataError, fetch

URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}"
MIRROR_FOLDER = "multi30k"
DEFAULT_DEST_DIR = Path("data/multi30k")
DEFAULT_LANGS = ("de", "en")
LINES = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}
SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
}
LANGS = ("de", "en", "fr", "cs")


def file_name(split: str, lang: str) -> str:
    """``train.de.gz`` and the like."""
    return f"{split}.{lang}.gz"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Download (or copy from --source / $SEQ2SEQ_DATA_MIRROR) the Multi30k task-1 raw files, "
            "verify their sha256, line counts and alignment, and place them in --dest-dir."
        )
    )
    parser.add_argument(
        "--langs",
        nargs="+",
        choices=LANGS,
        default=list(DEFAULT_LANGS),
        help=f"languages to get (default: {' '.join(DEFAULT_LANGS)})",
    )
    parser.add_argument(
        "--source", type=Path, help="a folder holding local copies of the files (train.de.gz, val.de.gz, ...)"
    )
    parser.add_argument(
        "--dest-dir",
        type=Path,
        default=DEFAULT_DEST_DIR,
        help=f"folder to write the files into (default: {DEFAULT_DEST_DIR})",
    )
    return parser.parse_args(argv)


def prepare(dest_dir: Path, langs: list[str], source: Path | None = None) -> list[Path]:
    """Place every split of ``langs`` in ``dest_dir``, verify them, and return the files' paths."""
    if source is not None and not source.is_dir():
        raise DataError(f"--source must be a folder holding train.de.gz, val.de.gz, ...; {source} is not a folder")
    paths: list[Path] = []
    for split, expected_lines in LINES.items():
        files = {}
        for lang in langs:
            name = file_name(split, lang)
            files[lang] = fetch(
                f"multi30k {name}",
                URL.format(name=name),
                SHA256[name],
                dest_dir / name,
                source / name if source is not None else None,
                f"{MIRROR_FOLDER}/{name}",
            )
        check_aligned(files, expected_lines)
        paths += files.values()
    return paths


def check_aligned(files: dict[str, Path], expected_lines: int) -> None:
    """Every file has ``expected_lines`` lines, and a line is empty in all languages or in none."""
    empty_lines: dict[str, set[int]] = {}
    for lang, path in files.items():
        lines = read_gzip_lines(path)
        if len(lines) != expected_lines:
            raise DataError(
                f"{path} has {len(lines):,} lines, expected {expected_lines:,}: "
                "delete it and run this script again, or point --source at the original files."
            )
        empty_lines[lang] = {number for number, line in enumerate(lines, start=1) if not line.strip()}
    first_lang, first = next(iter(empty_lines.items()))
    for lang, empty in empty_lines.items():
        if empty != first:
            number = min(empty ^ first)
            raise DataError(
                f"{files[first_lang]} and {files[lang]} are not aligned: line {number} is empty in only one of them. "
                "Delete them and run this script again."
            )


def read_gzip_lines(path: Path) -> list[str]:
    """The lines of a gzipped UTF-8 file, without line endings."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not gzipped UTF-8 text ({error}): delete it and run this script again.") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    args = parse_args(argv)
    try:
        paths = prepare(args.dest_dir, list(dict.fromkeys(args.langs)), args.source)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"multi30k: {len(paths)} files in {args.dest_dir}")
    print("  lines: " + ", ".join(f"{split} {count:,}" for split, count in LINES.items()) + " (as expected, aligned)")
    print("  sha256: every file matches its pinned checksum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
