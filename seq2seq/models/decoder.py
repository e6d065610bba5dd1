"""The shared recurrent decoder: one module for every task.

``forward`` runs a whole target sequence under teacher forcing through one fused
``nn.LSTM``/``nn.GRU``/``nn.RNN`` call; ``step`` advances one token and is what decoding
calls. Both run the same layers, so ``step`` in a loop gives the same outputs as ``forward``
(a test holds them together).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.models.encoders import EncoderOutput

RNN_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class DecoderState:
    """The recurrent state between steps.

    hidden: (L, B, H)
    cell:   (L, B, H) for LSTM, else None
    """

    hidden: Tensor
    cell: Tensor | None = None

    def index_select(self, index: Tensor) -> DecoderState:
        """Reorder along the batch (beam search, n samples). index: (B',)"""
        cell = None if self.cell is None else self.cell.index_select(1, index)
        return DecoderState(self.hidden.index_select(1, index), cell)

    def detach(self) -> DecoderState:
        """Cut the graph between truncated-BPTT windows."""
        cell = None if self.cell is None else self.cell.detach()
        return DecoderState(self.hidden.detach(), cell)

    def tensors(self) -> dict[str, Tensor]:
        """The state as named tensors (for checkpoints of carried state)."""
        return {"hidden": self.hidden} if self.cell is None else {"hidden": self.hidden, "cell": self.cell}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> DecoderState:
        return cls(tensors["hidden"], tensors.get("cell"))

    def as_rnn_input(self) -> Tensor | tuple[Tensor, Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    @classmethod
    def from_rnn_output(cls, state: Tensor | tuple[Tensor, Tensor]) -> DecoderState:
        return cls(*state) if isinstance(state, tuple) else cls(state)


class RNNDecoder(nn.Module):
    """Embedding -> multi-layer RNN -> output projection to the vocabulary."""

    def __init__(self, vocab_size: int, config: ModelConfig, pad_id: int) -> None:
        super().__init__()
        if config.cell not in RNN_CELLS:
            raise ValueError(f"model.cell must be one of {sorted(RNN_CELLS)}, got {config.cell!r}")
        self.cell_type = config.cell
        self.num_layers = config.num_layers
        self.hidden_size = config.hidden_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = RNN_CELLS[config.cell](
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        # Tying needs the output layer to read vectors of the embedding's size.
        needs_projection = config.tie_embeddings and config.hidden_size != config.embedding_size
        self.pre_output = nn.Linear(config.hidden_size, config.embedding_size) if needs_projection else None
        output_in = config.embedding_size if config.tie_embeddings else config.hidden_size
        self.output = nn.Linear(output_in, vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embedding.weight

    def init_state(self, encoder_output: EncoderOutput) -> DecoderState:
        """The state before the first token: zeros (an encoder summary arrives with attention)."""
        weight = self.embedding.weight
        shape = (self.num_layers, encoder_output.batch_size, self.hidden_size)
        hidden = weight.new_zeros(shape)
        return DecoderState(hidden, weight.new_zeros(shape) if self.cell_type == "lstm" else None)

    def forward(
        self, target_in: Tensor, encoder_output: EncoderOutput, state: DecoderState | None = None
    ) -> tuple[Tensor, DecoderState]:
        """Teacher forcing over a whole sequence.

        target_in: (B, T) token ids fed as inputs.
        Returns logits (B, T, V) and the state after the last position.
        """
        if state is None:
            state = self.init_state(encoder_output)
        embedded = self.embedding_dropout(self.embedding(target_in))  # (B, T, E)
        rnn_out, rnn_state = self.rnn(embedded, state.as_rnn_input())  # (B, T, H)
        return self._project(rnn_out), DecoderState.from_rnn_output(rnn_state)

    def step(
        self, previous: Tensor, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoding step.

        previous: (B,) the last token of each sequence.
        Returns logits (B, V), the new state and attention weights (B, S) or None.
        """
        logits, state = self.forward(previous.unsqueeze(1), encoder_output, state)
        return logits.squeeze(1), state, None

    def _project(self, rnn_out: Tensor) -> Tensor:
        """(B, T, H) -> (B, T, V)"""
        features = self.output_dropout(rnn_out)
        if self.pre_output is not None:
            features = self.pre_output(features)
        return self.output(features)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, shared (tied) tensors counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

