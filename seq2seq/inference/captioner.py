"""Captioning with a trained model: image files or PIL images in, captions (and attention) out.

captioner = Captioner.from_checkpoint("runs/emoji_scratch")
results = captioner.caption(["photo.jpg", PIL.Image.open("other.png")], beam=3)
results[0].text, results[0].hypotheses[0].attention   # (T, k*k)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps
from typing_extensions import Unpack

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import DecodeConfig
from seq2seq.data.captions import CaptionImages, caption_batches
from seq2seq.data.images import BadImageError, build_transform, failure_reason, fit_pixel_limit, load_rgb, to_rgb
from seq2seq.data.parallel import TextCodec
from seq2seq.decoding import generate
from seq2seq.inference.hypothesis import SPECIAL_IDS, Hypothesis, hypotheses_of_rows
from seq2seq.inference.loading import (
    Checkpoints,
    DecodableModel,
    LoadedModel,
    TrainedRun,
    decoding_model,
    metadata_entry,
    read_trained_runs,
)
from seq2seq.inference.numerics import model_dtype
from seq2seq.inference.options import SAMPLING_ONLY, SEARCH_ONLY, CaptionOptions, sampling_options, search_options
from seq2seq.models import Seq2Seq, build_captioning_model
from seq2seq.plots import plot_caption_attention
from seq2seq.run_configs import CaptionConfig
from seq2seq.text import Vocab

TASK = "caption"
ImageInput = str | Path | Image.Image


@dataclass(frozen=True)
class CaptionResult:
    """The captions of one image, best first; ``error`` says why an image could not be read
    (and then there are no captions)."""

    image: str
    hypotheses: list[Hypothesis]
    error: str | None = None

    @property
    def text(self) -> str:
        """The best caption ("" for an image that could not be read)."""
        return self.hypotheses[0].text if self.hypotheses else ""

    @property
    def score(self) -> float:
        return self.hypotheses[0].score if self.hypotheses else float("-inf")


class Captioner(LoadedModel):
    """A trained captioning model, loaded once, with its image settings and decoding defaults."""

    config: CaptionConfig

    def __init__(
        self, model: DecodableModel, codec: TextCodec, config: CaptionConfig, checkpoints: Sequence[Path]
    ) -> None:
        super().__init__(model, config, checkpoints)
        self.codec = codec
        self.transform = build_transform(config.data.transform, train=False)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoints,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        quantize: str | None = None,
    ) -> Captioner:
        """Load a run directory (its best checkpoint) or one step checkpoint directory.

        device, dtype, quantize and several checkpoints (an ensemble): see ``decoding_model``.
        The members of an ensemble must read images alike (the same ``data.transform``); the
        first checkpoint's decoding settings are the defaults. The weights come from the
        checkpoint: no ImageNet download, even for a pretrained backbone.
        """
        runs = read_trained_runs(checkpoint, TASK)
        check_same_transform(runs)
        codec = TextCodec.from_dict(metadata_entry(runs[0], "codec"))

        def build(run: TrainedRun) -> Seq2Seq:
            config: CaptionConfig = run.config
            encoder = replace(config.image_encoder, pretrained=False)
            return build_captioning_model(encoder, config.decoder, len(codec.vocab), Vocab.pad_id)

        model = decoding_model(runs, build, device, dtype, quantize)
        return cls(model, codec, runs[0].config, [run.directory for run in runs])

    def decode_config(
        self, sample: bool = False, num_samples: int | None = None, **options: Unpack[CaptionOptions]
    ) -> DecodeConfig:
        """The checkpoint's ``decoding`` settings with ``options`` on top (None keeps each one):
        a beam search (``beam``, ``n_best``, ...) or greedy search, or with ``sample``
        ``num_samples`` sampled captions per image (``temperature``, ``top_k``, ``top_p``, ``seed``)."""
        chosen: dict[str, Any] = {key: value for key, value in options.items() if value is not None}
        if sample:
            misplaced = sorted(key for key, value in chosen.items() if key in SEARCH_ONLY and value is not False)
            if misplaced:
                raise ValueError(f"sample=True samples captions: {', '.join(misplaced)} only apply to a search")
            sampling = {key: value for key, value in chosen.items() if key not in SEARCH_ONLY}
            return sampling_options(self.config.decoding, num_samples, **sampling)
        misplaced = sorted(key for key in chosen if key in SAMPLING_ONLY)
        misplaced += ["num_samples"] if num_samples is not None else []
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} only apply with sample=True (sampling)")
        return search_options(self.config.decoding, **chosen)

    def caption(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 32,
        attention: bool = False,
        sample: bool = False,
        num_samples: int | None = None,
        **options: Unpack[CaptionOptions],
    ) -> list[CaptionResult]:
        """Captions of image files (paths) or PIL images, one ``CaptionResult`` each, in input order.

        Images are decoded, converted to RGB and batched ``batch_size`` at a time; an image that
        cannot be read gets a result with ``error`` set, and the others are still captioned.
        ``options`` choose the search or sampling (``decode_config``), e.g. ``beam=3``;
        attention: keep each caption's (T, k*k) attention over the image grid.
        """
        images = [images] if isinstance(images, (str, Path, Image.Image)) else list(images)
        decode = self.decode_config(sample, num_samples, **options)
        return self.caption_with(images, decode, batch_size, attention)

    def caption_with(
        self, images: Sequence[ImageInput], decode: DecodeConfig, batch_size: int = 32, attention: bool = False
    ) -> list[CaptionResult]:
        """``caption`` with ready decoding settings (``decode_config``)."""
        results: list[CaptionResult] = []
        for start in range(0, len(images), batch_size):
            results += self._caption_chunk(images[start : start + batch_size], decode, attention)
        return results

    def _caption_chunk(
        self, images: Sequence[ImageInput], decode: DecodeConfig, attention: bool
    ) -> list[CaptionResult]:
        names = [image_name(image, index) for index, image in enumerate(images)]
        pixels: list[torch.Tensor] = []
        errors: dict[int, str] = {}
        for index, image in enumerate(images):
            try:
                pixels.append(self.transform(self.rgb(image)))  # (3, S, S)
            except BadImageError as error:
                errors[index] = error.reason
        readable = [index for index in range(len(images)) if index not in errors]
        found: list[list[Hypothesis]] = []
        if pixels:
            batch = torch.stack(pixels).to(self.device, model_dtype(self.model))  # (B, 3, S, S)
            found = hypotheses_of_rows(generate(self.model, batch, decode, SPECIAL_IDS), self.codec, attention)
        captions = dict(zip(readable, found))
        return [CaptionResult(names[i], captions.get(i, []), errors.get(i)) for i in range(len(images))]

    def rgb(self, image: ImageInput) -> Image.Image:
        """An image file or PIL image as 8-bit RGB, upright, within ``data.max_pixels``."""
        max_pixels = self.config.data.max_pixels
        if not isinstance(image, Image.Image):
            return load_rgb(Path(image), max_pixels)
        where = Path(image_name(image, 0))
        fit_pixel_limit(image, where, max_pixels)
        try:
            return to_rgb(ImageOps.exif_transpose(image))
        except Exception as error:  # Pillow's decoders raise many kinds of error on malformed data
            raise BadImageError(where, failure_reason(error)) from error

    def attention_map(self, image: ImageInput, hypothesis: Hypothesis, path: str | Path) -> Path:
        """Save one PNG: the image as the model saw it and each word's attention over its grid."""
        if hypothesis.attention is None:
            raise ValueError(
                "the caption carries no attention: caption with attention=True, and use a model with attention"
            )
        shown = build_transform(replace(self.config.data.transform, normalize="none"), train=False)
        picture = (shown(self.rgb(image)).permute(1, 2, 0) * 255).round().byte().numpy()  # (S, S, 3)
        words = [self.codec.vocab.id_to_token(i) for i in hypothesis.token_ids]
        grid = self.config.image_encoder.grid_size
        plot_caption_attention(picture, words, hypothesis.attention, grid, Path(path), hypothesis.text)
        return Path(path)


def image_name(image: ImageInput, index: int) -> str:
    """A path as given; a PIL image by its file name when it has one, else by its position."""
    if isinstance(image, Image.Image):
        return str(getattr(image, "filename", "") or f"<image {index}>")
    return str(image)


def check_same_transform(runs: Sequence[TrainedRun]) -> None:
    """Refuses an ensemble whose members read images differently (size, crop, normalisation)."""
    first = runs[0]
    for run in runs[1:]:
        if run.config.data.transform != first.config.data.transform:
            raise CheckpointError(
                f"{run.directory} and {first.directory} read images differently (data.transform "
                f"{run.config.data.transform} against {first.config.data.transform}): an ensemble gives every member "
                "the same pixels, so pick checkpoints trained with the same image settings"
            )


def caption_images(
    model: DecodableModel,
    images: CaptionImages,
    codec: TextCodec,
    decode: DecodeConfig,
    batch_images: int,
    num_workers: int = 0,
    attention: bool = True,
) -> list[list[Hypothesis] | None]:
    """The captions (``decode.n_best`` with beam search, ``decode.num_samples`` when sampling) of
    every image of a data set, in data order; None for an image that could not be read.
    A data set may hold cached image features (``CaptionImages(features=...)``)."""
    device = next(model.parameters()).device
    results: list[list[Hypothesis] | None] = [None] * len(images)
    for batch in caption_batches(images, batch_images, shuffle=False, num_workers=num_workers):
        images_in = batch.images.to(device, model_dtype(model))  # (B, 3, S, S) or cached features
        found = generate(model, images_in, decode, SPECIAL_IDS)  # tokens (B, N, T)
        for index, hypotheses in zip(batch.indices.tolist(), hypotheses_of_rows(found, codec, attention)):
            results[index] = hypotheses
    return results
