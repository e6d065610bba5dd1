"""Decoding options: the checks of a ``DecodeConfig``, search settings and their description.

Every task keeps its decoding options in a section named ``decoding``; the messages here name
a key as ``decoding.<key>`` and say which values it takes.
"""

from __future__ import annotations

from dataclasses import replace

from seq2seq.config import ConfigError, DecodeConfig, DecodeMethod, check_config


def check_decode_config(config: DecodeConfig) -> None:
    """Rejects decoding options that cannot work, with a ValueError (a ConfigError) naming the
    key as ``decoding.<key>``: each key's type, choices and range as the config loader checks
    them (``DecodeConfig``'s fields say which), then the rules that join two keys."""
    check_config(config, "decoding")
    empty_stops = [text for text in config.stop if not text]
    if empty_stops:
        raise ConfigError(f"decoding.stop must hold non-empty strings, got {config.stop!r}")
    if config.method == "beam" and config.n_best > config.beam_size:
        raise ConfigError(
            f"decoding.n_best must be at most decoding.beam_size ({config.beam_size}), got {config.n_best}"
        )
    if config.method == "beam" and config.repetition_penalty != 1:
        raise ConfigError(
            f"decoding.repetition_penalty must be 1 in beam search (use decoding.no_repeat_ngram), "
            f"got {config.repetition_penalty}"
        )


def search_config(config: DecodeConfig, beam_size: int, n_best: int = 1) -> DecodeConfig:
    """``config`` as a beam search of ``beam_size`` beams returning ``n_best`` hypotheses, or as
    greedy search for a beam of one: the same result, found by the cheaper greedy loop (which
    keeps the length limits and bans of the beam settings)."""
    method: DecodeMethod = "beam" if beam_size > 1 else "greedy"
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
