"""Our CIDEr-D with fixed document frequencies against the COCO caption evaluation's scorer."""

from __future__ import annotations

import random

import pytest
from pycocoevalcap.cider.cider import Cider

from seq2seq.cider_d import CiderD

WORDS = "a the man woman dog cat red blue runs sits on in grass snow ball with".split()


def sentence(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]


def test_scores_equal_pycocoevalcap_when_the_frequencies_come_from_the_scored_references() -> None:
    rng = random.Random(0)
    references = [[sentence(rng) for _ in range(rng.randint(1, 4))] for _ in range(30)]
    captions = [sentence(rng) for _ in references]
    captions[0] = references[0][0]  # one exact match
    _, expected = Cider().compute_score(
        {i: [" ".join(r) for r in refs] for i, refs in enumerate(references)},
        {i: [" ".join(c)] for i, c in enumerate(captions)},
    )
    cider = CiderD(references)
    ours = [cider.score(c, [cider.vector(r) for r in refs]) for c, refs in zip(captions, references)]
    assert ours == pytest.approx(list(expected), abs=1e-9)


def test_frequencies_are_those_of_the_corpus_not_of_the_captions_scored() -> None:
    """A word shared with the reference counts for more where the corpus finds it rarer."""
    dogs_common = CiderD([[["red", "cat", "blue"]], [["dog"]], [["dog"]], [["dog"]]])
    reds_common = CiderD([[["dog", "cat", "blue"]], [["red"]], [["red"]], [["red"]]])
    for cider, rarer, commoner in (
        (dogs_common, ["red", "cat"], ["blue", "dog"]),
        (reds_common, ["blue", "dog"], ["red", "cat"]),
    ):
        references = [cider.vector(["red", "dog"])]
        assert cider.score(rarer, references) > cider.score(commoner, references) > 0
        assert cider.score([], references) == 0
    with pytest.raises(ValueError, match="at least one image"):
        CiderD([])
