"""The models a server holds: each loaded once through the Python API, with its own batcher."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from seq2seq.config import DecodeConfig, to_dict
from seq2seq.data.images import BadImageError, failure_reason
from seq2seq.inference import Captioner, Hypothesis, TextGenerator, Translator
from seq2seq.inference.translator import DecodeBatching
from seq2seq.models.decoder import count_parameters
from seq2seq.serving.batching import DynamicBatcher
from seq2seq.serving.limits import ServeLimits

Task = Literal["translate", "caption", "textgen"]
LOADERS: dict[str, type[Translator] | type[Captioner] | type[TextGenerator]] = {
    "translate": Translator,
    "caption": Captioner,
    "textgen": TextGenerator,
}


@dataclass(frozen=True)
class BatchKey:
    """What requests must share to be decoded together: the decoding settings, and whether
    attention comes back."""

    decoding: str  # the DecodeConfig as sorted JSON
    attention: bool

    @classmethod
    def of(cls, decode: DecodeConfig, attention: bool) -> BatchKey:
        return cls(json.dumps(to_dict(decode), sort_keys=True), attention)

    @property
    def decode(self) -> DecodeConfig:
        return DecodeConfig(**json.loads(self.decoding))


@dataclass
class Upload:
    """One uploaded image: its file name and bytes."""

    name: str
    data: bytes


@dataclass
class CaptionOutcome:
    """An uploaded image's captions, or why it could not be read."""

    hypotheses: list[Hypothesis]
    error: str | None = None


class ServedModel:
    """A loaded model, its task and name, and the batcher that decodes its requests."""

    def __init__(self, name: str, task: Task, model: Any, limits: ServeLimits) -> None:
        self.name = name
        self.task = task
        self.model = model
        self.limits = limits
        quiet, wait = limits.batch_quiet_ms / 1000, limits.batch_wait_ms / 1000
        self.batcher = DynamicBatcher(self._decode_batch, limits.max_batch, quiet, wait, name)

    @classmethod
    def load(
        cls,
        name: str,
        task: Task,
        checkpoint: str,
        limits: ServeLimits,
        device: str = "auto",
        dtype: str = "float32",
        quantize: str | None = None,
    ) -> ServedModel:
        """The checkpoint of ``task`` loaded on ``device`` in ``dtype`` or quantized (see
        ``Translator.from_checkpoint``)."""
        loaded = LOADERS[task].from_checkpoint(checkpoint, device=device, dtype=dtype, quantize=quantize)
        return cls(name, task, loaded, limits)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of the model."""
        model = self.model
        vocabularies = (
            {"source": len(model.source.vocab), "target": len(model.target.vocab)}
            if self.task == "translate"
            else {"target": len(model.codec.vocab)}
        )
        described: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "checkpoint": str(model.checkpoint),
            "parameters": count_parameters(model.model),
            "vocabulary": vocabularies,
            "attention": model.model.decoder.attention is not None,
            "decoding": to_dict(model.config.decoding),
        }
        if self.task == "caption":
            described["grid_size"] = model.config.image_encoder.grid_size
        return described

    def _decode_batch(self, key: BatchKey, items: list[Any]) -> list[Any]:
        """Runs on the model's worker thread: a batch of lines or of uploaded images."""
        if self.task == "translate":
            data = self.model.encode(items)
            return self.model.translate_data(data, key.decode, DecodeBatching(len(items)), key.attention)
        return self._caption_uploads(items, key)

    def _caption_uploads(self, uploads: list[Upload], key: BatchKey) -> list[CaptionOutcome]:
        images: list[Image.Image] = []
        outcomes: dict[int, CaptionOutcome] = {}
        for index, upload in enumerate(uploads):
            try:
                images.append(self.model.rgb(open_image(upload, self.limits.max_image_pixels)))
            except BadImageError as error:
                outcomes[index] = CaptionOutcome([], f"{upload.name}: {error.reason}")
        results = iter(self.model.caption_with(images, key.decode, len(images) or 1, key.attention))
        return [outcomes.get(i) or CaptionOutcome(next(results).hypotheses) for i in range(len(uploads))]


def open_image(upload: Upload, max_pixels: int) -> Image.Image:
    """An upload as a PIL image, its size checked against ``max_pixels`` before decoding.

    Raises BadImageError for data that is not an image Pillow can read, or too many pixels.
    """
    try:
        image = Image.open(io.BytesIO(upload.data))
    except Exception as error:  # Pillow raises many kinds of error on data that is not an image
        raise BadImageError(Path(upload.name), failure_reason(error)) from error
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(Path(upload.name), f"too large ({width} x {height} pixels, limit {max_pixels})")
    return image
