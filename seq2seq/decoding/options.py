"""Decoding options: the checks of a ``DecodeConfig``, search settings and their description.

Every task keeps its decoding options in a section named ``decoding``; the messages here name
a key as ``decoding.<key>`` and say which values it takes.
"""

from __future__ import annotations

import math
from dataclasses import replace

from seq2seq.config import DecodeConfig

SEARCH_METHODS = ("greedy", "sample", "beam")
LENGTH_PENALTIES = ("none", "gnmt", "average")


def check_decode_config(config: DecodeConfig) -> None:
    """Rejects any decoding option outside its range with a ValueError naming the key to fix."""
    methods, penalties = ", ".join(SEARCH_METHODS), ", ".join(LENGTH_PENALTIES)
    seed = config.seed
    seed_valid = seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0)
    rules: list[tuple[str, bool, str]] = [
        ("method", config.method in SEARCH_METHODS, f"one of {methods}"),
        ("max_length", config.max_length >= 1, ">= 1 new token"),
        ("num_samples", config.num_samples >= 1, ">= 1"),
        ("temperature", _finite(config.temperature, 0), "a finite number >= 0 (0 means greedy)"),
        ("top_k", config.top_k >= 0, ">= 0 (0 disables it)"),
        ("top_p", 0 < config.top_p <= 1, "in (0, 1] (1 disables it)"),
        (
            "repetition_penalty",
            _finite(config.repetition_penalty, 0, strict=True),
            "a finite number > 0 (1 disables it)",
        ),
        ("seed", seed_valid, "an integer >= 0 or null"),
        ("stop", all(isinstance(text, str) and text for text in config.stop), "a list of non-empty strings"),
        ("beam_size", config.beam_size >= 1, ">= 1"),
        ("n_best", config.n_best >= 1, ">= 1"),
        ("length_penalty", config.length_penalty in LENGTH_PENALTIES, f"one of {penalties}"),
        ("alpha", _finite(config.alpha, 0), "a finite number >= 0 (0 disables the gnmt penalty)"),
        ("min_length", config.min_length >= 0, ">= 0 (0 disables it)"),
        ("min_length_ratio", _finite(config.min_length_ratio, 0), "a finite number >= 0 (0 disables it)"),
        ("max_length_ratio", _finite(config.max_length_ratio, 0), "a finite number >= 0 (0 disables it)"),
        ("ban_unk", isinstance(config.ban_unk, bool), "true or false"),
        ("no_repeat_ngram", config.no_repeat_ngram >= 0, ">= 0 (0 disables it)"),
    ]
    if config.method == "beam":
        rules += [
            ("n_best", config.n_best <= config.beam_size, f"from 1 to decoding.beam_size ({config.beam_size})"),
            ("repetition_penalty", config.repetition_penalty == 1, "1 in beam search; use decoding.no_repeat_ngram"),
        ]
    for key, valid, allowed in rules:
        if not valid:
            raise ValueError(f"decoding.{key} must be {allowed}, got {getattr(config, key)!r}")


def _finite(value: float, low: float, strict: bool = False) -> bool:
    """Whether ``value`` is a finite number above ``low`` (or equal to it unless ``strict``)."""
    return math.isfinite(value) and (value > low if strict else value >= low)


def search_config(config: DecodeConfig, beam_size: int, n_best: int = 1) -> DecodeConfig:
    """``config`` as a beam search of ``beam_size`` beams returning ``n_best`` hypotheses, or as
    greedy search for a beam of one: the same result, found by the cheaper greedy loop (which
    keeps the length limits and bans of the beam settings)."""
    method = "beam" if beam_size > 1 else "greedy"
    return replace(config, method=method, beam_size=beam_size, n_best=n_best, num_samples=1)


def is_greedy(config: DecodeConfig) -> bool:
    """Greedy search is asked for by name or by a temperature of 0."""
    return config.method == "greedy" or config.temperature == 0


def describe_decoding(config: DecodeConfig) -> str:
    """The decoding settings in words, as the commands print them next to their results."""
    if config.method == "sample":
        parts = [
            f"sampling {config.num_samples} per input at temperature {config.temperature}, "
            f"top-k {config.top_k}, top-p {config.top_p}, seed {config.seed}"
        ]
    elif config.method == "greedy" or config.beam_size == 1:
        parts = ["greedy search"]
    else:
        penalty = {"none": "no length penalty", "average": "average length penalty"}.get(
            config.length_penalty, f"gnmt length penalty (alpha {config.alpha})"
        )
        parts = [f"beam search with {config.beam_size} beams", penalty, f"{config.n_best} best"]
    limit = f"at most {config.max_length} tokens"
    if config.max_length_ratio:
        limit += f" and {config.max_length_ratio} x the source length"
    parts.append(limit)
    if config.min_length or config.min_length_ratio:
        parts.append(f"at least {config.min_length} tokens and {config.min_length_ratio} x the source length")
    if config.no_repeat_ngram:
        parts.append(f"no repeated {config.no_repeat_ngram}-grams")
    parts.append("unk banned" if config.ban_unk else "unk allowed")
    return ", ".join(parts)
