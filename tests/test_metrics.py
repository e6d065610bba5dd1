"""Tests for seq2seq.metrics: sacreBLEU BLEU and chrF on hand-checked cases, signatures, helpers."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from seq2seq.metrics import corpus_bleu, corpus_chrf, nats_to_bits, perplexity, reference_streams

REFERENCES = ["A man rides a bike down the street.", "Two dogs play in the snow."]


@pytest.mark.parametrize("metric", [corpus_bleu, corpus_chrf])
def test_identical_text_scores_100(metric) -> None:
    assert metric(REFERENCES, REFERENCES).score == pytest.approx(100.0)


@pytest.mark.parametrize("metric", [corpus_bleu, corpus_chrf])
def test_disjoint_text_scores_about_0(metric) -> None:
    assert metric(["xyz qqq", "vvv www"], ["abc def", "ghi jkl"]).score < 1.0


def test_bleu_of_a_hand_checked_sentence() -> None:
    # hypothesis vs reference (6 words each): clipped matches 5/6 unigrams, 3/5 bigrams,
    # 2/4 trigrams, 1/3 four-grams; same length, so no brevity penalty.
    score = corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert score.score == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_bleu_brevity_penalty_by_hand() -> None:
    # 5 words against 6: precisions 4/5, 3/4, 2/3, 1/2 and brevity penalty exp(1 - 6/5).
    score = corpus_bleu(["the cat sat on the"], ["the cat sat on a mat"])
    assert score.score == pytest.approx(100 * math.exp(1 - 6 / 5) * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_signatures_say_how_the_scores_were_made() -> None:
    bleu = corpus_bleu(REFERENCES, REFERENCES)
    assert bleu.signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    chrf = corpus_chrf(REFERENCES, REFERENCES)
    assert chrf.signature.startswith("nrefs:1|case:mixed") and "nc:6" in chrf.signature
    assert bleu.signature in str(bleu) and str(bleu).startswith("BLEU = 100.00")
    assert bleu.details.startswith("BLEU = ") and "BP" in bleu.details


def test_case_matters() -> None:
    assert corpus_bleu([text.lower() for text in REFERENCES], REFERENCES).score < 100.0


def test_multiple_references_take_the_best_match() -> None:
    hypotheses = ["A dog is running on the grass."]
    one = corpus_bleu(hypotheses, [["A brown dog runs across a lawn."]])
    two = corpus_bleu(hypotheses, [["A brown dog runs across a lawn.", "A dog is running on the grass."]])
    assert two.score == pytest.approx(100.0) and one.score < 50.0
    assert two.signature.startswith("nrefs:2|")


def test_a_varying_number_of_references() -> None:
    references = [["A dog runs.", "A dog is running."], ["Two cats sleep."]]
    streams = reference_streams(["x", "y"], references)
    assert streams == [["A dog runs.", "Two cats sleep."], ["A dog is running.", None]]
    score = corpus_bleu(["A dog is running.", "Two cats sleep."], references)
    assert score.score == pytest.approx(100.0) and score.signature.startswith("nrefs:var|")


@pytest.mark.parametrize(
    ("hypotheses", "references", "message"),
    [
        ([], [], "no hypotheses"),
        (["a", "b"], ["a"], "2 hypotheses but 1 references"),
        ([["a", "b"]], ["a b"], "detokenised"),
        (["a"], [[]], "sentence 1"),
        ("a b", "a b", "lists of sentences"),
    ],
)
def test_bad_inputs_are_explained(hypotheses, references, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        corpus_bleu(hypotheses, references)


def test_perplexity_and_bits() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7)) == pytest.approx(7.0)
    assert math.isfinite(perplexity(1e6))
    assert nats_to_bits(math.log(2)) == pytest.approx(1.0)
    assert nats_to_bits(math.log(8)) == pytest.approx(3.0)
