"""Tests for seq2seq.training.translation_task: the loss, batches, validation and batched translation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from seq2seq.config import ConfigError, DecodeConfig, DecoderConfig, TextEncoderConfig, TrainConfig
from seq2seq.data.parallel import ParallelData, TextCodec, TokenBudgetBatcher, collate, encode_sources
from seq2seq.data.ragged import RaggedIds
from seq2seq.inference.translator import DecodeBatching
from seq2seq.models import build_translation_model
from seq2seq.run_configs import TranslationValidationConfig
from seq2seq.text import Vocab, WordTokenizer
from seq2seq.training.runtime import Runtime
from seq2seq.training.trainer import Trainer
from seq2seq.training.translation_task import (
    TranslationTask,
    first_sentences,
    translate_data,
    translation_loss,
)
from tests.test_translate_recipe import make_pairs

CPU = torch.device("cpu")
DECODE = DecodeConfig(method="beam", max_length=12)


def codec(lines: list[str]) -> TextCodec:
    tokenizer = WordTokenizer()
    return TextCodec(tokenizer, Vocab.build([tokenizer.tokenize(line) for line in lines]))


def toy_data(
    count: int, seed: int, source: TextCodec | None = None, target: TextCodec | None = None
) -> tuple[ParallelData, TextCodec, TextCodec]:
    """``count`` toy pairs encoded with the given codecs (built from these pairs when None)."""
    sources, targets = make_pairs(count, seed)
    source, target = source or codec(sources), target or codec(targets)
    data = ParallelData(
        sources,
        targets,
        RaggedIds.from_sequences(source.encode(line) for line in sources),
        RaggedIds.from_sequences(target.encode(line) for line in targets),
    )
    return data, source, target


def tiny_model(source: TextCodec, target: TextCodec, attention: str = "general") -> torch.nn.Module:
    torch.manual_seed(0)
    decoder = DecoderConfig(cell="gru", embedding_size=16, hidden_size=32, attention=attention)
    encoder = TextEncoderConfig(embedding_size=16, hidden_size=16)
    return build_translation_model(encoder, decoder, len(source.vocab), len(target.vocab), Vocab.pad_id)


def make_task(
    count: int = 120, validation: TranslationValidationConfig | None = None, label_smoothing: float = 0.0
) -> tuple[TranslationTask, torch.nn.Module]:
    train, source, target = toy_data(count, seed=0)
    valid, _, _ = toy_data(16, seed=1, source=source, target=target)
    batches = TokenBudgetBatcher(train, batch_sentences=16, pool_size=64, seed=3)
    task = TranslationTask(
        batches,
        valid,
        target,
        CPU,
        validation or TranslationValidationConfig(),
        DECODE,
        label_smoothing=label_smoothing,
    )
    return task, tiny_model(source, target)


def test_loss_ignores_padding() -> None:
    data, source, target = toy_data(6, seed=2)
    model = tiny_model(source, target).eval()
    together = collate(data, list(range(6)))  # short rows are padded to the longest
    alone = sum(translation_loss(model, collate(data, [i])) for i in range(6))
    torch.testing.assert_close(translation_loss(model, together), alone, rtol=1e-5, atol=1e-5)
    assert together.target_tokens == int((together.target_out != Vocab.pad_id).sum())
    assert (together.target_out == Vocab.pad_id).any(), "the batch must hold padding for the test to mean anything"


def test_label_smoothing_raises_the_loss_of_a_confident_model_and_ignores_padding() -> None:
    data, source, target = toy_data(6, seed=2)
    model = tiny_model(source, target).eval()
    batch = collate(data, list(range(6)))
    smoothed = translation_loss(model, batch, label_smoothing=0.1)
    assert not torch.isclose(smoothed, translation_loss(model, batch))
    logits, _ = model(batch.source, batch.target_in)  # (B, T, V)
    real = batch.target_out != Vocab.pad_id
    expected = F.cross_entropy(logits[real], batch.target_out[real], label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(smoothed, expected, rtol=1e-5, atol=1e-5)


def test_batch_loss_is_per_target_token() -> None:
    task, model = make_task()
    batch = next(task.batches(epoch=0, start=0))
    result = task.batch_loss(model, batch)
    assert result.tokens == batch.target_tokens
    torch.testing.assert_close(result.loss * result.tokens, translation_loss(model, batch))


def test_batches_resume_at_a_position_and_change_with_the_epoch() -> None:
    task, _ = make_task()
    epoch = [batch.indices.tolist() for batch in task.batches(epoch=1, start=0)]
    assert [batch.indices.tolist() for batch in task.batches(epoch=1, start=3)] == epoch[3:]
    assert [batch.indices.tolist() for batch in task.batches(epoch=2, start=0)] != epoch
    assert task.state_dict() == {}


def test_validate_reports_loss_perplexity_bleu_and_chrf() -> None:
    task, model = make_task(validation=TranslationValidationConfig(max_sentences=5))
    metrics = task.validate(model)
    assert set(metrics) == {"val_loss", "val_ppl", "val_bleu", "val_chrf"}
    assert math.isclose(metrics["val_ppl"], math.exp(metrics["val_loss"]), rel_tol=1e-6)
    assert 0 <= metrics["val_bleu"] <= 100 and 0 <= metrics["val_chrf"] <= 100
    loss_only, _ = make_task(validation=TranslationValidationConfig(bleu=False))
    assert set(loss_only.validate(model)) == {"val_loss", "val_ppl"}


def test_validation_loss_has_no_label_smoothing() -> None:
    plain, model = make_task()
    smoothed, _ = make_task(label_smoothing=0.2)
    assert plain.validate(model)["val_loss"] == smoothed.validate(model)["val_loss"]


def test_training_raises_validation_bleu(tmp_path: Path) -> None:
    task, model = make_task(count=200, validation=TranslationValidationConfig(max_sentences=16))
    before = task.validate(model)["val_bleu"]
    config = TrainConfig(
        optimizer="adam",
        lr=0.01,
        schedule="constant",
        max_steps=120,
        validate_every=120,
        log_every=40,
        best_metric="val_bleu",
        best_mode="max",
    )
    progress = Trainer(model, task, config, tmp_path / "run", {"task": "test"}, Runtime(CPU)).fit()
    assert progress.best_metric > before + 10


def test_translate_data_keeps_data_order_and_empty_sources() -> None:
    data, source, target = toy_data(9, seed=4)
    model = tiny_model(source, target)
    lines = [*data.source_lines[:4], "", *data.source_lines[4:]]
    inputs = encode_sources(lines, source)
    beam = DecodeConfig(method="beam", beam_size=3, n_best=2, max_length=12)
    together = translate_data(model, inputs, target, beam, DecodeBatching(batch_sentences=3))
    assert len(together) == len(lines) and all(len(hypotheses) == 2 for hypotheses in together)
    assert [hypothesis.text for hypothesis in together[4]] == ["", ""]
    for index in (0, 5, 9):  # each sentence alone translates as it did in sorted batches
        alone = translate_data(model, encode_sources([lines[index]], source), target, beam, DecodeBatching(1))
        assert [h.token_ids for h in alone[0]] == [h.token_ids for h in together[index]]
    assert all(h.token_ids[-1] == Vocab.eos_id or len(h.token_ids) == beam.max_length for h in together[0])


def test_translate_data_searches_and_does_not_sample() -> None:
    data, source, target = toy_data(2, seed=4)
    with pytest.raises(ValueError, match="beam or greedy search"):
        translate_data(tiny_model(source, target), data, target, DecodeConfig(method="sample"), DecodeBatching(2))


def test_first_sentences() -> None:
    data, _, _ = toy_data(5, seed=4)
    assert first_sentences(data, 0) is data and first_sentences(data, 9) is data
    first = first_sentences(data, 2)
    assert first.source_lines == data.source_lines[:2] and first.target_lines == data.target_lines[:2]
    assert len(first) == 2


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match="validation.bleu=true"):
        TranslationValidationConfig(bleu=False).check("val_bleu")
    with pytest.raises(ConfigError, match="train.best_metric must be one of"):
        TranslationValidationConfig().check("val_bits")
    with pytest.raises(ConfigError, match="validation.beam_size"):
        TranslationValidationConfig(beam_size=0).check("val_loss")
    with pytest.raises(ConfigError, match="train.label_smoothing"):
        make_task(label_smoothing=1.0)
    decode = TranslationValidationConfig(beam_size=4).decode_config(
        DecodeConfig(method="sample", n_best=3, beam_size=8)
    )
    assert (decode.method, decode.beam_size, decode.n_best) == ("beam", 4, 1)
