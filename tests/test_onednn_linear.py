"""Tests for seq2seq.models.onednn_linear: linear layers through oneDNN's fp32 kernels on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq.models.onednn_linear import apply_linear, computes_with_onednn, onednn_available, onednn_linear
from seq2seq.quantization import quantize_int8

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear kernel")


def ran_onednn_kernel(compute: object) -> tuple[Tensor, bool]:
    """The result of ``compute()`` and whether oneDNN's linear kernel ran for it."""
    with torch.profiler.profile() as profiler:
        result = compute()  # type: ignore[operator]
    return result, any("_linear_pointwise" in event.name for event in profiler.events())


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 24), (70, 24), (3, 5, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_equals_f_linear_through_the_onednn_kernel(shape: tuple[int, ...], with_bias: bool) -> None:
    torch.manual_seed(0)
    inputs, weight = torch.randn(shape), torch.randn(37, 24)
    bias = torch.randn(37) if with_bias else None
    assert computes_with_onednn(inputs, weight, bias)
    result, ran = ran_onednn_kernel(lambda: onednn_linear(inputs, weight, bias))
    assert ran
    expected = F.linear(inputs, weight, bias)
    assert result.shape == expected.shape
    assert torch.allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize("case", ["recording gradients", "bf16", "autocast", "strided weight", "no rows"])
def test_f_linear_where_the_kernel_does_not_apply(case: str) -> None:
    dtype = torch.bfloat16 if case == "bf16" else torch.float32
    inputs = torch.randn(0 if case == "no rows" else 6, 8, dtype=dtype, requires_grad=case == "recording gradients")
    weight = torch.randn(5, 16 if case == "strided weight" else 8, dtype=dtype)
    if case == "strided weight":
        weight = weight[:, :8]  # the columns of a wider weight, as a fused RNN's input weights are split
    bias = torch.randn(5, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        assert not computes_with_onednn(inputs, weight, bias)
        result, ran = ran_onednn_kernel(lambda: onednn_linear(inputs, weight, bias))
        expected = F.linear(inputs, weight, bias)
    assert not ran
    assert torch.equal(result, expected)
    assert (result.grad_fn is not None) == (case == "recording gradients")


@needs_onednn
def test_apply_linear_runs_a_plain_layer_through_onednn_and_a_quantized_one_as_it_is() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 5)).eval()
    inputs = torch.randn(4, 8)
    with torch.inference_mode():
        result, ran = ran_onednn_kernel(lambda: apply_linear(model[0], inputs))
        assert ran and torch.allclose(result, model[0](inputs), atol=1e-6)
        quantize_int8(model)
        assert type(model[0]) is not nn.Linear
        result, ran = ran_onednn_kernel(lambda: apply_linear(model[0], inputs))
        assert not ran and torch.equal(result, model[0](inputs))
