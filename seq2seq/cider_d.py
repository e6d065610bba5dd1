"""CIDEr-D of single captions, with document frequencies fixed once from a corpus of references.

The COCO caption evaluation (pycocoevalcap) computes the document frequencies of n-grams from
the references of the images it scores, each time it scores. Self-critical training needs the
same formula with the frequencies of the whole training set, computed once, and a score for each
of many sampled captions per batch: ``CiderD`` does that. Its formula is pycocoevalcap's:
for n = 1..4, the tf-idf vectors of the caption's and each reference's n-grams (idf =
log(images) - log(max(1, document frequency))), the caption's weights clipped at the
reference's, their cosine, times a Gaussian penalty on the length difference (sigma 6); the
mean over n, over the references, times 10. ``tests/test_cider_d.py`` holds it to
pycocoevalcap's scores when both take their frequencies from the same references.

Captions are lists of words (``caption_words``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

NGRAM_ORDER = 4
LENGTH_SIGMA = 6.0

Words = Sequence[str]
NGram = tuple[str, ...]


def ngram_counts(words: Words, order: int = NGRAM_ORDER) -> Counter[NGram]:
    """How often each n-gram of 1..order words occurs in ``words``."""
    return Counter(tuple(words[i : i + n]) for n in range(1, order + 1) for i in range(len(words) - n + 1))


class TfIdf:
    """A caption's tf-idf weights per n-gram order, their norms and its length."""

    def __init__(self, words: Words, idf: dict[NGram, float], unseen_idf: float) -> None:
        self.length = len(words)
        self.weights: list[dict[NGram, float]] = [{} for _ in range(NGRAM_ORDER)]
        for ngram, count in ngram_counts(words).items():
            self.weights[len(ngram) - 1][ngram] = count * idf.get(ngram, unseen_idf)
        self.norms = [math.sqrt(sum(w * w for w in weights.values())) for weights in self.weights]

    def similarity(self, reference: TfIdf) -> float:
        """The mean over n-gram orders of the clipped cosine, times the length penalty."""
        total = 0.0
        for n in range(NGRAM_ORDER):
            ours, theirs = self.weights[n], reference.weights[n]
            dot = sum(min(weight, theirs.get(ngram, 0.0)) * theirs.get(ngram, 0.0) for ngram, weight in ours.items())
            if self.norms[n] and reference.norms[n]:
                dot /= self.norms[n] * reference.norms[n]
            total += dot
        penalty = math.exp(-((self.length - reference.length) ** 2) / (2 * LENGTH_SIGMA**2))
        return total / NGRAM_ORDER * penalty


class CiderD:
    """CIDEr-D against references, with the idf of a fixed corpus.

    corpus: the references of every image of the corpus (each image's captions as word lists);
    an n-gram's document frequency is the number of images whose references contain it.
    """

    def __init__(self, corpus: Sequence[Sequence[Words]]) -> None:
        if not corpus:
            raise ValueError("CIDEr-D needs the references of at least one image for its document frequencies")
        frequencies: Counter[NGram] = Counter()
        for references in corpus:
            frequencies.update({ngram for words in references for ngram in ngram_counts(words)})
        self.log_images = math.log(len(corpus))
        self.idf = {ngram: self.log_images - math.log(count) for ngram, count in frequencies.items()}

    def vector(self, words: Words) -> TfIdf:
        """The tf-idf form of a caption (n-grams never seen in the corpus count as seen once)."""
        return TfIdf(words, self.idf, self.log_images)

    def score(self, caption: Words, references: Sequence[TfIdf]) -> float:
        """CIDEr-D of one caption against an image's references (each made by ``vector``)."""
        if not references:
            raise ValueError("CIDEr-D needs at least one reference caption")
        ours = self.vector(caption)
        return 10.0 * sum(ours.similarity(reference) for reference in references) / len(references)
