"""Caption metrics on hand-checked examples."""

from __future__ import annotations

import math

import pytest

from seq2seq.caption_metrics import caption_scores, caption_words

REFERENCES = [
    ["A dog runs across the grass.", "A brown dog is running on grass."],
    ["Two children play in the sand.", "Kids playing on a beach."],
    ["A man rides a bike down the street.", "A cyclist on a city street."],
]


def test_caption_words_lowercase_and_drop_punctuation() -> None:
    assert caption_words("A Dog's ball, medium-light skin tone: 2.5 m!") == [
        "a",
        "dog's",
        "ball",
        "medium",
        "light",
        "skin",
        "tone",
        "2.5",
        "m",
    ]


def test_bleu1_by_hand() -> None:
    # "a cat on the mat" against "the cat is on the mat" (the full stop is not a word): 4 of 5
    # unigrams match ("a" does not); brevity penalty exp(1 - 6/5).
    scores = caption_scores(["a cat on the mat"], [["The cat is on the mat."]])
    expected = 100 * 0.8 * math.exp(1 - 6 / 5)
    assert scores.bleu[0] == pytest.approx(expected, abs=0.01)
    assert "nrefs:1" in scores.bleu_signature and "tok:none" in scores.bleu_signature


def test_bleu_uses_every_reference() -> None:
    # Each half of the caption matches a different reference.
    one = caption_scores(["a brown dog runs across the grass"], [[REFERENCES[0][0]]])
    both = caption_scores(["a brown dog runs across the grass"], [REFERENCES[0]])
    assert both.bleu[0] > one.bleu[0]
    assert "nrefs:2" in both.bleu_signature


def test_a_caption_equal_to_a_reference_is_exact_and_scores_best() -> None:
    perfect = caption_scores([refs[0] for refs in REFERENCES], REFERENCES)
    assert perfect.exact == 100.0
    assert perfect.bleu[3] == pytest.approx(100.0)
    partial = caption_scores(["a dog runs", "two children play", "a man rides"], REFERENCES)
    wrong = caption_scores(["two children play", "a man rides a bike", "a dog runs"], REFERENCES)
    assert partial.exact == 0.0
    assert perfect.cider_d > partial.cider_d > wrong.cider_d
    assert perfect.bleu[3] > partial.bleu[3]


def test_exact_ignores_case_and_punctuation_only() -> None:
    scores = caption_scores(
        ["man mage: Dark Skin Tone", "woman mage", "man mage: medium - light skin tone"],
        [["man mage: dark skin tone"], ["man mage"], ["man mage: medium-light skin tone"]],
    )
    assert scores.exact == pytest.approx(200 / 3)


def test_cider_d_clips_repeated_words() -> None:
    # CIDEr-D caps each n-gram's count at the reference's: repeating a matching word does not pay.
    plain = caption_scores(["a dog runs across the grass", "two children play", "a man rides"], REFERENCES)
    repeated = caption_scores(["a dog dog dog runs across the grass", "two children play", "a man rides"], REFERENCES)
    assert repeated.cider_d < plain.cider_d


def test_mismatched_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        caption_scores(["a", "b"], REFERENCES)
