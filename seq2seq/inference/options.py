"""A trained model's decoding defaults with a caller's choices on top.

Every task stores its decoding defaults in its config's ``decoding`` section; the Python API and
the command line name the same options as keywords and flags, and ``None`` keeps the default.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Literal, TypedDict

from seq2seq.config import DecodeConfig
from seq2seq.decoding import check_decode_config, search_config


class LimitOptions(TypedDict, total=False):
    """Length limits and bans of every search; a key left out (or None) keeps the checkpoint's
    value. See ``DecodeConfig`` for each one's meaning."""

    max_length: int | None
    min_length: int | None
    no_repeat_ngram: int | None
    ban_unk: bool | None


class SearchOptions(LimitOptions, total=False):
    """A beam search (or greedy search, a beam of one): translation and captioning."""

    beam: int | None  # beams per input (default: the checkpoint's decoding.beam_size)
    greedy: bool  # greedy search, a beam of one
    n_best: int | None  # hypotheses returned per input, best first; at most beam
    max_length_ratio: float | None
    min_length_ratio: float | None
    length_penalty: Literal["none", "gnmt", "average"] | None
    alpha: float | None


class SamplingOptions(LimitOptions, total=False):
    """Sampling: each step's distribution shaped by temperature, then top-k, then top-p."""

    temperature: float | None  # 0 is greedy
    top_k: int | None
    top_p: float | None
    repetition_penalty: float | None
    seed: int | None  # the same seed gives the same samples
    stop: list[str] | None  # a sample ends once its text contains one of these


class CaptionOptions(SearchOptions, SamplingOptions, total=False):
    """Captioning searches (``SearchOptions``) or samples (``SamplingOptions``, with ``sample=True``)."""


#: The keys that only a search, or only sampling, takes.
SEARCH_ONLY = frozenset(SearchOptions.__annotations__) - frozenset(LimitOptions.__annotations__)
SAMPLING_ONLY = frozenset(SamplingOptions.__annotations__) - frozenset(LimitOptions.__annotations__)


#: Options a caller may set directly; the search itself (beam, greedy, sampling, n-best,
#: samples) is chosen by ``search_options``.
PLAIN_OPTIONS = frozenset(field.name for field in fields(DecodeConfig)) - {
    "method",
    "beam_size",
    "n_best",
    "num_samples",
}


def search_options(
    defaults: DecodeConfig,
    beam: int | None = None,
    greedy: bool = False,
    n_best: int | None = None,
    **options: Any,
) -> DecodeConfig:
    """A beam search (or greedy search, a beam of one) for translation and captioning.

    beam: beams per input (default: the checkpoint's ``decoding.beam_size``, or 1 when its
    method is greedy); greedy: a beam of one; n_best: hypotheses returned per input, at most
    ``beam`` (default: the checkpoint's, within the beam). ``options``: any other key of
    ``DecodeConfig`` (max_length, max_length_ratio, min_length, length_penalty, alpha,
    no_repeat_ngram, ban_unk, ...), None meaning the checkpoint's value.
    """
    if greedy and beam not in (None, 1):
        raise ValueError(f"greedy search is a beam of 1; it cannot be combined with beam={beam}")
    defaults = _with(defaults, options)
    if greedy or (beam is None and defaults.method == "greedy"):
        beam = 1
    beam_size = defaults.beam_size if beam is None else beam
    if n_best is not None and n_best > beam_size:
        raise ValueError(f"n_best={n_best} needs a beam of at least {n_best}: ask for beam={n_best} or more")
    decode = search_config(defaults, beam_size, min(defaults.n_best, beam_size) if n_best is None else n_best)
    check_decode_config(decode)
    return decode


def sampling_options(defaults: DecodeConfig, num_samples: int | None = None, **options: Any) -> DecodeConfig:
    """Sampling: ``num_samples`` outputs per input (default: the checkpoint's), with any other
    key of ``DecodeConfig`` as in ``search_options`` (temperature, top_k, top_p, seed, ...)."""
    samples = defaults.num_samples if num_samples is None else num_samples
    decode = replace(_with(defaults, options), method="sample", num_samples=samples)
    check_decode_config(decode)
    return decode


def _with(defaults: DecodeConfig, options: dict[str, Any]) -> DecodeConfig:
    unknown = sorted(set(options) - PLAIN_OPTIONS)
    if unknown:
        raise TypeError(f"unknown decoding option(s) {', '.join(unknown)}; known: {', '.join(sorted(PLAIN_OPTIONS))}")
    return replace(defaults, **{key: value for key, value in options.items() if value is not None})
