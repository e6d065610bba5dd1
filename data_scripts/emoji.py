"""Build a real captioning set from the Noto colour emoji: each emoji's picture, captioned with its Unicode name.

Usage (from the project root)::

    sudo apt-get install fonts-noto-color-emoji unicode-data    # once (Debian / Ubuntu)
    python data_scripts/emoji.py                                # writes data/emoji/
    python data_scripts/emoji.py --size 96 --force              # rebuild at another size
    python data_scripts/emoji.py --font F.ttf --emoji-test T.txt   # the two files from elsewhere

Every ``fully-qualified`` line of Unicode's ``emoji-test.txt`` (package ``unicode-data``) is one
image: the emoji drawn by Pillow from ``NotoColorEmoji.ttf`` (package ``fonts-noto-color-emoji``)
at the font's only bitmap size, in colour on white, centred on a square and resized to
``--size`` pixels. Its caption is its Unicode name, as is ("man mage: medium-light skin tone").
Emoji that the font cannot draw (blank, or the same picture as an unassigned code point) are
skipped and counted.

The split is about 80/10/10 by a hash of the name, so it is the same on every machine and the
test emoji are pictures never seen in training: many are skin-tone variants whose siblings are
in train, so a captioner must compose "man mage" with "dark skin tone" to name them.

Output, in the Karpathy layout every captioning loader reads::

    data/emoji/dataset_emoji.json      one sentence per image; extra fields: emoji, codepoints, group, subgroup
    data/emoji/images/<codepoints>.png 1f9d9-1f3fc-200d-2642-fe0f.png and so on

The folder is built beside the destination and renamed into place when complete. A rerun
finds it complete and stops; ``--force`` rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image, ImageChops, ImageDraw, ImageFont, features
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.fetch import DataError
from data_scripts.karpathy import IMAGES_FOLDER, SplitCount, json_name, missing_images, parse_dataset, split_counts

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
DEFAULT_EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
DEFAULT_DEST_DIR = Path("data/emoji")
DEFAULT_SIZE = 72
APT_INSTALL = "sudo apt-get install fonts-noto-color-emoji unicode-data"
NAME = "emoji"
FONT_PIXELS = 109  # the only bitmap strike of NotoColorEmoji.ttf: Pillow refuses other sizes
UNASSIGNED = "\u0378"  # no character: what the font draws for it is its "missing glyph"
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}
QUALIFIED = "fully-qualified"

_DATA_LINE = re.compile(
    r"^(?P<codes>[0-9A-Fa-f]{4,6}(?: [0-9A-Fa-f]{4,6})*)\s*;\s*(?P<status>[a-z-]+)\s*"
    r"#.*?\sE\d+\.\d+\s+(?P<name>\S.*?)\s*$"
)
_GROUP_LINE = re.compile(r"^#\s*(?P<kind>group|subgroup):\s*(?P<name>.+?)\s*$")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SKIN_TONE_SUFFIX = " skin tone"


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji of emoji-test.txt."""

    codepoints: tuple[int, ...]
    name: str  # "man mage: medium-light skin tone"
    group: str  # "People & Body"
    subgroup: str  # "person-fantasy"

    @property
    def text(self) -> str:
        """The emoji as a string."""
        return "".join(map(chr, self.codepoints))

    @property
    def filename(self) -> str:
        """``1f9d9-1f3fc-200d-2642-fe0f.png``: the code points in lower-case hex."""
        return "-".join(f"{point:04x}" for point in self.codepoints) + ".png"


@dataclass(frozen=True)
class Summary:
    """What a run produced (or found already in place)."""

    counts: dict[str, SplitCount]
    unseen_variants: int  # test emoji that are skin-tone variants of an emoji in train
    skipped: tuple[str, ...]  # names of the emoji the font could not draw (empty when reused)
    reused: bool  # the destination was already complete


# --- emoji-test.txt -----------------------------------------------------------------------------------


def parse_emoji_test(text: str, origin: str = "emoji-test.txt") -> list[Emoji]:
    """Every fully-qualified emoji of an ``emoji-test.txt`` text, in file order, with its group and subgroup.

    Component, minimally-qualified and unqualified lines are left out. The name is the comment's
    text after its version token (``E13.0``).

    Raises:
        DataError: a line that is neither a comment nor ``code points ; status # emoji E<version> name``.
    """
    emojis, group, subgroup = [], "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            heading = _GROUP_LINE.match(line)
            if heading and heading["kind"] == "group":
                group, subgroup = heading["name"], ""
            elif heading:
                subgroup = heading["name"]
            continue
        entry = _DATA_LINE.match(line)
        if entry is None:
            raise DataError(
                f"{origin} line {number} is not 'code points ; status # emoji E<version> name': {line[:80]!r}. "
                "Pass --emoji-test the emoji-test.txt of the unicode-data package."
            )
        if entry["status"] == QUALIFIED:
            codepoints = tuple(int(code, 16) for code in entry["codes"].split())
            emojis.append(Emoji(codepoints, entry["name"], group, subgroup))
    return emojis


def tokenize(name: str) -> list[str]:
    """Lower-case words and single punctuation marks: ``man mage: dark skin tone`` -> ``man mage : dark skin tone``."""
    return _TOKEN.findall(name.lower())


def split_of(name: str) -> str:
    """The split of an emoji ("train", "val" or "test") from a sha256 of its name: the same everywhere."""
    bucket = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % 100
    upper = 0
    for split, percent in SPLIT_PERCENT.items():
        upper += percent
        if bucket < upper:
            return split
    raise AssertionError("SPLIT_PERCENT must add up to 100")


def skin_tone_family(name: str) -> str:
    """The name without its skin tones ("kiss: woman, man, dark skin tone" -> "kiss: woman, man").

    An emoji and its skin-tone variants share a family; a name without a skin tone is its own family.
    """
    if _SKIN_TONE_SUFFIX not in name:
        return name
    head, _, qualifiers = name.partition(": ")
    kept = [part for part in qualifiers.split(", ") if not part.endswith(_SKIN_TONE_SUFFIX)]
    return f"{head}: {', '.join(kept)}" if kept else head


def skin_tone_families(names: Iterable[str]) -> dict[str, set[str]]:
    """The names grouped by family (``skin_tone_family``): family -> its names."""
    families: dict[str, set[str]] = {}
    for name in names:
        families.setdefault(skin_tone_family(name), set()).add(name)
    return families


def is_skin_tone_variant(name: str, families: dict[str, set[str]]) -> bool:
    """Whether ``name`` has a skin tone and another name of its family is in ``families``."""
    return _SKIN_TONE_SUFFIX in name and bool(families.get(skin_tone_family(name), set()) - {name})


def unseen_variants(splits: dict[str, str]) -> int:
    """How many test emoji (``splits`` maps name -> split) are skin-tone variants of an emoji in train."""
    train_families = skin_tone_families(name for name, split in splits.items() if split == "train")
    return sum(1 for name, split in splits.items() if split == "test" and is_skin_tone_variant(name, train_families))


# --- drawing ------------------------------------------------------------------------------------------


def load_font(path: Path) -> ImageFont.FreeTypeFont:
    """The font at ``path`` at its emoji size (:data:`FONT_PIXELS`).

    Raises:
        DataError: the file is missing (naming the apt-get line) or Pillow cannot load it.
    """
    if not path.is_file():
        raise DataError(
            f"emoji font not found: {path}. Install it with `{APT_INSTALL}`, "
            "or pass --font PATH to a copy of NotoColorEmoji.ttf."
        )
    try:
        return ImageFont.truetype(str(path), FONT_PIXELS)
    except OSError as error:
        raise DataError(
            f"Pillow cannot load {path} at {FONT_PIXELS} px ({error}): pass --font a colour emoji font "
            f"such as NotoColorEmoji.ttf (`{APT_INSTALL}`)."
        ) from None


def read_emoji_test(path: Path) -> str:
    """The text of emoji-test.txt; a missing file is a DataError naming the apt-get line."""
    if not path.is_file():
        raise DataError(
            f"emoji list not found: {path}. Install it with `{APT_INSTALL}`, "
            "or pass --emoji-test PATH to a copy of Unicode's emoji-test.txt."
        )
    return path.read_text(encoding="utf-8")


def render(font: ImageFont.FreeTypeFont, text: str, size: int) -> Image.Image:
    """``text`` drawn in colour on white, centred on a square, resized to ``size`` x ``size`` RGB."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=font, embedded_color=True
    )
    width, height = right - left, bottom - top
    side = int(max(width, height, 1))  # whole pixels: the box of a text drawn at (0, 0)
    canvas = Image.new("RGB", (side, side), "white")
    origin = ((side - width) / 2 - left, (side - height) / 2 - top)
    ImageDraw.Draw(canvas).text(origin, text, font=font, fill="black", embedded_color=True)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def drawn(image: Image.Image, missing_glyph: Image.Image) -> bool:
    """False when ``image`` is plain white or the same picture as the font's missing glyph."""
    extrema = cast(tuple[tuple[int, int], ...], image.getextrema())  # an RGB image: (low, high) per band
    blank = all(low == 255 for low, _ in extrema)
    return not blank and ImageChops.difference(image, missing_glyph).getbbox() is not None


def render_all(
    emojis: list[Emoji], font: ImageFont.FreeTypeFont, size: int, images_dir: Path
) -> tuple[list[Emoji], list[Emoji]]:
    """Save each drawable emoji as ``images_dir/<codepoints>.png``; return (drawn, skipped)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    missing_glyph = render(font, UNASSIGNED, size)
    kept, skipped = [], []
    for emoji in tqdm(emojis, desc="emoji", unit="emoji"):
        image = render(font, emoji.text, size)
        if drawn(image, missing_glyph):
            image.save(images_dir / emoji.filename)
            kept.append(emoji)
        else:
            skipped.append(emoji)
    return kept, skipped


# --- the data set -----------------------------------------------------------------------------------------


def karpathy_json(emojis: list[Emoji]) -> dict:
    """The Karpathy-layout data set of ``emojis``: one image and one sentence (its name) each."""
    images = []
    for number, emoji in enumerate(emojis):
        sentence = {"raw": emoji.name, "tokens": tokenize(emoji.name), "imgid": number, "sentid": number}
        images.append(
            {
                "filename": emoji.filename,
                "split": split_of(emoji.name),
                "imgid": number,
                "sentids": [number],
                "sentences": [sentence],
                "emoji": emoji.text,
                "codepoints": " ".join(f"{point:04X}" for point in emoji.codepoints),
                "group": emoji.group,
                "subgroup": emoji.subgroup,
            }
        )
    return {"dataset": NAME, "images": images}


def summarize(dataset: dict, skipped: list[Emoji], reused: bool) -> Summary:
    """Counts per split and the number of unseen skin-tone variants in test."""
    splits = {image["sentences"][0]["raw"]: image["split"] for image in dataset["images"]}
    return Summary(split_counts(dataset), unseen_variants(splits), tuple(e.name for e in skipped), reused)


def complete_dataset(dest: Path, size: int) -> dict | None:
    """The data set already in ``dest`` (None when there is none), provided it is complete and of ``size``.

    Raises:
        DataError: ``dest`` holds something else, or an incomplete or differently sized set.
    """
    if not dest.exists():
        return None
    json_path = dest / json_name(NAME)
    rebuild = "Pass --force to rebuild it (its contents are replaced), or choose another --dest."
    if not json_path.is_file():
        raise DataError(f"{dest} exists but holds no {json_path.name}. {rebuild}")
    dataset = parse_dataset(json_path.read_bytes(), str(json_path))
    missing = missing_images(dataset, dest / IMAGES_FOLDER)
    if missing or not dataset["images"]:
        raise DataError(f"{dest} is incomplete: {len(missing):,} of its images are missing. {rebuild}")
    with Image.open(dest / IMAGES_FOLDER / dataset["images"][0]["filename"]) as first:
        if first.size != (size, size):
            raise DataError(f"{dest} holds {first.width}x{first.height} images, not --size {size}. {rebuild}")
    return dataset


def build(emojis: list[Emoji], font: ImageFont.FreeTypeFont, size: int, dest: Path) -> tuple[dict, list[Emoji]]:
    """Draw ``emojis`` into a folder beside ``dest`` and rename it to ``dest``; return (data set, skipped)."""
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    retired = dest.with_name(f".{dest.name}.{os.getpid()}.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        kept, skipped = render_all(emojis, font, size, staging / IMAGES_FOLDER)
        if not kept:
            raise DataError(
                f"the font drew none of the {len(emojis):,} emoji: --font must be a colour emoji font "
                f"such as NotoColorEmoji.ttf (`{APT_INSTALL}`)."
            )
        dataset = karpathy_json(kept)
        (staging / json_name(NAME)).write_text(json.dumps(dataset, ensure_ascii=False) + "\n", encoding="utf-8")
        if dest.exists():
            dest.rename(retired)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)  # only once the new set is in place
    return dataset, skipped


def prepare(
    dest: Path,
    font_path: Path = DEFAULT_FONT,
    emoji_test: Path = DEFAULT_EMOJI_TEST,
    size: int = DEFAULT_SIZE,
    force: bool = False,
) -> Summary:
    """Build the emoji caption set in ``dest`` (or find it complete there) and summarize it.

    Raises:
        DataError: a package file is missing, emoji-test.txt is malformed, the font draws nothing,
            or ``dest`` holds something that is not a complete set (without ``force``).
    """
    if size < 1:
        raise DataError(f"--size must be a positive number of pixels, got {size}")
    if not force:
        dataset = complete_dataset(dest, size)
        if dataset is not None:
            return summarize(dataset, [], reused=True)
    text = read_emoji_test(emoji_test)
    font = load_font(font_path)
    emojis = parse_emoji_test(text, str(emoji_test))
    if not emojis:
        raise DataError(f"{emoji_test} lists no fully-qualified emoji: pass --emoji-test Unicode's emoji-test.txt.")
    if not features.check_feature("raqm"):
        print(
            "warning: this Pillow has no Raqm text layout, so emoji made of several code points "
            "(flags, families, skin tones) may be drawn as several pictures. Install Pillow from its "
            "wheels (pip install --force-reinstall pillow) or libraqm0 for correct images.",
            file=sys.stderr,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dataset, skipped = build(emojis, font, size, dest)
    return summarize(dataset, skipped, reused=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Draw every fully-qualified emoji with the Noto colour emoji font and caption it with its "
            f"Unicode name: a captioning set in the Karpathy layout. Needs `{APT_INSTALL}`."
        )
    )
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST_DIR, help=f"folder to write (default: {DEFAULT_DEST_DIR})"
    )
    parser.add_argument("--font", type=Path, default=DEFAULT_FONT, help=f"colour emoji font (default: {DEFAULT_FONT})")
    parser.add_argument(
        "--emoji-test", type=Path, default=DEFAULT_EMOJI_TEST, help=f"Unicode's list (default: {DEFAULT_EMOJI_TEST})"
    )
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"image width and height in pixels (default: {DEFAULT_SIZE})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild the set even when it is already complete")
    return parser.parse_args(argv)


def report(summary: Summary, dest: Path, size: int, seconds: float) -> None:
    """Print what the run produced."""
    total = sum(count.images for count in summary.counts.values())
    if summary.reused:
        print(f"emoji: {dest} is already complete ({total:,} images of {size}x{size}); pass --force to rebuild it")
    else:
        print(f"emoji: drew {total:,} emoji as {size}x{size} RGB images in {seconds:.0f} s")
        skipped = f"skipped {len(summary.skipped):,} emoji the font cannot draw"
        examples = f": {', '.join(summary.skipped[:5])}{', ...' if len(summary.skipped) > 5 else ''}"
        print(f"  {skipped}{examples if summary.skipped else ''}")
    print("  images: " + ", ".join(f"{split} {count.images:,}" for split, count in summary.counts.items()))
    test = summary.counts.get("test", SplitCount(0, 0)).images
    print(f"  test: {summary.unseen_variants:,} of {test:,} are skin-tone variants whose other variants are in train")
    print(f"  {dest / json_name(NAME)} and {dest / IMAGES_FOLDER}/")


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        summary = prepare(args.dest, args.font, args.emoji_test, args.size, args.force)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report(summary, args.dest, args.size, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
