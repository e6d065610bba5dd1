"""Captioning as a training task, and the captioning of a set of images that its validation and
the caption recipe share.

Loss: cross-entropy of the teacher-forced caption (label smoothing, padding ignored), averaged
over the batch's real caption tokens, plus, with ``attention_regularization`` lambda > 0, the
doubly stochastic attention regularisation of Show, Attend and Tell:
lambda * mean over images and grid positions of (1 - sum over words of attention)^2, which
asks every part of the image to be looked at about once over the caption. (The paper sums over
positions; the mean keeps lambda's scale the same for any grid size.)

Validation: the loss without smoothing or regularisation (and its perplexity) over the
validation pairs, and, when enabled, BLEU-4, CIDEr-D and exact matches of free-running
captions of the validation images against all their references.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.caption_metrics import CaptionScores, caption_scores
from seq2seq.config import ConfigError, DecodeConfig, check_best_metric
from seq2seq.data.captions import CaptionBatch, CaptionImages, CaptionPairs, ImageCaptions, caption_batches
from seq2seq.data.parallel import TextCodec
from seq2seq.decoding import SpecialIds, generate
from seq2seq.decoding.beam import search_config
from seq2seq.metrics import perplexity
from seq2seq.models import Seq2Seq
from seq2seq.text import Vocab
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.trainer import BatchLoss

SPECIAL_IDS = SpecialIds(Vocab.pad_id, Vocab.bos_id, Vocab.eos_id, Vocab.unk_id)
#: The validation metrics a captioning run can select its best checkpoints by.
VALIDATION_METRICS = ("val_loss", "val_ppl", "val_bleu4", "val_cider_d", "val_exact")
DECODED_METRICS = ("val_bleu4", "val_cider_d", "val_exact")


@dataclass
class CaptionValidationConfig:
    """What a validation measures besides the loss."""

    metrics: bool = True  # caption the validation images: val_bleu4, val_cider_d and val_exact
    beam_size: int = 1  # 1: greedy search; > 1: beam search with this many beams (slower)
    max_images: int = 0  # caption only the first N validation images; 0: all of them
    batch_images: int = 64  # images captioned together

    def check(self, best_metric: str) -> None:
        """Refuses settings that cannot work, naming the key to change."""
        switch = None if self.metrics else "validation.metrics"
        check_best_metric(best_metric, "captioning", VALIDATION_METRICS, DECODED_METRICS, switch)
        for key, value in (("beam_size", self.beam_size), ("batch_images", self.batch_images)):
            if value < 1:
                raise ConfigError(f"validation.{key} must be >= 1, got {value}")
        if self.max_images < 0:
            raise ConfigError(f"validation.max_images must be >= 0 (0: all), got {self.max_images}")

    def decode_config(self, defaults: DecodeConfig) -> DecodeConfig:
        """``defaults`` (the caption settings) as a search with this beam size and one result."""
        return search_config(defaults, self.beam_size)


@dataclass(frozen=True)
class Caption:
    """One caption of an image: its text, its ids (eos included), the summed log-probability of
    those ids, and each id's attention over the image grid (T, k*k), or None without attention."""

    text: str
    token_ids: tuple[int, ...]
    score: float
    attention: Tensor | None


def caption_loss(
    model: nn.Module, batch: CaptionBatch, label_smoothing: float = 0.0, attention_regularization: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The summed cross-entropy over the batch's real caption tokens, and the doubly stochastic
    attention penalty summed over images (each the mean over its grid), times its weight (zero
    when the weight is 0)."""
    features, _, weights = model(batch.images, batch.target_in, return_attention=True, project=False)
    # features: (B, T, H), weights: (B, T, S)
    cross_entropy = output_cross_entropy(
        features, output_layer(model), batch.target_out, ignore_index=batch.pad_id, label_smoothing=label_smoothing
    )
    if attention_regularization == 0.0 or weights is None:
        return cross_entropy, cross_entropy.new_zeros(())
    real = (batch.target_out != batch.pad_id).unsqueeze(-1)  # (B, T, 1)
    looked = (weights.float() * real).sum(dim=1)  # (B, S) attention each grid position got over the caption
    return cross_entropy, attention_regularization * ((1.0 - looked) ** 2).mean(dim=1).sum()


def caption_images(
    model: Seq2Seq,
    images: CaptionImages,
    codec: TextCodec,
    decode: DecodeConfig,
    batch_images: int,
    num_workers: int = 0,
) -> list[list[Caption] | None]:
    """The captions (``decode.n_best`` with beam search, ``decode.num_samples`` when sampling) of
    every image, in data order; None for an image that could not be read."""
    device = next(model.parameters()).device
    results: list[list[Caption] | None] = [None] * len(images)
    batches = caption_batches(images, batch_images, shuffle=False, num_workers=num_workers)
    for batch in batches:
        hypotheses = generate(model, batch.images.to(device), decode, SPECIAL_IDS)  # tokens (B, N, T)
        tokens, lengths, scores = hypotheses.tokens.tolist(), hypotheses.lengths.tolist(), hypotheses.scores.tolist()
        attention = hypotheses.attention  # (B, N, T, S) or None
        for row, index in enumerate(batch.indices.tolist()):
            results[index] = [
                Caption(
                    codec.decode(ids),
                    tuple(ids[:length]),
                    score,
                    None if attention is None else attention[row, n, :length].cpu(),
                )
                for n, (ids, length, score) in enumerate(zip(tokens[row], lengths[row], scores[row]))
            ]
    return results


def score_captions(captions: list[list[Caption] | None], references: list[ImageCaptions]) -> CaptionScores:
    """Caption metrics of each image's first caption against its references; an image that
    could not be read counts with an empty caption."""
    hypotheses = ["" if found is None else found[0].text for found in captions]
    return caption_scores(hypotheses, [image.captions for image in references])


@dataclass(frozen=True)
class CaptionBatching:
    """How this process draws its training batches."""

    batch_size: int  # pairs per batch, all processes together
    seed: int
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0


class CaptionTask:
    """Batches, loss and validation of a captioning model for the shared trainer.

    train: the training pairs; valid_pairs: the validation pairs (for the loss);
    valid_images: the validation images captioned at each validation (the first
    validation.max_images of them), ``valid_sets`` their references, in the same order.
    """

    def __init__(
        self,
        train: CaptionPairs,
        valid_pairs: CaptionPairs,
        valid_images: CaptionImages,
        valid_sets: list[ImageCaptions],
        codec: TextCodec,
        device: torch.device,
        validation: CaptionValidationConfig,
        caption_defaults: DecodeConfig,
        batching: CaptionBatching,
        label_smoothing: float = 0.0,
        attention_regularization: float = 0.0,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {label_smoothing}")
        if attention_regularization < 0.0:
            raise ConfigError(f"attention_regularization must be >= 0, got {attention_regularization}")
        self.train = train
        self.valid_pairs = valid_pairs
        self.valid_images = valid_images
        self.valid_sets = valid_sets
        self.codec = codec
        self.device = device
        self.validation = validation
        self.decode = validation.decode_config(caption_defaults)
        self.batching = batching
        self.label_smoothing = label_smoothing
        self.attention_regularization = attention_regularization

    def batches(self, epoch: int, start: int) -> Iterator[CaptionBatch]:
        b = self.batching
        for batch in caption_batches(
            self.train, b.batch_size, epoch, start, b.seed, b.rank, b.world_size, b.num_workers
        ):
            yield batch.to(self.device)

    def batch_loss(self, model: nn.Module, batch: CaptionBatch) -> BatchLoss:
        cross_entropy, penalty = caption_loss(model, batch, self.label_smoothing, self.attention_regularization)
        loss = cross_entropy / batch.target_tokens + penalty / batch.batch_size
        return BatchLoss(loss, batch.target_tokens)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """val_loss (nats per caption token, no smoothing) and val_ppl; val_bleu4, val_cider_d
        and val_exact when captioning is enabled."""
        total, tokens = 0.0, 0
        for batch in caption_batches(self.valid_pairs, self.batching.batch_size, shuffle=False):
            cross_entropy, _ = caption_loss(model, batch.to(self.device))
            total += cross_entropy.item()
            tokens += batch.target_tokens
        loss = total / max(tokens, 1)
        metrics = {"val_loss": loss, "val_ppl": perplexity(loss)}
        if self.validation.metrics:
            metrics.update(self._decoded_metrics(model))
        return metrics

    def _decoded_metrics(self, model: nn.Module) -> dict[str, float]:
        captions = caption_images(model, self.valid_images, self.codec, self.decode, self.validation.batch_images)
        scores = score_captions(captions, self.valid_sets)
        return {"val_bleu4": scores.bleu[3], "val_cider_d": scores.cider_d, "val_exact": scores.exact}

    def state_dict(self) -> dict[str, Tensor]:
        """Nothing to carry: the data position is the trainer's."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore (see ``state_dict``)."""
