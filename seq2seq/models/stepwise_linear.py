"""A linear map applied once per position of a stepped loop, whose weight gradient is one
matrix product over all positions.

A decoder with input feeding runs its per-position products on B rows at a time (B = the
batch). Through autograd, each of those products also computes its own weight gradient in the
backward pass, x_tᵀ g_t with an inner size of only B, and adds it to the weight's gradient: T
small, memory-bound products and T additions of a full weight-sized tensor per weight.

``StepwiseLinear`` splits the gradient: each position's product uses the weight *detached*
(its backward computes only the input's gradient, g_t W), and one node made before the loop
hands out each position's bias, which receives the gradients g_t of all positions together.
That node's backward computes the weight's gradient as a single product over all T * B rows,
Gᵀ X, from the positions' inputs that the map kept. The values and gradients equal those of
``F.linear`` applied at each position (tested); only the order of the additions differs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class StepwiseLinear:
    """x_t Wᵀ + b for positions t = 0 .. steps-1, called in order, one (B, in) input each.

    weight: (out, in); bias: (out,) or None; batch: B.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, steps: int, batch: int) -> None:
        self._weight = weight.detach()
        self._inputs: list[Tensor] = []
        offsets = _PositionOffsets.apply(weight, bias, self._inputs, steps, batch)  # (T, B, out)
        self._offsets = offsets.unbind(0)  # unbind: the T gradients come back as one stacked tensor

    def __call__(self, inputs: Tensor) -> Tensor:
        """(B, in) the next position's input -> (B, out)."""
        position = len(self._inputs)
        if position >= len(self._offsets):
            raise IndexError(f"a StepwiseLinear made for {len(self._offsets)} positions was called once more")
        self._inputs.append(inputs.detach())
        return torch.addmm(self._offsets[position], inputs, self._weight.t())


class _PositionOffsets(torch.autograd.Function):
    """The bias of every position, (T, B, out); backward returns the weight's and the bias's
    gradients from the positions' inputs (kept in ``inputs`` while the loop ran)."""

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, inputs: list[Tensor], steps: int, batch: int) -> Tensor:
        ctx.inputs = inputs
        ctx.has_bias = bias is not None
        ctx.weight_dtype = weight.dtype
        shape = (steps, batch, weight.shape[0])
        return bias.expand(shape).clone() if bias is not None else weight.new_zeros(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_offsets: Tensor) -> tuple[Tensor | None, ...]:
        grads = grad_offsets.reshape(-1, grad_offsets.shape[-1])  # (T * B, out)
        inputs = torch.cat(ctx.inputs)  # (T * B, in), in the order of the positions
        # Under autocast the positions multiplied in bf16: so does this product, as autograd's would.
        grad_weight = (grads.to(inputs.dtype).t() @ inputs).to(ctx.weight_dtype)  # (out, in)
        grad_bias = grads.sum(0).to(ctx.weight_dtype) if ctx.has_bias else None
        return grad_weight, grad_bias, None, None, None
