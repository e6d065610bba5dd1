"""Linear layers through oneDNN's fp32 matrix kernels on the CPU, where they are faster.

PyTorch multiplies fp32 matrices on the CPU with MKL. At the shapes of a decoding step MKL is
slow where the weight is wide: on a 2-core AVX2 CPU one (64, 512) x (512, 3,964) output-layer
product ran at 48-63 GFLOP/s, where oneDNN's linear kernel (the one PyTorch's compiler calls)
ran the same product at 90-97; at 320 rows (beam 5) 80 against 130; the narrower products of
the recurrent step 88-98 against 98-102. ``onednn_linear`` computes ``F.linear`` with that
kernel wherever it applies: fp32 tensors on the CPU, outside autograd and autocast, a
contiguous weight (oneDNN reads a strided one hundreds of times slower), and a PyTorch build
with oneDNN. Anywhere else it is ``F.linear``. The results equal ``F.linear``'s up to the
order of the additions.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def onednn_linear(inputs: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(inputs, weight, bias)``: (..., in) inputs, (out, in) weight, (out,) bias -> (..., out)."""
    if not computes_with_onednn(inputs, weight, bias):
        return F.linear(inputs, weight, bias)
    rows = inputs.reshape(-1, inputs.shape[-1])  # (N, in)
    result = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")  # (N, out)
    return result.reshape(*inputs.shape[:-1], weight.shape[0])


def apply_linear(layer: nn.Module, inputs: Tensor) -> Tensor:
    """``layer(inputs)``, a plain ``nn.Linear`` through ``onednn_linear`` (a quantized one as it is)."""
    if type(layer) is nn.Linear:
        return onednn_linear(inputs, layer.weight, layer.bias)
    return layer(inputs)


def computes_with_onednn(inputs: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether ``onednn_linear`` runs oneDNN's kernel for these tensors (else ``F.linear``)."""
    tensors = (inputs, weight) if bias is None else (inputs, weight, bias)
    recording = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return (
        not recording
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and weight.dim() == 2
        and weight.is_contiguous()
        and (bias is None or bias.is_contiguous())
        and inputs.numel() > 0
        and onednn_available()
    )


@functools.cache
def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel and it runs on this CPU."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    inputs, weight = torch.ones(1, 2), torch.ones(3, 2)
    try:
        result = torch.ops.mkldnn._linear_pointwise(inputs, weight, None, "none", [], "")
    except RuntimeError:
        return False
    return bool(torch.equal(result, F.linear(inputs, weight)))
