"""What one request may ask of the server, and how requests are batched."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on each request; a request beyond one is refused with a 4xx and a message.

    max_body_bytes: the whole request body (JSON or uploads)
    max_lines: lines of text in one translation request
    max_line_chars: characters in one line to translate, or in a prime
    max_images: images in one captioning request
    max_image_bytes: bytes of one uploaded image
    max_image_pixels: pixels (width x height) of one image, checked before it is decoded
    max_length: new tokens one request may ask for (translation, captions, generated text)
    max_beam: beams (and n-best, and samples) one request may ask for
    timeout_s: seconds a request may wait and decode before it is answered with 503
    batch_quiet_ms: a batch is closed once no request has joined it for this long ...
    batch_wait_ms: ... or once its first request has waited this long
    max_batch: lines (or images) decoded together at most; 1 with no waits turns batching off
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_lines: int = 256
    max_line_chars: int = 2_000
    max_images: int = 16
    max_image_bytes: int = 5 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    max_length: int = 1_000
    max_beam: int = 16
    timeout_s: float = 60.0
    batch_quiet_ms: float = 5.0
    batch_wait_ms: float = 50.0
    max_batch: int = 64

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_lines", "max_line_chars", "max_images", "max_image_bytes",
                     "max_image_pixels", "max_length", "max_beam", "max_batch"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0 or self.batch_quiet_ms < 0 or self.batch_wait_ms < 0:
            raise ValueError("timeout_s must be > 0, batch_quiet_ms and batch_wait_ms >= 0")
