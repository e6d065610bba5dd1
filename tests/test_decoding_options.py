"""The decoding options: one check of every key, search settings and their description."""

import dataclasses
import math

import pytest

from seq2seq.config import DecodeConfig
from seq2seq.decoding import check_decode_config, describe_decoding, search_config


@pytest.mark.parametrize(
    ("settings", "key", "allowed"),
    [
        ({"method": "nucleus"}, "method", "one of greedy, sample, beam"),
        ({"max_length": 0}, "max_length", ">= 1"),
        ({"num_samples": 0}, "num_samples", ">= 1"),
        ({"temperature": -1.0}, "temperature", ">= 0"),
        ({"temperature": math.nan}, "temperature", "finite"),
        ({"top_k": -1}, "top_k", ">= 0"),
        ({"top_p": 0.0}, "top_p", r"in \(0, 1\]"),
        ({"top_p": 1.2}, "top_p", r"in \(0, 1\]"),
        ({"repetition_penalty": 0.0}, "repetition_penalty", "> 0"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"stop": [""]}, "stop", "non-empty strings"),
        ({"beam_size": 0}, "beam_size", ">= 1"),
        ({"n_best": 0}, "n_best", ">= 1"),
        ({"length_penalty": "longest"}, "length_penalty", "one of none, gnmt, average"),
        ({"alpha": -1.0}, "alpha", ">= 0"),
        ({"min_length": -1}, "min_length", ">= 0"),
        ({"min_length_ratio": -0.5}, "min_length_ratio", ">= 0"),
        ({"max_length_ratio": math.inf}, "max_length_ratio", "finite"),
        ({"ban_unk": "yes"}, "ban_unk", "bool"),
        ({"no_repeat_ngram": -2}, "no_repeat_ngram", ">= 0"),
        ({"method": "beam", "beam_size": 2, "n_best": 3}, "n_best", r"at most decoding.beam_size \(2\)"),
        ({"method": "beam", "repetition_penalty": 1.2}, "repetition_penalty", "1 in beam search"),
    ],
)
def test_a_bad_value_names_its_key_and_the_values_allowed(settings: dict[str, object], key: str, allowed: str) -> None:
    config = dataclasses.replace(DecodeConfig(), **settings)
    with pytest.raises(ValueError, match=rf"decoding\.{key} must .*{allowed}.*got"):
        check_decode_config(config)


@pytest.mark.parametrize(
    "config",
    [
        DecodeConfig(),
        DecodeConfig(method="greedy", n_best=3, beam_size=2, repetition_penalty=1.3),
        DecodeConfig(method="sample", temperature=0.0, top_k=5, top_p=0.5, seed=7, stop=["\n"]),
        DecodeConfig(method="beam", beam_size=4, n_best=4, length_penalty="none", alpha=0.0, no_repeat_ngram=2),
    ],
)
def test_good_settings_pass(config: DecodeConfig) -> None:
    check_decode_config(config)


def test_search_config_is_greedy_for_a_beam_of_one_and_keeps_the_rest() -> None:
    defaults = DecodeConfig(method="sample", num_samples=3, max_length=40, min_length=2, ban_unk=False)
    greedy = search_config(defaults, beam_size=1)
    beam = search_config(defaults, beam_size=4, n_best=2)
    assert (greedy.method, greedy.num_samples) == ("greedy", 1)
    assert (beam.method, beam.beam_size, beam.n_best, beam.num_samples) == ("beam", 4, 2, 1)
    for config in (greedy, beam):
        assert (config.max_length, config.min_length, config.ban_unk) == (40, 2, False)
        check_decode_config(config)


def test_describe_decoding_names_the_search_and_its_limits() -> None:
    beam = describe_decoding(DecodeConfig(method="beam", beam_size=4, n_best=2, max_length=50, no_repeat_ngram=3))
    assert "beam search with 4 beams" in beam and "2 best" in beam and "at most 50 tokens" in beam
    assert "no repeated 3-grams" in beam
    assert describe_decoding(DecodeConfig(method="beam", beam_size=1)).startswith("greedy search")
    assert describe_decoding(DecodeConfig(method="sample", num_samples=2, seed=5)).startswith("sampling 2 per input")
