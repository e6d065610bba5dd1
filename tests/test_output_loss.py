"""Tests for seq2seq.training.output_loss: the output layer's cross-entropy, a few rows at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import DecoderConfig, TextEncoderConfig
from seq2seq.models import build_translation_model
from seq2seq.training import output_loss
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from tests.conftest import DEVICES

PAD = 0
HIDDEN, VOCAB = 12, 23


def layer_and_inputs(
    dtype: torch.dtype = torch.double, device: str = "cpu"
) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """An output layer, features (B, T, H) that require gradients and targets (B, T) with padding."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(HIDDEN, VOCAB).to(dtype=dtype, device=device)
    features = torch.randn(3, 7, HIDDEN, dtype=dtype, device=device, requires_grad=True)
    targets = torch.randint(1, VOCAB, (3, 7), device=device)
    targets[0, 4:] = PAD
    targets[2, 1:] = PAD
    return layer, features, targets


def reference_loss(
    layer: torch.nn.Linear, features: torch.Tensor, targets: torch.Tensor, smoothing: float
) -> torch.Tensor:
    logits = layer(features).flatten(0, 1)  # (N, V)
    return F.cross_entropy(logits, targets.flatten(), ignore_index=PAD, label_smoothing=smoothing, reduction="sum")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("rows_per_chunk", [1, 5, 1000])
def test_loss_and_gradients_equal_the_full_cross_entropy(
    monkeypatch: pytest.MonkeyPatch, smoothing: float, rows_per_chunk: int, device: str
) -> None:
    monkeypatch.setattr(output_loss, "CHUNK_ELEMENTS", rows_per_chunk * VOCAB)
    layer, features, targets = layer_and_inputs(device=device)
    inputs = (features, layer.weight, layer.bias)
    expected = reference_loss(layer, features, targets, smoothing)
    expected_grads = torch.autograd.grad(3.0 * expected, inputs)
    loss = output_cross_entropy(features, layer, targets, ignore_index=PAD, label_smoothing=smoothing)
    grads = torch.autograd.grad(3.0 * loss, inputs)
    assert torch.allclose(loss, expected, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-10)


def test_padding_rows_add_nothing() -> None:
    layer, features, targets = layer_and_inputs()
    loss = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    (features_grad,) = torch.autograd.grad(loss, features)
    changed = features.detach().clone()
    changed[targets == PAD] += 5.0
    assert torch.allclose(output_cross_entropy(changed, layer, targets, ignore_index=PAD), loss.detach())
    assert features_grad[targets == PAD].abs().max() == 0
    assert features_grad[targets != PAD].abs().max() > 0


def test_the_full_logits_are_never_kept_for_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output_loss, "CHUNK_ELEMENTS", 4 * VOCAB)
    layer, features, targets = layer_and_inputs()
    saved_sizes = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved_sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output_cross_entropy(features, layer, targets, ignore_index=PAD)
    assert saved_sizes and max(saved_sizes) < targets.numel() * VOCAB


def test_without_gradients_the_loss_is_the_same_and_has_no_graph() -> None:
    layer, features, targets = layer_and_inputs()
    with torch.no_grad():
        loss = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    assert loss.grad_fn is None
    assert torch.allclose(loss, reference_loss(layer, features, targets, 0.0).detach(), atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_stays_close_to_fp32(device: str) -> None:
    layer, features, targets = layer_and_inputs(torch.float32, device)
    expected = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = output_cross_entropy(features, layer, targets, ignore_index=PAD)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, expected, rtol=2e-2)
    assert features.grad.dtype == features.dtype and layer.weight.grad.dtype == layer.weight.dtype


def test_tied_output_and_embedding_weights_get_both_gradients() -> None:
    decoder = DecoderConfig(embedding_size=8, hidden_size=8, tie_embeddings=True)
    torch.manual_seed(0)
    model = build_translation_model(TextEncoderConfig(embedding_size=8, hidden_size=4), decoder, 11, 13, PAD).double()
    source, target = torch.randint(1, 11, (2, 5)), torch.randint(1, 13, (2, 4))
    logits, _ = model(source, target)
    expected = torch.autograd.grad(
        F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"), model.decoder.embedding.weight
    )[0]
    features, _ = model(source, target, project=False)
    loss = output_cross_entropy(features, output_layer(model), target)
    (got,) = torch.autograd.grad(loss, model.decoder.embedding.weight)
    assert output_layer(model).weight is model.decoder.embedding.weight
    assert torch.allclose(got, expected, atol=1e-10)


def test_output_layer_looks_through_a_wrapper() -> None:
    model = build_translation_model(
        TextEncoderConfig(hidden_size=4), DecoderConfig(embedding_size=8, hidden_size=8), 11, 13, PAD
    )
    wrapper = torch.nn.Module()
    wrapper.module = model
    assert output_layer(wrapper) is model.decoder.output is output_layer(model)


def test_label_smoothing_out_of_range_is_refused() -> None:
    layer, features, targets = layer_and_inputs()
    with pytest.raises(ValueError, match="label_smoothing"):
        output_cross_entropy(features, layer, targets, label_smoothing=1.0)


def test_chunks_hold_a_power_of_two_rows_within_the_chunk_size() -> None:
    assert output_loss.chunk_rows(3964) == 512  # 529 rows would fit: 512 need no padding in onednn_linear
    assert output_loss.chunk_rows(output_loss.CHUNK_ELEMENTS) == 1
    assert output_loss.chunk_rows(10 * output_loss.CHUNK_ELEMENTS) == 1
