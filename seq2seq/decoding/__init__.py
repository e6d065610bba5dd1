"""Decoding: logits processors and the searches that turn a model into hypotheses."""

from seq2seq.decoding.processors import (
    BanTokens,
    LogitsProcessor,
    MinLength,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_processors,
    build_processors,
)
from seq2seq.decoding.search import Hypotheses, SpecialIds, describe_decoding, generate

__all__ = [
    "BanTokens",
    "Hypotheses",
    "LogitsProcessor",
    "MinLength",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "SpecialIds",
    "Temperature",
    "TopK",
    "TopP",
    "apply_processors",
    "build_processors",
    "describe_decoding",
    "generate",
]
