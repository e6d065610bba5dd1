"""The COCO caption evaluation: what runs without Java, what runs with it, and SPICE without its
Stanford CoreNLP files."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pycocoevalcap.spice.get_stanford_models
import pytest

from seq2seq import coco_metrics
from seq2seq.caption_metrics import caption_scores
from seq2seq.coco_metrics import JRE_INSTALL, coco_scores, java_available

HYPOTHESES = ["A man riding a horse.", "two dogs play in the snow", "a cat"]
REFERENCES = [
    ["A man rides a horse on a beach.", "a person on a horse"],
    ["Two dogs playing in snow.", "dogs in the snow"],
    ["a cat sits on a mat", "the cat"],
]


def no_corenlp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SPICE's CoreNLP files absent and their download failing, as on a machine without internet."""

    def fail() -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(coco_metrics, "SPICE_LIB", tmp_path)
    monkeypatch.setattr(pycocoevalcap.spice.get_stanford_models, "get_stanford_models", fail)


def test_without_java_bleu_rouge_and_cider_d_still_print_and_the_others_say_how_to_get_java(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coco_metrics, "java_available", lambda: False)
    scores = coco_scores(HYPOTHESES, REFERENCES)
    assert set(scores.scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert set(scores.unavailable) == {"METEOR", "SPICE"}
    assert all(JRE_INSTALL in reason for reason in scores.unavailable.values())
    assert JRE_INSTALL in scores.tokenization and JRE_INSTALL in str(scores)
    # Over the same caption words, the COCO CIDEr-D is the default metrics' CIDEr-D.
    assert scores.scores["CIDEr-D"] == pytest.approx(caption_scores(HYPOTHESES, REFERENCES).cider_d)
    assert 0 < scores.scores["ROUGE-L"] < 1


def test_perfect_captions_score_the_top_of_every_scale_and_empty_ones_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco_metrics, "java_available", lambda: False)
    references = [["a red square on white"], ["two blue circles"]]
    perfect = coco_scores(["a red square on white", "two blue circles"], references).scores
    assert perfect["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and perfect["ROUGE-L"] == pytest.approx(1.0)
    empty = coco_scores(["", ""], references).scores
    assert empty["ROUGE-L"] == 0 and empty["CIDEr-D"] == 0


@pytest.mark.skipif(not java_available(), reason="needs a Java runtime")
def test_with_java_ptb_tokens_and_meteor_and_spice_names_the_files_to_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_corenlp(monkeypatch, tmp_path)
    scores = coco_scores(HYPOTHESES, REFERENCES)
    assert "PTB" in scores.tokenization
    assert {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"} <= set(scores.scores)
    assert 0 < scores.scores["METEOR"] < 1
    (spice,) = scores.unavailable.values()
    assert "could not be fetched" in spice and "stanford-corenlp-3.6.0-models.jar" in spice and str(tmp_path) in spice
