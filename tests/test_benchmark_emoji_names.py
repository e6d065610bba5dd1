"""The caption benchmark's exact names by kind of test emoji (skin-tone variants of training emoji, others)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.emoji_names import NamesByKind, names_by_kind
from seq2seq.data.captions import ImageCaptions


def images(names: list[str], split: str) -> list[ImageCaptions]:
    return [ImageCaptions(f"{index}.png", Path(f"{index}.png"), [name], split) for index, name in enumerate(names)]


TRAIN = images(["waving hand", "waving hand: dark skin tone", "woman mage", "man", "red apple"], "train")
TEST = images(
    [
        "waving hand: medium skin tone",  # a variant: "waving hand" and a tone of it are in train
        "woman mage: light skin tone",  # a variant of "woman mage"
        "green apple",  # no relative in train
        "man mage",  # no relative: "man" is another family
        "thumbs up: medium skin tone",  # a tone, but no thumbs up in train
    ],
    "test",
)


def test_each_test_emoji_counts_in_its_kind_and_exact_names_compare_words() -> None:
    captions = [
        "Waving hand: medium-skin tone",  # exact: the words compare, not case or punctuation
        "woman mage: dark skin tone",  # the wrong tone
        "red apple",  # a training name
        "man mage",  # exact
        "waving hand: dark skin tone",  # a training name
    ]
    names = names_by_kind(captions, TEST, TRAIN)
    assert names == NamesByKind(variants=2, variants_exact=1, others=3, others_exact=1, others_named_as_training=2)
    assert str(names) == (
        "skin-tone variants of training emoji 1/2 exact; the other emoji 1/3 exact, 2 of them named as a training emoji"
    )


def test_any_reference_counts_and_an_unread_image_is_not_exact() -> None:
    test = [ImageCaptions("0.png", Path("0.png"), ["green apple", "an apple"], "test")]
    assert names_by_kind(["an apple"], test, TRAIN).others_exact == 1
    assert names_by_kind([""], test, TRAIN) == NamesByKind(0, 0, 1, 0, 0)


def test_captions_must_match_the_test_images() -> None:
    with pytest.raises(ValueError, match="4 captions for 5 test images"):
        names_by_kind(["red apple"] * 4, TEST, TRAIN)
