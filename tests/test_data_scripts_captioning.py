"""Tests for the captioning data scripts: emoji (parsing, drawing, split, output) and Flickr8k / COCO.

No test needs the emoji packages or the network: the emoji tests draw a hand-made
emoji-test.txt with an ordinary TrueType font, the Flickr8k / COCO tests build tiny zips of
small JPEGs, and ``urllib.request.urlopen`` is replaced by one that fails as offline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from data_scripts import coco, emoji, flickr8k, karpathy
from data_scripts.fetch import MIRROR_ENV, DataError
from data_scripts.karpathy import Archive, Checksum

REPO_ROOT = Path(__file__).resolve().parents[1]


def offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def no_network_no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts offline and without a mirror; a test opts in to the mirror."""
    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python data_scripts/<script>`` the way a user does, with every proxy on a closed port."""
    closed_port = "http://127.0.0.1:9"  # fails at once, online or not
    environment = {key: value for key, value in os.environ.items() if key != MIRROR_ENV}
    environment |= {"http_proxy": closed_port, "https_proxy": closed_port, "no_proxy": ""}
    command = [sys.executable, str(REPO_ROOT / "data_scripts" / script), *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120, check=False)


# --- emoji: parsing, tokens, split ------------------------------------------------------------------------

EMOJI_TEST = """# emoji-test.txt
# Version: 15.0

# group: Letters & Signs

# subgroup: latin
0041                                       ; fully-qualified     # A E0.6 letter a
0042                                       ; unqualified         # B E0.6 letter b
00A9 FE0F                                  ; fully-qualified     # ©️ E0.6 copyright
00A9                                       ; minimally-qualified # © E0.6 copyright

# subgroup: blank
0020                                       ; fully-qualified     # \u0020 E1.0 space bar
E000                                       ; fully-qualified     # \ue000 E13.1 private thing

# group: Component

# subgroup: skin-tone
1F3FB                                      ; component           # 🏻 E1.0 light skin tone

# group: People

# subgroup: face
263A FE0F                                  ; fully-qualified     # ☺️ E0.6 smiling face
263A FE0F 1F3FF                            ; fully-qualified     # ☺️🏿 E1.0 smiling face: dark skin tone
"""


def test_parsing_keeps_fully_qualified_emoji_with_names_and_groups() -> None:
    emojis = emoji.parse_emoji_test(EMOJI_TEST)
    assert [e.name for e in emojis] == [
        "letter a",
        "copyright",
        "space bar",
        "private thing",
        "smiling face",
        "smiling face: dark skin tone",
    ]
    copyright_sign, dark_face = emojis[1], emojis[-1]
    assert copyright_sign.codepoints == (0xA9, 0xFE0F) and copyright_sign.text == "\u00a9\ufe0f"
    assert (copyright_sign.group, copyright_sign.subgroup) == ("Letters & Signs", "latin")
    assert (dark_face.group, dark_face.subgroup) == ("People", "face")
    assert dark_face.filename == "263a-fe0f-1f3ff.png"


def test_parsing_a_malformed_line_names_it() -> None:
    with pytest.raises(DataError, match="line 2 is not 'code points ; status"):
        emoji.parse_emoji_test("# group: X\n1F600 fully-qualified grinning face\n")


def test_tokens_are_lower_case_words_and_single_punctuation_marks() -> None:
    assert emoji.tokenize("Man mage: medium-light skin tone") == [
        "man", "mage", ":", "medium", "-", "light", "skin", "tone",
    ]  # fmt: skip
    assert emoji.tokenize("flag: Côte d’Ivoire")[:3] == ["flag", ":", "côte"]


def test_split_is_a_stable_hash_of_the_name_with_about_80_10_10() -> None:
    names = [f"emoji number {n}" for n in range(2000)]
    splits = [emoji.split_of(name) for name in names]
    for split, percent in emoji.SPLIT_PERCENT.items():
        assert abs(splits.count(split) / len(names) - percent / 100) < 0.04
    code = (
        "from data_scripts.emoji import split_of; print(''.join(split_of(f'emoji number {n}')[1] for n in range(2000)))"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other_process.stdout.strip() == "".join(split[1] for split in splits)


def test_skin_tone_families_and_unseen_variants() -> None:
    assert emoji.skin_tone_family("waving hand: medium-light skin tone") == "waving hand"
    assert emoji.skin_tone_family("man: dark skin tone, red hair") == "man: red hair"
    couple = "couple with heart: woman, man, medium skin tone, dark skin tone"
    assert emoji.skin_tone_family(couple) == "couple with heart: woman, man"
    assert emoji.skin_tone_family("flag: Wales") == "flag: Wales"
    splits = {
        "mage": "train",
        "mage: dark skin tone": "test",  # its base is in train: counts
        "elf: light skin tone": "test",
        "elf: dark skin tone": "train",  # a sibling in train: counts
        "troll: dark skin tone": "test",  # only itself: does not count
        "flag: Wales": "test",  # no skin tone: does not count
        "zombie: dark skin tone": "test",
        "zombie": "val",  # sibling not in train: does not count
    }
    assert emoji.unseen_variants(splits) == 2


def test_a_skin_tone_variant_needs_another_name_of_its_family() -> None:
    families = emoji.skin_tone_families(["elf", "elf: dark skin tone", "troll: dark skin tone", "flag: Wales"])
    assert families["elf"] == {"elf", "elf: dark skin tone"}
    assert emoji.is_skin_tone_variant("elf: light skin tone", families)
    assert emoji.is_skin_tone_variant("elf: dark skin tone", families)  # "elf" is another name of its family
    assert not emoji.is_skin_tone_variant("troll: dark skin tone", families)  # only itself
    assert not emoji.is_skin_tone_variant("elf", families)  # no skin tone
    assert not emoji.is_skin_tone_variant("mage: dark skin tone", families)  # no family


# --- emoji: drawing and the written set ---------------------------------------------------------------------


@pytest.fixture
def font_path() -> Path:
    """A TrueType font that any installation has: matplotlib's DejaVu Sans (or the system's)."""
    spec = importlib.util.find_spec("matplotlib")
    candidates = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    if spec is not None and spec.origin is not None:
        candidates.insert(0, Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.skip("no TrueType font to draw with")


@pytest.fixture
def emoji_test_file(tmp_path: Path) -> Path:
    path = tmp_path / "emoji-test.txt"
    path.write_text(EMOJI_TEST, encoding="utf-8")
    return path


def test_render_is_rgb_on_white_and_centred(font_path: Path) -> None:
    font = emoji.load_font(font_path)
    image = emoji.render(font, "O", 32)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    left, top, right, bottom = Image.eval(image, lambda value: 255 - value).getbbox()
    assert abs((left + right) / 2 - 16) <= 2 and abs((top + bottom) / 2 - 16) <= 2


def test_prepare_writes_images_and_a_karpathy_json(font_path: Path, emoji_test_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "emoji"
    summary = emoji.prepare(dest, font_path, emoji_test_file, size=24)
    assert not summary.reused
    assert set(summary.skipped) == {"space bar", "private thing"}  # blank, and the font's missing glyph
    dataset = json.loads((dest / "dataset_emoji.json").read_text(encoding="utf-8"))
    assert dataset["dataset"] == "emoji"
    names = [image["sentences"][0]["raw"] for image in dataset["images"]]
    assert names == ["letter a", "copyright", "smiling face", "smiling face: dark skin tone"]
    for number, image in enumerate(dataset["images"]):
        assert image["imgid"] == number and image["split"] == emoji.split_of(image["sentences"][0]["raw"])
        assert len(image["sentences"]) == 1
        assert image["sentences"][0]["tokens"] == emoji.tokenize(image["sentences"][0]["raw"])
        with Image.open(dest / "images" / image["filename"]) as picture:
            assert picture.mode == "RGB" and picture.size == (24, 24)
            assert picture.getextrema() != ((255, 255),) * 3  # something is drawn
    assert sorted(path.name for path in (dest / "images").iterdir()) == sorted(e["filename"] for e in dataset["images"])
    assert sum(count.images for count in summary.counts.values()) == 4
    assert os.listdir(dest.parent) == ["emoji"]  # no staging folder left behind


def test_rerun_keeps_a_complete_set_and_force_rebuilds_it(
    font_path: Path, emoji_test_file: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "emoji"
    emoji.prepare(dest, font_path, emoji_test_file, size=16)
    written = (dest / "dataset_emoji.json").stat().st_mtime_ns
    again = emoji.prepare(dest, Path("/no/font.ttf"), Path("/no/emoji-test.txt"), size=16)  # packages not needed
    assert again.reused and (dest / "dataset_emoji.json").stat().st_mtime_ns == written
    with pytest.raises(DataError, match=r"not --size 20.*--force"):
        emoji.prepare(dest, font_path, emoji_test_file, size=20)
    rebuilt = emoji.prepare(dest, font_path, emoji_test_file, size=20, force=True)
    assert not rebuilt.reused
    with Image.open(next((dest / "images").iterdir())) as picture:
        assert picture.size == (20, 20)
    assert sorted(os.listdir(tmp_path)) == ["emoji", "emoji-test.txt"]


def test_an_incomplete_set_is_not_taken_for_complete(font_path: Path, emoji_test_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "emoji"
    emoji.prepare(dest, font_path, emoji_test_file, size=16)
    next((dest / "images").iterdir()).unlink()
    with pytest.raises(DataError, match=r"incomplete: 1 of its images are missing.*--force"):
        emoji.prepare(dest, font_path, emoji_test_file, size=16)


def test_missing_packages_name_the_apt_get_line(tmp_path: Path, emoji_test_file: Path, font_path: Path) -> None:
    with pytest.raises(DataError) as no_font:
        emoji.prepare(tmp_path / "a", tmp_path / "NotoColorEmoji.ttf", emoji_test_file)
    with pytest.raises(DataError) as no_list:
        emoji.prepare(tmp_path / "b", font_path, tmp_path / "no-emoji-test.txt")
    for error, option in ((no_font, "--font"), (no_list, "--emoji-test")):
        assert emoji.APT_INSTALL in str(error.value) and option in str(error.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_emoji_script_without_the_packages_exits_2_with_the_install_line(tmp_path: Path) -> None:
    result = run_script("emoji.py", "--dest", str(tmp_path / "e"), "--font", str(tmp_path / "none.ttf"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sudo apt-get install fonts-noto-color-emoji unicode-data" in result.stderr


# --- Flickr8k and COCO with tiny stand-in archives ------------------------------------------------------------


def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (shade, 255 - shade, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_entry(filename: str, split: str, filepath: str | None = None) -> dict:
    entry = {
        "filename": filename,
        "split": split,
        "sentences": [{"raw": "A dog runs.", "tokens": ["a", "dog", "runs"]}],
    }
    return entry | ({"filepath": filepath} if filepath is not None else {})


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def md5(path: Path) -> Checksum:
    return Checksum("md5", hashlib.md5(path.read_bytes()).hexdigest())


FLICKR_IMAGES = {"1000_a.jpg": "train", "1001_b.jpg": "val", "1002_c.jpg": "test"}


@pytest.fixture
def flickr_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with tiny Flickr8k_Dataset.zip and caption_datasets.zip; the script's checks point at them."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    photos = {f"Flicker8k_Dataset/{name}": jpeg_bytes(n * 60) for n, name in enumerate(FLICKR_IMAGES)}
    photos["Flicker8k_Dataset/9999_extra.jpg"] = jpeg_bytes(200)  # in the archive, not in the split
    photos["__MACOSX/Flicker8k_Dataset/._1000_a.jpg"] = b"resource fork"
    images_zip = write_zip(folder / "Flickr8k_Dataset.zip", photos)
    dataset = {"dataset": "flickr8k", "images": [image_entry(name, split) for name, split in FLICKR_IMAGES.items()]}
    write_zip(folder / "caption_datasets.zip", {"dataset_flickr8k.json": json.dumps(dataset).encode()})
    archive = dataclasses.replace(flickr8k.FLICKR8K.image_archives[""], checksum=md5(images_zip))
    tiny = dataclasses.replace(
        flickr8k.FLICKR8K, image_archives={"": archive}, split_sizes={"train": 1, "val": 1, "test": 1}
    )
    monkeypatch.setattr(flickr8k, "FLICKR8K", tiny)
    return folder


def test_flickr8k_addresses_and_published_sizes() -> None:
    photos = flickr8k.FLICKR8K.image_archives[""]
    assert photos.url == "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip"
    assert photos.filename == "Flickr8k_Dataset.zip" and photos.checksum is not None
    assert karpathy.KARPATHY_URL == "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
    assert flickr8k.FLICKR8K.split_sizes == {"train": 6_000, "val": 1_000, "test": 1_000}
    assert {a.url for a in coco.COCO.image_archives.values()} == {
        "http://images.cocodataset.org/zips/train2014.zip",
        "http://images.cocodataset.org/zips/val2014.zip",
    }
    assert sum(coco.COCO.split_sizes.values()) == 123_287


def test_flickr8k_from_source_zips(flickr_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "data" / "flickr8k"
    assert flickr8k.main(["--source", str(flickr_source), "--dest-dir", str(dest)]) == 0
    with zipfile.ZipFile(flickr_source / "caption_datasets.zip") as archive:
        assert (dest / "dataset_flickr8k.json").read_bytes() == archive.read("dataset_flickr8k.json")
    with zipfile.ZipFile(flickr_source / "Flickr8k_Dataset.zip") as archive:
        for name in FLICKR_IMAGES:
            assert (dest / "images" / name).read_bytes() == archive.read(f"Flicker8k_Dataset/{name}")
    assert sorted(os.listdir(dest / "images")) == sorted(FLICKR_IMAGES)  # flat; no extra photo, no resource fork
    assert sorted(os.listdir(dest)) == ["dataset_flickr8k.json", "images"]  # the source zips are read in place
    out = capsys.readouterr().out
    assert "train 1 images / 1 sentences" in out and "test 1 images" in out
    # A rerun finds everything in place and needs neither the source nor the network.
    assert flickr8k.main(["--dest-dir", str(dest)]) == 0


def test_flickr8k_from_unpacked_folders(flickr_source: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(flickr_source / "Flickr8k_Dataset.zip") as archive:
        archive.extractall(unpacked)
    with zipfile.ZipFile(flickr_source / "caption_datasets.zip") as archive:
        archive.extractall(unpacked)
    dest = tmp_path / "flickr8k"
    counts = karpathy.prepare(flickr8k.FLICKR8K, dest, unpacked)
    assert {split: count.images for split, count in counts.items()} == {"train": 1, "val": 1, "test": 1}
    assert sorted(os.listdir(dest / "images")) == sorted(FLICKR_IMAGES)


def test_flickr8k_through_the_mirror(flickr_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    flickr_source.rename(mirror / "flickr8k")
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    dest = tmp_path / "flickr8k"
    karpathy.prepare(flickr8k.FLICKR8K, dest)
    assert sorted(os.listdir(dest / "images")) == sorted(FLICKR_IMAGES)


def test_flickr8k_image_missing_from_the_archive(flickr_source: Path, tmp_path: Path) -> None:
    dataset = {"images": [image_entry(name, split) for name, split in FLICKR_IMAGES.items()]}
    dataset["images"].append(image_entry("1003_missing.jpg", "train"))
    (flickr_source / "dataset_flickr8k.json").write_text(json.dumps(dataset))  # taken before the zip
    sizes = {"train": 2, "val": 1, "test": 1}
    tiny = dataclasses.replace(flickr8k.FLICKR8K, split_sizes=sizes)
    with pytest.raises(DataError, match=r"1 of the 4 images .* \(e\.g\. 1003_missing\.jpg\)") as error:
        karpathy.prepare(tiny, tmp_path / "flickr8k", flickr_source)
    assert "Flickr8k_Dataset.zip" in str(error.value)
    assert len(os.listdir(tmp_path / "flickr8k" / "images")) == 3  # what was found is kept


def test_flickr8k_split_sizes_are_checked(flickr_source: Path, tmp_path: Path) -> None:
    other = dataclasses.replace(flickr8k.FLICKR8K, split_sizes={"train": 6_000, "val": 1_000, "test": 1_000})
    with pytest.raises(DataError, match="train 1, val 1, test 1 images, but the published split has train 6,000"):
        karpathy.prepare(other, tmp_path / "flickr8k", flickr_source)
    assert not (tmp_path / "flickr8k" / "dataset_flickr8k.json").exists()


def test_flickr8k_checksum_mismatch_and_override(
    flickr_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = dataclasses.replace(flickr8k.FLICKR8K.image_archives[""], checksum=Checksum("md5", "0" * 32))
    pinned_wrong = dataclasses.replace(flickr8k.FLICKR8K, image_archives={"": wrong})
    with pytest.raises(DataError, match=r"checksum mismatch .*Flickr8k_Dataset.zip"):
        karpathy.prepare(pinned_wrong, tmp_path / "a", flickr_source)
    digest = hashlib.sha256((flickr_source / "Flickr8k_Dataset.zip").read_bytes()).hexdigest()
    override = {"Flickr8k_Dataset.zip": Checksum("sha256", digest)}
    karpathy.prepare(pinned_wrong, tmp_path / "b", flickr_source, override)
    assert flickr8k.main(["--source", str(flickr_source), "--dest-dir", str(tmp_path / "c"),
                          "--checksum", f"caption_datasets.zip=sha256:{'f' * 64}"]) == 2  # fmt: skip
    assert "checksum mismatch" in capsys.readouterr().err


def test_flickr8k_offline_without_source_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flickr8k.main(["--dest-dir", str(tmp_path / "flickr8k")]) == 2
    message = capsys.readouterr().err
    for expected in (karpathy.KARPATHY_URL, "offline", "--source", MIRROR_ENV, "flickr8k/caption_datasets.zip"):
        assert expected in message


def test_flickr8k_source_without_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flickr8k.main(["--source", str(tmp_path), "--dest-dir", str(tmp_path / "out")]) == 2
    assert "holds neither dataset_flickr8k.json nor caption_datasets.zip" in capsys.readouterr().err
    assert flickr8k.main(["--source", str(tmp_path / "nowhere")]) == 2
    assert "--source must be a folder" in capsys.readouterr().err


def test_flickr8k_script_offline_exits_2(tmp_path: Path) -> None:
    result = run_script("flickr8k.py", "--dest-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert karpathy.KARPATHY_URL in result.stderr and "--source" in result.stderr


def test_coco_keeps_the_train2014_and_val2014_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "downloads"
    source.mkdir()
    train_name, val_names = "COCO_train2014_000000000009.jpg", ["COCO_val2014_000000000042.jpg", "COCO_val2014_1.jpg"]
    write_zip(source / "train2014.zip", {f"train2014/{train_name}": jpeg_bytes(10)})
    write_zip(source / "val2014.zip", {f"val2014/{name}": jpeg_bytes(20) for name in val_names})
    entries = [image_entry(train_name, "train", "train2014"), image_entry(val_names[0], "restval", "val2014")]
    entries.append(image_entry(val_names[1], "test", "val2014"))
    write_zip(source / "caption_datasets.zip", {"dataset_coco.json": json.dumps({"images": entries}).encode()})
    archives = {
        folder: dataclasses.replace(archive, checksum=md5(source / archive.filename))
        for folder, archive in coco.COCO.image_archives.items()
    }
    tiny = dataclasses.replace(coco.COCO, image_archives=archives, split_sizes={"train": 1, "restval": 1, "test": 1})
    monkeypatch.setattr(coco, "COCO", tiny)
    dest = tmp_path / "coco"
    assert coco.main(["--source", str(source), "--dest-dir", str(dest)]) == 0
    assert (dest / "images" / "train2014" / train_name).is_file()
    assert sorted(os.listdir(dest / "images" / "val2014")) == sorted(val_names)


# --- the Karpathy JSON and safe extraction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"split": "train", "sentences": [{"raw": "x", "tokens": ["x"]}]}, 'has no "filename"'),
        (image_entry("a.jpg", "dev"), "has split 'dev'"),
        ({"filename": "a.jpg", "split": "val", "sentences": []}, "no reference sentences"),
        ({"filename": "a.jpg", "split": "val", "sentences": [{"raw": "x"}]}, 'without a "tokens" list'),
        (image_entry("../a.jpg", "val"), "expected a plain file name"),
        (image_entry("a.jpg", "val", "../../etc"), "expected a relative folder"),
        (image_entry("a.jpg", "val", "/abs"), "expected a relative folder"),
    ],
)
def test_json_problems_are_named(entry: dict, problem: str) -> None:
    data = json.dumps({"images": [image_entry("ok.jpg", "train"), entry]}).encode()
    with pytest.raises(DataError, match=f"image entry 1 .*{re.escape(problem)}"):
        karpathy.parse_dataset(data, "dataset_x.json")
    with pytest.raises(DataError, match="not a JSON file"):
        karpathy.parse_dataset(b"<html>", "dataset_x.json")


def test_zip_members_cannot_write_outside_the_images_folder(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "evil.zip", {"../../outside.jpg": b"x", "inside/a.jpg": b"a"})
    dest = tmp_path / "deep" / "er" / "images"
    found = karpathy.extract_images(archive, {"outside.jpg": dest / "outside.jpg", "b.jpg": dest / "b.jpg"})
    assert found == 1 and (dest / "outside.jpg").read_bytes() == b"x"
    assert not (tmp_path / "outside.jpg").exists() and not (tmp_path / "deep" / "outside.jpg").exists()


def test_checksum_text_forms() -> None:
    assert Checksum.parse("MD5:" + "A" * 32) == Checksum("md5", "a" * 32)
    assert Checksum.parse("b" * 64) == Checksum("sha256", "b" * 64)
    for bad in ("md5:" + "a" * 64, "sha1:" + "a" * 40, "zz" * 32):
        with pytest.raises(ValueError, match="expected sha256:HEX"):
            Checksum.parse(bad)


def test_archive_name_is_the_last_part_of_its_address() -> None:
    assert Archive("https://host/a/b/train2014.zip").filename == "train2014.zip"


def test_a_damaged_archive_member_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as writer:
        writer.writestr("photos/a.jpg", b"A" * 64)
    archive.write_bytes(archive.read_bytes().replace(b"A" * 64, b"B" * 64))  # the stored CRC no longer matches
    with pytest.raises(DataError, match=r"photos/a\.jpg in .*damaged\.zip cannot be unpacked"):
        karpathy.extract_images(archive, {"a.jpg": tmp_path / "images" / "a.jpg"})
    assert not (tmp_path / "images" / "a.jpg").exists()


def test_an_image_of_another_set_is_refused(flickr_source: Path, tmp_path: Path) -> None:
    dataset = {"images": [image_entry(name, split, "train2014") for name, split in FLICKR_IMAGES.items()]}
    (flickr_source / "dataset_flickr8k.json").write_text(json.dumps(dataset))
    with pytest.raises(DataError, match=r"has filepath 'train2014'.*belongs to another set"):
        karpathy.prepare(flickr8k.FLICKR8K, tmp_path / "flickr8k", flickr_source)


def test_a_checksum_for_an_unknown_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        flickr8k.main(["--checksum", f"Flickr8k.zip=sha256:{'a' * 64}"])
    assert "none of the files: caption_datasets.zip, Flickr8k_Dataset.zip" in capsys.readouterr().err
