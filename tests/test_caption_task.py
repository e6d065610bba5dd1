"""The captioning task: its loss, the doubly stochastic penalty, cached features, captions with attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from seq2seq.config import DecodeConfig, DecoderConfig
from seq2seq.data.caption_settings import ImageTransformConfig
from seq2seq.data.captions import CaptionImages, CaptionPairs, ImageCaptions, caption_batches
from seq2seq.data.feature_cache import FeatureCache
from seq2seq.data.images import build_transform
from seq2seq.data.parallel import TextCodec
from seq2seq.models import ImageEncoderConfig, build_captioning_model
from seq2seq.text import Vocab, WordTokenizer
from seq2seq.training.caption_task import caption_images, caption_loss

CAPTIONS = ["a red square", "a blue circle", "a green bar", "a small red circle on white"]
TRANSFORM = ImageTransformConfig(image_size=16)


@pytest.fixture
def images(tmp_path: Path) -> list[ImageCaptions]:
    sets = []
    for number, caption in enumerate(CAPTIONS):
        path = tmp_path / f"{number}.png"
        Image.new("RGB", (20, 18), (40 * number, 200 - 30 * number, 90)).save(path)
        sets.append(ImageCaptions(path.name, path, [caption], "train"))
    return sets


def codec() -> TextCodec:
    tokenizer = WordTokenizer(lowercase=True, keep_newlines=False)
    return TextCodec(tokenizer, Vocab.build([tokenizer.tokenize(c) for c in CAPTIONS]))


def model(attention: str = "bahdanau", backbone: str = "small", finetune_blocks: int = -1) -> torch.nn.Module:
    torch.manual_seed(0)
    encoder = ImageEncoderConfig(backbone=backbone, grid_size=2, small_channels=[4, 8], finetune_blocks=finetune_blocks)
    decoder = DecoderConfig(embedding_size=8, hidden_size=16, attention=attention)
    return build_captioning_model(encoder, decoder, len(codec().vocab), Vocab.pad_id).eval()


def first_batch(images: list[ImageCaptions]):
    pairs = CaptionPairs(images, codec(), build_transform(TRANSFORM, train=False), max_length=10)
    return next(caption_batches(pairs, batch_size=4, shuffle=False))


def test_the_attention_penalty_is_the_mean_squared_shortfall_over_the_grid(images: list[ImageCaptions]) -> None:
    captioner, batch = model(), first_batch(images)
    with torch.no_grad():
        cross_entropy, penalty = caption_loss(captioner, batch, attention_regularization=0.5)
        _, off = caption_loss(captioner, batch, attention_regularization=0.0)
        _, _, weights = captioner(batch.images, batch.target_in, return_attention=True)  # (B, T, S)
    # Only each caption's real tokens count, not its padding.
    per_image = [((1 - weights[b, : int(batch.target_lengths[b])].sum(0)) ** 2).mean() for b in range(4)]
    assert penalty.item() == pytest.approx(0.5 * sum(per_image).item(), rel=1e-5)
    assert off.item() == 0.0
    assert cross_entropy.item() > 0


def test_without_attention_there_is_no_penalty(images: list[ImageCaptions]) -> None:
    with torch.no_grad():
        _, penalty = caption_loss(model(attention="none"), first_batch(images), attention_regularization=1.0)
    assert penalty.item() == 0.0


def test_cached_features_are_the_live_ones(images: list[ImageCaptions], tmp_path: Path) -> None:
    captioner = model(backbone="resnet18", finetune_blocks=0)
    transform = build_transform(TRANSFORM, train=False)
    live = CaptionPairs(images, codec(), transform, max_length=10)

    def compute(keys):
        by_key = {image.image_id: image for image in images}
        with torch.no_grad():
            pixels = torch.stack([transform(Image.open(by_key[key].path).convert("RGB")) for key in keys])
            return captioner.encoder.grid(pixels), []

    cache = FeatureCache.build(tmp_path / "cache", [i.image_id for i in images], compute, {"test": 1}, progress=False)
    cached = CaptionPairs(images, codec(), transform, max_length=10, features=cache)
    for index in range(len(images)):
        image, ids, _ = live[index]
        grid, cached_ids, _ = cached[index]
        with torch.no_grad():
            expected = captioner.encoder.grid(image.unsqueeze(0))[0]
        assert grid.dtype == torch.float16 and grid.shape == expected.shape
        assert torch.allclose(grid.float(), expected, atol=1e-2, rtol=1e-2)
        assert torch.equal(ids, cached_ids)
    with torch.no_grad():
        from_cache = captioner(torch.stack([cached[i][0] for i in range(4)]), first_batch(images).target_in)[0]
        from_images = captioner(first_batch(images).images, first_batch(images).target_in)[0]
    assert torch.allclose(from_cache, from_images, atol=1e-2)


def test_captions_come_with_their_attention_over_the_grid(images: list[ImageCaptions]) -> None:
    data = CaptionImages(images, build_transform(TRANSFORM, train=False))
    decode = DecodeConfig(method="beam", beam_size=2, n_best=2, max_length=5)
    results = caption_images(model(), data, codec(), decode, batch_images=3)
    assert len(results) == len(images)
    for captions in results:
        assert len(captions) == 2
        for caption in captions:
            assert caption.attention.shape == (len(caption.token_ids), 4)
            assert torch.allclose(caption.attention.sum(-1), torch.ones(len(caption.token_ids)), atol=1e-5)


def test_an_unreadable_image_gets_no_caption_and_the_rest_do(images: list[ImageCaptions], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    listed = [images[0], ImageCaptions("broken.png", broken, ["x"], "test"), images[1]]
    data = CaptionImages(listed, build_transform(TRANSFORM, train=False))
    results = caption_images(model(), data, codec(), DecodeConfig(method="greedy", max_length=4), batch_images=8)
    assert results[1] is None and results[0] is not None and results[2] is not None
    assert data.skips.total == 1
