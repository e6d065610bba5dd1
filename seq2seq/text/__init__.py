"""Text handling: tokenizers (char, word, sentencepiece) and the vocabulary."""

from seq2seq.text.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
)
from seq2seq.text.vocab import BOS, EOS, PAD, SPECIALS, UNK, UnknownTokensError, Vocab

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "UnknownTokensError",
    "Vocab",
    "WordTokenizer",
    "build_tokenizer",
    "tokenizer_from_dict",
]
