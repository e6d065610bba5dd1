"""Tests for seq2seq.models.blocked_linear: the output layer computed in blocks of output columns."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from seq2seq.models.blocked_linear import BLOCK_COLUMNS, MIN_ROWS, blocked_linear

HIDDEN, OUTPUTS = 16, 2 * BLOCK_COLUMNS + 37  # the last block is a partial one


def count_products(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-element list counting torch.addmm and torch.mm calls."""
    calls = [0]
    for name in ("addmm", "mm"):
        original = getattr(torch, name)

        def counted(*args: object, _original=original, **kwargs: object) -> torch.Tensor:
            calls[0] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, counted)
    return calls


@pytest.mark.parametrize("with_bias", [True, False])
def test_blocks_equal_one_product(with_bias: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(2, MIN_ROWS, HIDDEN)  # (B, T, H): 2 * MIN_ROWS rows
    weight, bias = torch.randn(OUTPUTS, HIDDEN), torch.randn(OUTPUTS) if with_bias else None
    expected = F.linear(inputs, weight, bias)
    calls = count_products(monkeypatch)
    result = blocked_linear(inputs, weight, bias)
    assert calls == [math.ceil(OUTPUTS / BLOCK_COLUMNS)]
    assert result.shape == expected.shape and result.is_contiguous()
    assert torch.allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize("case", ["few rows", "one block", "recording gradients", "bf16", "autocast"])
def test_one_product_where_blocks_do_not_apply(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = MIN_ROWS - 1 if case == "few rows" else MIN_ROWS
    outputs = BLOCK_COLUMNS if case == "one block" else OUTPUTS
    dtype = torch.bfloat16 if case == "bf16" else torch.float32
    inputs = torch.randn(rows, HIDDEN, dtype=dtype, requires_grad=case == "recording gradients")
    weight, bias = torch.randn(outputs, HIDDEN, dtype=dtype), torch.randn(outputs, dtype=dtype)
    calls = count_products(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        result = blocked_linear(inputs, weight, bias)
    assert calls == [0]  # F.linear computed it
    assert (result.grad_fn is not None) == (case == "recording gradients")
    assert result.dtype == (torch.bfloat16 if case in ("bf16", "autocast") else torch.float32)
