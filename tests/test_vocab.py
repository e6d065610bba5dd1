"""Tests for seq2seq.text.vocab: ordering, specials, encoding, decoding and persistence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from seq2seq.text import BOS, EOS, PAD, SPECIALS, UNK, UnknownTokensError, Vocab

SENTENCES = [
    ["the", "cat", "sat", "on", "the", "mat"],
    ["the", "dog", "sat"],
    ["a", "cat", "ran"],
]


@pytest.fixture
def vocab() -> Vocab:
    return Vocab.build(SENTENCES)


def test_specials_sit_at_fixed_ids(vocab: Vocab) -> None:
    assert [vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id] == [0, 1, 2, 3]
    assert [vocab.id_to_token(i) for i in vocab.special_ids] == [PAD, BOS, EOS, UNK]
    assert all(vocab.token_to_id(token) == idx for idx, token in enumerate(SPECIALS))


def test_build_orders_by_frequency_then_token(vocab: Vocab) -> None:
    ordinary = vocab.to_dict()["tokens"][len(SPECIALS) :]
    assert ordinary == ["the", "cat", "sat", "a", "dog", "mat", "on", "ran"]
    assert len(vocab) == len(SPECIALS) + 8


def test_build_is_deterministic_under_reordering() -> None:
    rng = random.Random(0)
    shuffled = [rng.sample(sentence, len(sentence)) for sentence in rng.sample(SENTENCES, len(SENTENCES))]
    assert Vocab.build(shuffled) == Vocab.build(SENTENCES)


def test_build_min_freq_and_max_size() -> None:
    assert Vocab.build(SENTENCES, min_freq=2).to_dict()["tokens"][len(SPECIALS) :] == ["the", "cat", "sat"]
    limited = Vocab.build(SENTENCES, max_size=2)
    assert len(limited) == len(SPECIALS) + 2
    assert "the" in limited and "cat" in limited and "sat" not in limited


def test_build_skips_special_strings_in_the_input() -> None:
    built = Vocab.build([[BOS, "x", EOS, PAD, UNK, "x"]])
    assert built.to_dict()["tokens"] == [*SPECIALS, "x"]


@pytest.mark.parametrize(("min_freq", "max_size"), [(0, None), (1, -1)])
def test_build_rejects_bad_limits(min_freq: int, max_size: int | None) -> None:
    with pytest.raises(ValueError, match="min_freq|max_size"):
        Vocab.build(SENTENCES, min_freq=min_freq, max_size=max_size)


@pytest.mark.parametrize("tokens", [["a", "a"], ["a", UNK]])
def test_constructor_rejects_duplicates_and_specials(tokens: list[str]) -> None:
    with pytest.raises(ValueError):
        Vocab(tokens)


def test_encode_decode_round_trip(vocab: Vocab) -> None:
    tokens = ["the", "dog", "ran"]
    ids = vocab.encode(tokens)
    assert all(idx >= len(SPECIALS) for idx in ids)
    assert vocab.decode(ids) == tokens


def test_encode_unknown_maps_to_unk(vocab: Vocab) -> None:
    ids = vocab.encode(["the", "zebra", "cat"])
    assert ids[1] == vocab.unk_id
    assert vocab.decode(ids) == ["the", UNK, "cat"]
    assert "zebra" not in vocab


def test_encode_unknown_error_names_every_unknown_token_once_in_order(vocab: Vocab) -> None:
    with pytest.raises(UnknownTokensError) as caught:
        vocab.encode(["é", "the", "🙂", "é"], unknown="error")
    assert caught.value.tokens == ["é", "🙂"]
    assert "2 tokens not in the vocabulary: 'é', '🙂'" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_encode_known_tokens_with_error_policy(vocab: Vocab) -> None:
    assert vocab.encode(["the", "cat"], unknown="error") == vocab.encode(["the", "cat"])


def test_encode_rejects_unknown_policy(vocab: Vocab) -> None:
    with pytest.raises(ValueError, match="'unk'.*'error'"):
        vocab.encode(["the"], unknown="skip")


def test_decode_strips_specials_and_stops_at_first_eos(vocab: Vocab) -> None:
    the, cat = vocab.encode(["the", "cat"])
    ids = [vocab.bos_id, the, vocab.unk_id, cat, vocab.eos_id, the, vocab.pad_id]
    assert vocab.decode(ids) == ["the", UNK, "cat"]
    assert vocab.decode(ids, strip_specials=False) == [BOS, "the", UNK, "cat", EOS, "the", PAD]


def test_decode_accepts_a_tensor(vocab: Vocab) -> None:
    ids = torch.tensor([*vocab.encode(["a", "cat"]), vocab.eos_id, vocab.pad_id])
    assert vocab.decode(ids) == ["a", "cat"]


def test_id_out_of_range_names_the_range(vocab: Vocab) -> None:
    with pytest.raises(IndexError, match=f"0..{len(vocab) - 1}"):
        vocab.id_to_token(len(vocab))


def test_save_load_round_trip(vocab: Vocab, tmp_path: Path) -> None:
    unicode_vocab = Vocab.build([["naïve", "🙂", "日本"], *SENTENCES])
    for original in (vocab, unicode_vocab):
        path = tmp_path / "nested" / "vocab.json"
        original.save(path)
        assert Vocab.load(path) == original
        assert json.loads(path.read_text(encoding="utf-8")) == original.to_dict()
    assert "🙂" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]


def test_equality_depends_on_tokens_and_order() -> None:
    assert Vocab(["a", "b"]) == Vocab(["a", "b"])
    assert Vocab(["a", "b"]) != Vocab(["b", "a"])
    assert Vocab(["a"]) != {"tokens": [*SPECIALS, "a"]}


@pytest.mark.parametrize(
    "tokens",
    [
        [BOS, PAD, EOS, UNK, "a"],
        [PAD, BOS, EOS, "a"],
        ["a", PAD, BOS, EOS, UNK],
    ],
)
def test_from_dict_with_misplaced_specials_raises(tokens: list[str]) -> None:
    with pytest.raises(ValueError, match="specials"):
        Vocab.from_dict({"tokens": tokens})


@pytest.mark.parametrize("description", [{}, {"tokens": "abc"}, {"tokens": [PAD, BOS, EOS, UNK, 5]}])
def test_from_dict_with_malformed_description_raises(description: dict) -> None:
    with pytest.raises(ValueError, match="'tokens'"):
        Vocab.from_dict(description)


def test_load_missing_or_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.json"):
        Vocab.load(tmp_path / "absent.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt.json"):
        Vocab.load(corrupt)
