"""What greedy search, sampling and beam search share.

The types a search takes and returns (``DecodingModel``, ``SpecialIds``, ``Hypotheses``), priming the decoder
with a prefix and repeating it for the copies of each input (``prime_decoder``), the rows
still being decoded (``LiveRows``), the length limits of each row, and the oneDNN switch that
stepping needs on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, overload

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig

# Steps between the checks for finished sequences on a GPU, where each check waits for the
# device; on the CPU a check costs one small reduction, so the searches check at every step.
GPU_FINISHED_CHECK_INTERVAL = 4
# Prefix tokens run through the decoder in one call: a prompt of any length primes in windows of
# this size, the state carried from one to the next (one call over millions of tokens fails).
PRIME_WINDOW = 1024


class EncodedInputs(Protocol):
    """What a model's ``encode`` returns for B inputs (an ``EncoderOutput``, or an ensemble's)."""

    @property
    def batch_size(self) -> int: ...

    @property
    def memory(self) -> Tensor | None:
        """(B, S, H) what attention reads, or None."""
        ...

    @property
    def mask(self) -> Tensor | None:
        """(B, S) True at real positions, or None when all are."""
        ...

    @property
    def copies(self) -> int:
        """Rows that read each input's memory and mask (``memory`` has B / copies rows)."""
        ...

    def index_select(self, index: Tensor) -> Any:
        """The same for rows ``index`` (B',): an object of this kind."""
        ...

    def repeated(self, copies: int) -> Any:
        """The same inputs for ``copies`` consecutive rows each, sharing one memory per input."""
        ...


class StepDecoder(Protocol):
    """A decoder as the searches drive it: ``RNNDecoder``, or an ensemble's."""

    def init_state(self, encoded: Any) -> Any:
        """The state before the first token, for ``encode``'s output."""
        ...

    def prime(self, target_in: Tensor, encoded: Any, state: Any) -> Any:
        """The state after reading target_in (B, T)."""
        ...

    def step(self, previous: Tensor, state: Any, encoded: Any) -> tuple[Tensor, Any, Tensor | None]:
        """previous (B,) -> (B, V) scores whose log-softmax is the next token's distribution,
        the new state (with ``index_select``), and the (B, S) attention weights or None. The
        scores are the search's to overwrite (beam search bans tokens in them in place): a
        decoder returns a new tensor, not one it keeps."""
        ...


class DecodingModel(Protocol):
    """What a search needs of a model: ``Seq2Seq``, or an ``Ensemble`` of them."""

    training: bool

    @property
    def decoder(self) -> StepDecoder: ...

    def encode(self, source: Tensor) -> EncodedInputs: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


@dataclass
class Hypotheses:
    """What a search returns for B inputs with N hypotheses each.

    tokens:    (B, N, T) generated ids after the prefix, eos included, padded with pad
    lengths:   (B, N) generated tokens, eos included
    scores:    (B, N) sum of the model's log-probabilities (of the raw logits) of those tokens
    attention: (B, N, T, S) attention weights at each generated token, or None without attention
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    attention: Tensor | None

    def usable_outside_inference_mode(self) -> Hypotheses:
        """Copies of the tensors as ordinary tensors, which callers may change in place."""
        attention = self.attention
        return Hypotheses(
            tokens=self.tokens.clone(),
            lengths=self.lengths.clone(),
            scores=self.scores.clone(),
            attention=None if attention is None else attention.clone(),
        )


@dataclass(frozen=True)
class SpecialIds:
    """The ids of the vocabulary's special tokens."""

    pad: int
    bos: int
    eos: int
    unk: int

    def never_generated(self) -> list[int]:
        """The ids a search must never produce: every special token except eos."""
        return sorted({self.pad, self.bos, self.unk} - {self.eos})

    def banned(self, config: DecodeConfig) -> list[int]:
        """The ids a search with ``config`` bans: those never generated, unk only with ban_unk."""
        return [token for token in self.never_generated() if config.ban_unk or token != self.unk]


@dataclass
class PrimedBatch:
    """The decoder ready to generate, with every input repeated ``copies`` times.

    encoder_output and state have batch B * copies; prefix: (B * copies, P). Row
    ``b * copies + i`` is copy i of input b.
    """

    encoder_output: EncodedInputs
    state: Any
    prefix: Tensor


def prime_decoder(
    model: DecodingModel,
    source: Tensor,
    prefix: Tensor | None,
    special: SpecialIds,
    copies: int,
    share_memory: bool = False,
) -> PrimedBatch:
    """Encodes the input, runs the prefix but its last token through the decoder, and repeats.

    source: the task's input, (B, ...). prefix: (B, P) ids starting with bos; default bos alone.
    The prefix runs once per input under teacher forcing, ``PRIME_WINDOW`` tokens at a time with
    the state carried; only then are the encoder output and the state repeated ``copies`` times,
    so the prompt costs the same for any N. With ``share_memory`` the copies of an input read
    one memory (``EncodedInputs.repeated``): for a search whose rows leave the batch an input
    at a time (beam search), where attention then runs as one product per input.
    """
    encoder_output = model.encode(source)
    batch_size = encoder_output.batch_size
    if prefix is None:
        prefix = torch.full((batch_size, 1), special.bos, dtype=torch.long, device=source.device)
    check_prefix(prefix, batch_size)
    prefix = prefix.to(source.device)
    state = model.decoder.init_state(encoder_output)
    primed = prefix.shape[1] - 1
    for start in range(0, primed, PRIME_WINDOW):
        window = prefix[:, start : min(start + PRIME_WINDOW, primed)]  # (B, W)
        state = model.decoder.prime(window, encoder_output, state)
    repeat = torch.arange(batch_size, device=prefix.device).repeat_interleave(copies)  # (B * copies,)
    repeated = encoder_output.repeated(copies) if share_memory else encoder_output.index_select(repeat)
    return PrimedBatch(repeated, state.index_select(repeat), prefix.index_select(0, repeat))


def check_prefix(prefix: Tensor, batch_size: int) -> None:
    """Rejects a prefix that is not a (batch_size, P >= 1) tensor of token ids."""
    if prefix.dim() != 2 or prefix.shape[1] < 1:
        raise ValueError(
            f"prefix must be a (batch, length >= 1) tensor of token ids, got shape {tuple(prefix.shape)}; "
            "start it with bos"
        )
    if prefix.shape[0] != batch_size:
        raise ValueError(f"prefix has {prefix.shape[0]} rows but the input has {batch_size}; give one prefix per input")
    if prefix.dtype != torch.long:
        raise ValueError(f"prefix must hold token ids as torch.long, got {prefix.dtype}")


@dataclass(frozen=True)
class LiveRows:
    """The rows of a search that the decoder still runs.

    Rows that have finished leave the decoder's batch at the checks (``finished_check_interval``),
    so later steps cost only what the unfinished rows need; the
    search itself keeps its full-size buffers, where finished rows are filled in.

    rows:  (A,) the live rows' places in the full batch, ascending
    total: the full batch size
    """

    rows: Tensor
    total: int

    @classmethod
    def every(cls, total: int, device: torch.device) -> LiveRows:
        return cls(torch.arange(total, device=device), total)

    @property
    def complete(self) -> bool:
        """Whether every row is live (the decoder's batch is the full batch)."""
        return len(self.rows) == self.total

    def select(self, full: Tensor) -> Tensor:
        """(total, ...) -> (A, ...) the live rows."""
        return full if self.complete else full.index_select(0, self.rows)

    @overload
    def expand(self, live: Tensor, fill: float) -> Tensor: ...

    @overload
    def expand(self, live: None, fill: float) -> None: ...

    def expand(self, live: Tensor | None, fill: float) -> Tensor | None:
        """(A, X) -> (total, X): the live rows in their places, ``fill`` elsewhere."""
        if live is None or self.complete:
            return live
        full = live.new_full((self.total, *live.shape[1:]), fill)
        return full.index_copy_(0, self.rows, live)

    def follow(self, parents: Tensor) -> Tensor:
        """(total,) full-batch rows that the next step continues -> (A,) the live rows' places
        in the decoder's batch (a live row continues a live row)."""
        if self.complete:
            return parents
        return torch.searchsorted(self.rows, parents.index_select(0, self.rows))

    def without(self, finished: Tensor) -> tuple[LiveRows, Tensor | None]:
        """These rows less the ``finished`` ones ((total,) bool), and the (A',) places in the
        decoder's batch that stay; None when no live row has finished."""
        staying = ~finished.index_select(0, self.rows)  # (A,)
        if bool(staying.all()):
            return self, None
        kept = staying.nonzero().squeeze(1)  # (A',)
        return LiveRows(self.rows.index_select(0, kept), self.total), kept


def finished_check_interval(device: torch.device) -> int:
    """Steps between the checks for finished sequences: every step on the CPU, where checking
    every 4 steps kept a finished row in the batch 1.5 steps on average (every step made the
    comparison model's greedy search 6-9% and its beam search 4-5% faster, the same
    translations), and GPU_FINISHED_CHECK_INTERVAL elsewhere."""
    return 1 if device.type == "cpu" else GPU_FINISHED_CHECK_INTERVAL


def length_limits(config: DecodeConfig, encoder_output: EncodedInputs, device: torch.device) -> tuple[Tensor, Tensor]:
    """(rows,) the fewest tokens before eos and the most new tokens (eos included) of each row.

    A ratio applies to the row's source length: the minimum is rounded down, the maximum up.
    """
    rows = encoder_output.batch_size
    min_lengths = torch.full((rows,), config.min_length, device=device)
    max_lengths = torch.full((rows,), config.max_length, device=device)
    if config.min_length_ratio > 0 or config.max_length_ratio > 0:
        sources = source_lengths(encoder_output).to(device).float()  # (rows,)
        if config.min_length_ratio > 0:
            min_lengths = min_lengths.maximum((config.min_length_ratio * sources).floor().long())
        if config.max_length_ratio > 0:
            most = (config.max_length_ratio * sources).ceil().long()
            max_lengths = max_lengths.minimum(most).clamp(min=1)
    return min_lengths, max_lengths


def source_lengths(encoder_output: EncodedInputs) -> Tensor:
    """(rows,) the real positions of each source: from the mask, or all positions of the memory."""
    if encoder_output.mask is not None:
        return encoder_output.mask.sum(dim=1).repeat_interleave(encoder_output.copies)
    if encoder_output.memory is not None:
        return torch.full((encoder_output.batch_size,), encoder_output.memory.shape[1])
    raise ValueError(
        "decoding.min_length_ratio and decoding.max_length_ratio need a model that reads a source, and "
        "this one has none; set them to 0 and use decoding.min_length and decoding.max_length"
    )


@contextmanager
def onednn_disabled() -> Iterator[None]:
    """Turns off PyTorch's oneDNN (mkldnn) paths while stepping: its CPU RNN kernels cost several
    times more than the native ones when called one token at a time. The output layer calls
    oneDNN's linear kernel itself (``seq2seq.models.onednn_linear``), which this leaves on."""
    enabled = torch.backends.mkldnn.enabled
    # torch.backends.mkldnn swaps itself for a module object whose ``enabled`` is a settable
    # property; its stub types the name as the ContextProp descriptor.
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled
