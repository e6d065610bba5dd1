"""The output layer through oneDNN's fp32 matrix kernel on the CPU, where it is faster.

PyTorch multiplies fp32 matrices on the CPU with MKL, which is slow where the weight is as
wide as a vocabulary: on a 2-core AVX2 CPU one (64, 512) x (512, 3,964) output-layer product
ran at 48-63 GFLOP/s, where oneDNN's linear kernel (the one PyTorch's compiler calls) ran it
at 90-97, and at 320 rows (beam 5) at 130 against 80. For the narrower products of a
recurrent step the two were level inside a decoding loop, so only the output layer uses it.

``onednn_linear`` computes ``F.linear`` with that kernel wherever it applies: fp32 tensors on
the CPU, outside autograd and autocast, a contiguous weight (oneDNN reads a strided one
hundreds of times slower), and a PyTorch build with oneDNN; anywhere else it is ``F.linear``.
The results equal ``F.linear``'s up to the order of the additions.

oneDNN builds and caches a kernel for every row count it sees, about 0.6 MB each for a
(512, 3,964) weight, and keeps up to 1,024 of them: a search whose batch shrinks step by step
would hold hundreds. So the rows are padded with zeros to a count with at most
``SIGNIFICANT_BITS`` significant bits (at most 1/8 more rows), which leaves 8 row counts per
doubling.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn import functional as F

SIGNIFICANT_BITS = 4  # of the padded row count: 8 counts per doubling, at most 1/8 more rows


def onednn_linear(inputs: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(inputs, weight, bias)``: (..., in) inputs, (out, in) weight, (out,) bias -> (..., out)."""
    if not computes_with_onednn(inputs, weight, bias):
        return F.linear(inputs, weight, bias)
    rows = inputs.reshape(-1, inputs.shape[-1])  # (N, in)
    count = rows.shape[0]
    padding = padded_row_count(count) - count
    if padding:  # F.pad copies even when it adds nothing
        rows = F.pad(rows, (0, 0, 0, padding))  # (N', in), zero rows appended
    result = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")  # (N', out)
    return result[:count].reshape(*inputs.shape[:-1], weight.shape[0])


def padded_row_count(rows: int) -> int:
    """``rows`` rounded up to a number with at most SIGNIFICANT_BITS significant bits."""
    step = 1 << max(0, rows.bit_length() - SIGNIFICANT_BITS)
    return -(-rows // step) * step


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
        and inputs.shape[-1] == weight.shape[1]  # else F.linear says which sizes differ
        and (bias is None or (bias.shape == weight.shape[:1] and bias.is_contiguous()))
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
