"""The training code's own autograd functions and a whole training step, on a CUDA device.

The CPU tests check them against the direct formulas; these check that on a GPU (where backward
runs on the autograd engine's device thread and kernels are asynchronous) they give what the
CPU gives. Skipped without a CUDA device.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import ModelConfig
from seq2seq.models import build_translation_model
from seq2seq.models.attention import BahdanauAttention, additive_energies
from seq2seq.training import output_loss
from seq2seq.training.output_loss import output_cross_entropy, output_layer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PAD = 0
CUDA = torch.device("cuda")


def test_chunked_output_loss_on_cuda_equals_the_full_cross_entropy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output_loss, "CHUNK_ELEMENTS", 5 * 23)  # five rows per chunk
    torch.manual_seed(0)
    layer = torch.nn.Linear(12, 23).double().to(CUDA)
    features = torch.randn(3, 7, 12, dtype=torch.double, device=CUDA, requires_grad=True)
    targets = torch.randint(1, 23, (3, 7), device=CUDA)
    targets[0, 4:] = PAD
    inputs = (features, layer.weight, layer.bias)
    logits = layer(features).flatten(0, 1)  # (N, V)
    expected = F.cross_entropy(logits, targets.flatten(), ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    expected_grads = torch.autograd.grad(expected, inputs)
    loss = output_cross_entropy(features, layer, targets, ignore_index=PAD, label_smoothing=0.1)
    grads = torch.autograd.grad(loss, inputs)
    assert torch.allclose(loss, expected, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-10)


def test_chunked_output_loss_under_cuda_bf16_autocast_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 500).to(CUDA)
    features = torch.randn(8, 9, 64, device=CUDA, requires_grad=True)
    targets = torch.randint(1, 500, (8, 9), device=CUDA)
    expected = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, expected, rtol=2e-2)
    assert features.grad.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()


def test_additive_energies_pass_gradcheck_on_cuda() -> None:
    generator = torch.Generator(device=CUDA).manual_seed(0)
    projected = torch.randn(2, 3, 4, dtype=torch.double, device=CUDA, generator=generator, requires_grad=True)
    keys = torch.randn(2, 5, 4, dtype=torch.double, device=CUDA, generator=generator, requires_grad=True)
    energy = torch.randn(4, dtype=torch.double, device=CUDA, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(additive_energies, (projected, keys, energy))


def test_additive_attention_gradients_on_cuda_stay_right_as_the_source_length_changes() -> None:
    torch.manual_seed(0)
    attention = BahdanauAttention(query_size=6, memory_size=5, attention_size=4).to(CUDA)
    for source_length in (7, 3, 9, 3):  # the reused hidden-layer buffer grows, then is sliced
        query = torch.randn(2, 3, 6, device=CUDA, requires_grad=True)
        memory = torch.randn(2, source_length, 5, device=CUDA, requires_grad=True)
        context, _ = attention(query, memory, None)
        recomputed = torch.autograd.grad(context.square().sum(), (query, memory))
        hidden = torch.tanh(attention.query_projection(query).unsqueeze(2) + attention.prepare(memory).unsqueeze(1))
        weights = attention.energy(hidden).squeeze(-1).softmax(dim=-1)  # (B, T, S)
        direct = torch.autograd.grad(torch.bmm(weights, memory).square().sum(), (query, memory))
        for a, b in zip(recomputed, direct):
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_a_training_step_on_cuda_gives_the_cpu_loss_and_gradients(input_feeding: bool) -> None:
    config = ModelConfig(
        cell="gru",
        embedding_size=16,
        hidden_size=32,
        attention="bahdanau",
        input_feeding=input_feeding,
        source_embedding_size=16,
        encoder_hidden_size=16,
    )
    torch.manual_seed(0)
    model = build_translation_model(config, 41, 37, PAD).double()
    source = torch.randint(1, 41, (4, 9))
    source[1, 6:] = PAD
    target_in, target_out = torch.randint(1, 37, (4, 8)), torch.randint(1, 37, (4, 8))
    target_out[2, 5:] = PAD

    def loss_and_gradients(device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.to(device).zero_grad()
        features, _ = model(source.to(device), target_in.to(device), project=False)  # (B, T, H)
        loss = output_cross_entropy(features, output_layer(model), target_out.to(device), ignore_index=PAD)
        loss.backward()
        return loss.detach().cpu(), [p.grad.detach().cpu() for p in model.parameters()]

    cpu_loss, cpu_grads = loss_and_gradients(torch.device("cpu"))
    cuda_loss, cuda_grads = loss_and_gradients(CUDA)
    assert torch.allclose(cuda_loss, cpu_loss, atol=1e-9)
    for got, want in zip(cuda_grads, cpu_grads):
        assert torch.allclose(got, want, atol=1e-8)
