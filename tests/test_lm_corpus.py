"""Tests for seq2seq.data.lm_corpus: split, vocabulary from training text only, unk, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from seq2seq.data.lm_corpus import encode_tokens, load_lm_corpus, make_tokenizer
from seq2seq.data.lm_stream import LMDataConfig
from seq2seq.data.text_files import DataError
from seq2seq.text import SPECIALS, CharTokenizer, Vocab, WordTokenizer

TRAIN_PART = "abcab cabca bcabc " * 5  # 90 characters over "a", "b", "c" and " "
VALIDATION_PART = "abxyz" * 2  # 10 characters, "x", "y", "z" never seen in training


def write_text(tmp_path: Path, text: str, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode("utf-8")) if name.endswith(".gz") else text.encode("utf-8"))
    return path


def char_config(path: Path, validation_fraction: float = 0.1) -> LMDataConfig:
    return LMDataConfig(path=str(path), tokenizer="char", validation_fraction=validation_fraction)


def test_split_keeps_text_order_and_sizes(tmp_path: Path) -> None:
    path = write_text(tmp_path, TRAIN_PART + VALIDATION_PART)
    corpus = load_lm_corpus(char_config(path), CharTokenizer())
    assert len(corpus.train_ids) == len(TRAIN_PART)
    assert len(corpus.validation_ids) == len(VALIDATION_PART)
    assert corpus.train_ids.dtype == corpus.validation_ids.dtype == torch.long
    decoded = "".join(corpus.vocab.decode(corpus.train_ids))
    assert decoded == TRAIN_PART


def test_vocabulary_comes_from_the_training_part_only(tmp_path: Path) -> None:
    path = write_text(tmp_path, TRAIN_PART + VALIDATION_PART)
    corpus = load_lm_corpus(char_config(path), CharTokenizer())
    assert all(char in corpus.vocab for char in "abc ")
    assert not any(char in corpus.vocab for char in "xyz")
    assert len(corpus.vocab) == len(SPECIALS) + 4


def test_unseen_validation_tokens_become_unk(tmp_path: Path) -> None:
    path = write_text(tmp_path, TRAIN_PART + VALIDATION_PART)
    corpus = load_lm_corpus(char_config(path), CharTokenizer())
    unk = corpus.validation_ids == corpus.vocab.unk_id
    assert int(unk.sum()) == sum(char in "xyz" for char in VALIDATION_PART)
    expected = [corpus.vocab.unk_id if char in "xyz" else corpus.vocab.token_to_id(char) for char in VALIDATION_PART]
    assert corpus.validation_ids.tolist() == expected
    assert not (corpus.train_ids == corpus.vocab.unk_id).any()


def test_a_given_vocabulary_is_kept(tmp_path: Path) -> None:
    path = write_text(tmp_path, TRAIN_PART + VALIDATION_PART)
    saved = Vocab(["z", "a"])
    corpus = load_lm_corpus(char_config(path), CharTokenizer(), saved)
    assert corpus.vocab is saved
    assert set(corpus.train_ids.tolist()) == {saved.token_to_id("a"), saved.unk_id}
    assert saved.token_to_id("z") in corpus.validation_ids.tolist()


def test_word_level_min_freq_maps_rare_words_to_unk(tmp_path: Path) -> None:
    text = "the rare dog . " + "the cat sat . " * 10 + "the cat ran . " * 2
    path = write_text(tmp_path, text, "words.txt.gz")
    config = LMDataConfig(path=str(path), tokenizer="word", min_freq=2, validation_fraction=0.2)
    corpus = load_lm_corpus(config, WordTokenizer())
    assert "cat" in corpus.vocab and "rare" not in corpus.vocab
    assert (corpus.train_ids == corpus.vocab.unk_id).any()


def test_too_short_validation_part_is_explained(tmp_path: Path) -> None:
    path = write_text(tmp_path, "abcdefghij")
    with pytest.raises(DataError, match=r"corpus\.txt.*validation part.*under 2 tokens.*validation_fraction"):
        load_lm_corpus(char_config(path, validation_fraction=0.1), CharTokenizer())
    corpus = load_lm_corpus(char_config(path, validation_fraction=0.3), CharTokenizer())
    assert len(corpus.validation_ids) >= 2


def test_missing_text_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_lm_corpus(char_config(tmp_path / "absent.txt"), CharTokenizer())


def test_encode_tokens_maps_unknown_tokens_to_unk() -> None:
    vocab = Vocab(["a", "b"])
    ids = encode_tokens(["a", "q", "b"], vocab)
    assert ids.tolist() == [vocab.token_to_id("a"), vocab.unk_id, vocab.token_to_id("b")]
    assert ids.dtype == torch.long


def test_make_tokenizer_builds_the_configured_kind(tmp_path: Path) -> None:
    config = LMDataConfig(tokenizer="word", lowercase=True)
    tokenizer = make_tokenizer(config, tmp_path / "work")
    assert tokenizer.kind == "word"
    assert tokenizer.tokenize("Hello World") == ["hello", "world"]
    assert not (tmp_path / "work").exists()  # nothing to train for char or word level
