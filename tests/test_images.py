"""Tests for seq2seq.data.images: every kind of image file becomes 8-bit RGB or a clear skip reason,
transforms give model-ready tensors, and skips are counted by reason."""

from __future__ import annotations

import logging
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from seq2seq.config import ConfigError
from seq2seq.data.images import (
    BadImageError,
    ImageTransformConfig,
    SkipCounter,
    build_transform,
    load_rgb,
)
from seq2seq.data.text_files import DataError

SIZE = (8, 6)  # (W, H) of the test images


# ---- making test images -----------------------------------------------------------------------


def noise_rgb(size: tuple[int, int] = SIZE, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def saved(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height RGB pixels, followed by a scrap of (broken) pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"scrap"))
    return path


def reason_of(path: Path, max_pixels: int = 50_000_000) -> str:
    with pytest.raises(BadImageError) as caught:
        load_rgb(path, max_pixels)
    assert caught.value.path == path
    assert str(caught.value) == f"{path}: {caught.value.reason}"
    return caught.value.reason


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)  # (H, W, 3)


# ---- colour modes -----------------------------------------------------------------------------


def test_rgb_png_loads_unchanged(tmp_path: Path) -> None:
    original = noise_rgb()
    image = load_rgb(saved(original, tmp_path / "rgb.png"))
    assert image.size == SIZE
    assert np.array_equal(pixels(image), np.asarray(original))


def test_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = noise_rgb().convert("L")
    image = load_rgb(saved(grey, tmp_path / "grey.png"))
    values = pixels(image)
    for channel in range(3):
        assert np.array_equal(values[..., channel], np.asarray(grey))


def test_one_bit_image_becomes_black_and_white(tmp_path: Path) -> None:
    bits = noise_rgb().convert("L").point(lambda value: 255 if value > 127 else 0).convert("1")
    image = load_rgb(saved(bits, tmp_path / "bits.png"))
    values = pixels(image)
    assert set(np.unique(values)) == {0, 255}
    assert np.array_equal(values[..., 0] == 255, np.asarray(bits))


def test_transparent_palette_colour_becomes_white(tmp_path: Path) -> None:
    palette = Image.new("P", SIZE, 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * (3 * 254))  # 0: black (transparent), 1: red
    palette.putpixel((1, 1), 1)
    image = load_rgb(saved(palette, tmp_path / "palette.png", transparency=0))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (200, 30, 30)


def test_opaque_palette_image_keeps_its_colours(tmp_path: Path) -> None:
    original = noise_rgb()
    palette = original.quantize(colors=16)
    image = load_rgb(saved(palette, tmp_path / "palette.gif"))
    assert np.array_equal(pixels(image), np.asarray(palette.convert("RGB")))


def test_greyscale_with_alpha_is_laid_over_white(tmp_path: Path) -> None:
    grey_alpha = Image.new("LA", SIZE, (0, 0))  # black, fully transparent
    grey_alpha.putpixel((2, 3), (60, 255))  # dark grey, opaque
    image = load_rgb(saved(grey_alpha, tmp_path / "la.png"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((2, 3)) == (60, 60, 60)


def test_rgba_transparent_pixel_becomes_white_not_black(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", SIZE, (0, 0, 0, 0))  # black, fully transparent
    rgba.putpixel((1, 2), (10, 20, 250, 255))  # opaque blue
    rgba.putpixel((3, 4), (0, 0, 0, 128))  # half-transparent black
    image = load_rgb(saved(rgba, tmp_path / "rgba.png"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 2)) == (10, 20, 250)
    assert all(100 < value < 155 for value in image.getpixel((3, 4)))  # black over white, half each


def test_cmyk_jpeg_becomes_rgb_with_its_colours(tmp_path: Path) -> None:
    red = Image.new("RGB", SIZE, (220, 20, 20))
    path = saved(red.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    values = pixels(load_rgb(path))
    assert values.shape == (SIZE[1], SIZE[0], 3)
    assert (values[..., 0] > 150).all() and (values[..., 1:] < 80).all()


def test_ycbcr_image_becomes_rgb(tmp_path: Path) -> None:
    original = noise_rgb()
    path = saved(original.convert("YCbCr"), tmp_path / "ycbcr.tiff")
    assert Image.open(path).mode == "YCbCr"
    difference = np.abs(pixels(load_rgb(path)) - np.asarray(original).astype(int))
    assert difference.max() <= 8  # YCbCr round trips lose a little


def gradient(dtype: type, low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0]).astype(dtype)  # (H, W)


@pytest.mark.parametrize(
    ("name", "values", "mode"),
    [
        ("i16.png", gradient(np.uint16, 1000, 5000), "I;16"),  # a narrow band of the 16-bit range
        ("i32.tiff", gradient(np.int32, -70_000, 90_000), "I"),  # beyond 16 bits both ways
        ("float.tiff", gradient(np.float32, 0.25, 0.5), "F"),
    ],
)
def test_high_depth_gradient_is_stretched_to_the_full_8_bit_range(
    tmp_path: Path, name: str, values: np.ndarray, mode: str
) -> None:
    path = saved(Image.fromarray(values), tmp_path / name)
    assert Image.open(path).mode == mode
    grey = pixels(load_rgb(path))[..., 0].ravel()
    assert grey.min() == 0 and grey.max() == 255  # not clipped to black or white, not a faint band
    assert (np.diff(grey) >= 0).all()  # order of brightness kept
    assert len(np.unique(grey)) > 40  # the gradient stays a gradient


def test_big_endian_16_bit_image_is_stretched(tmp_path: Path) -> None:
    values = gradient(np.uint16, 300, 40_000)
    big_endian = Image.frombytes("I;16B", SIZE, values.astype(">u2").tobytes())
    path = saved(big_endian, tmp_path / "i16b.tiff")
    assert Image.open(path).mode == "I;16B"
    grey = pixels(load_rgb(path))[..., 0].ravel()
    assert grey.min() == 0 and grey.max() == 255 and (np.diff(grey) >= 0).all()


def test_flat_16_bit_image_keeps_its_brightness(tmp_path: Path) -> None:
    white = Image.fromarray(np.full((SIZE[1], SIZE[0]), 65535, dtype=np.uint16))
    dark = Image.fromarray(np.full((SIZE[1], SIZE[0]), 4000, dtype=np.uint16))
    assert (pixels(load_rgb(saved(white, tmp_path / "white.png"))) == 255).all()
    assert (pixels(load_rgb(saved(dark, tmp_path / "dark.png"))) < 40).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", SIZE, (0, 0, 255))  # blue, with a red left column
    for y in range(SIZE[1]):
        stored.putpixel((0, y), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = saved(stored, tmp_path / "rotated.jpg", exif=exif, quality=95, subsampling=0)
    image = load_rgb(path)
    assert image.size == (SIZE[1], SIZE[0])
    top, bottom = image.getpixel((2, 0)), image.getpixel((2, SIZE[0] - 1))  # the left column is now on top
    assert top[0] > top[2] and bottom[2] > bottom[0]


# ---- files that cannot be used ----------------------------------------------------------------


def test_truncated_jpeg_is_reported_as_truncated(tmp_path: Path) -> None:
    data = saved(noise_rgb(), tmp_path / "whole.jpg").read_bytes()
    scan_start = data.find(b"\xff\xda")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: (scan_start + len(data)) // 2])
    assert reason_of(path) == "truncated"


def test_truncated_png_is_reported_as_truncated(tmp_path: Path) -> None:
    data = saved(noise_rgb(), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert reason_of(path) == "truncated"


def test_random_bytes_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    reason = reason_of(path)
    assert reason.startswith("unreadable: ") and len(reason) > len("unreadable: ")


def test_empty_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    assert reason_of(path).startswith("unreadable")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    assert reason_of(tmp_path / "absent.jpg") == "not found"


def test_image_over_the_pixel_limit_is_too_large(tmp_path: Path) -> None:
    path = saved(noise_rgb(), tmp_path / "big.png")
    assert reason_of(path, max_pixels=40) == "too large (8 x 6 pixels, limit 40)"
    assert load_rgb(path, max_pixels=48).size == SIZE  # the limit itself is allowed


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "claims_3000.png", 3000, 3000)
    assert reason_of(path, max_pixels=5_000_000) == "too large (3000 x 3000 pixels, limit 5000000)"
    assert reason_of(path, max_pixels=10_000_000).startswith("unreadable")  # decoding would have failed


@pytest.mark.parametrize("side", [10_000, 20_000])  # over Pillow's warning limit; over its error limit
def test_decompression_bombs_are_too_large_without_warnings(tmp_path: Path, side: int) -> None:
    path = png_header_only(tmp_path / f"bomb_{side}.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reason_of(path).startswith("too large")


def test_large_jpeg_is_decoded_at_a_reduced_size_that_fits(tmp_path: Path) -> None:
    size = (64, 48)
    original = noise_rgb(size)
    jpeg = saved(original, tmp_path / "large.jpg")
    image = load_rgb(jpeg, max_pixels=1000)
    assert image.size == (32, 24)  # the largest of 1/2, 1/4, 1/8 with at most 1000 pixels
    assert load_rgb(jpeg, max_pixels=200).size == (16, 12)
    assert reason_of(jpeg, max_pixels=40).startswith("too large (64 x 48")  # even 1/8 is over
    assert reason_of(saved(original, tmp_path / "large.png"), max_pixels=1000).startswith("too large")


def test_loading_bad_images_leaves_pillow_settings_alone(tmp_path: Path) -> None:
    limit, load_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    data = saved(noise_rgb(), tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 20])
    for path in [tmp_path / "cut.jpg", png_header_only(tmp_path / "bomb.png", 20_000, 20_000)]:
        with pytest.raises(BadImageError):
            load_rgb(path)
    assert (limit, load_truncated) == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_bad_image_error_is_a_data_error_that_survives_pickling(tmp_path: Path) -> None:
    error = BadImageError(tmp_path / "x.jpg", "unreadable: cannot identify image file")
    assert isinstance(error, DataError)
    assert error.kind == "unreadable"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


# ---- transforms -------------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("augment", [False, True])
def test_transform_gives_float_square_tensors(train: bool, augment: bool) -> None:
    config = ImageTransformConfig(image_size=16, augment=augment)
    for size in [(40, 24), (24, 40), (10, 10)]:  # landscape, portrait, smaller than the output
        tensor = build_transform(config, train)(noise_rgb(size))
        assert type(tensor) is torch.Tensor
        assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32


def test_eval_transform_is_deterministic_and_training_without_augment_matches_it() -> None:
    config = ImageTransformConfig(image_size=16, augment=False)
    image = noise_rgb((40, 24))
    evaluate = build_transform(config, train=False)
    assert torch.equal(evaluate(image), evaluate(image))
    assert torch.equal(build_transform(config, train=True)(image), evaluate(image))


def test_augmented_training_transform_varies() -> None:
    config = ImageTransformConfig(image_size=16, augment=True)
    image = noise_rgb((40, 24))
    train = build_transform(config, train=True)
    torch.manual_seed(0)
    outputs = [train(image) for _ in range(6)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])
    evaluate = build_transform(config, train=False)
    assert torch.equal(evaluate(image), evaluate(image))  # augment affects training only


def test_flip_only_augmentation_mirrors_the_image() -> None:
    config = ImageTransformConfig(image_size=16, augment=True, crop_scale_min=1.0, normalize="none")
    image = noise_rgb((16, 16))
    unflipped = build_transform(ImageTransformConfig(image_size=16, normalize="none"), train=False)(image)
    torch.manual_seed(0)
    outputs = [build_transform(config, train=True)(image) for _ in range(10)]
    assert all(torch.equal(out, unflipped) or torch.equal(out, unflipped.flip(-1)) for out in outputs)
    assert any(torch.equal(out, unflipped.flip(-1)) for out in outputs)
    no_flip = ImageTransformConfig(
        image_size=16, augment=True, crop_scale_min=1.0, normalize="none", horizontal_flip=False
    )
    assert all(torch.equal(build_transform(no_flip, train=True)(image), unflipped) for _ in range(10))


def test_normalisation_choices() -> None:
    image = noise_rgb((20, 20))
    raw = build_transform(ImageTransformConfig(image_size=8, normalize="none"), train=False)(image)
    assert raw.min() >= 0.0 and raw.max() <= 1.0
    normalised = build_transform(ImageTransformConfig(image_size=8), train=False)(image)
    assert normalised.min() < 0.0 and normalised.max() > 1.0  # ImageNet mean and std applied
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(normalised, (raw - mean) / std, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (ImageTransformConfig(image_size=0), "image_size"),
        (ImageTransformConfig(crop_scale_min=0.0), "crop_scale_min"),
        (ImageTransformConfig(crop_scale_min=1.5), "crop_scale_min"),
        (ImageTransformConfig(normalize="imagenette"), "normalize must be one of imagenet, none"),
    ],
)
def test_unusable_transform_settings_are_refused_by_name(config: ImageTransformConfig, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_transform(config, train=True)


# ---- counting skips ---------------------------------------------------------------------------


def test_skip_counter_summarises_by_reason(tmp_path: Path) -> None:
    counter = SkipCounter()
    assert counter.total == 0 and counter.summary() == "no images skipped"
    counter.add(BadImageError(tmp_path / "a.jpg", "truncated"))
    assert counter.summary() == "1 image skipped: 1 truncated"
    counter.add(BadImageError(tmp_path / "b.jpg", "unreadable: cannot identify image file"))
    counter.add(BadImageError(tmp_path / "c.jpg", "truncated"))
    assert counter.total == 3
    assert counter.summary() == "3 images skipped: 2 truncated, 1 unreadable"


def test_skip_counters_merge(tmp_path: Path) -> None:
    first, second = SkipCounter(), SkipCounter()
    first.add(BadImageError(tmp_path / "a.jpg", "unreadable: broken"))
    for name in ["b", "c"]:
        second.add(BadImageError(tmp_path / f"{name}.png", "too large (9000 x 9000 pixels, limit 50000000)"))
    first.merge(second)
    assert first.total == 3 and second.total == 2
    assert first.summary() == "3 images skipped: 2 too large, 1 unreadable"


def test_skip_counter_logs_only_the_first_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counter = SkipCounter(log_first=2)
    with caplog.at_level(logging.WARNING, logger="seq2seq.data.images"):
        for index in range(5):
            counter.add(BadImageError(tmp_path / f"bad{index}.jpg", "truncated"))
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(logged) == 2
    assert "bad0.jpg" in logged[0] and "bad1.jpg" in logged[1]
    assert counter.total == 5
