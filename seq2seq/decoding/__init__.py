"""Decoding: logits processors, the decoding options and the searches that turn a model into
hypotheses.

``generate`` is the entry point; ``check_decode_config``, ``search_config`` and
``describe_decoding`` check, derive and describe its options.
"""

from seq2seq.decoding.common import Hypotheses, SpecialIds
from seq2seq.decoding.options import check_decode_config, describe_decoding, search_config
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
from seq2seq.decoding.search import generate

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
    "check_decode_config",
    "describe_decoding",
    "generate",
    "search_config",
]
