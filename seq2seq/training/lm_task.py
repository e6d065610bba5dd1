"""Language modelling as a training task: truncated BPTT with the hidden state carried."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.data.lm_stream import LMStream, Window
from seq2seq.models.decoder import DecoderState
from seq2seq.models.encoders import empty_source
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.trainer import BatchLoss


@dataclass
class LMScore:
    """Summed negative log-likelihood over ``tokens`` predicted tokens."""

    total_nll: float
    tokens: int

    @property
    def nats(self) -> float:
        return self.total_nll / max(self.tokens, 1)

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nats, 50.0))


def language_model_loss(
    model: nn.Module, window: Window, state: DecoderState | None
) -> tuple[Tensor, DecoderState]:
    """Mean cross-entropy of one window and the state after it. inputs, targets: (B, T)"""
    source = empty_source(window.inputs.shape[0], window.inputs.device)
    features, state = model(source, window.inputs, state, project=False)  # (B, T, H)
    loss = output_cross_entropy(features, output_layer(model), window.targets) / window.targets.numel()
    return loss, state


@torch.no_grad()
def score_stream(model: nn.Module, stream: LMStream, device: torch.device, carry_state: bool = True) -> LMScore:
    """Negative log-likelihood of every token of ``stream``.

    carry_state: the hidden state flows from window to window (as in training); False starts
    each window from zeros.
    """
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    for window in stream.evaluation_windows():
        window = Window(window.inputs.to(device), window.targets.to(device), window.index)
        loss, state = language_model_loss(model, window, state if carry_state else None)
        total += loss.item() * window.targets.numel()
        count += window.targets.numel()
    model.train(was_training)
    return LMScore(total, count)


class LanguageModelTask:
    """Batches, loss and validation of a language model for the shared trainer."""

    def __init__(self, train: LMStream, validation: LMStream, device: torch.device) -> None:
        self.train = train
        self.validation = validation
        self.device = device
        self.carried: DecoderState | None = None

    def batches(self, epoch: int, start: int) -> Iterator[Window]:
        if start == 0:
            self.carried = None  # a new epoch starts a new pass over the rows
        for window in self.train.windows(epoch, start):
            yield Window(window.inputs.to(self.device), window.targets.to(self.device), window.index)

    def batch_loss(self, model: nn.Module, batch: Window) -> BatchLoss:
        loss, state = language_model_loss(model, batch, self.carried)
        self.carried = state.detach()
        return BatchLoss(loss, batch.targets.numel())

    def validate(self, model: nn.Module) -> dict[str, float]:
        score = score_stream(model, self.validation, self.device)
        return {"val_loss": score.nats, "val_bits": score.bits, "val_ppl": score.perplexity}

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.carried is None else self.carried.tensors()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.carried = None
        if state:
            self.carried = DecoderState.from_tensors({k: v.to(self.device) for k, v in state.items()})
