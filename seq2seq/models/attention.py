"""Attention over encoder memory: additive (Bahdanau) and multiplicative (Luong dot, general).

Every attention scores a query against the memory, turns the scores into weights with a
softmax over the real (unmasked) positions and returns the weighted sum of the memory:

    context, weights = attention(query, memory, mask, keys)

``query`` is one vector per sequence (B, Hq) or one per target position (B, T, Hq); the
second form is a single batched computation, which is what teacher forcing uses.

The part of the score that depends only on the memory is computed by ``prepare(memory)``
once per source sentence; the decoder keeps the result (the *keys*) with the encoder output
and passes it back on every step, so that no step repeats it and no module caches state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

ATTENTION_TYPES = ("bahdanau", "dot", "general")


class Attention(nn.Module):
    """Scores (B, T, S) -> masked softmax -> context. Subclasses define the keys and scores."""

    @property
    def query_layer(self) -> nn.Module | None:
        """The linear map applied to the query before ``score``; None when the query is scored as it is."""
        return None

    def prepare(self, memory: Tensor) -> Tensor:
        """The memory-only part of the score, computed once per sentence. (B, S, Hm) -> (B, S, K)"""
        raise NotImplementedError

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """(B, T, Hq') mapped queries and (B, S, K) keys -> (B, T, S) unnormalised scores."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        mask: Tensor | None,
        keys: Tensor | None = None,
        query_map: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend over ``memory``.

        query:     (B, Hq) or (B, T, Hq)
        memory:    (B, S, Hm)
        mask:      (B, S) True at real positions (each row needs one), or None when all are real
        keys:      (B, S, K) from ``prepare(memory)``; computed here when not given
        query_map: computes ``query_layer`` on a (B, Hq) query in its place (the same function;
                   a stepping decoder passes a ``StepwiseLinear`` while training)
        Returns context (B, [T,] Hm) and weights (B, [T,] S): each row sums to one over the
        real positions and is exactly zero on padding.
        """
        single = query.dim() == 2
        if self.query_layer is not None:
            query = (query_map or self.query_layer)(query)  # (B, [T,] Hq')
        queries = query.unsqueeze(1) if single else query  # (B, T, Hq')
        if keys is None:
            keys = self.prepare(memory)
        scores = self.score(queries, keys)  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, T, S)
        context = torch.bmm(weights, memory)  # (B, T, Hm)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class BahdanauAttention(Attention):
    """Additive attention: score(q, m) = v . tanh(W_q q + W_m m).

    ``W_m m`` is the prepared keys (B, S, A), A = ``attention_size``. The hidden layer
    tanh(W_q q + W_m m), (B, T, S, A), is the largest tensor of a training step; it is never
    kept for the backward pass but recomputed there (see ``additive_energies``), which saves
    most of a step's memory for a little compute.
    """

    #: Layers whose weights ``score`` reads directly instead of calling them: they stay fp32
    #: when a model is quantized (``seq2seq.quantization``).
    fp32_layers = ("energy",)

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.memory_projection = nn.Linear(memory_size, attention_size, bias=False)
        self.query_projection = nn.Linear(query_size, attention_size)
        self.energy = nn.Linear(attention_size, 1, bias=False)

    @property
    def query_layer(self) -> nn.Module:
        return self.query_projection

    def prepare(self, memory: Tensor) -> Tensor:
        return self.memory_projection(memory)  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """query: (B, T, A) the projected queries W_q q."""
        return additive_energies(query, keys, self.energy.weight.squeeze(0))


def additive_energies(projected: Tensor, keys: Tensor, energy: Tensor) -> Tensor:
    """v . tanh(q + k) for every query and key: (B, T, A) projected queries, (B, S, A) keys and
    the (A,) energy vector v -> (B, T, S) scores.

    The (B, T, S, A) hidden layer, the largest tensor of a step, is computed as
    s = sigmoid(2 (q + k)) in a reused workspace, and the scores as (2 v) . s - sum(v), since
    tanh(x) = 2 sigmoid(2x) - 1: PyTorch's CPU sigmoid runs about 3 times as fast as its tanh,
    and a new tensor of that size would cost a page fault per 4 KiB written. While gradients
    are recorded, the hidden layer is recomputed in the backward pass instead of being kept.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (projected, keys, energy)):
        return _RecomputedAdditiveEnergies.apply(projected, keys, energy)
    return _scores(_sigmoid_hidden(projected, keys), energy)


def _sigmoid_hidden(projected: Tensor, keys: Tensor) -> Tensor:
    """(B, T, A) and (B, S, A) -> sigmoid(2 (q + k)) = (1 + tanh(q + k)) / 2: (B, T, S, A), in the workspace"""
    out = _workspace.take(projected, keys)
    return torch.add(projected.unsqueeze(2) * 2, keys.unsqueeze(1), alpha=2, out=out).sigmoid_()


def _scores(hidden: Tensor, energy: Tensor) -> Tensor:
    """v . tanh(q + k) = (2 v) . s - sum(v) from s = ``_sigmoid_hidden``: (B, T, S, A) -> (B, T, S)"""
    energy = energy.to(hidden.dtype)
    return hidden @ (2 * energy) - energy.sum()


class _Workspace(threading.local):
    """One buffer (per thread) that every step's hidden layer is computed in, instead of a new
    tensor of a few MiB per step (and per backward step). It grows to the largest size asked for."""

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def take(self, projected: Tensor, keys: Tensor) -> Tensor:
        """A (B, T, S, A) tensor for ``_sigmoid_hidden(projected, keys)``, contents undefined."""
        shape = (keys.shape[0], projected.shape[1], keys.shape[1], keys.shape[2])
        dtype = torch.promote_types(projected.dtype, keys.dtype)
        size = math.prod(shape)
        buffer = self.buffer
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != keys.device:
            self.buffer = buffer = None  # let the old buffer go before the new one is made
            with torch.inference_mode(False):  # a plain tensor: usable in and outside inference mode
                self.buffer = buffer = torch.empty(size, dtype=dtype, device=keys.device)
        return buffer[:size].view(shape)


_workspace = _Workspace()


class _RecomputedAdditiveEnergies(torch.autograd.Function):
    """``additive_energies`` that saves only its inputs and recomputes the hidden layer in backward."""

    @staticmethod
    def forward(ctx, projected: Tensor, keys: Tensor, energy: Tensor) -> Tensor:
        ctx.save_for_backward(projected, keys, energy)
        return _scores(_sigmoid_hidden(projected, keys), energy)  # (B, T, S)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        projected, keys, energy = ctx.saved_tensors
        hidden = _sigmoid_hidden(projected, keys)  # (B, T, S, A): s, with tanh(q + k) = 2 s - 1
        grad_scores = grad_scores.to(hidden.dtype).unsqueeze(-1)  # (B, T, S, 1)
        rows = grad_scores.reshape(1, -1)  # (1, B * T * S)
        grad_energy = 2 * (rows @ hidden.reshape(-1, hidden.shape[-1])) - rows.sum()  # (1, A): sum of g tanh
        # d scores / d (q + k) = v (1 - tanh^2) = 4 v s (1 - s), built in place of the hidden layer
        grad_sum = hidden.addcmul_(hidden, hidden, value=-1).mul_(grad_scores).mul_(4 * energy.to(hidden.dtype))
        # A stepping decoder has T = 1: its keys' gradient is a copy out of the workspace, not a sum.
        grad_keys = grad_sum.sum(dim=1) if grad_sum.shape[1] > 1 else grad_sum.squeeze(1).clone()
        return grad_sum.sum(dim=2), grad_keys, grad_energy.squeeze(0)  # (B, T, A), (B, S, A), (A,)


class DotAttention(Attention):
    """Luong dot: score(q, m) = q . m. The query and the memory must have the same size."""

    def prepare(self, memory: Tensor) -> Tensor:
        return memory  # (B, S, Hm): nothing to precompute

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)


class GeneralAttention(DotAttention):
    """Luong general: score(q, m) = q . W m, with ``W m`` prepared once per sentence."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.memory_projection = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        return self.memory_projection(memory)  # (B, S, Hq)


def build_attention(kind: str, query_size: int, memory_size: int) -> Attention:
    """The attention named ``kind`` (one of ATTENTION_TYPES) for these vector sizes.

    Bahdanau's attention layer has ``query_size`` units.
    """
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, attention_size=query_size)
    if kind == "general":
        return GeneralAttention(query_size, memory_size)
    if kind == "dot":
        if query_size != memory_size:
            raise ValueError(
                f"dot attention needs the decoder hidden size ({query_size}) to equal the encoder "
                f"memory size ({memory_size}); use decoder.attention=general, or make them equal "
                "(a bidirectional encoder's memory is 2 * encoder.hidden_size)"
            )
        return DotAttention()
    raise ValueError(f"decoder.attention must be one of none, {', '.join(ATTENTION_TYPES)}; got {kind!r}")
