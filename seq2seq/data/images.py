"""Images for captioning: loading any file as 8-bit RGB, the transforms that make model inputs,
and counting the images that had to be skipped.

Loading. :func:`load_rgb` returns an 8-bit "RGB" image whatever the file holds: greyscale and
1-bit images are expanded, palette images resolved, transparent pixels laid over white (not
black: captions describe what a person sees), CMYK and YCbCr converted, 16-bit, 32-bit and
float images stretched from their darkest to their brightest value, and EXIF orientation
applied. A file that cannot be used raises :class:`BadImageError`, whose short ``reason`` says
why ("not found", "truncated", "unreadable: ...", "too large (...)"). The pixel limit is checked
from the header before anything is decoded; a JPEG over it is decoded at 1/2, 1/4 or 1/8 size
when that brings it under. Pillow's global settings are never changed.

Skipping. Datasets catch :class:`BadImageError`, skip the image and add it to a
:class:`SkipCounter`, which logs the first few paths and sums the rest up by reason, so that a
bad image never stops an epoch.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from seq2seq.config import ConfigError
from seq2seq.data.caption_settings import ImageTransformConfig, Normalization
from seq2seq.data.text_files import DataError

log = logging.getLogger(__name__)

WHITE = (255, 255, 255, 255)
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # one channel, more than 8 bits
JPEG_DRAFT_SCALES = (2, 4, 8)  # the reduced sizes a JPEG decoder can produce directly: 1/2, 1/4, 1/8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = get_args(Normalization)
CROP_ASPECT_RATIOS = (4 / 5, 5 / 4)  # random crops stay close to square, so that objects keep their shape


class BadImageError(DataError):
    """An image file that cannot be used. Datasets skip the image and count it by :attr:`kind`."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    @property
    def kind(self) -> str:
        """The reason without its details ("unreadable", "too large", ...): what skips are counted by."""
        return re.split(r"[:(]", self.reason, maxsplit=1)[0].strip()

    def __reduce__(self) -> tuple[type[BadImageError], tuple[Path, str]]:
        return type(self), (self.path, self.reason)  # so that it crosses process boundaries intact


# ---- loading ----------------------------------------------------------------------------------


def load_rgb(path: Path, max_pixels: int = 50_000_000) -> Image.Image:
    """The image at ``path`` as an 8-bit "RGB" image, upright as its EXIF orientation says.

    Raises :class:`BadImageError` when the file is missing, not an image, corrupt, truncated, or
    has more than ``max_pixels`` pixels (a JPEG is first tried at a reduced decoding size).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "not found")
    try:
        with warnings.catch_warnings():
            # max_pixels is the limit here, checked below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                fit_pixel_limit(image, path, max_pixels)
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"too large ({error})") from error
    except Exception as error:  # Pillow's decoders raise many kinds of error on malformed files
        raise BadImageError(path, failure_reason(error)) from error


def fit_pixel_limit(image: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse an opened, not yet decoded image with more than ``max_pixels`` pixels. A JPEG is first
    set to decode at the largest of 1/2, 1/4 or 1/8 size that fits (other formats ignore ``draft``)."""
    width, height = image.size
    if width * height <= max_pixels:
        return
    for scale in JPEG_DRAFT_SCALES:
        if math.ceil(width / scale) * math.ceil(height / scale) <= max_pixels:
            # JPEG picks the largest scale whose result is at least the requested size: this one.
            image.draft(None, (max(1, width // scale), max(1, height // scale)))  # None: keep the colour mode
            break
    if image.width * image.height > max_pixels:
        raise BadImageError(path, f"too large ({width} x {height} pixels, limit {max_pixels})")


def failure_reason(error: Exception) -> str:
    """The reason for a file Pillow could not decode: "truncated", or "unreadable: <Pillow's message>"."""
    message = str(error) or type(error).__name__
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated"
    return f"unreadable: {message}"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded image as 8-bit RGB; transparency is laid over white."""
    if image.mode in HIGH_DEPTH_MODES:
        image = stretch_to_8bit(image)
    if image.has_transparency_data:  # an alpha channel, an alpha palette or a transparent colour
        background = Image.new("RGBA", image.size, WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def stretch_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float greyscale image as 8-bit "L": its darkest value black, its brightest white.

    A flat image has no range to stretch; it is placed on the usual scale of its mode instead
    (0..65535 for integers, 0..1 for floats).
    """
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        low, high = 0.0, (1.0 if image.mode == "F" else 65535.0)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8))


# ---- transforms -------------------------------------------------------------------------------


def build_transform(config: ImageTransformConfig, train: bool) -> Callable[[Image.Image], Tensor]:
    """RGB image -> float32 tensor (3, S, S), S = ``config.image_size``.

    Evaluation (and training without ``augment``): resize the shorter side to S, crop the centre.
    Training with ``augment``: a random crop of ``crop_scale_min``..1 of the area, close to
    square, resized to S, then a random horizontal flip when ``horizontal_flip`` is set.
    """
    from torchvision.transforms import v2  # on first use: processes without images never load torchvision

    check_transform_config(config)
    size = config.image_size
    if train and config.augment:
        geometry = [v2.RandomResizedCrop(size, scale=(config.crop_scale_min, 1.0), ratio=CROP_ASPECT_RATIOS)]
        if config.horizontal_flip:
            geometry.append(v2.RandomHorizontalFlip())
    else:
        geometry = [v2.Resize(size), v2.CenterCrop(size)]
    normalization = [v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if config.normalize == "imagenet" else []
    return v2.Compose(
        [
            *geometry,  # on the PIL image, before it becomes a tensor: cheaper for large photos
            v2.ToImage(),  # uint8 (3, S, S)
            v2.ToDtype(torch.float32, scale=True),  # [0, 1]
            *normalization,
            v2.ToPureTensor(),
        ]
    )


def check_transform_config(config: ImageTransformConfig) -> None:
    """Refuse settings the transforms cannot use, saying which and what is allowed."""
    if config.image_size < 1:
        raise ConfigError(f"image transform: image_size must be >= 1 (pixels), got {config.image_size}")
    if not 0.0 < config.crop_scale_min <= 1.0:
        raise ConfigError(f"image transform: crop_scale_min must be in (0, 1], got {config.crop_scale_min}")
    if config.normalize not in NORMALIZATIONS:
        raise ConfigError(
            f"image transform: normalize must be one of {', '.join(NORMALIZATIONS)}; got {config.normalize!r}"
        )


# ---- skipped images ---------------------------------------------------------------------------


class SkipCounter:
    """Counts skipped images by the kind of their reason; logs the first ``log_first`` of them."""

    def __init__(self, log_first: int = 5) -> None:
        self.log_first = log_first
        self.counts: Counter[str] = Counter()
        self.first: str | None = None  # the first skipped image and why

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, error: BadImageError) -> None:
        """Count one skipped image; its path is logged while fewer than ``log_first`` have been."""
        self.counts[error.kind] += 1
        self.first = self.first or str(error)
        if self.total <= self.log_first:
            more = " (further skipped images are only counted)" if self.total == self.log_first else ""
            log.warning("skipping image %s%s", error, more)

    def merge(self, other: SkipCounter) -> None:
        """Add the counts of another counter (for example one per data-loading worker)."""
        self.counts.update(other.counts)
        self.first = self.first or other.first

    def summary(self) -> str:
        """E.g. "3 images skipped: 2 truncated, 1 unreadable" (most frequent reason first)."""
        if not self.total:
            return "no images skipped"
        noun = "image" if self.total == 1 else "images"
        reasons = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return f"{self.total} {noun} skipped: " + ", ".join(f"{count} {kind}" for kind, count in reasons)


def pixels_of(image: Image.Image) -> Tensor:
    """An 8-bit RGB image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def image_of(pixels: Tensor) -> Image.Image:
    """A (3, H, W) uint8 tensor back to the RGB image it was made from (exact)."""
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())
