"""Encoders turn a task's input into what the shared decoder reads.

Every encoder returns an ``EncoderOutput`` (what an encoder promises is the ``Encoder``
protocol of ``seq2seq.models.registry``). Text generation has no input: its ``PrimeEncoder``
only says how many sequences to start; the prompt itself primes the decoder state by running
through the decoder. Translation reads the source sentence with an ``RNNEncoder`` (the
registered encoder ``rnn``), or with another registered encoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import TextEncoderConfig, check_config
from seq2seq.models.unpacked_rnn import rnn_without_packing

RNN_CELLS: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class EncoderOutput:
    """What the decoder reads from the encoder.

    batch_size: the decoder rows this output serves (B).
    memory:  (B / copies, S, H) states that attention reads; None when there is nothing to attend to.
    mask:    (B / copies, S) True at real (non-pad) positions; None when every position is real.
    summary: (B, H) a vector that initialises the decoder state; None starts from zeros.
    keys:    (B / copies, S, K) the memory prepared for the decoder's attention
             (``RNNDecoder.prepare``, once per source); None until then. It may be ``memory`` itself.
    copies:  decoder rows that read each input's memory, keys and mask: row r reads input
             r // copies (the beams of one input share them instead of holding copies; ``repeated``).
    """

    batch_size: int
    memory: Tensor | None = None
    mask: Tensor | None = None
    summary: Tensor | None = None
    keys: Tensor | None = None
    copies: int = 1

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Reorder or repeat along the batch (for n samples or beams per input). index: (B',)

        When this output is shared by ``copies`` rows per input and ``index`` picks whole
        inputs (``copies`` consecutive rows of one input each), the result is shared as well;
        otherwise each row gets its own copy of its input's memory."""
        whole_inputs = self._whole_inputs(index)
        if whole_inputs is not None:
            return self._rows(whole_inputs, index, self.copies)
        return self._rows(index // self.copies, index, copies=1)

    def repeated(self, copies: int) -> EncoderOutput:
        """The same inputs for ``copies`` consecutive decoder rows each, the memory not copied:
        row b * copies + i reads input b. The summary is repeated (the state starts per row)."""
        if copies == 1:
            return self
        summary = None if self.summary is None else self.summary.repeat_interleave(copies, dim=0)
        return dataclasses.replace(
            self, batch_size=self.batch_size * copies, summary=summary, copies=self.copies * copies
        )

    def _whole_inputs(self, index: Tensor) -> Tensor | None:
        """(B' / copies,) the inputs whose rows ``index`` (B',) picks, when it picks whole
        inputs in row order; None when it does not (or when nothing is shared)."""
        if self.copies == 1 or index.numel() % self.copies:
            return None
        groups = index.view(-1, self.copies)  # (B' / copies, copies)
        firsts = groups[:, :1]
        in_order = torch.arange(self.copies, device=index.device)
        if not bool(((firsts % self.copies == 0) & (groups == firsts + in_order)).all()):
            return None
        return firsts.squeeze(1) // self.copies

    def _rows(self, inputs: Tensor, rows: Tensor, copies: int) -> EncoderOutput:
        """Memory, mask and keys of ``inputs`` read by ``copies`` rows each; the summary of ``rows``."""
        pick = lambda t: None if t is None else t.index_select(0, inputs)  # noqa: E731
        memory = pick(self.memory)
        keys = memory if self.keys is self.memory else pick(self.keys)
        summary = None if self.summary is None else self.summary.index_select(0, rows)
        return EncoderOutput(rows.numel(), memory, pick(self.mask), summary, keys, copies)


class PrimeEncoder(nn.Module):
    """The encoder of free text generation: no input, no parameters."""

    def forward(self, source: Tensor) -> EncoderOutput:
        """source: (B, 0), a placeholder whose batch size is all it carries."""
        return EncoderOutput(batch_size=source.shape[0])


class RNNEncoder(nn.Module):
    """Source token ids -> embeddings -> (bi)directional GRU/LSTM/RNN over packed sequences.

    Built from the ``encoder`` section (``TextEncoderConfig``, kind ``rnn``). ``output_size``
    is ``hidden_size``, times 2 when bidirectional: the size of the memory and summary vectors.

    Padding never reaches a real position: each sentence runs for its own length, so its memory
    and summary do not depend on the other sentences of the batch. Decoding runs the RNN over
    packed sequences; training on the CPU runs it over the padded batch without packing
    (``seq2seq.models.unpacked_rnn``), which gives the same outputs and a cheaper backward pass.
    An empty source sentence (length 0) is read as one pad token, which is then its single
    real position; the data pipeline may refuse empty lines earlier.
    """

    def __init__(self, vocab_size: int, config: TextEncoderConfig, pad_id: int) -> None:
        super().__init__()
        check_config(config, "encoder")
        self.pad_id = pad_id
        self.directions = 2 if config.bidirectional else 1
        self.output_size = self.directions * config.hidden_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.rnn = RNN_CELLS[config.cell](
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
            batch_first=True,
        )

    def forward(self, source: Tensor) -> EncoderOutput:
        """source: (B, S) token ids, padded at the end with pad_id.

        Returns memory (B, S, D * H), mask (B, S) and summary (B, D * H): the top layer's
        final forward and backward states side by side (D = 2 when bidirectional).
        """
        if source.shape[1] == 0:
            source = source.new_full((source.shape[0], 1), self.pad_id)
        batch_size, source_length = source.shape
        lengths = (source != self.pad_id).sum(dim=1).clamp_(min=1)  # (B,)
        mask = torch.arange(source_length, device=source.device) < lengths.unsqueeze(1)  # (B, S)
        embedded = self.embedding_dropout(self.embedding(source))  # (B, S, E)
        if self._trains_on_cpu(embedded):
            memory, top = rnn_without_packing(self.rnn, embedded, lengths)  # (B, S, D*H), (D, B, H)
        else:
            memory, top = self._packed(embedded, lengths)
        summary = top.transpose(0, 1).reshape(batch_size, self.output_size)  # (B, D * H)
        return EncoderOutput(batch_size, memory, mask, summary)

    def _trains_on_cpu(self, embedded: Tensor) -> bool:
        """Whether gradients flow through a plain PyTorch RNN on the CPU, whose backward pass over
        a packed sequence costs O(S^2) (``seq2seq.models.unpacked_rnn``). Decoding keeps packing,
        which skips the padding, and so does a quantized RNN, which has no such weights."""
        return torch.is_grad_enabled() and embedded.device.type == "cpu" and isinstance(self.rnn, nn.RNNBase)

    def _packed(self, embedded: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S, E) embeddings, (B,) lengths -> memory (B, S, D*H), the top layer's final states (D, B, H)."""
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=embedded.shape[1])
        final_hidden = final[0] if isinstance(final, tuple) else final  # (L * D, B, H)
        return memory, final_hidden[-self.directions :]


def empty_source(batch_size: int, device: torch.device | str = "cpu") -> Tensor:
    """The (B, 0) source of a model without input."""
    return torch.empty(batch_size, 0, dtype=torch.long, device=device)
