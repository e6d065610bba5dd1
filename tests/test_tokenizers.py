"""Tests for seq2seq.text.tokenizers: round trips, serialisation and error messages."""

from __future__ import annotations

import base64
import gzip
import json
import random
from pathlib import Path

import pytest

from seq2seq.text import (
    SPECIALS,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
)

MULTI30K_GERMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k" / "train.de.gz"
CORPUS_LINES = 2000
VOCAB_SIZES = {"multi30k": 300, "generated": 50}  # the generated text has few distinct pieces


def _json_round_trip(tokenizer: Tokenizer) -> Tokenizer:
    """Serialise through real JSON text, as a checkpoint would."""
    return tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))


# ---- char -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ascii",
        "naïve café 🙂",
        "line one\nline two\r\n\ttabbed  ",
        "日本語のテキスト",
        "👩‍👩‍👧 ok",
    ],
)
def test_char_round_trip_is_exact(text: str) -> None:
    tokenizer = CharTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


def test_char_tokens_are_code_points_not_bytes() -> None:
    assert CharTokenizer().tokenize("naïve 🙂") == ["n", "a", "ï", "v", "e", " ", "🙂"]


def test_char_lowercase() -> None:
    assert CharTokenizer(lowercase=True).tokenize("AbÉ") == ["a", "b", "é"]


# ---- word -------------------------------------------------------------------------------


def test_word_round_trip_of_normal_text() -> None:
    text = "Hello, world! How are you?\nFine."
    tokenizer = WordTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "I don't know (really); it's 3.14, or 1,000 [maybe]: yes.",
        'He said "hi, there" and left.',
        "To be, or not to be:\nthat is the question.\n\nEnter HAMLET.",
    ],
)
def test_word_round_trip_with_punctuation_quotes_and_newlines(text: str) -> None:
    tokenizer = WordTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


def test_word_splits_punctuation_keeps_contractions_and_newlines() -> None:
    tokens = WordTokenizer().tokenize("Don't stop...\nGo!")
    assert tokens == ["Don't", "stop", ".", ".", ".", "\n", "Go", "!"]


def test_word_without_newlines_treats_them_as_spaces() -> None:
    tokenizer = WordTokenizer(keep_newlines=False)
    tokens = tokenizer.tokenize("one\ntwo\r\nthree")
    assert tokens == ["one", "two", "three"]
    assert tokenizer.detokenize(tokens) == "one two three"


def test_word_lowercase() -> None:
    tokenizer = WordTokenizer(lowercase=True)
    assert tokenizer.detokenize(tokenizer.tokenize("Hello, World!\nBYE.")) == "hello, world!\nbye."


def test_word_other_whitespace_collapses_to_single_spaces() -> None:
    tokenizer = WordTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize("a  \t b")) == "a b"


# ---- serialisation and builder ----------------------------------------------------------


@pytest.mark.parametrize(
    "tokenizer",
    [
        CharTokenizer(),
        CharTokenizer(lowercase=True),
        WordTokenizer(),
        WordTokenizer(lowercase=True, keep_newlines=False),
    ],
)
def test_char_and_word_survive_to_dict_from_dict(tokenizer: Tokenizer) -> None:
    text = "Hello, World!\nDon't 🙂."
    restored = _json_round_trip(tokenizer)
    assert type(restored) is type(tokenizer)
    assert restored.to_dict() == tokenizer.to_dict()
    assert restored.tokenize(text) == tokenizer.tokenize(text)


@pytest.mark.parametrize(("kind", "expected"), [("char", CharTokenizer), ("word", WordTokenizer)])
def test_build_tokenizer_by_kind(kind: str, expected: type) -> None:
    tokenizer = build_tokenizer(kind, lowercase=True)
    assert isinstance(tokenizer, expected)
    assert tokenizer.kind == kind
    assert tokenizer.tokenize("A") == ["a"]


def test_build_tokenizer_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'.*char.*sentencepiece.*word"):
        build_tokenizer("bpe")


def test_build_sentencepiece_without_model_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="sentencepiece_model"):
        build_tokenizer("sentencepiece")


@pytest.mark.parametrize("description", [{}, {"kind": "bytes"}])
def test_tokenizer_from_dict_rejects_bad_descriptions(description: dict) -> None:
    with pytest.raises(ValueError, match="kind"):
        tokenizer_from_dict(description)


# ---- sentencepiece ----------------------------------------------------------------------


def _generated_sentences(count: int) -> list[str]:
    """Simple English-like sentences from a fixed word list, reproducibly."""
    rng = random.Random(0)
    subjects = ["A man", "Two women", "The little girl", "A brown dog", "Several children", "An old woman"]
    verbs = ["is walking", "are playing", "sits", "runs quickly", "is jumping", "looks happy"]
    places = ["in the park", "on the beach", "near a river", "at the market", "under a tree", "in the snow"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(places)}." for _ in range(count)]


@pytest.fixture(scope="module", params=["multi30k", "generated"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], int]:
    """A gzipped corpus of CORPUS_LINES sentences, the sentences and a vocabulary size to train."""
    if request.param == "multi30k":
        if not MULTI30K_GERMAN.is_file():
            pytest.skip(f"{MULTI30K_GERMAN} is absent; the generated corpus covers sentencepiece")
        with gzip.open(MULTI30K_GERMAN, "rt", encoding="utf-8") as lines:
            sentences = [line.rstrip("\n") for line, _ in zip(lines, range(CORPUS_LINES))]
    else:
        sentences = _generated_sentences(CORPUS_LINES)
    path = tmp_path_factory.mktemp("corpus") / "train.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.writelines(sentence + "\n" for sentence in sentences)
    return path, sentences, VOCAB_SIZES[request.param]


@pytest.fixture(scope="module")
def trained(corpus: tuple[Path, list[str], int]) -> tuple[SentencePieceTokenizer, Path, list[str]]:
    """A sentencepiece tokenizer trained on the corpus, its model file and the sentences."""
    path, sentences, vocab_size = corpus
    prefix = path.parent / "model" / "spm"
    tokenizer = SentencePieceTokenizer.train([path], vocab_size, model_prefix=prefix)
    return tokenizer, prefix.with_name("spm.model"), sentences


def test_sentencepiece_training_writes_model_and_vocab(corpus: tuple, trained: tuple) -> None:
    _, model_file, _ = trained
    assert model_file.is_file()
    vocab_lines = model_file.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == corpus[2]


def test_sentencepiece_round_trip_up_to_whitespace(trained: tuple) -> None:
    tokenizer, _, sentences = trained
    for sentence in sentences[:200]:
        assert tokenizer.detokenize(tokenizer.tokenize(sentence)) == " ".join(sentence.split())


def test_sentencepiece_pieces_are_subwords(trained: tuple) -> None:
    tokenizer, _, sentences = trained
    pieces = [piece for sentence in sentences[:200] for piece in tokenizer.tokenize(sentence)]
    characters = sum(len(sentence) for sentence in sentences[:200])
    assert all(isinstance(piece, str) and piece for piece in pieces)
    assert any(len(piece) > 2 for piece in pieces)
    assert len(pieces) < characters


def test_sentencepiece_never_emits_our_special_strings(trained: tuple) -> None:
    tokenizer, _, _ = trained
    pieces = tokenizer.tokenize("<s> a <pad> b </s> <unk>")
    assert not set(pieces) & set(SPECIALS)


def test_sentencepiece_loads_from_dict_without_model_file(trained: tuple, tmp_path: Path) -> None:
    tokenizer, model_file, sentences = trained
    copy = tmp_path / "copy.model"
    copy.write_bytes(model_file.read_bytes())
    loaded = build_tokenizer("sentencepiece", sentencepiece_model=copy)
    description = json.loads(json.dumps(loaded.to_dict()))
    copy.unlink()
    restored = tokenizer_from_dict(description)
    assert isinstance(restored, SentencePieceTokenizer)
    for sentence in sentences[:20]:
        assert restored.tokenize(sentence) == tokenizer.tokenize(sentence)


def test_sentencepiece_trained_into_two_directories_is_one_tokenizer(corpus: tuple, tmp_path: Path) -> None:
    """The trainer writes its output path into the model; the tokenizer drops it, so that runs
    that differ only in their directory (e.g. their seed) share a tokenizer and can ensemble."""
    path, _, vocab_size = corpus
    first = SentencePieceTokenizer.train([path], vocab_size, model_prefix=tmp_path / "run_a" / "spm")
    second = SentencePieceTokenizer.train([path], vocab_size, model_prefix=tmp_path / "run_b" / "spm")
    assert (tmp_path / "run_a" / "spm.model").read_bytes() != (tmp_path / "run_b" / "spm.model").read_bytes()
    assert first.to_dict() == second.to_dict()
    assert b"run_a" not in base64.b64decode(first.to_dict()["model_proto"])


def test_sentencepiece_trains_from_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("\n".join(_generated_sentences(300)) + "\n", encoding="utf-8")
    tokenizer = SentencePieceTokenizer.train([path], 60, model_type="bpe", model_prefix=tmp_path / "bpe")
    assert tokenizer.detokenize(tokenizer.tokenize("A man runs quickly.")) == "A man runs quickly."


def test_a_file_that_is_not_a_sentencepiece_model_is_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match=r"corrupt\.model: not a sentencepiece model"):
        build_tokenizer("sentencepiece", sentencepiece_model=corrupt)


def test_sentencepiece_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.model"
    with pytest.raises(FileNotFoundError, match="nowhere.model"):
        SentencePieceTokenizer.load(missing)


def test_sentencepiece_missing_training_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        SentencePieceTokenizer.train([tmp_path / "absent.txt"], 50, model_prefix=tmp_path / "m")
