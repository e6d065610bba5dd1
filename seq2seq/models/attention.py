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

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

ATTENTION_TYPES = ("bahdanau", "dot", "general")


class Attention(nn.Module):
    """Scores (B, T, S) -> masked softmax -> context. Subclasses define the keys and scores."""

    def prepare(self, memory: Tensor) -> Tensor:
        """The memory-only part of the score, computed once per sentence. (B, S, Hm) -> (B, S, K)"""
        raise NotImplementedError

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """(B, T, Hq) queries and (B, S, K) keys -> (B, T, S) unnormalised scores."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, memory: Tensor, mask: Tensor | None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend over ``memory``.

        query:  (B, Hq) or (B, T, Hq)
        memory: (B, S, Hm)
        mask:   (B, S) True at real positions (each row needs one), or None when all are real
        keys:   (B, S, K) from ``prepare(memory)``; computed here when not given
        Returns context (B, [T,] Hm) and weights (B, [T,] S): each row sums to one over the
        real positions and is exactly zero on padding.
        """
        single = query.dim() == 2
        queries = query.unsqueeze(1) if single else query  # (B, T, Hq)
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
    tanh(W_q q + W_m m), (B, T, S, A), is the largest tensor of a training step; while
    gradients are recorded it is recomputed in the backward pass instead of being kept
    (activation checkpointing), which saves most of a step's memory for a little compute.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.memory_projection = nn.Linear(memory_size, attention_size, bias=False)
        self.query_projection = nn.Linear(query_size, attention_size)
        self.energy = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        return self.memory_projection(memory)  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        projected = self.query_projection(query)  # (B, T, A)
        if torch.is_grad_enabled():
            return checkpoint(self._energies, projected, keys, use_reentrant=False)
        return self._energies(projected, keys)

    def _energies(self, projected: Tensor, keys: Tensor) -> Tensor:
        """(B, T, A) projected queries and (B, S, A) keys -> (B, T, S) scores."""
        hidden = torch.tanh(projected.unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, A)
        return self.energy(hidden).squeeze(-1)


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
                f"memory size ({memory_size}); use model.attention=general, or make them equal "
                "(a bidirectional encoder's memory is 2 * encoder_hidden_size)"
            )
        return DotAttention()
    raise ValueError(f"model.attention must be one of none, {', '.join(ATTENTION_TYPES)}; got {kind!r}")
