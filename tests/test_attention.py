"""Tests for seq2seq.models.attention: additive and multiplicative attention over padded memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from seq2seq.models.attention import ATTENTION_TYPES, Attention, BahdanauAttention, additive_energies, build_attention
from tests.conftest import DEVICES

BATCH, TARGET, SOURCE = 3, 4, 6
QUERY_SIZE, MEMORY_SIZE = 8, 10
LENGTHS = [6, 2, 4]  # real source positions per row


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_attention(kind: str, query_size: int = QUERY_SIZE, memory_size: int = MEMORY_SIZE) -> Attention:
    torch.manual_seed(0)
    return build_attention(kind, query_size, memory_size)


def sizes(kind: str) -> tuple[int, int]:
    """(query size, memory size): dot needs them equal."""
    return (MEMORY_SIZE, MEMORY_SIZE) if kind == "dot" else (QUERY_SIZE, MEMORY_SIZE)


def inputs(kind: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """queries (B, T, Hq), memory (B, S, Hm), mask (B, S)."""
    generator = torch.Generator().manual_seed(seed)
    query_size, memory_size = sizes(kind)
    queries = torch.randn(BATCH, TARGET, query_size, generator=generator)
    memory = torch.randn(BATCH, SOURCE, memory_size, generator=generator)
    mask = torch.arange(SOURCE) < torch.tensor(LENGTHS).unsqueeze(1)
    return queries, memory, mask


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_weights_sum_to_one_over_real_positions_and_are_zero_on_padding(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, mask = inputs(kind)
    context, weights = attention(queries, memory, mask)
    assert context.shape == (BATCH, TARGET, memory.shape[-1])
    assert weights.shape == (BATCH, TARGET, SOURCE)
    assert torch.allclose(weights.sum(-1), torch.ones(BATCH, TARGET), atol=1e-6)
    assert (weights.masked_select(~mask.unsqueeze(1)) == 0).all()
    assert (weights.masked_select(mask.unsqueeze(1)) > 0).all()
    assert torch.allclose(context, weights @ memory, atol=1e-6)


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_padding_content_does_not_matter(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, mask = inputs(kind)
    noisy = memory.masked_fill(~mask.unsqueeze(-1), 1e3)
    context, weights = attention(queries, memory, mask)
    noisy_context, noisy_weights = attention(queries, noisy, mask)
    assert torch.allclose(context, noisy_context, atol=1e-5)
    assert torch.equal(weights == 0, noisy_weights == 0)


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_one_query_per_row_equals_the_batched_form(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, mask = inputs(kind)
    context, weights = attention(queries, memory, mask)
    for position in range(TARGET):
        single_context, single_weights = attention(queries[:, position], memory, mask)
        assert single_context.shape == (BATCH, memory.shape[-1])
        assert single_weights.shape == (BATCH, SOURCE)
        assert torch.allclose(single_context, context[:, position], atol=1e-6)
        assert torch.allclose(single_weights, weights[:, position], atol=1e-6)


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_prepared_keys_give_the_same_result(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, mask = inputs(kind)
    keys = attention.prepare(memory)
    assert keys.shape[:2] == (BATCH, SOURCE)
    prepared = attention(queries, memory, mask, keys)
    unprepared = attention(queries, memory, mask)
    assert torch.allclose(prepared[0], unprepared[0]) and torch.allclose(prepared[1], unprepared[1])


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_no_mask_attends_everywhere(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, _ = inputs(kind)
    _, weights = attention(queries, memory, None)
    assert (weights > 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(BATCH, TARGET), atol=1e-6)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_multiplicative_attention_finds_the_matching_memory_vector(kind: str) -> None:
    attention = make_attention(kind, MEMORY_SIZE, MEMORY_SIZE)
    if kind == "general":
        with torch.no_grad():
            attention.memory_projection.weight.copy_(torch.eye(MEMORY_SIZE))
    memory = torch.eye(MEMORY_SIZE)[:SOURCE].unsqueeze(0)  # (1, S, Hm), orthonormal rows
    query = 20.0 * memory[:, 3]  # (1, Hm)
    with torch.no_grad():
        _, weights = attention(query, memory, torch.ones(1, SOURCE, dtype=torch.bool))
    assert int(weights.argmax()) == 3
    assert float(weights[0, 3]) > 0.99


def test_bahdanau_scores_follow_its_formula() -> None:
    attention = make_attention("bahdanau")
    queries, memory, _ = inputs("bahdanau")
    scores = attention.score(attention.query_layer(queries), attention.prepare(memory))  # (B, T, S)
    b, t, s = 1, 2, 3
    projected = attention.query_projection(queries[b, t]) + attention.memory_projection(memory[b, s])
    expected = attention.energy(torch.tanh(projected)).squeeze()
    assert torch.allclose(scores[b, t, s], expected, atol=1e-6)


def test_bahdanau_gives_the_same_weights_in_inference_mode_without_gradients_and_with_them() -> None:
    """The hidden layer's workspace is reused across these modes (an inference tensor could not be)."""
    attention = make_attention("bahdanau")
    queries, memory, mask = inputs("bahdanau")
    with torch.inference_mode():
        _, inferred = attention(queries, memory, mask)
    with torch.no_grad():
        _, plain = attention(queries, memory, mask)
    _, recorded = attention(queries, memory, mask)
    recorded.sum().backward()
    assert torch.equal(inferred, plain)
    assert torch.allclose(recorded, plain, atol=1e-6)


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_gradients_reach_the_query_memory_and_parameters(kind: str) -> None:
    attention = make_attention(kind, *sizes(kind))
    queries, memory, mask = inputs(kind)
    queries.requires_grad_(True)
    memory.requires_grad_(True)
    context, _ = attention(queries, memory, mask)
    context.pow(2).sum().backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert memory.grad is not None
    assert (memory.grad.masked_select(~mask.unsqueeze(-1)) == 0).all()  # padding gets no gradient
    for parameter in attention.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_dot_attention_refuses_different_sizes_and_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"\(8\).*\(10\).*general"):
        build_attention("dot", 8, 10)


def test_unknown_attention_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"bahdanau, dot, general.*'luong'"):
        build_attention("luong", 8, 8)


@pytest.mark.parametrize("queries", [1, 3], ids=["one step", "teacher forcing"])
def test_additive_attention_recomputed_in_backward_gives_the_direct_gradients(queries: int) -> None:
    torch.manual_seed(0)
    attention = BahdanauAttention(query_size=6, memory_size=5, attention_size=4)
    query, memory = torch.randn(2, queries, 6, requires_grad=True), torch.randn(2, 7, 5, requires_grad=True)
    context, _ = attention(query, memory, None)
    context.sum().backward()
    checkpointed = (query.grad.clone(), memory.grad.clone(), attention.energy.weight.grad.clone())
    query.grad = memory.grad = None
    attention.zero_grad()
    hidden = torch.tanh(attention.query_projection(query).unsqueeze(2) + attention.prepare(memory).unsqueeze(1))
    weights = attention.energy(hidden).squeeze(-1).softmax(dim=-1)  # (B, T, S)
    torch.bmm(weights, memory).sum().backward()
    direct = (query.grad, memory.grad, attention.energy.weight.grad)
    for a, b in zip(checkpointed, direct):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("queries", [1, 3], ids=["one step", "teacher forcing"])
@pytest.mark.parametrize("device", DEVICES)
def test_additive_energies_gradients_pass_gradcheck(device: str, queries: int) -> None:
    generator = torch.Generator(device=device).manual_seed(0)
    like = {"dtype": torch.double, "device": device, "generator": generator, "requires_grad": True}
    projected, keys, energy = torch.randn(2, queries, 4, **like), torch.randn(2, 5, 4, **like), torch.randn(4, **like)
    assert torch.autograd.gradcheck(additive_energies, (projected, keys, energy))


def test_additive_attention_keeps_no_hidden_layer_for_backward() -> None:
    attention = make_attention("bahdanau")
    queries, memory, mask = inputs("bahdanau")
    queries.requires_grad_(True)
    saved_shapes = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved_shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        attention(queries, memory, mask)
    assert saved_shapes and all(len(shape) < 4 for shape in saved_shapes)


def test_additive_attention_under_bf16_autocast_is_close_to_fp32() -> None:
    attention = make_attention("bahdanau")
    queries, memory, mask = inputs("bahdanau")
    expected, _ = attention(queries, memory, mask)
    queries.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        context, _ = attention(queries, memory, mask)
    context.float().sum().backward()
    assert torch.allclose(context.float(), expected, atol=5e-2)
    assert queries.grad.dtype == torch.float32 and attention.energy.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_additive_attention_gradients_stay_right_as_the_source_length_changes(device: str) -> None:
    torch.manual_seed(0)
    attention = BahdanauAttention(query_size=6, memory_size=5, attention_size=4).to(device)
    for source_length in (7, 3, 9, 3):  # the reused hidden-layer buffer grows, then is sliced
        query = torch.randn(2, 3, 6, device=device, requires_grad=True)
        memory = torch.randn(2, source_length, 5, device=device, requires_grad=True)
        context, _ = attention(query, memory, None)
        recomputed = torch.autograd.grad(context.square().sum(), (query, memory))
        hidden = torch.tanh(attention.query_projection(query).unsqueeze(2) + attention.prepare(memory).unsqueeze(1))
        weights = attention.energy(hidden).squeeze(-1).softmax(dim=-1)  # (B, T, S)
        direct = torch.autograd.grad(torch.bmm(weights, memory).square().sum(), (query, memory))
        for a, b in zip(recomputed, direct):
            assert torch.allclose(a, b, atol=1e-5)
