"""Tests for the translation data scripts: Multi30k (sources, checks) and IWSLT14 (parsing, preparing).

No test touches the network: ``urllib.request.urlopen`` is replaced by one that fails as offline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import urllib.error
from pathlib import Path

import pytest

from data_scripts import iwslt14, multi30k
from data_scripts.fetch import MIRROR_ENV, DataError, sha256_of

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_multi30k() -> Path | None:
    """The real Multi30k copy of this machine, if there is one."""
    root = Path(os.environ[MIRROR_ENV]) if os.environ.get(MIRROR_ENV) else REPO_ROOT.parent / "shared" / "data"
    folder = root / "multi30k"
    return folder if (folder / "train.de.gz").is_file() else None


SHARED_MULTI30K = shared_multi30k()  # read before the autouse fixture clears the mirror variable


def offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def no_network_no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts offline and without a mirror; a test opts in to either."""
    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def run_script(
    script: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python data_scripts/<script>`` the way a user does."""
    command = [sys.executable, str(REPO_ROOT / "data_scripts" / script), *args]
    environment = {key: value for key, value in os.environ.items() if key != MIRROR_ENV} | (env or {})
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120, check=False)


# --- multi30k with tiny stand-in files ----------------------------------------------------------

TINY = {
    "train": (["Ein Hund.", "Zwei Katzen.", "Ein Haus."], ["A dog.", "Two cats.", "A house."]),
    "val": (["Ein Baum."], ["A tree."]),
    "test_2016_flickr": (["Ein Boot.", "Ein Ball."], ["A boat.", "A ball."]),
}


@pytest.fixture
def tiny_multi30k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of tiny gzipped de/en files, with the script's checksums and counts pointed at them."""
    folder = tmp_path / "copies"
    folder.mkdir()
    checksums = {}
    for split, sides in TINY.items():
        for lang, lines in zip(("de", "en"), sides):
            path = folder / multi30k.file_name(split, lang)
            path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
            checksums[path.name] = sha256_of(path)
    monkeypatch.setattr(multi30k, "SHA256", checksums)
    monkeypatch.setattr(multi30k, "LINES", {split: len(sides[0]) for split, sides in TINY.items()})
    return folder


def test_multi30k_addresses_are_the_public_raw_files() -> None:
    assert set(multi30k.SHA256) == {
        f"{split}.{lang}.gz" for split in ("train", "val", "test_2016_flickr") for lang in ("de", "en", "fr", "cs")
    }
    assert multi30k.URL.format(name="val.fr.gz") == (
        "https://github.com/multi30k/dataset/raw/master/data/task1/raw/val.fr.gz"
    )
    assert multi30k.LINES == {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}


def test_multi30k_from_a_source_folder(tmp_path: Path, tiny_multi30k: Path) -> None:
    dest = tmp_path / "data" / "multi30k"
    paths = multi30k.prepare(dest, ["de", "en"], tiny_multi30k)
    assert sorted(path.name for path in paths) == sorted(multi30k.SHA256)
    for path in paths:
        assert path.read_bytes() == (tiny_multi30k / path.name).read_bytes()


def test_multi30k_from_the_mirror(tmp_path: Path, tiny_multi30k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tiny_multi30k.rename(mirror / "multi30k")
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    paths = multi30k.prepare(tmp_path / "out", ["en"])
    assert sorted(path.name for path in paths) == ["test_2016_flickr.en.gz", "train.en.gz", "val.en.gz"]


def test_multi30k_wrong_line_count(tmp_path: Path, tiny_multi30k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(multi30k.LINES, "val", 2)
    with pytest.raises(DataError, match="expected 2"):
        multi30k.prepare(tmp_path / "out", ["de", "en"], tiny_multi30k)


def test_multi30k_misaligned_languages(tmp_path: Path, tiny_multi30k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tiny_multi30k / "train.en.gz"
    broken.write_bytes(gzip.compress(b"A dog.\n\nA house.\n"))
    monkeypatch.setitem(multi30k.SHA256, broken.name, sha256_of(broken))
    with pytest.raises(DataError, match="line 2 is empty in only one"):
        multi30k.prepare(tmp_path / "out", ["de", "en"], tiny_multi30k)


def test_multi30k_checksum_mismatch(tmp_path: Path, tiny_multi30k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(multi30k.SHA256, "val.de.gz", "0" * 64)
    with pytest.raises(DataError, match="checksum mismatch"):
        multi30k.prepare(tmp_path / "out", ["de", "en"], tiny_multi30k)


def test_multi30k_offline_error_names_the_address_and_alternatives(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        multi30k.prepare(tmp_path / "out", ["de", "en"])
    message = str(error.value)
    address = multi30k.URL.format(name="train.de.gz")
    for expected in (address, "offline", "--source", MIRROR_ENV, "multi30k/train.de.gz"):
        assert expected in message


def test_multi30k_source_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert multi30k.main(["--source", str(tmp_path / "nowhere")]) == 2
    assert "--source must be a folder" in capsys.readouterr().err


@pytest.mark.skipif(SHARED_MULTI30K is None, reason="no local copy of Multi30k")
def test_multi30k_script_on_the_real_copy(tmp_path: Path) -> None:
    dest = tmp_path / "m"
    result = run_script("multi30k.py", "--source", str(SHARED_MULTI30K), "--dest-dir", str(dest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "29,000" in result.stdout and "1,014" in result.stdout
    for name in ("train.de.gz", "val.en.gz", "test_2016_flickr.de.gz"):
        assert sha256_of(dest / name) == multi30k.SHA256[name]


@pytest.mark.skipif(SHARED_MULTI30K is None, reason="no local copy of Multi30k")
def test_multi30k_script_through_the_mirror_variable(tmp_path: Path) -> None:
    mirror = str(SHARED_MULTI30K.parent)
    result = run_script("multi30k.py", "--langs", "fr", env={MIRROR_ENV: mirror}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "data" / "multi30k").iterdir()) == [
        "test_2016_flickr.fr.gz",
        "train.fr.gz",
        "val.fr.gz",
    ]


# --- iwslt14 parsing --------------------------------------------------------------------------------

TRAIN_TAGS_DE = """<url>http://www.ted.com/talks/lang/de/example.html</url>
<keywords>talks, science</keywords>
<speaker>Jane Doe</speaker>
<talkid>1</talkid>
<title>Jane Doe: Über Bäume</title>
<description>Ein Vortrag über Bäume &amp; Wälder.</description>
Bäume sind groß.
<i>Wirklich</i> groß.
"""
TRAIN_TAGS_EN = """<url>http://www.ted.com/talks/example.html</url>
<keywords>talks, science</keywords>
<speaker>Jane Doe</speaker>
<talkid>1</talkid>
<title>Jane Doe: About trees</title>
<description>A talk about trees &amp; forests.</description>
Trees are big.
<i>Really</i> big.
"""


def xml_file(segments: list[str]) -> str:
    lines = [f'<seg id="{number}"> {text} </seg>' for number, text in enumerate(segments, start=1)]
    body = "\n".join(lines)
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n<srcset setid="x">\n<doc docid="1">'
    return f"{head}\n{body}\n</doc>\n</srcset>\n</mteval>\n"


def test_train_tags_keep_sentences_titles_and_descriptions() -> None:
    assert iwslt14.train_lines(TRAIN_TAGS_EN) == [
        "Jane Doe: About trees",
        "A talk about trees & forests.",
        "Trees are big.",
        "<i>Really</i> big.",  # inline markup is text, not a metadata line
    ]
    assert len(iwslt14.train_lines(TRAIN_TAGS_DE)) == len(iwslt14.train_lines(TRAIN_TAGS_EN))


def test_xml_segments_in_order_with_entities_decoded() -> None:
    text = xml_file(["Hallo &quot;Welt&quot;.", "Zweiter  Satz."])
    assert iwslt14.xml_segments(text) == ['Hallo "Welt".', "Zweiter  Satz."]


def test_cleaning_drops_empty_long_and_unbalanced_pairs() -> None:
    long = " ".join(["Wort"] * (iwslt14.MAX_WORDS + 1))
    sources = ["Ein Hund.", "", long, "eins zwei drei vier", "Gut so."]
    targets = ["A dog.", "Nothing", long, "one", "Fine then."]
    assert iwslt14.clean(list(zip(sources, targets))) == [("Ein Hund.", "A dog."), ("Gut so.", "Fine then.")]


def test_every_23rd_pair_validates() -> None:
    pairs = [(str(n), str(n)) for n in range(1, 51)]
    train, valid = iwslt14.split_valid(pairs)
    assert valid == [("23", "23"), ("46", "46")]
    assert len(train) == 48 and ("24", "24") in train


# --- iwslt14 end to end on a tiny hand-made archive ---------------------------------------------------


def add_file(archive: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(f"de-en/{name}")
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def make_archive(path: Path, english_test_extra: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        add_file(archive, "train.tags.de-en.de", TRAIN_TAGS_DE)
        add_file(archive, "train.tags.de-en.en", TRAIN_TAGS_EN)
        for number, test_set in enumerate(iwslt14.TEST_SETS):
            english = [f"Sentence {number}."] + (["Extra."] if english_test_extra else [])
            add_file(archive, f"{test_set}.de-en.de.xml", xml_file([f"Satz {number}."]))
            add_file(archive, f"{test_set}.de-en.en.xml", xml_file(english))
    return path


def test_iwslt14_prepares_splits_from_a_local_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive(tmp_path / "de-en.tgz")
    dest = tmp_path / "iwslt14"
    assert iwslt14.main(["--source", str(archive), "--dest-dir", str(dest)]) == 0
    train_en = (dest / "train.en").read_text(encoding="utf-8").splitlines()
    assert train_en == iwslt14.train_lines(TRAIN_TAGS_EN)
    assert (dest / "train.de").read_text(encoding="utf-8").splitlines()[2] == "Bäume sind groß."
    assert (dest / "valid.en").read_text(encoding="utf-8") == ""  # fewer than 23 pairs
    test_en = (dest / "test.en").read_text(encoding="utf-8").splitlines()
    assert test_en == [f"Sentence {number}." for number in range(len(iwslt14.TEST_SETS))]
    assert len((dest / "test.de").read_text(encoding="utf-8").splitlines()) == len(test_en)
    assert sha256_of(archive) in capsys.readouterr().out


def test_iwslt14_pinned_checksum_is_enforced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_archive(tmp_path / "de-en.tgz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert iwslt14.main(["--source", str(archive), "--dest-dir", str(tmp_path / "a"), "--sha256", digest]) == 0
    assert iwslt14.main(["--source", str(archive), "--dest-dir", str(tmp_path / "b"), "--sha256", "f" * 64]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


def test_iwslt14_misaligned_test_set_names_both_counts(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "de-en.tgz", english_test_extra=True)
    with pytest.raises(DataError, match="IWSLT14.TED.dev2010: 1 German but 2 English"):
        iwslt14.prepare(tmp_path / "out", archive)


def test_iwslt14_archive_without_the_expected_files(tmp_path: Path) -> None:
    archive = tmp_path / "de-en.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "README", "not the IWSLT archive")
    with pytest.raises(DataError, match="no file train.tags.de-en.de"):
        iwslt14.prepare(tmp_path / "out", archive)


def test_iwslt14_broken_archive(tmp_path: Path) -> None:
    archive = tmp_path / "de-en.tgz"
    archive.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable .tgz"):
        iwslt14.prepare(tmp_path / "out", archive)


def test_iwslt14_offline_is_a_clear_error(tmp_path: Path) -> None:
    no_network = {"http_proxy": "http://127.0.0.1:9"}  # a closed port: fails at once, online or not
    result = run_script("iwslt14.py", "--dest-dir", str(tmp_path / "out"), cwd=tmp_path, env=no_network)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for expected in (iwslt14.URL, "--source", MIRROR_ENV):
        assert expected in result.stderr
