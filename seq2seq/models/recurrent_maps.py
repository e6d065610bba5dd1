"""The decoder's recurrent arithmetic for one position, as linear maps.

With input feeding the decoder runs its RNN one position at a time (see ``decoder.py``). Each
position needs four kinds of matrix products, all in PyTorch's gate layouts (G = 4H for an
LSTM, 3H for a GRU, H for an Elman RNN):

- the first layer's input gates from the embedding (its input bias included),
- the first layer's input gates from the input feed (the last attentional vector),
- a higher layer's input gates from the layer below,
- every layer's recurrent gates from its hidden state (its recurrent bias included).

``FusedWeights`` computes them from the fused ``nn.LSTM``/``nn.GRU``/``nn.RNN`` module's own
parameters: one set of weights that training updates. ``StepLinears`` holds copies of the
same weights as ``nn.Linear`` modules, the form that PyTorch's dynamic quantization converts
to int8 (``seq2seq.quantization``); the decoder uses them once ``separate_step_weights`` made
them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq.models.stepwise_linear import StepwiseLinear


class RecurrentMaps(Protocol):
    """The four products of one position (sizes: E embedding, H hidden, G gates)."""

    def embedding_gates(self, embedded: Tensor) -> Tensor:
        """(B, [T,] E) -> (B, [T,] G) the first layer's input gates, input bias included."""
        ...

    def feed_gates(self, gates: Tensor, feed: Tensor) -> Tensor:
        """(B, G) embedding gates plus the (B, H) input feed's share -> (B, G)."""
        ...

    def input_gates(self, layer: int, below: Tensor) -> Tensor:
        """(B, H) output of the layer below -> (B, G) input gates of ``layer`` >= 1, bias included."""
        ...

    def recurrent_gates(self, layer: int, hidden: Tensor) -> Tensor:
        """(B, H) hidden state of ``layer`` -> (B, G) its recurrent gates, bias included."""
        ...


@dataclass
class FusedWeights:
    """The products computed with the fused RNN module's parameters themselves.

    The first layer's input weights are split into their embedding and input-feed columns once,
    when this is made (once per decoder call), so that a pass over T positions reads the same two
    views T times and their gradients accumulate into one buffer each, not T full-size ones.
    """

    rnn: nn.RNNBase
    embedding_weight: Tensor  # (G, E)
    feed_weight: Tensor  # (G, H)

    @classmethod
    def of(cls, rnn: nn.RNNBase, embedding_size: int) -> FusedWeights:
        weight = _parameter(rnn, "weight_ih_l0")  # (G, E + H)
        embedding_weight, feed_weight = weight.split([embedding_size, weight.shape[1] - embedding_size], dim=1)
        return cls(rnn, embedding_weight, feed_weight)

    def embedding_gates(self, embedded: Tensor) -> Tensor:
        return F.linear(embedded, self.embedding_weight, _parameter(self.rnn, "bias_ih_l0"))

    def feed_gates(self, gates: Tensor, feed: Tensor) -> Tensor:
        return torch.addmm(gates, feed, self.feed_weight.t())

    def input_gates(self, layer: int, below: Tensor) -> Tensor:
        return F.linear(below, *_layer_weights(self.rnn, "ih", layer))

    def recurrent_gates(self, layer: int, hidden: Tensor) -> Tensor:
        return F.linear(hidden, *_layer_weights(self.rnn, "hh", layer))


class StepwiseWeights:
    """The products with the fused module's parameters over a pass of ``steps`` positions that
    autograd records: each per-position weight gets its gradient from one product over all
    positions (``seq2seq.models.stepwise_linear``), not from one per position."""

    def __init__(self, rnn: nn.RNNBase, embedding_size: int, steps: int, batch: int) -> None:
        self._fused = FusedWeights.of(rnn, embedding_size)
        self._feed = StepwiseLinear(self._fused.feed_weight, None, steps, batch)
        self._inputs = [
            StepwiseLinear(*_layer_weights(rnn, "ih", layer), steps, batch) for layer in range(1, rnn.num_layers)
        ]
        self._recurrent = [
            StepwiseLinear(*_layer_weights(rnn, "hh", layer), steps, batch) for layer in range(rnn.num_layers)
        ]

    def embedding_gates(self, embedded: Tensor) -> Tensor:
        return self._fused.embedding_gates(embedded)

    def feed_gates(self, gates: Tensor, feed: Tensor) -> Tensor:
        return gates + self._feed(feed)

    def input_gates(self, layer: int, below: Tensor) -> Tensor:
        return self._inputs[layer - 1](below)

    def recurrent_gates(self, layer: int, hidden: Tensor) -> Tensor:
        return self._recurrent[layer](hidden)


def _layer_weights(rnn: nn.RNNBase, kind: str, layer: int) -> tuple[Tensor, Tensor]:
    """The (G, in) weight and (G,) bias of ``layer``'s input (``kind`` "ih") or recurrent ("hh") gates."""
    return _parameter(rnn, f"weight_{kind}_l{layer}"), _parameter(rnn, f"bias_{kind}_l{layer}")


def _parameter(rnn: nn.RNNBase, name: str) -> Tensor:
    """The fused module's parameter ``name`` (weight_ih_l0, bias_hh_l1, ...)."""
    return typing.cast(Tensor, getattr(rnn, name))  # nn.RNNBase sets its weights by name


class StepLinears(nn.Module):
    """Copies of a fused RNN's weights as ``nn.Linear`` modules, for dynamic quantization.

    embedding: the first layer's embedding columns (E -> G, input bias); None without
               ``with_embedding`` (a decoder that looks its embedding gates up in a table)
    feed:      the first layer's input-feed columns (H -> G, no bias); None without input feeding
    inputs:    layers 1.. (H -> G each)
    recurrent: every layer (H -> G each)
    """

    def __init__(self, rnn: nn.RNNBase, embedding_size: int, with_embedding: bool = True) -> None:
        super().__init__()
        first = _parameter(rnn, "weight_ih_l0")  # (G, E + H)
        embedding_columns = first[:, :embedding_size]
        self.embedding = _linear_of(embedding_columns, _parameter(rnn, "bias_ih_l0")) if with_embedding else None
        self.feed = _linear_of(first[:, embedding_size:], None) if first.shape[1] > embedding_size else None
        self.inputs = nn.ModuleList(_linear_of(*_layer_weights(rnn, "ih", layer)) for layer in range(1, rnn.num_layers))
        self.recurrent = nn.ModuleList(_linear_of(*_layer_weights(rnn, "hh", layer)) for layer in range(rnn.num_layers))

    def embedding_gates(self, embedded: Tensor) -> Tensor:
        if self.embedding is None:
            raise ValueError("these step weights leave the embedding out: the decoder reads its gate table")
        return typing.cast(Tensor, self.embedding(embedded))

    def feed_gates(self, gates: Tensor, feed: Tensor) -> Tensor:
        if self.feed is None:
            raise ValueError("this decoder's RNN reads no input feed: its first layer has only the embedding's columns")
        return gates + self.feed(feed)

    def input_gates(self, layer: int, below: Tensor) -> Tensor:
        return typing.cast(Tensor, self.inputs[layer - 1](below))

    def recurrent_gates(self, layer: int, hidden: Tensor) -> Tensor:
        return typing.cast(Tensor, self.recurrent[layer](hidden))


def _linear_of(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of (out, in) ``weight`` and (out,) ``bias``."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear
