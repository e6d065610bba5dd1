"""Exact names on the emoji test split, by whether a test emoji has a relative in training.

The emoji set puts every name in one split (``data_scripts/emoji.py``), so no test emoji is
named in training. About half of the test emoji are skin-tone variants of a training emoji
("waving hand: medium skin tone", beside "waving hand" and its other tones in training): naming
one means joining a seen name with a seen tone. The others have no relative in training; naming
one of them exactly means writing a name never seen as a whole. The split of the exact-name
score between the two kinds shows which of them a model (or a training method) gets right, and
how often it answers an unseen emoji with the name of a training emoji instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from data_scripts.emoji import is_skin_tone_variant, skin_tone_families
from seq2seq.caption_metrics import caption_words, is_exact
from seq2seq.data.captions import ImageCaptions


@dataclass(frozen=True)
class NamesByKind:
    """How many test images of each kind there are and how many were named exactly."""

    variants: int  # skin-tone variants of a training emoji
    variants_exact: int
    others: int  # test emoji without such a relative
    others_exact: int
    others_named_as_training: int  # of the others, captions that are the name of a training emoji

    def __str__(self) -> str:
        return (
            f"skin-tone variants of training emoji {self.variants_exact}/{self.variants} exact; "
            f"the other emoji {self.others_exact}/{self.others} exact, "
            f"{self.others_named_as_training} of them named as a training emoji"
        )


def names_by_kind(
    captions: Sequence[str], test: Sequence[ImageCaptions], train: Sequence[ImageCaptions]
) -> NamesByKind:
    """The exact names among ``captions`` (one per ``test`` image, in order) by kind of test image.

    A caption is exact as the exact-name score counts it (``seq2seq.caption_metrics.is_exact``);
    an image's kind is that of its first reference.
    """
    if len(captions) != len(test):
        raise ValueError(f"{len(captions)} captions for {len(test)} test images")
    train_names = [name for image in train for name in image.captions]
    families = skin_tone_families(train_names)
    training_words = {_words(name) for name in train_names}
    counts = {"variants": 0, "variants_exact": 0, "others": 0, "others_exact": 0, "others_named_as_training": 0}
    for caption, image in zip(captions, test):
        kind = "variants" if is_skin_tone_variant(image.captions[0], families) else "others"
        counts[kind] += 1
        counts[f"{kind}_exact"] += is_exact(caption, image.captions)
        if kind == "others":
            counts["others_named_as_training"] += _words(caption) in training_words
    return NamesByKind(**counts)


def _words(text: str) -> tuple[str, ...]:
    return tuple(caption_words(text))
