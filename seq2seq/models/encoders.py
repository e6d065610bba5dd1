"""Encoders turn a task's input into what the shared decoder reads.

Every encoder returns an ``EncoderOutput``. Text generation has no input: its
``PrimeEncoder`` only says how many sequences to start; the prompt itself primes the
decoder state by running through the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """What the decoder reads from the encoder.

    memory:  (B, S, H) states that attention reads; None when there is nothing to attend to.
    mask:    (B, S) True at real (non-pad) positions; None without memory.
    summary: (B, H) a vector that initialises the decoder state; None starts from zeros.
    """

    batch_size: int
    memory: Tensor | None = None
    mask: Tensor | None = None
    summary: Tensor | None = None

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Reorder or repeat along the batch (for n samples or beams per input). index: (B',)"""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return EncoderOutput(index.numel(), pick(self.memory), pick(self.mask), pick(self.summary))


class PrimeEncoder(nn.Module):
    """The encoder of free text generation: no input, no parameters."""

    def forward(self, source: Tensor) -> EncoderOutput:
        """source: (B, 0), a placeholder whose batch size is all it carries."""
        return EncoderOutput(batch_size=source.shape[0])


def empty_source(batch_size: int, device: torch.device | str = "cpu") -> Tensor:
    """The (B, 0) source of a model without input."""
    return torch.empty(batch_size, 0, dtype=torch.long, device=device)
