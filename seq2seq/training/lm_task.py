"""Language modelling as a training task: truncated BPTT with the hidden state carried; its data,
model and training task for the shared run skeleton (``LANGUAGE_MODELLING``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.checkpoint import CheckpointError
from seq2seq.data.lm_corpus import LMCorpus, load_lm_corpus, make_tokenizer
from seq2seq.data.lm_stream import LMDataConfig, LMStream, Window
from seq2seq.data.prepare_stream import open_prepared_stream
from seq2seq.decoding import check_decode_config
from seq2seq.models import build_language_model
from seq2seq.models.decoder import DecoderState
from seq2seq.models.encoders import empty_source
from seq2seq.run_configs import MODEL_SECTIONS, TextGenConfig
from seq2seq.text import Vocab, tokenizer_from_dict
from seq2seq.text.tokenizers import canonical_descriptions
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.run import PreparedRun, TaskTraining, seeded_model
from seq2seq.training.runtime import Runtime
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


def language_model_loss(model: nn.Module, window: Window, state: DecoderState | None) -> tuple[Tensor, DecoderState]:
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


# ---- preparing a run ------------------------------------------------------------------------


def check_textgen_config(config: TextGenConfig) -> None:
    """Refuses generation defaults that cannot work, before anything is written."""
    check_decode_config(config.decoding)


def prepare_language_model(
    config: TextGenConfig, run_dir: Path, runtime: Runtime, saved: dict[str, Any] | None
) -> PreparedRun:
    """The corpus (a fresh run's tokenizer made now, or a resumed run's own tokenizer and
    vocabulary), the model and this process's stream of training windows."""
    if config.data.prepared is not None:
        corpus = prepared_corpus(config.data, saved)
    elif saved is None:
        corpus = load_lm_corpus(config.data, make_tokenizer(config.data, run_dir))
    else:
        tokenizer, vocab = tokenizer_from_dict(saved["tokenizer"]), Vocab.from_dict(saved["vocab"])
        corpus = load_lm_corpus(config.data, tokenizer, vocab)
    model = seeded_model(
        lambda: build_language_model(config.decoder, len(corpus.vocab), corpus.vocab.pad_id), runtime, config.train.seed
    )
    train_stream = LMStream(
        corpus.train_ids,
        config.data.batch_size,
        config.data.window,
        seed=config.train.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    task = LanguageModelTask(train_stream, validation_stream(corpus.validation_ids, config.data), runtime.device)
    description = (
        f"{len(corpus.train_ids)} train / {len(corpus.validation_ids)} validation tokens, "
        f"vocabulary {len(corpus.vocab)}"
    )
    metadata = {"vocab": corpus.vocab.to_dict(), "tokenizer": corpus.tokenizer.to_dict()}
    return PreparedRun(model, task, metadata, description)


def prepared_corpus(data: LMDataConfig, saved: dict[str, Any] | None) -> LMCorpus:
    """The prepared text of ``data.prepared``; a resumed run refuses one prepared again since with
    another tokenizer or vocabulary."""
    prepared = open_prepared_stream(data)
    if saved is not None and (
        canonical_descriptions(saved["tokenizer"]) != prepared.tokenizer.to_dict()
        or Vocab.from_dict(saved["vocab"]) != prepared.vocab
    ):
        raise CheckpointError(
            f"the prepared data in {prepared.folder} has another tokenizer or vocabulary than the run: it was "
            "prepared again since the run started. Point data.prepared at the data the run started with, choose "
            "another --run-dir, or pass --fresh to start over."
        )
    return LMCorpus(prepared.tokenizer, prepared.vocab, prepared.train_ids, prepared.validation_ids)


def validation_stream(ids: Tensor, data: LMDataConfig) -> LMStream:
    """Validation reads every token once, in as many rows as the text allows (at most batch_size)."""
    rows = max(1, min(data.batch_size, (len(ids) - 1) // data.window))
    return LMStream(ids, rows, data.window, shift_per_epoch=False)


LANGUAGE_MODELLING = TaskTraining(check_textgen_config, MODEL_SECTIONS["textgen"], prepare_language_model)
