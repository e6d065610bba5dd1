"""Get IWSLT14 German-English (TED talks) and prepare it the usual way, as raw cased text.

Usage (from the project root; the archive is downloaded, so this needs the internet)::

    python data_scripts/iwslt14.py                           # download de-en.tgz and prepare
    python data_scripts/iwslt14.py --source de-en.tgz        # use a local copy of the archive
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/iwslt14.py   # copy DIR/iwslt14/de-en.tgz

The steps follow the common recipe (fairseq's ``prepare-iwslt14.sh``), except that the text
is neither Moses-tokenised nor lowercased, so that sacreBLEU scores it against raw references:

1. training pairs come from ``train.tags.de-en.{de,en}``: metadata lines (``<url>``,
   ``<talkid>``, ``<keywords>``, ``<speaker>``, ``<reviewer>``, ``<translator>``, ``<doc>``)
   are dropped, and the text inside ``<title>`` and ``<description>`` is kept as ordinary lines;
2. cleaning drops pairs with a side of no words or more than 175, or whose word counts differ
   by a factor of more than 1.5 (counted on whitespace-separated words rather than Moses
   tokens, so the counts differ slightly from fairseq's 160,239 + 7,283 pairs);
3. every 23rd cleaned pair goes to validation, the others to training;
4. the test set is the ``<seg>`` text of dev2010, TEDX dev2012 and tst2010-2012, in that order
   (6,750 pairs); XML character entities such as ``&amp;`` are decoded everywhere.

The output is ``data/iwslt14/{train,valid,test}.{de,en}`` (or under ``--dest-dir``). The archive
has no pinned checksum (its host may repack it): its sha256 is printed, and ``--sha256 HEX``
insists on that exact file.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import tarfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.fetch import DataError, fetch, sha256_of

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
ARCHIVE = "de-en.tgz"
MIRROR_SUBPATH = "iwslt14/de-en.tgz"
DEFAULT_DEST_DIR = Path("data/iwslt14")
LANGS = ("de", "en")
TEST_SETS = (
    "IWSLT14.TED.dev2010",
    "IWSLT14.TEDX.dev2012",
    "IWSLT14.TED.tst2010",
    "IWSLT14.TED.tst2011",
    "IWSLT14.TED.tst2012",
)
VALID_EVERY = 23  # every 23rd cleaned training pair validates
MAX_WORDS = 175  # longer training pairs are dropped
MAX_RATIO = 1.5  # training pairs whose word counts differ by more than this factor are dropped
KEPT_TAGS = ("title", "description")  # metadata whose text is a translated sentence
DROPPED_TAGS = ("url", "talkid", "keywords", "speaker", "reviewer", "translator", "doc")  # metadata lines

_TAG_LINE = re.compile(r"^\s*</?(\w+)[^>]*>(.*?)(?:</\1>)?\s*$")
_SEGMENT = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')


def train_lines(text: str) -> list[str]:
    """The sentences of a ``train.tags`` file: metadata lines dropped, title and description text kept."""
    lines = []
    for line in text_lines(text):
        tag = _TAG_LINE.match(line)
        name = tag.group(1) if tag else None
        if tag is not None and name in KEPT_TAGS:
            lines.append(html.unescape(tag.group(2).strip()))
        elif name not in DROPPED_TAGS:
            lines.append(html.unescape(line.strip()))
    return lines


def text_lines(text: str) -> list[str]:
    """Lines split at newlines only (not at Unicode line separators inside a sentence)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def xml_segments(text: str) -> list[str]:
    """The text of every ``<seg id="N">`` element of an IWSLT dev/test XML file, in order."""
    return [html.unescape(segment) for segment in _SEGMENT.findall(text)]


def clean(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs with 1..MAX_WORDS words on each side and a word-count ratio of at most MAX_RATIO."""
    kept = []
    for source, target in pairs:
        source_words, target_words = len(source.split()), len(target.split())
        if not (1 <= source_words <= MAX_WORDS and 1 <= target_words <= MAX_WORDS):
            continue
        if max(source_words, target_words) > MAX_RATIO * min(source_words, target_words):
            continue
        kept.append((source, target))
    return kept


def split_valid(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, valid): pair number n (counting from 1) validates when n is a multiple of VALID_EVERY."""
    train = [pair for number, pair in enumerate(pairs, start=1) if number % VALID_EVERY]
    valid = [pair for number, pair in enumerate(pairs, start=1) if not number % VALID_EVERY]
    return train, valid


def read_member(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, origin: Path) -> str:
    """The UTF-8 text of the archive member whose file name is ``name`` (in any folder)."""
    if name not in members:
        raise DataError(
            f"{origin} has no file {name}: it is not the IWSLT14 de-en archive. "
            f"Download it again, or point --source at the original {ARCHIVE}."
        )
    stream = archive.extractfile(members[name])
    if stream is None:
        raise DataError(f"{name} in {origin} is not a regular file: download the archive again")
    try:
        return stream.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{name} in {origin} is not UTF-8 ({error}): download the archive again") from None


def aligned(name: str, sources: list[str], targets: list[str]) -> list[tuple[str, str]]:
    """The German and English lines of ``name`` as pairs; they must be equally many."""
    if len(sources) != len(targets):
        raise DataError(
            f"{name}: {len(sources):,} German but {len(targets):,} English lines, so the pairs cannot be "
            "aligned. The archive is damaged or a different release: download it again."
        )
    return list(zip(sources, targets))


def extract(archive_path: Path) -> dict[str, list[tuple[str, str]]]:
    """The train, valid and test pairs of the IWSLT14 de-en archive."""
    try:
        with tarfile.open(archive_path) as archive:
            members = {Path(member.name).name: member for member in archive.getmembers() if member.isfile()}

            def text(name: str) -> str:
                return read_member(archive, members, name, archive_path)

            tags = [train_lines(text(f"train.tags.de-en.{lang}")) for lang in LANGS]
            test = []
            for test_set in TEST_SETS:
                segments = [xml_segments(text(f"{test_set}.de-en.{lang}.xml")) for lang in LANGS]
                test += aligned(test_set, *segments)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            f"{archive_path} is not a readable .tgz archive ({error}): delete it and run this script again"
        ) from None
    train, valid = split_valid(clean(aligned("train.tags.de-en", *tags)))
    return {"train": train, "valid": valid, "test": test}


def write_split(dest_dir: Path, split: str, pairs: list[tuple[str, str]]) -> None:
    """Write ``<split>.de`` and ``<split>.en``, one sentence per line."""
    for side, lang in enumerate(LANGS):
        text = "".join(pair[side] + "\n" for pair in pairs)
        (dest_dir / f"{split}.{lang}").write_text(text, encoding="utf-8")


def prepare(dest_dir: Path, source: Path | None = None, sha256: str | None = None) -> tuple[Path, dict[str, int]]:
    """Fetch the archive into ``dest_dir``, write the three splits, and return the archive and pair counts."""
    archive = fetch("iwslt14 de-en", URL, sha256, dest_dir / ARCHIVE, source, MIRROR_SUBPATH)
    splits = extract(archive)
    for split, pairs in splits.items():
        write_split(dest_dir, split, pairs)
    return archive, {split: len(pairs) for split, pairs in splits.items()}


def _sha256_arg(value: str) -> str:
    """argparse type: a 64-digit hex sha256, returned in lower case."""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise argparse.ArgumentTypeError(f"expected 64 hexadecimal digits, got {value!r}")
    return value.lower()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Download (or copy from --source / $SEQ2SEQ_DATA_MIRROR) the IWSLT14 de-en archive and "
            "prepare raw, cased train/valid/test files for translation."
        )
    )
    parser.add_argument("--source", type=Path, help=f"local copy of {ARCHIVE} to use instead of downloading")
    parser.add_argument(
        "--dest-dir",
        type=Path,
        default=DEFAULT_DEST_DIR,
        help=f"folder to write the archive and the prepared files into (default: {DEFAULT_DEST_DIR})",
    )
    parser.add_argument("--sha256", type=_sha256_arg, help=f"expected sha256 of {ARCHIVE}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    args = parse_args(argv)
    try:
        archive, counts = prepare(args.dest_dir, args.source, args.sha256)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"iwslt14 de-en: {args.dest_dir}/{{train,valid,test}}.{{de,en}}")
    print("  pairs: " + ", ".join(f"{split} {count:,}" for split, count in counts.items()))
    status = "matches --sha256" if args.sha256 else "not pinned; pass --sha256 with this value to pin it"
    print(f"  {ARCHIVE} sha256: {sha256_of(archive)} ({status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
