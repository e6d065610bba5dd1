"""The settings of caption data and image transforms, apart from the code that reads images, so
that a config can name them without loading the image libraries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seq2seq.config import bounded

Normalization = Literal["imagenet", "none"]
CaptionFormat = Literal["karpathy", "table"]
CaptionTokenizerKind = Literal["word", "sentencepiece"]


@dataclass
class ImageTransformConfig:
    """How an RGB image becomes a model input."""

    image_size: int = bounded(
        224, at_least=1
    )  # images are resized so the shorter side is this, then centre-cropped square
    augment: bool = False  # training only: random resized crop (scale below) and horizontal flips
    crop_scale_min: float = bounded(
        0.8, above=0, at_most=1
    )  # augmentation: a random crop covers at least this fraction of the image
    # Augmentation: flip half the images left to right (captions that say "left" or "right" then
    # disagree with the picture; turn this off when that matters).
    horizontal_flip: bool = True
    normalize: Normalization = "imagenet"  # imagenet | none (pixel values in [0, 1])


@dataclass
class CaptionDataConfig:
    """Where the images and captions are, how captions are tokenised, and how images are batched."""

    format: CaptionFormat = "karpathy"  # karpathy (dataset JSON with splits) | table (a folder of images + a TSV/CSV)
    annotations: str = "data/emoji/dataset_emoji.json"  # the Karpathy JSON, or the TSV/CSV captions file
    images: str = "data/emoji/images"  # folder the image paths are relative to
    restval_as_train: bool = True  # karpathy: train on the "restval" images too; False leaves them out
    valid_fraction: float = bounded(
        0.05, at_least=0, below=1
    )  # table without a split column: share of images for validation (by path hash)
    test_fraction: float = bounded(
        0.05, at_least=0, below=1
    )  # table without a split column: share of images for test (by path hash)
    tokenizer: CaptionTokenizerKind = "word"  # word | sentencepiece (trained on the training captions)
    lowercase: bool = True  # lowercase captions first (word tokenizer only)
    min_freq: int = bounded(1, at_least=1)  # training words seen fewer times than this become <unk>
    sentencepiece_vocab_size: int = bounded(
        4000, at_least=1
    )  # pieces of the SentencePiece model trained on the training captions
    max_length: int = bounded(
        30, at_least=0
    )  # training captions with more tokens are dropped (counted in the log); 0 keeps all
    max_pixels: int = bounded(
        50_000_000, at_least=1
    )  # images with more pixels are skipped as too large (decompression bombs)
    batch_size: int = bounded(32, at_least=1)  # (image, caption) pairs per training batch, all processes together
    num_workers: int = bounded(
        0, at_least=0
    )  # DataLoader worker processes that decode images; 0 decodes in the training process
    preload: bool = False  # decode every image once and keep it in memory as uint8 (for small sets such as emoji)
    transform: ImageTransformConfig = field(default_factory=ImageTransformConfig)  # resize, crop, normalise, augment
