"""Tests for seq2seq.models.stepwise_linear: per-position linear maps with one weight-gradient product."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from seq2seq.models.stepwise_linear import StepwiseLinear

STEPS, BATCH, IN, OUT = 4, 3, 5, 6


def position_inputs(seed: int = 0) -> list[torch.Tensor]:
    """Each position's input depends on the previous output, as in a recurrent loop."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(BATCH, IN, generator=generator) for _ in range(STEPS)]


def run_loop(linear: Callable[[torch.Tensor], torch.Tensor], starts: list[torch.Tensor]) -> torch.Tensor:
    """A recurrence x_{t+1} = start_{t+1} + tanh(linear(x_t))[:, :IN]; returns a scalar loss."""
    outputs = []
    previous = torch.zeros(BATCH, IN)
    for start in starts:
        output = linear(start + previous)  # (B, OUT)
        previous = torch.tanh(output[:, :IN])
        outputs.append(output)
    return (torch.stack(outputs) ** 2).sum()


@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_equal_those_of_a_linear_at_each_position(with_bias: bool) -> None:
    torch.manual_seed(0)
    weight = torch.randn(OUT, IN, requires_grad=True)
    bias = torch.randn(OUT, requires_grad=True) if with_bias else None
    starts = [start.requires_grad_() for start in position_inputs()]

    expected = run_loop(lambda x: F.linear(x, weight, bias), starts)
    expected_grads = torch.autograd.grad(expected, [weight, *starts] + ([bias] if with_bias else []))
    stepwise = StepwiseLinear(weight, bias, STEPS, BATCH)
    loss = run_loop(stepwise, starts)
    grads = torch.autograd.grad(loss, [weight, *starts] + ([bias] if with_bias else []))

    assert torch.allclose(loss, expected, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-5)


def reaches_without_passing(node: object, target: object, barrier: str) -> bool:
    """Whether autograd node ``target`` is reachable from ``node`` by a path that avoids nodes
    whose type name contains ``barrier``."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen or barrier in type(current).__name__:
            continue
        if current is target:
            return True
        seen.add(id(current))
        stack.extend(next_node for next_node, _ in current.next_functions)
    return False


def test_the_weight_gradient_is_one_product_over_all_positions() -> None:
    """No position's product reaches the weight itself (autograd would compute and add an
    (OUT, IN) gradient for each): only the node made before the loop does, once."""
    weight = torch.randn(OUT, IN, requires_grad=True)
    stepwise = StepwiseLinear(weight, None, STEPS, BATCH)
    outputs = [stepwise(x) for x in position_inputs()]
    accumulator = weight.view_as(weight).grad_fn.next_functions[0][0]  # the weight's AccumulateGrad
    for output in outputs:
        assert not reaches_without_passing(output.grad_fn, accumulator, barrier="_PositionOffsets")
        assert reaches_without_passing(output.grad_fn, accumulator, barrier="no such node")
    torch.stack(outputs).sum().backward()
    inputs = torch.cat(position_inputs())  # (T * B, IN)
    assert torch.allclose(weight.grad, torch.ones(STEPS * BATCH, OUT).t() @ inputs, atol=1e-5)


def test_a_call_past_the_last_position_is_refused() -> None:
    stepwise = StepwiseLinear(torch.randn(OUT, IN, requires_grad=True), None, 1, BATCH)
    stepwise(torch.randn(BATCH, IN))
    with pytest.raises(IndexError, match="made for 1 positions"):
        stepwise(torch.randn(BATCH, IN))


def test_under_bf16_autocast_the_gradients_are_the_weights_dtype_and_close() -> None:
    torch.manual_seed(0)
    weight, bias = torch.randn(OUT, IN, requires_grad=True), torch.randn(OUT, requires_grad=True)
    starts = position_inputs()
    expected = torch.autograd.grad(run_loop(lambda x: F.linear(x, weight, bias), starts), [weight, bias])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = run_loop(StepwiseLinear(weight, bias, STEPS, BATCH), starts)
    grads = torch.autograd.grad(loss.float(), [weight, bias])
    for grad, expected_grad in zip(grads, expected, strict=True):
        assert grad.dtype == torch.float32
        assert torch.allclose(grad, expected_grad, rtol=0.05, atol=0.05 * float(expected_grad.abs().max()))
