"""Captioning as a training task: its data, model and training task for the shared run skeleton
(``CAPTIONING``), its loss and its validation.

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

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from seq2seq.caption_metrics import CaptionScores, caption_scores
from seq2seq.checkpoint import load_weights
from seq2seq.config import ConfigError, DecodeConfig, to_dict
from seq2seq.data.captions import (
    CaptionBatch,
    CaptionDataset,
    CaptionImages,
    CaptionPairs,
    ImageCaptions,
    caption_batches,
    load_caption_sets,
    make_caption_codec,
)
from seq2seq.data.feature_cache import FeatureCache
from seq2seq.data.images import BadImageError, build_transform, load_rgb
from seq2seq.data.parallel import TextCodec
from seq2seq.data.text_files import DataError
from seq2seq.decoding import check_decode_config
from seq2seq.inference.captioner import caption_images
from seq2seq.inference.hypothesis import Hypothesis
from seq2seq.inference.options import search_options
from seq2seq.metrics import perplexity
from seq2seq.models import CNNEncoder, Seq2Seq, build_captioning_model
from seq2seq.run_configs import MODEL_SECTIONS, CaptionConfig, CaptionValidationConfig
from seq2seq.text import Vocab
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.run import PreparedRun, TaskTraining, seeded_model
from seq2seq.training.runtime import Runtime, gather_objects
from seq2seq.training.scst import check_scst_config, describe_start, scst_start, self_critical_phase
from seq2seq.training.trainer import BatchLoss


def caption_loss(
    model: nn.Module, batch: CaptionBatch, label_smoothing: float = 0.0, attention_regularization: float = 0.0
) -> tuple[Tensor, Tensor]:
    """The summed cross-entropy over the batch's real caption tokens, and the doubly stochastic
    attention penalty summed over images (each the mean over its grid), times its weight (zero
    when the weight is 0)."""
    assert batch.target_out is not None  # training and validation batches carry their captions
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


def score_captions(captions: list[list[Hypothesis] | None], references: list[ImageCaptions]) -> CaptionScores:
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

    def batches(self, images: CaptionDataset, device: torch.device, epoch: int, start: int) -> Iterator[CaptionBatch]:
        """This process's training batches of ``images`` in ``epoch`` from batch ``start``, on
        ``device``; an epoch in which not one image can be read is a DataError naming the reasons
        (images are only read as they are needed, without data.preload)."""
        made = 0
        for batch in caption_batches(
            images, self.batch_size, epoch, start, self.seed, self.rank, self.world_size, self.num_workers
        ):
            made += 1
            yield batch.to(device)
        if start == 0 and not made:
            raise unreadable_images(f"epoch {epoch}: not one training image", images)


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
        return self.batching.batches(self.train, self.device, epoch, start)

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
        if not tokens:
            raise unreadable_images("not one validation image", self.valid_pairs)
        loss = total / tokens
        metrics = {"val_loss": loss, "val_ppl": perplexity(loss)}
        if self.validation.metrics:
            metrics.update(self._decoded_metrics(model))
        return metrics

    def _decoded_metrics(self, model: nn.Module) -> dict[str, float]:
        seq2seq_model = cast(Seq2Seq, model)  # the trainer validates the model this task built
        captions = caption_images(
            seq2seq_model, self.valid_images, self.codec, self.decode, self.validation.batch_images, attention=False
        )
        scores = score_captions(captions, self.valid_sets)
        return {"val_bleu4": scores.bleu[3], "val_cider_d": scores.cider_d, "val_exact": scores.exact}

    def state_dict(self) -> dict[str, Tensor]:
        """Nothing to carry: the data position is the trainer's."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore (see ``state_dict``)."""


def unreadable_images(what: str, images: CaptionDataset) -> DataError:
    """The error for a split none of whose images could be read: how many were skipped and why."""
    skips = images.skips
    return DataError(
        f"{what} could be read ({skips.summary()}; the first: {skips.first}). Check the image files and data.images."
    )


# ---- preparing a run ------------------------------------------------------------------------


def check_caption_config(config: CaptionConfig) -> None:
    """Refuses validation, decoding and self-critical settings that cannot work, before anything is written."""
    config.validation.check(config.train.best_metric)
    search_options(config.decoding)
    check_decode_config(config.validation.decode_config(config.decoding))
    check_scst_config(config.train)


def prepare_captioning(
    config: CaptionConfig, run_dir: Path, runtime: Runtime, saved: dict[str, Any] | None
) -> PreparedRun:
    """The image-caption sets, the caption codec (a fresh run's made now, or a resumed run's own),
    the model, the feature cache of a frozen backbone and this process's training task."""
    sets = load_caption_sets(config.data)
    start = scst_start(config, sets["train"]) if saved is None and config.train.scst_from is not None else None
    if saved is not None:
        codec = TextCodec.from_dict(saved["codec"])
    elif start is not None:
        codec = start.codec
    else:
        made = make_caption_codec(config.data, sets["train"], run_dir).to_dict() if runtime.is_main else None
        main = gather_objects(made, runtime)[0]
        assert main is not None  # the main process made it
        codec = TextCodec.from_dict(main)
    model = seeded_model(
        lambda: build_captioning_model(config.image_encoder, config.decoder, len(codec.vocab), Vocab.pad_id),
        runtime,
        config.train.seed,
    )
    if start is not None:
        load_weights(start.directory, model, runtime.device)
    features = cached_features(config, model, sets, run_dir, runtime)
    task = caption_task(config, sets, codec, runtime, features)
    phase = self_critical_phase(config, sets["train"], task) if config.train.scst() else None
    description = (
        f"{len(task.train)} training pairs of {len(sets['train'])} images, {len(sets['valid'])} validation images, "
        f"vocabulary {len(codec.vocab)}, {config.image_encoder.backbone} backbone"
        + (", features cached" if features is not None else "")
        + (f", self-critical training {describe_start(config.train)}" if phase is not None else "")
        + (f" from the weights of {start.directory}" if start is not None else "")
    )
    return PreparedRun(model, task, {"codec": codec.to_dict()}, description, phase)


def cached_features(
    config: CaptionConfig, model: Seq2Seq, sets: dict[str, list[ImageCaptions]], run_dir: Path, runtime: Runtime
) -> FeatureCache | None:
    """With a frozen backbone and ``feature_cache`` on: every training and validation image's
    grid, computed once (by the main process) into ``run_dir/features``; else None."""
    encoder = cast(CNNEncoder, model.encoder)  # a captioning model's
    if not (config.feature_cache and encoder.frozen):
        return None
    images = sets["train"] + sets["valid"]
    fingerprint = feature_fingerprint(config, images)
    if runtime.is_main:
        transform = build_transform(config.data.transform, train=False)
        by_key = {image.image_id: image for image in images}

        @torch.inference_mode()
        def compute(keys: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
            loaded, skipped = [], []
            for key in keys:
                try:
                    loaded.append(transform(load_rgb(by_key[key].path, config.data.max_pixels)))
                except BadImageError:
                    skipped.append(key)
            if not loaded:
                return torch.empty(0, 0, 0), skipped
            return encoder.grid(torch.stack(loaded).to(runtime.device)).float().cpu(), skipped

        encoder.eval()
        FeatureCache.open_or_build(run_dir / "features", list(by_key), compute, fingerprint)
    gather_objects(None, runtime)  # the other processes wait for the cache
    return FeatureCache.open(run_dir / "features", fingerprint)


def feature_fingerprint(config: CaptionConfig, images: list[ImageCaptions]) -> dict[str, Any]:
    """What the cached features depend on: the backbone, its weights, the image settings and the files."""
    files = hashlib.sha256()
    for image in images:
        stat = image.path.stat()
        files.update(f"{image.image_id}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    encoder = config.image_encoder
    return {
        "backbone": encoder.backbone,
        "pretrained": encoder.pretrained,
        "grid_size": encoder.grid_size,
        "transform": to_dict(replace(config.data.transform, augment=False)),
        "files": files.hexdigest(),
    }


def caption_task(
    config: CaptionConfig,
    sets: dict[str, list[ImageCaptions]],
    codec: TextCodec,
    runtime: Runtime,
    features: FeatureCache | None,
) -> CaptionTask:
    """The training pairs of this process and the validation, as the config says."""
    data = config.data
    if not sets["valid"]:
        raise ConfigError(f"{data.annotations} has no validation images, which training needs to pick checkpoints")
    train_transform = build_transform(data.transform, train=True)
    eval_transform = build_transform(data.transform, train=False)
    train_pairs = CaptionPairs(
        sets["train"], codec, train_transform, data.max_length, data.max_pixels, data.preload, features
    )
    valid_pairs = CaptionPairs(sets["valid"], codec, eval_transform, 0, data.max_pixels, data.preload, features)
    shown = sets["valid"][: config.validation.max_images or None]
    valid_images = CaptionImages(shown, eval_transform, data.max_pixels, data.preload, features)
    batching = CaptionBatching(data.batch_size, config.train.seed, runtime.rank, runtime.world_size, data.num_workers)
    return CaptionTask(
        train_pairs,
        valid_pairs,
        valid_images,
        shown,
        codec,
        runtime.device,
        config.validation,
        config.decoding,
        batching,
        label_smoothing=config.train.label_smoothing,
        attention_regularization=config.attention_regularization,
    )


CAPTIONING = TaskTraining(check_caption_config, MODEL_SECTIONS["caption"], prepare_captioning)
