"""A whole training step of an attentional translation model on a CUDA device gives the CPU's
loss and gradients (the chunked output loss and the recomputed additive attention included).

The tests of those parts run on every device of ``tests.conftest.DEVICES``; this one holds the
two devices to each other. Skipped without a CUDA device.
"""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import DecoderConfig, TextEncoderConfig
from seq2seq.models import build_translation_model
from seq2seq.training.output_loss import output_cross_entropy, output_layer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PAD = 0
CUDA = torch.device("cuda")


@pytest.mark.parametrize("input_feeding", [False, True])
def test_a_training_step_on_cuda_gives_the_cpu_loss_and_gradients(input_feeding: bool) -> None:
    decoder = DecoderConfig(
        cell="gru", embedding_size=16, hidden_size=32, attention="bahdanau", input_feeding=input_feeding
    )
    encoder = TextEncoderConfig(embedding_size=16, hidden_size=16)
    torch.manual_seed(0)
    model = build_translation_model(encoder, decoder, 41, 37, PAD).double()
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
