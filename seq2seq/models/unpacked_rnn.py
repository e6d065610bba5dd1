"""A stacked (bi)directional ``nn.GRU``/``nn.LSTM``/``nn.RNN`` over right-padded sequences,
run without packing, for training on the CPU.

PyTorch's CPU kernels walk a packed sequence by slicing the input one time step at a time,
and the backward pass of every slice writes zeros over a tensor the size of the whole input:
O(T^2) memory traffic per sequence of T steps, about 6% of the comparison model's training
step (``benchmarks/profile_training.py``). An unpacked input is unbound once instead.

Each layer and direction runs as one unidirectional call with the module's own weights, so
checkpoints are those of the module: the forward direction reads the padded tensor as it is
(padding comes after every real position), the backward direction reads each sequence
reversed within its own length (its padding also comes last). The outputs at real positions
and the final states therefore equal those of the module run on the packed sequence; the
outputs at padding positions are zero, as ``pad_packed_sequence`` leaves them.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

_WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def rnn_without_packing(rnn: nn.RNNBase, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``rnn`` (batch_first) over each sequence's first ``lengths`` positions.

    inputs:  (B, S, I) right-padded
    lengths: (B,) real positions per sequence, each in 1..S, on the inputs' device
    Returns the outputs (B, S, D * H), zero at padding, and the top layer's final state of
    each direction (D, B, H), D = 2 when bidirectional.
    """
    steps = inputs.shape[1]
    positions = torch.arange(steps, device=inputs.device)  # (S,)
    real = positions < lengths.unsqueeze(1)  # (B, S)
    # position t of sequence b reversed within its length; padding stays put. Its own inverse.
    reversal = torch.where(real, lengths.unsqueeze(1) - 1 - positions, positions)  # (B, S)
    layer_input = inputs
    directions: list[Tensor] = []
    for layer in range(rnn.num_layers):
        if layer > 0:
            layer_input = F.dropout(layer_input, rnn.dropout, rnn.training)
        directions = [_one_direction(rnn, layer, "", layer_input)]  # (B, S, H) each
        if rnn.bidirectional:
            reversed_output = _one_direction(rnn, layer, "_reverse", _reorder(layer_input, reversal))
            directions.append(_reorder(reversed_output, reversal))
        layer_input = torch.cat(directions, dim=-1)  # (B, S, D * H)
    outputs = layer_input.masked_fill(~real.unsqueeze(-1), 0.0)
    last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, directions[0].shape[-1])  # (B, 1, H)
    finals = [directions[0].gather(1, last).squeeze(1)]  # the forward direction ends at its last real position
    if rnn.bidirectional:
        finals.append(directions[1][:, 0])  # the backward direction ends at the first
    return outputs, torch.stack(finals)


def _reorder(sequences: Tensor, order: Tensor) -> Tensor:
    """(B, S, F) sequences, (B, S) positions -> (B, S, F) with row b's position t taken from order[b, t]."""
    return sequences.gather(1, order.unsqueeze(-1).expand_as(sequences))


def _one_direction(rnn: nn.RNNBase, layer: int, suffix: str, inputs: Tensor) -> Tensor:
    """One layer of one direction of ``rnn`` over (B, S, I) inputs, from a zero state -> (B, S, H)."""
    weights = {
        f"{kind}_l0": getattr(rnn, f"{kind}_l{layer}{suffix}")
        for kind in _WEIGHT_KINDS
        if rnn.bias or kind.startswith("weight")
    }
    return functional_call(_single_layer_like(rnn, inputs.shape[-1]), weights, (inputs,))[0]


def _single_layer_like(rnn: nn.RNNBase, input_size: int) -> nn.RNNBase:
    """A weightless (meta) one-layer, one-direction module of ``rnn``'s kind and sizes."""
    options = {"bias": rnn.bias, "batch_first": True, "device": "meta"}
    if isinstance(rnn, nn.RNN):
        options["nonlinearity"] = rnn.nonlinearity
    cell = typing.cast(Callable[..., nn.RNNBase], type(rnn))  # nn.GRU, nn.LSTM or nn.RNN
    return cell(input_size, rnn.hidden_size, **options)
