"""Translation as a training task, and the batched translation of a split that its validation
and the translation recipe share.

Loss: cross-entropy of the teacher-forced target with label smoothing, padding ignored,
averaged over the batch's real target tokens (eos included). Validation: the same loss
without smoothing (and its perplexity) over the validation split, and, when enabled,
sacreBLEU BLEU and chrF of free-running translations, detokenised, against the raw
references.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.config import ConfigError, DecodeConfig, check_best_metric
from seq2seq.data.parallel import Batch, ParallelData, TextCodec, TokenBudgetBatcher
from seq2seq.decoding import SpecialIds, generate
from seq2seq.decoding.beam import search_config
from seq2seq.metrics import corpus_bleu, corpus_chrf, perplexity
from seq2seq.models import Seq2Seq
from seq2seq.text import Vocab
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.trainer import BatchLoss

SPECIAL_IDS = SpecialIds(Vocab.pad_id, Vocab.bos_id, Vocab.eos_id, Vocab.unk_id)
#: The validation metrics a translation run can select its best checkpoints by.
VALIDATION_METRICS = ("val_loss", "val_ppl", "val_bleu", "val_chrf")
DECODED_METRICS = ("val_bleu", "val_chrf")


@dataclass
class ValidationConfig:
    """What a validation measures besides the loss."""

    bleu: bool = True  # translate the validation sources and report val_bleu and val_chrf
    beam_size: int = 1  # 1: greedy search; > 1: beam search with this many beams (slower)
    max_sentences: int = 0  # translate only the first N validation sentences; 0: all of them
    batch_sentences: int = 64  # sentences translated together

    def check(self, best_metric: str) -> None:
        """Refuses settings that cannot work, naming the key to change."""
        switch = None if self.bleu else "validation.bleu"
        check_best_metric(best_metric, "translation", VALIDATION_METRICS, DECODED_METRICS, switch)
        for key, value, least in (("beam_size", self.beam_size, 1), ("batch_sentences", self.batch_sentences, 1)):
            if value < least:
                raise ConfigError(f"validation.{key} must be >= {least}, got {value}")
        if self.max_sentences < 0:
            raise ConfigError(f"validation.max_sentences must be >= 0 (0: all), got {self.max_sentences}")

    def decode_config(self, defaults: DecodeConfig) -> DecodeConfig:
        """``defaults`` (the translate settings) with this validation's beam and one result each."""
        return search_config(defaults, self.beam_size)


@dataclass(frozen=True)
class Translation:
    """One hypothesis: detokenised text, its target ids (eos included) and the summed
    log-probability of those ids (0 for the empty translation of an empty source)."""

    text: str
    token_ids: tuple[int, ...]
    score: float


def translation_loss(model: nn.Module, batch: Batch, label_smoothing: float = 0.0) -> Tensor:
    """Summed cross-entropy over the batch's real target tokens (padding ignored)."""
    features, _ = model(batch.source, batch.target_in, project=False)  # (B, T, H)
    return output_cross_entropy(
        features, output_layer(model), batch.target_out, ignore_index=batch.pad_id, label_smoothing=label_smoothing
    )


def translate_data(
    model: Seq2Seq, data: ParallelData, target: TextCodec, decode: DecodeConfig, batch_sentences: int
) -> list[list[Translation]]:
    """The ``decode.n_best`` translations of every source of ``data``, best first, in data order.

    Sources are batched ``batch_sentences`` at a time in order of length, so that padding stays
    small; an empty source is not batched and gets the empty translation.
    """
    if decode.method not in ("beam", "greedy"):
        raise ValueError(f"translation decodes with beam or greedy search, got method {decode.method!r}")
    device = next(model.parameters()).device
    empty = [Translation("", (), 0.0)] * decode.n_best
    results = [empty for _ in range(len(data))]
    if not any(len(ids) for ids in data.sources):
        return results
    batcher = TokenBudgetBatcher(data, batch_sentences=batch_sentences, shuffle=False)
    for batch in batcher.batches():
        hypotheses = generate(model, batch.source.to(device), decode, SPECIAL_IDS)  # tokens (B, N, T)
        tokens, lengths, scores = hypotheses.tokens.tolist(), hypotheses.lengths.tolist(), hypotheses.scores.tolist()
        for row, index in enumerate(batch.indices.tolist()):
            results[index] = [
                Translation(target.decode(ids), tuple(ids[:length]), score)
                for ids, length, score in zip(tokens[row], lengths[row], scores[row])
            ]
    return results


def first_sentences(data: ParallelData, count: int) -> ParallelData:
    """The first ``count`` pairs of ``data`` (all of them for 0)."""
    if count == 0 or count >= len(data):
        return data
    targets = None if data.targets is None else data.targets[:count]
    target_lines = None if data.target_lines is None else data.target_lines[:count]
    return ParallelData(data.source_lines[:count], target_lines, data.sources[:count], targets)


class TranslationTask:
    """Batches, loss and validation of a translation model for the shared trainer.

    train: the training batches (resumable by epoch and position).
    valid: the validation split, every pair kept, with its raw references.
    validation: whether and how validation translates for BLEU and chrF.
    translate_defaults: the decoding settings validation starts from (its beam size replaces theirs).
    validation_batch_tokens: the token budget of the validation loss batches.
    """

    def __init__(
        self,
        train: TokenBudgetBatcher,
        valid: ParallelData,
        target: TextCodec,
        device: torch.device,
        validation: ValidationConfig,
        translate_defaults: DecodeConfig,
        label_smoothing: float = 0.0,
        validation_batch_tokens: int = 4096,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.train = train
        self.valid = valid
        self.target = target
        self.device = device
        self.validation = validation
        self.decode = validation.decode_config(translate_defaults)
        self.label_smoothing = label_smoothing
        self.validation_batches = TokenBudgetBatcher(valid, batch_tokens=validation_batch_tokens, shuffle=False)

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        for batch in self.train.batches(epoch, start):
            yield batch.to(self.device)

    def batch_loss(self, model: nn.Module, batch: Batch) -> BatchLoss:
        total = translation_loss(model, batch, self.label_smoothing)
        return BatchLoss(total / batch.target_tokens, batch.target_tokens)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """val_loss (nats per target token, no smoothing) and val_ppl; val_bleu and val_chrf
        when translating is enabled."""
        total, tokens = 0.0, 0
        for batch in self.validation_batches.batches():
            total += translation_loss(model, batch.to(self.device)).item()
            tokens += batch.target_tokens
        loss = total / max(tokens, 1)
        metrics = {"val_loss": loss, "val_ppl": perplexity(loss)}
        if self.validation.bleu:
            metrics.update(self._decoded_metrics(model))
        return metrics

    def _decoded_metrics(self, model: nn.Module) -> dict[str, float]:
        """BLEU and chrF of the (first N) validation sentences' translations."""
        data = first_sentences(self.valid, self.validation.max_sentences)
        translations = translate_data(model, data, self.target, self.decode, self.validation.batch_sentences)
        hypotheses = [best.text for best, *_ in translations]
        bleu = corpus_bleu(hypotheses, data.target_lines)
        chrf = corpus_chrf(hypotheses, data.target_lines)
        return {"val_bleu": bleu.score, "val_chrf": chrf.score}

    def state_dict(self) -> dict[str, Tensor]:
        """Nothing to carry: the data position is the trainer's."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore (see ``state_dict``)."""
