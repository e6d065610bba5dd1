"""Language-model data: one token stream cut into parallel streams and windows.

The stream of N tokens is cut into B rows of N // B consecutive tokens, and read left to
right in windows of T tokens, so that window k + 1 of a row continues window k: the model's
hidden state is carried from window to window (truncated backpropagation through time).
Each training epoch starts at a different offset below T, so window boundaries move.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from seq2seq.config import bounded


@dataclass
class LMDataConfig:
    """Where the text is and how it is cut."""

    path: str = "data/tinyshakespeare/input.txt"  # plain or .gz UTF-8 text
    prepared: str | None = None  # a folder made by `seq2seq textgen prepare`: train from it instead of path
    tokenizer: Literal["char", "word", "sentencepiece"] = "char"  # char | word | sentencepiece
    lowercase: bool = False  # word level only
    sentencepiece_model: str | None = None  # an existing .model file; None trains one
    sentencepiece_vocab_size: int = bounded(4000, at_least=1)  # when training a SentencePiece model
    sentencepiece_sample_size: int | None = bounded(
        None, at_least=1
    )  # learn the pieces from this many lines of the text drawn at random; None: from all of them
    min_freq: int = bounded(1, at_least=1)  # rarer tokens become <unk> (word level)
    validation_fraction: float = bounded(0.1, above=0, below=1)  # the last part of the text validates
    batch_size: int = bounded(64, at_least=1)  # parallel streams per step (all processes together)
    window: int = bounded(128, at_least=1)  # tokens per stream per step (truncated-BPTT length)


@dataclass
class Window:
    """One step's input. inputs, targets: (B, T), targets shifted by one token."""

    inputs: Tensor
    targets: Tensor
    index: int  # position of this window in its epoch


def split_point(length: int, validation_fraction: float) -> int:
    """Tokens before the returned index train; the last ``validation_fraction`` validates."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"data.validation_fraction must lie strictly between 0 and 1, got {validation_fraction}")
    return int(length * (1.0 - validation_fraction))


def cut_rows(stream: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """(N,) -> inputs and targets of shape (rows, L), targets one token ahead."""
    length = (len(stream) - 1) // rows
    if length < 1:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for {rows} rows")
    inputs = stream[: rows * length].view(rows, length)
    targets = stream[1 : rows * length + 1].view(rows, length)
    return inputs, targets


class LMStream:
    """Windows over one token stream, for one process of ``world_size``.

    The stream (N,) may be any integer dtype (a prepared text's is an int32 memory map); the
    windows are int64.

    The B rows are split between processes: process r reads rows r*B/W .. (r+1)*B/W - 1,
    so each keeps its own carried state and together they cover the batch.
    """

    def __init__(
        self,
        stream: Tensor,
        batch_size: int,
        window: int,
        seed: int = 0,
        shift_per_epoch: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"data.batch_size ({batch_size}) must be divisible by the process count ({world_size})")
        self.stream = stream
        self.batch_size = batch_size
        self.window = window
        self.seed = seed
        self.shift_per_epoch = shift_per_epoch
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)

    def offset(self, epoch: int) -> int:
        """Where epoch ``epoch`` starts in the stream: in [0, T), and never so far that no window fits."""
        spare = len(self.stream) - 1 - self.batch_size * self.window  # tokens one window per row leaves over
        if not self.shift_per_epoch or spare <= 0:
            return 0
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return int(torch.randint(0, min(self.window, spare + 1), (1,), generator=generator))

    def windows(self, epoch: int = 0, start: int = 0) -> Iterator[Window]:
        """Windows of this epoch from index ``start`` on (resuming mid-epoch)."""
        if len(self.stream) - 1 < self.batch_size * self.window:
            raise ValueError(
                f"the training text has {len(self.stream)} tokens: too few for data.batch_size "
                f"{self.batch_size} x data.window {self.window} (needs {self.batch_size * self.window + 1}). "
                "Lower them, or use more text."
            )
        inputs, targets = cut_rows(self.stream[self.offset(epoch) :], self.batch_size)
        inputs, targets = inputs[self.rows], targets[self.rows]  # (B / W, L)
        count = inputs.shape[1] // self.window
        for index in range(start, count):
            span = slice(index * self.window, (index + 1) * self.window)
            yield Window(inputs[:, span].long(), targets[:, span].long(), index)

    def evaluation_windows(self) -> Iterator[Window]:
        """Every token once, in order, but the last (N - 1) % B, which cannot fill every row.

        The last window may be shorter.
        """
        inputs, targets = cut_rows(self.stream, self.batch_size)
        inputs, targets = inputs[self.rows], targets[self.rows]
        for index, begin in enumerate(range(0, inputs.shape[1], self.window)):
            span = slice(begin, begin + self.window)
            yield Window(inputs[:, span].long(), targets[:, span].long(), index)
