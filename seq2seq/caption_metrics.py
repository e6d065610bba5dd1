"""Caption metrics: BLEU-1..4 and CIDEr-D of free-running captions, and exact matches.

Each image has several references. Every metric compares the lowercased words of a caption
without punctuation (``caption_words``), as the COCO caption evaluation does. BLEU is sacreBLEU's
over those words (every reference of an image at once, its signature printed with the score).
CIDEr-D is the COCO caption evaluation's own scorer (pycocoevalcap); its document frequencies
come from the references of the images scored, so scores of different image sets differ in scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pycocoevalcap.cider.cider import Cider
from sacrebleu.metrics import BLEU

from seq2seq.metrics import reference_streams


@dataclass(frozen=True)
class CaptionScores:
    """Caption metrics of free-running captions against every reference of each image.

    bleu:    BLEU-1 .. BLEU-4 (0..100), sacreBLEU over caption words, all references at once
    cider_d: CIDEr-D as the COCO caption evaluation computes it (pycocoevalcap; 1.0 = 100 in papers),
             document frequencies from these references
    exact:   percentage of captions equal (as such words) to one of their references
    """

    bleu: tuple[float, float, float, float]
    cider_d: float
    exact: float
    bleu_signature: str

    def as_dict(self) -> dict[str, float]:
        named = {f"bleu{n}": score for n, score in enumerate(self.bleu, start=1)}
        return {**named, "cider_d": self.cider_d, "exact": self.exact}

    def __str__(self) -> str:
        bleu = " ".join(f"BLEU-{n} {score:.2f}" for n, score in enumerate(self.bleu, start=1))
        return f"{bleu} | CIDEr-D {self.cider_d:.3f} | exact {self.exact:.2f}%  (BLEU: {self.bleu_signature})"


_WORD = re.compile(r"\w+(?:['.]\w+)*")


def caption_words(text: str) -> list[str]:
    """Lowercased words without punctuation, as caption metrics compare them ("A dog's ball." ->
    ["a", "dog's", "ball"]). Hyphens separate words ("medium-light" -> ["medium", "light"]), so
    that a caption detokenised as "medium - light" reads the same."""
    return _WORD.findall(text.lower())


def is_exact(caption: str, references: Sequence[str]) -> bool:
    """Whether ``caption``'s words (``caption_words``) equal those of one of ``references``."""
    words = caption_words(caption)
    return any(words == caption_words(reference) for reference in references)


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> CaptionScores:
    """BLEU-1..4, CIDEr-D and exact matches of one caption per image against its references."""
    reference_streams(hypotheses, references)  # checks the counts and types
    words = [" ".join(caption_words(hypothesis)) for hypothesis in hypotheses]
    reference_words = [[" ".join(caption_words(reference)) for reference in refs] for refs in references]
    streams = reference_streams(words, reference_words)
    bleu_scores, signature = [], ""
    for order in range(1, 5):
        metric = BLEU(max_ngram_order=order, tokenize="none")
        # sacreBLEU takes None for a missing reference; its annotation says Sequence[Sequence[str]].
        bleu_scores.append(float(metric.corpus_score(words, streams).score))  # type: ignore[arg-type]
        signature = str(metric.get_signature())
    cider, _ = Cider().compute_score(
        {i: refs for i, refs in enumerate(reference_words)}, {i: [words[i]] for i in range(len(words))}
    )
    exact = sum(is_exact(hypothesis, refs) for hypothesis, refs in zip(hypotheses, references)) / len(words)
    bleu1, bleu2, bleu3, bleu4 = bleu_scores
    return CaptionScores((bleu1, bleu2, bleu3, bleu4), float(cider), 100.0 * exact, signature)
