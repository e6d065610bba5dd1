"""Tests for seq2seq.data.text_files: plain and gzipped text, and errors that name the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seq2seq.data.text_files import DataError, read_text

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. — naïve 🙂\n"


def test_plain_text_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_text(path) == TEXT
    assert read_text(str(path)) == TEXT


def test_gzipped_text_is_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "input.txt.gz"
    path.write_bytes(gzip.compress(TEXT.encode("utf-8")))
    assert read_text(path) == TEXT


def test_missing_file_names_it_and_suggests_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "absent.txt"
    with pytest.raises(DataError, match=r"prime file not found: .*absent\.txt.*data_scripts"):
        read_text(path, "prime file")


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_empty_file_is_refused_by_name(tmp_path: Path, content: str) -> None:
    path = tmp_path / "blank.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"blank\.txt is empty"):
        read_text(path)


def test_empty_gzipped_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=r"blank\.txt\.gz is empty"):
        read_text(path)


def test_invalid_utf8_names_the_file_the_byte_and_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError) as error:
        read_text(path)
    message = str(error.value)
    assert "latin1.txt" in message and "not valid UTF-8" in message
    assert "byte 3" in message
    assert "iconv" in message


@pytest.mark.parametrize(("codec", "name"), [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")])
def test_a_file_in_another_unicode_encoding_is_named_by_it_with_the_command_that_converts_it(
    tmp_path: Path, codec: str, name: str
) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("\ufeffcafé au lait\n".encode(codec))
    with pytest.raises(DataError) as error:
        read_text(path)
    message = str(error.value)
    assert f"is {name}" in message and f"`iconv -f {name} -t UTF-8 {path} > wide.txt.utf8`" in message
    assert "latin1" not in message


def test_an_empty_file_says_why_that_matters(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="is empty: there is nothing to score"):
        read_text(path, empty="there is nothing to score")


@pytest.mark.parametrize(
    "content", [b"plain text, not gzip\n", gzip.compress(b"cut short" * 50)[:20]], ids=["not-gzip", "cut-short"]
)
def test_broken_gzip_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.txt.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"broken\.txt\.gz.*gzip"):
        read_text(path)
