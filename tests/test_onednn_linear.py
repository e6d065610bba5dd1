"""Tests for seq2seq.models.onednn_linear: the output layer through oneDNN's fp32 kernel on the CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from seq2seq.decoding import generate
from seq2seq.models.onednn_linear import computes_with_onednn, onednn_available, onednn_linear, padded_row_count
from tests.test_ensemble import BEAM, GREEDY, SPECIAL, sources, tiny_translation_model

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear kernel")


def ran_onednn_kernel(compute: Callable[[], object]) -> tuple[object, bool]:
    """The result of ``compute()`` and whether oneDNN's linear kernel ran for it."""
    with torch.profiler.profile() as profiler:
        result = compute()
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
    assert ran and isinstance(result, Tensor)
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
    assert not ran and isinstance(result, Tensor)
    assert torch.equal(result, expected)
    assert (result.grad_fn is not None) == (case == "recording gradients")


@pytest.mark.parametrize("mismatch", ["inputs", "bias"])
def test_mismatched_sizes_get_f_linears_error(mismatch: str) -> None:
    inputs = torch.randn(4, 7 if mismatch == "inputs" else 8)
    weight, bias = torch.randn(5, 8), torch.randn(6 if mismatch == "bias" else 5)
    assert not computes_with_onednn(inputs, weight, bias)
    with pytest.raises(RuntimeError, match="shape|size"):
        onednn_linear(inputs, weight, bias)


@needs_onednn
def test_rows_are_padded_to_few_counts_and_the_result_keeps_the_given_rows() -> None:
    torch.manual_seed(0)
    inputs, weight, bias = torch.randn(17, 24), torch.randn(37, 24), torch.randn(37)
    assert padded_row_count(17) == 18
    with torch.profiler.profile(record_shapes=True) as profiler:
        result = onednn_linear(inputs, weight, bias)
    kernel_inputs = [event.input_shapes[0] for event in profiler.events() if "_linear_pointwise" in event.name]
    assert kernel_inputs == [[18, 24]]  # the kernel multiplied 18 rows
    assert result.shape == (17, 37) and result.is_contiguous()
    assert torch.allclose(result, F.linear(inputs, weight, bias), atol=1e-5)


def test_padded_row_counts_add_at_most_an_eighth_and_are_eight_per_doubling() -> None:
    counts = (1, 7, 8, 15, 16, 17, 320, 321, 529)
    assert [padded_row_count(rows) for rows in counts] == [1, 7, 8, 15, 16, 18, 320, 352, 576]
    for octave in range(4, 12):
        rows = range(1 << octave, 2 << octave)
        padded = [padded_row_count(count) for count in rows]
        assert all(count <= padded_count <= count * 9 / 8 for count, padded_count in zip(rows, padded))
        assert len(set(padded) - {2 << octave}) == 8  # 8 counts within the doubling, and its end


@needs_onednn
@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_decoding_runs_the_output_layer_through_onednn(method: str) -> None:
    model = tiny_translation_model(0, input_feeding=True)
    config = GREEDY if method == "greedy" else BEAM
    _, ran = ran_onednn_kernel(lambda: generate(model, sources(), config, SPECIAL))
    assert ran
