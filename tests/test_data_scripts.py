"""Tests for data_scripts/: fetch order, verification, error messages, Gutenberg cleaning.

No test touches the network: downloads are replaced by fakes of ``urllib.request.urlopen``.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from data_scripts import gutenberg, tinyshakespeare
from data_scripts.fetch import MIRROR_ENV, DataError, fetch, sha256_of

REPO_ROOT = Path(__file__).resolve().parents[1]
URL = "https://example.invalid/corpus.txt"
CONTENT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()

BOOK = (
    "\ufeffThe Project Gutenberg eBook of A Tiny Book\r\n"
    "This eBook is for the use of anyone anywhere.\r\n"
    "\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A TINY BOOK ***\r\n"
    "\r\n"
    "CHAPTER I.\r\n"
    "Alice was beginning to get very tired.\r\n"
    "\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK A TINY BOOK ***\r\n"
    "Section 1. General Terms of Use and Redistributing Project Gutenberg works\r\n"
)


def shared_data_dir() -> Path | None:
    """The folder holding the real data sets, if this machine has one."""
    if os.environ.get(MIRROR_ENV):
        return Path(os.environ[MIRROR_ENV])
    candidate = REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


SHARED_DATA = shared_data_dir()  # read before the autouse fixture clears the mirror variable


class FakeResponse(io.BytesIO):
    """Stands in for the object ``urlopen`` returns: readable bytes plus headers."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def offline(*args: object, **kwargs: object) -> FakeResponse:
    """A ``urlopen`` replacement for a machine without network."""
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def no_network_no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts offline and without a mirror; a test opts in to either."""
    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "local" / "corpus.txt"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def leftovers(folder: Path) -> list[str]:
    """Names of temporary part files left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


# --- fetch -------------------------------------------------------------------------------------


def test_source_is_copied_and_verified(tmp_path: Path, source_file: Path) -> None:
    dest = tmp_path / "out" / "corpus.txt"
    assert fetch("corpus", URL, CONTENT_SHA, dest, source=source_file) == dest
    assert dest.read_bytes() == CONTENT
    assert sha256_of(dest) == CONTENT_SHA
    assert leftovers(dest.parent) == []


def test_checksum_mismatch_names_file_and_both_digests(tmp_path: Path, source_file: Path) -> None:
    dest = tmp_path / "out" / "corpus.txt"
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        fetch("corpus", URL, wrong, dest, source=source_file)
    message = str(err.value)
    assert wrong in message and CONTENT_SHA in message and str(source_file) in message
    assert not dest.exists(), "an unverified file must not be left at the destination"
    assert leftovers(dest.parent) == []


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(DataError, match="--source") as err:
        fetch("corpus", URL, None, tmp_path / "out.txt", source=missing)
    assert str(missing) in str(err.value)


def test_mirror_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "corpus").mkdir(parents=True)
    (mirror / "corpus" / "corpus.txt").write_bytes(CONTENT)
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    dest = tmp_path / "out" / "corpus.txt"
    fetch("corpus", URL, CONTENT_SHA, dest, mirror_subpath="corpus/corpus.txt")
    assert dest.read_bytes() == CONTENT


def test_offline_download_explains_alternatives(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        fetch("corpus", URL, CONTENT_SHA, tmp_path / "corpus.txt", mirror_subpath="corpus/corpus.txt")
    message = str(err.value)
    for expected in (URL, "offline", "--source", MIRROR_ENV, "corpus/corpus.txt"):
        assert expected in message
    assert leftovers(tmp_path) == []


def test_offline_message_says_when_mirror_lacks_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty-mirror"))
    with pytest.raises(DataError, match="does not exist"):
        fetch("corpus", URL, None, tmp_path / "corpus.txt", mirror_subpath="corpus/corpus.txt")


def test_download_writes_verified_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []

    def serve(request: object, timeout: float) -> FakeResponse:
        requested.append(request.full_url)  # type: ignore[attr-defined]
        assert timeout > 0
        return FakeResponse(CONTENT)

    monkeypatch.setattr("urllib.request.urlopen", serve)
    dest = tmp_path / "corpus.txt"
    fetch("corpus", URL, CONTENT_SHA, dest)
    assert requested == [URL]
    assert dest.read_bytes() == CONTENT
    assert leftovers(tmp_path) == []


def test_existing_valid_file_is_kept_and_corrupt_one_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "corpus.txt"
    dest.write_bytes(CONTENT)
    fetch("corpus", URL, CONTENT_SHA, dest)  # offline: succeeds only by keeping the file
    assert dest.read_bytes() == CONTENT

    dest.write_bytes(b"truncated")
    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: FakeResponse(CONTENT))
    fetch("corpus", URL, CONTENT_SHA, dest)
    assert dest.read_bytes() == CONTENT


# --- gutenberg ---------------------------------------------------------------------------------


def test_gutenberg_body_keeps_only_text_between_markers() -> None:
    body = gutenberg.extract_body(BOOK)
    assert body == "CHAPTER I.\nAlice was beginning to get very tired.\n"
    assert "\r" not in body and "PROJECT GUTENBERG" not in body.upper()


@pytest.mark.parametrize(
    ("drop", "missing"),
    [("*** START OF", "START OF THE PROJECT"), ("*** END OF", "END OF THE PROJECT")],
)
def test_gutenberg_missing_marker_is_a_clear_error(drop: str, missing: str) -> None:
    text = "".join(line for line in BOOK.splitlines(keepends=True) if not line.startswith(drop))
    with pytest.raises(DataError, match=missing):
        gutenberg.extract_body(text, "pg99.txt")


def test_gutenberg_empty_body_is_an_error() -> None:
    text = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    with pytest.raises(DataError, match="empty"):
        gutenberg.extract_body(text)


def test_gutenberg_script_writes_raw_and_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "book.txt"
    source.write_bytes(BOOK.encode("utf-8"))
    out = tmp_path / "gutenberg"
    assert gutenberg.main(["--book-id", "99", "--source", str(source), "--dest-dir", str(out)]) == 0
    assert (out / "pg99.txt").read_bytes() == source.read_bytes()
    assert (out / "pg99.clean.txt").read_text(encoding="utf-8") == gutenberg.extract_body(BOOK)
    assert sha256_of(source) in capsys.readouterr().out


def test_gutenberg_script_rejects_wrong_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "book.txt"
    source.write_text(BOOK, encoding="utf-8")
    status = gutenberg.main(["--source", str(source), "--dest-dir", str(tmp_path / "g"), "--sha256", "a" * 64])
    assert status == 2
    assert "checksum mismatch" in capsys.readouterr().err


# --- tinyshakespeare ---------------------------------------------------------------------------


def test_tinyshakespeare_checks_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_file: Path) -> None:
    monkeypatch.setattr(tinyshakespeare, "SHA256", CONTENT_SHA)
    monkeypatch.setattr(tinyshakespeare, "NUM_CHARS", len(CONTENT))
    assert tinyshakespeare.prepare(tmp_path / "ts", source_file).read_bytes() == CONTENT
    monkeypatch.setattr(tinyshakespeare, "NUM_CHARS", len(CONTENT) + 1)
    with pytest.raises(DataError, match="characters"):
        tinyshakespeare.prepare(tmp_path / "ts", source_file)


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python data_scripts/<script>`` the way a user does."""
    command = [sys.executable, str(REPO_ROOT / "data_scripts" / script), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_script_error_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_script("tinyshakespeare.py", "--source", str(tmp_path / "missing.txt"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--source" in result.stderr and "Traceback" not in result.stderr


def test_tinyshakespeare_script_on_real_file(tmp_path: Path) -> None:
    real = SHARED_DATA / "tinyshakespeare" / "input.txt" if SHARED_DATA else None
    if real is None or not real.is_file():
        pytest.skip("no local copy of tinyshakespeare/input.txt")
    result = run_script("tinyshakespeare.py", "--source", str(real), "--dest-dir", str(tmp_path / "ts"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sha256_of(tmp_path / "ts" / "input.txt") == tinyshakespeare.SHA256
    assert "1,115,394" in result.stdout and "matches" in result.stdout
