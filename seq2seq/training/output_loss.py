"""Cross-entropy of the decoder's output layer, computed a few rows at a time.

The usual ``F.cross_entropy(decoder(...)logits)`` holds the (N, V) logits, their log-softmax and
both their gradients at once: four N x V float tensors for N target tokens (160 MB for a batch of
64 sentences of 40 pieces over 4,000 pieces). Here the output layer and the loss run over chunks
of rows, and the gradients of the chunk (with respect to the features, the weight and the bias)
are taken right away, while its logits are at hand: no (N, V) tensor ever exists, nothing is
recomputed, and backward only scales the stored gradients by the incoming one.

The result equals ``F.cross_entropy(F.linear(features, weight, bias), targets, ignore_index=...,
label_smoothing=..., reduction="sum")`` and so do its gradients (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from seq2seq.models.onednn_linear import onednn_linear

CHUNK_ELEMENTS = 1 << 21  # logits per chunk: 8 MiB in fp32


def output_layer(model: nn.Module) -> nn.Linear:
    """The decoder's output layer of a Seq2Seq model, DistributedDataParallel-wrapped or not."""
    inner: Any = getattr(model, "module", model)
    return inner.decoder.output


def output_cross_entropy(
    features: Tensor,
    output: nn.Linear,
    targets: Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Summed cross-entropy of ``output(features)`` against ``targets``, rows of ``ignore_index`` left out.

    features: (..., H) the output layer's inputs; targets: (...) class ids. Returns a scalar.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    rows = features.reshape(-1, features.shape[-1])  # (N, H)
    weight, bias = output.weight, output.bias  # (V, H), (V,): the decoder's output layer has a bias
    wants_gradient = torch.is_grad_enabled() and any(t.requires_grad for t in (rows, weight, bias))
    return _ChunkedOutputCrossEntropy.apply(
        rows, weight, bias, targets.reshape(-1), ignore_index, label_smoothing, wants_gradient
    )


class _ChunkedOutputCrossEntropy(torch.autograd.Function):
    """Loss and gradients chunk by chunk in forward; backward scales the stored gradients."""

    @staticmethod
    def forward(
        ctx,
        rows: Tensor,  # (N, H)
        weight: Tensor,  # (V, H)
        bias: Tensor,  # (V,)
        targets: Tensor,  # (N,)
        ignore_index: int,
        label_smoothing: float,
        wants_gradient: bool,
    ) -> Tensor:
        grads = _Gradients(rows, weight, bias) if wants_gradient else None
        total = rows.new_zeros((), dtype=torch.promote_types(rows.dtype, torch.float32))
        step = chunk_rows(weight.shape[0])
        for start in range(0, rows.shape[0], step):
            chunk = slice(start, start + step)
            total += _chunk_loss(rows[chunk], weight, bias, targets[chunk], ignore_index, label_smoothing, grads, chunk)
        if grads is not None:
            ctx.save_for_backward(grads.rows, grads.weight, grads.bias)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        grad_rows, grad_weight, grad_bias = (grad * grad_total for grad in ctx.saved_tensors)
        return grad_rows, grad_weight, grad_bias, None, None, None, None


def chunk_rows(outputs: int) -> int:
    """Rows of logits per chunk for ``outputs`` logits per row: at most CHUNK_ELEMENTS logits,
    and a power of two, which ``onednn_linear`` runs without padding."""
    most = max(1, CHUNK_ELEMENTS // outputs)
    return 1 << (most.bit_length() - 1)


class _Gradients:
    """Gradients of the summed loss, filled chunk by chunk (each in its parameter's dtype)."""

    def __init__(self, rows: Tensor, weight: Tensor, bias: Tensor) -> None:
        self.rows = torch.zeros_like(rows)  # (N, H)
        self.weight = torch.zeros_like(weight)  # (V, H)
        self.bias = torch.zeros_like(bias)  # (V,)


def _chunk_loss(
    rows: Tensor,  # (n, H)
    weight: Tensor,  # (V, H)
    bias: Tensor,  # (V,)
    targets: Tensor,  # (n,)
    ignore_index: int,
    label_smoothing: float,
    grads: _Gradients | None,
    chunk: slice,
) -> Tensor:
    """The summed loss of one chunk of rows; with ``grads``, adds the chunk's gradients to them."""
    logits = onednn_linear(rows, weight, bias)  # (n, V)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision: softmax in fp32
    kept = targets != ignore_index  # (n,)
    safe_targets = targets.masked_fill(~kept, 0).unsqueeze(1)  # (n, 1)
    log_normalizer = torch.logsumexp(logits, dim=1, keepdim=True)  # (n, 1)
    target_nll = log_normalizer - logits.gather(1, safe_targets)  # (n, 1)
    per_row = (1.0 - label_smoothing) * target_nll.squeeze(1)  # (n,)
    if label_smoothing:
        per_row = per_row + label_smoothing * (log_normalizer.squeeze(1) - logits.mean(dim=1))
    loss = (per_row * kept).sum()
    if grads is not None:
        _add_chunk_gradients(logits, log_normalizer, safe_targets, kept, label_smoothing, rows, weight, grads, chunk)
    return loss


def _add_chunk_gradients(
    logits: Tensor,  # (n, V), overwritten
    log_normalizer: Tensor,  # (n, 1)
    safe_targets: Tensor,  # (n, 1)
    kept: Tensor,  # (n,)
    label_smoothing: float,
    rows: Tensor,  # (n, H)
    weight: Tensor,  # (V, H)
    grads: _Gradients,
    chunk: slice,
) -> None:
    """d loss / d logits = softmax - smoothed one-hot, on kept rows; then through the linear layer."""
    grad_logits = logits.sub_(log_normalizer).exp_()  # (n, V) softmax, in place of the logits
    if label_smoothing:
        grad_logits.sub_(label_smoothing / logits.shape[1])
    grad_logits.scatter_add_(1, safe_targets, grad_logits.new_full(safe_targets.shape, label_smoothing - 1.0))
    grad_logits.mul_(kept.unsqueeze(1))
    grad_logits = grad_logits.to(rows.dtype)
    grads.rows[chunk] = grad_logits @ weight.to(rows.dtype)  # (n, H)
    grads.weight += (grad_logits.t() @ rows).to(grads.weight.dtype)  # (V, H)
    grads.bias += grad_logits.sum(dim=0).to(grads.bias.dtype)  # (V,)
