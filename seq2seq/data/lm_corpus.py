"""A language-model corpus: the text, its tokenizer and vocabulary, and the two id streams."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.data.lm_stream import LMDataConfig, split_point
from seq2seq.data.text_files import DataError, read_text
from seq2seq.text import SentencePieceTokenizer, Tokenizer, Vocab, build_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LMCorpus:
    tokenizer: Tokenizer
    vocab: Vocab
    train_ids: Tensor  # (N_train,)
    validation_ids: Tensor  # (N_validation,)


def make_tokenizer(config: LMDataConfig, work_dir: Path) -> Tokenizer:
    """The tokenizer the config asks for; trains a SentencePiece model into ``work_dir`` if needed."""
    if config.tokenizer != "sentencepiece" or config.sentencepiece_model:
        return build_tokenizer(
            config.tokenizer, lowercase=config.lowercase, sentencepiece_model=config.sentencepiece_model
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    log.info("training a SentencePiece model of %d pieces on %s", config.sentencepiece_vocab_size, config.path)
    return SentencePieceTokenizer.train(
        [Path(config.path)],
        config.sentencepiece_vocab_size,
        model_prefix=work_dir / "sentencepiece",
        sample_sentences=config.sentencepiece_sample_size,
    )


def load_lm_corpus(config: LMDataConfig, tokenizer: Tokenizer, vocab: Vocab | None = None) -> LMCorpus:
    """Tokenise the text, split it, and build the vocabulary from the training part unless given.

    Validation tokens missing from the vocabulary become <unk> (and are counted in the log).
    """
    tokens = tokenizer.tokenize(read_text(config.path))
    cut = split_point(len(tokens), config.validation_fraction)
    if vocab is None:
        vocab = Vocab.build([tokens[:cut]], min_freq=config.min_freq)
    ids = encode_tokens(tokens, vocab)
    train_ids, validation_ids = ids[:cut], ids[cut:]
    if len(validation_ids) < 2:
        raise DataError(
            f"{config.path}: the validation part ({config.validation_fraction:.0%}) holds under 2 tokens; "
            "use a longer text or a larger data.validation_fraction"
        )
    unknown = int((validation_ids == vocab.unk_id).sum())
    if unknown:
        log.info("%d validation tokens are not in the training vocabulary and count as <unk>", unknown)
    return LMCorpus(tokenizer, vocab, train_ids, validation_ids)


def encode_tokens(tokens: list[str], vocab: Vocab) -> Tensor:
    """(N,) ids; tokens outside the vocabulary become <unk>."""
    return torch.tensor(vocab.encode(tokens, unknown="unk"), dtype=torch.long)


def unknown_tokens(tokens: Sequence[str], vocab: Vocab, shown: int = 10) -> str | None:
    """How many of ``tokens`` the vocabulary lacks (they count as <unk>), and the ``shown`` most
    frequent of them; None when every token is known."""
    unknown = Counter(token for token in tokens if token not in vocab)
    if not unknown:
        return None
    listed = ", ".join(f"{token!r} ({count:,})" for token, count in unknown.most_common(shown))
    more = f" and {len(unknown) - shown:,} more" if len(unknown) > shown else ""
    return (
        f"{unknown.total():,} of {len(tokens):,} are not in the model's vocabulary and count as <unk>: {listed}{more}"
    )
