"""Reading a peer toolkit's benchmark figures (the JSON line its script ends with)."""

from __future__ import annotations

import json

import pytest

from benchmarks.peers import mean_peer, parse_peer_result


def peer_line(tokens_per_second: float, beam5: float, rss_kb: int) -> str:
    return json.dumps(
        {
            "toolkit": "OpenNMT-py",
            "version": ["3.5.1", "2.14.1"],
            "throughput": {"tgt_tok_per_s": tokens_per_second},
            "train": {"max_rss_kb": rss_kb, "wall_s": 300.0},
            "decode_beam5": {"sent_per_s_toolkit_time": beam5, "bleu": 20.5},
            "decode_greedy": {"sent_per_s_toolkit_time": 3 * beam5, "bleu": 19.5},
        }
    )


def test_a_peer_line_gives_its_figures_and_runs_average() -> None:
    first = parse_peer_result(peer_line(900.0, 40.0, 2 * 1024 * 1024))
    assert (first.toolkit, first.version) == ("OpenNMT-py", "3.5.1 2.14.1")
    assert first.tokens_per_second == 900.0 and first.peak_rss_gib == pytest.approx(2.0)
    assert (first.beam5_sentences_per_second, first.greedy_sentences_per_second) == (40.0, 120.0)
    second = parse_peer_result(peer_line(1100.0, 50.0, 1024 * 1024))
    mean = mean_peer([first, second])
    assert mean.tokens_per_second == 1000.0 and mean.beam5_sentences_per_second == 45.0
    assert mean.peak_rss_gib == pytest.approx(2.0)  # the larger of the two


def test_a_line_without_the_figures_is_an_error() -> None:
    with pytest.raises(KeyError):
        parse_peer_result(json.dumps({"toolkit": "OpenNMT-py"}))
