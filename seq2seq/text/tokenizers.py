"""Tokenizers: text to a list of token strings and back, behind one small protocol.

Three kinds exist:

- ``char``: one token per Unicode code point; the round trip is exact for any text.
- ``word``: words (with inner apostrophes, as in "don't"), numbers and single punctuation
  marks; newlines can be kept as ``"\\n"`` tokens so that the line structure of poems and
  plays survives.
- ``sentencepiece``: subword pieces from a trained sentencepiece model. The model travels
  inside ``to_dict()`` (base64 of the serialized proto), so a checkpoint needs no extra file.

Tokenizers produce strings only; ``seq2seq.text.vocab.Vocab`` maps them to ids and owns the
special tokens (pad, bos, eos, unk).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import sentencepiece as spm
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from sentencepiece import sentencepiece_model_pb2

NEWLINE = "\n"

# A number with inner separators ("3.14", "1,000"), a word (letters, digits, underscore) with
# optional inner apostrophes ("don't", "o'clock"), or a single character that is neither a
# word character nor whitespace (punctuation, emoji).
_WORD_OR_MARK = r"\d+(?:[.,]\d+)+|\w+(?:['’]\w+)*|[^\w\s]"
_WORD_PATTERN_WITH_NEWLINES = re.compile(rf"\r?\n|{_WORD_OR_MARK}")
_WORD_PATTERN = re.compile(_WORD_OR_MARK)

# Marks written without a space before them (attached to the previous token) ...
_CLOSING_MARKS = frozenset(".,;:!?)]}'\"’”")
# ... and marks written without a space after them (attached to the next token).
_OPENING_MARKS = frozenset("([{“")


@runtime_checkable
class Tokenizer(Protocol):
    """Turns text into token strings and back; serialisable into a checkpoint."""

    kind: str  # "char" | "word" | "sentencepiece"

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens."""
        ...

    def detokenize(self, tokens: list[str]) -> str:
        """Join ``tokens`` back into text."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description from which ``tokenizer_from_dict`` rebuilds it."""
        ...


class CharTokenizer:
    """One token per Unicode code point (not per byte); ``detokenize`` is plain concatenation.

    The round trip is exact for any text unless ``lowercase`` folds the case first.
    """

    kind = "char"

    def __init__(self, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        """``"naïve 🙂"`` -> ``["n", "a", "ï", "v", "e", " ", "🙂"]``."""
        return list(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: list[str]) -> str:
        """Concatenate the characters."""
        return "".join(tokens)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "char", "lowercase": ...}``."""
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Rebuild from ``to_dict()`` output."""
        return cls(lowercase=bool(d.get("lowercase", False)))

    def __repr__(self) -> str:
        return f"CharTokenizer(lowercase={self.lowercase})"


class WordTokenizer:
    """Words, numbers and single punctuation marks; newlines optionally kept as ``"\\n"`` tokens.

    ``detokenize`` joins tokens with spaces, except that closing marks (``.,;:!?)]}`` and
    quotes) attach to the previous token, opening brackets attach to the next one, and no
    spaces surround a newline. Double quotes alternate: the first of a pair opens, the second
    closes. The round trip is therefore exact for ordinary prose such as
    ``"Hello, world! How are you?\\nFine."`` but not for every spacing (``"a  b"`` comes back
    as ``"a b"``), and a single quote always attaches to the word before it.
    """

    kind = "word"

    def __init__(self, lowercase: bool = False, keep_newlines: bool = True) -> None:
        self.lowercase = lowercase
        self.keep_newlines = keep_newlines

    def tokenize(self, text: str) -> list[str]:
        """``"Don't stop.\\nGo!"`` -> ``["Don't", "stop", ".", "\\n", "Go", "!"]``."""
        if self.lowercase:
            text = text.lower()
        pattern = _WORD_PATTERN_WITH_NEWLINES if self.keep_newlines else _WORD_PATTERN
        return [NEWLINE if token == "\r\n" else token for token in pattern.findall(text)]

    def detokenize(self, tokens: list[str]) -> str:
        """Join with single spaces, attaching punctuation and newlines to their neighbours."""
        pieces: list[str] = []
        inside_quotes = False
        attach_next = True  # no space before the first token
        for token in tokens:
            if token == '"':
                inside_quotes = not inside_quotes
                opening = inside_quotes
            else:
                opening = token in _OPENING_MARKS
            closing = not opening and token in _CLOSING_MARKS
            if not (attach_next or closing or token == NEWLINE):
                pieces.append(" ")
            pieces.append(token)
            attach_next = opening or token == NEWLINE
        return "".join(pieces)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "word", "lowercase": ..., "keep_newlines": ...}``."""
        return {"kind": self.kind, "lowercase": self.lowercase, "keep_newlines": self.keep_newlines}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        """Rebuild from ``to_dict()`` output."""
        return cls(
            lowercase=bool(d.get("lowercase", False)),
            keep_newlines=bool(d.get("keep_newlines", True)),
        )

    def __repr__(self) -> str:
        return f"WordTokenizer(lowercase={self.lowercase}, keep_newlines={self.keep_newlines})"


class SentencePieceTokenizer:
    """Subword pieces from a sentencepiece model, which is held in memory.

    Models trained by ``train`` reserve only id 0 of their own vocabulary (the
    ``"<unk>"`` piece); their bos, eos and pad pieces are disabled because ``Vocab`` adds its
    own specials. ``tokenize`` never returns a control piece: a character the model does not
    know comes back as itself, and ``Vocab`` maps it to ``<unk>`` if it is not in the vocabulary.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        """Wrap a serialized sentencepiece model (the bytes of a ``.model`` file)."""
        self._model_proto = _without_output_path(model_proto)
        self._processor = spm.SentencePieceProcessor(model_proto=self._model_proto)

    @classmethod
    def load(cls, model_file: str | Path) -> SentencePieceTokenizer:
        """Load a ``.model`` file written by sentencepiece's trainer."""
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"sentencepiece model file not found: {path}. Train one with "
                "SentencePieceTokenizer.train(...) or point to an existing .model file."
            )
        try:
            return cls(path.read_bytes())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def train(
        cls,
        files: list[Path],
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        *,
        model_prefix: Path,
        sample_sentences: int | None = None,
    ) -> SentencePieceTokenizer:
        """Train a model on text files (plain or ``.gz``, one sentence per line).

        Writes ``<model_prefix>.model`` and ``<model_prefix>.vocab`` and returns the
        tokenizer. ``model_type`` is one of sentencepiece's ``unigram``, ``bpe``, ``char`` or
        ``word``; ``character_coverage`` below 1.0 maps the rarest characters to unknown
        (useful for languages with very large alphabets). ``sample_sentences`` learns the
        pieces from that many sentences drawn at random from a larger text, the same ones every
        time; None learns from every sentence.
        """
        if not files:
            raise ValueError("cannot train sentencepiece: no text files given")
        missing = [str(path) for path in files if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"cannot train sentencepiece: text files not found: {missing}")
        model_prefix = Path(model_prefix)
        model_prefix.parent.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "vocab_size": vocab_size,
            "model_type": model_type,
            "character_coverage": character_coverage,
        }
        failure = _train_in_child_process([Path(path) for path in files], model_prefix, settings, sample_sentences)
        if failure is not None:
            raise ValueError(f"cannot train sentencepiece on {[str(f) for f in files]}: {failure}")
        return cls.load(model_prefix.with_name(model_prefix.name + ".model"))

    def tokenize(self, text: str) -> list[str]:
        """``"Ein Hund."`` -> pieces such as ``["▁Ein", "▁Hund", "."]``."""
        return self._processor.encode(text, out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        """Decode pieces back into text."""
        return self._processor.decode(list(tokens))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "sentencepiece", "model_proto": <base64 of the serialized model>}``."""
        return {"kind": self.kind, "model_proto": base64.b64encode(self._model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SentencePieceTokenizer:
        """Rebuild from ``to_dict()`` output; no model file is needed."""
        if "model_proto" not in d:
            raise ValueError(
                "a sentencepiece tokenizer description needs 'model_proto' (base64 of the "
                f"serialized model); got keys {sorted(d)}"
            )
        return cls(base64.b64decode(d["model_proto"]))

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(pieces={self._processor.get_piece_size()})"


def _without_output_path(model_proto: bytes) -> bytes:
    """The serialized model without the path it was trained into.

    sentencepiece's trainer records its ``model_prefix`` (here ``<run dir>/sentencepiece``) in
    the model. Two runs that trained the same pieces into different directories would otherwise
    hold different tokenizers, and could not decode as an ensemble. The path plays no part in
    tokenizing.
    """
    try:
        model = sentencepiece_model_pb2.ModelProto.FromString(model_proto)  # type: ignore[attr-defined]  # generated
    except DecodeError:
        raise ValueError(
            "not a sentencepiece model: expected the bytes of a .model file written by sentencepiece's trainer"
        ) from None
    if not model.trainer_spec.HasField("model_prefix"):
        return model_proto
    model.trainer_spec.ClearField("model_prefix")
    return model.SerializeToString()


def canonical_descriptions(entry: Any) -> Any:
    """A JSON value (a tokenizer's ``to_dict()``, or a structure that holds some, such as a
    checkpoint's ``source`` entry) with each SentencePiece model in it as the tokenizer holds it.

    Compare these, not the stored values: checkpoints and prepared data written before the
    tokenizer dropped the trainer's output path still carry it.
    """
    if isinstance(entry, dict):
        if entry.get("kind") == SentencePieceTokenizer.kind and "model_proto" in entry:
            return SentencePieceTokenizer.from_dict(entry).to_dict()
        return {key: canonical_descriptions(value) for key, value in entry.items()}
    if isinstance(entry, list):
        return [canonical_descriptions(value) for value in entry]
    return entry


SAMPLING_SEED = 1234  # draws the sample of ``sample_sentences``

# What the child process of ``_train_in_child_process`` runs: arguments in on stdin, the result out on stdout.
_CHILD_PROGRAM = (
    "import json, sys; from seq2seq.text.tokenizers import _train_sentencepiece; "
    "print(json.dumps(_train_sentencepiece(*json.load(sys.stdin))))"
)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _train_in_child_process(
    files: list[Path], model_prefix: Path, settings: dict[str, Any], sample: int | None
) -> str | None:
    """``_train_sentencepiece`` in a fresh Python process (which imports sentencepiece, not
    torch): the trainer's working memory, hundreds of MB for a large corpus, goes back to the
    system when it ends instead of staying in this process's heap."""
    arguments = json.dumps([[str(path) for path in files], str(model_prefix), settings, sample])
    path = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD_PROGRAM],
        input=arguments,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the sentencepiece training process failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _train_sentencepiece(
    files: list[str], model_prefix: str, settings: dict[str, Any], sample: int | None = None
) -> str | None:
    """Train a sentencepiece model on ``files`` (or ``sample`` of their sentences) into
    ``<model_prefix>.model``; the reason it could not be trained, or None.

    The sample is drawn here rather than by sentencepiece's own ``input_sentence_size``, whose
    draw differs from one process to the next whatever its seed; sentencepiece is still told
    the sample's size, so that it never holds more sentences than that.
    """
    sentences = _read_sentences([Path(path) for path in files])
    if sample is not None:
        sentences = iter(_reservoir_sample(sentences, sample))
        settings = {**settings, "input_sentence_size": sample}
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_prefix=model_prefix,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=2,
            **settings,
        )
    except RuntimeError as error:  # sentencepiece reports bad settings this way
        return str(error).split("] ")[-1]
    return None


def _read_sentences(files: list[Path]) -> Iterator[str]:
    """Non-empty lines of plain or gzipped UTF-8 text files, without their line endings."""
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                sentence = line.rstrip("\r\n")
                if sentence.strip():
                    yield sentence


def _reservoir_sample(items: Iterator[str], size: int) -> list[str]:
    """``size`` of ``items`` drawn uniformly at random (the same ones every time), keeping no more
    than that many at once; all of them when there are fewer."""
    generator = random.Random(SAMPLING_SEED)
    sample: list[str] = []
    for seen, item in enumerate(items):
        if seen < size:
            sample.append(item)
        else:
            slot = generator.randrange(seen + 1)
            if slot < size:
                sample[slot] = item
    return sample


_TokenizerClass = type[CharTokenizer] | type[WordTokenizer] | type[SentencePieceTokenizer]
_TOKENIZER_CLASSES: dict[str, _TokenizerClass] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "sentencepiece": SentencePieceTokenizer,
}


def _check_kind(kind: object) -> str:
    """Return ``kind`` if it names a tokenizer, else raise a ValueError listing the valid ones."""
    if kind not in _TOKENIZER_CLASSES:
        raise ValueError(f"unknown tokenizer kind {kind!r}; valid kinds are {sorted(_TOKENIZER_CLASSES)}")
    return str(kind)


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict()`` output, dispatching on ``d["kind"]``."""
    if "kind" not in d:
        raise ValueError(
            f"a tokenizer description needs a 'kind' key (one of {sorted(_TOKENIZER_CLASSES)}); got keys {sorted(d)}"
        )
    return _TOKENIZER_CLASSES[_check_kind(d["kind"])].from_dict(d)


def build_tokenizer(
    kind: str,
    *,
    lowercase: bool = False,
    sentencepiece_model: str | Path | None = None,
) -> Tokenizer:
    """Build a tokenizer by kind: ``"char"``, ``"word"`` or ``"sentencepiece"``.

    ``lowercase`` applies to char and word tokenizers; a sentencepiece model needs
    ``sentencepiece_model`` (a ``.model`` file) and does its own normalisation.
    """
    kind = _check_kind(kind)
    if kind == "sentencepiece":
        if sentencepiece_model is None:
            raise ValueError(
                "the sentencepiece tokenizer needs sentencepiece_model (a .model file); "
                "train one with SentencePieceTokenizer.train(...)"
            )
        if lowercase:
            raise ValueError(
                "lowercase does not apply to a trained sentencepiece model; lowercase the "
                "training text instead, or use the char or word tokenizer"
            )
        return SentencePieceTokenizer.load(sentencepiece_model)
    if sentencepiece_model is not None:
        raise ValueError(f"sentencepiece_model is only used with kind 'sentencepiece', not {kind!r}")
    if kind == "char":
        return CharTokenizer(lowercase=lowercase)
    return WordTokenizer(lowercase=lowercase)
