"""Self-critical sequence training (SCST, Rennie et al. 2017): captioning's second training phase.

Cross-entropy teaches the decoder the next word given the right words; captions are judged as
whole sentences the model wrote itself. SCST trains on such sentences: for each training image
it samples K captions with the shared decoding code (under no_grad, the model in eval mode),
rewards each with its CIDEr-D against the image's references (optionally mixed with BLEU-4),
and subtracts a baseline: the mean reward of the image's other K - 1 samples, or the reward of
its greedy caption. Then one teacher-forced forward pass with gradients gives the
log-probabilities of the sampled tokens, and the loss is

    - sum over samples and their tokens of (reward - baseline) * log p(token)  /  sampled tokens

so captions better than the baseline become more likely and worse ones less. The CIDEr-D
document frequencies are those of the training references, computed once (``CaptionReward``).
Validation is the cross-entropy phase's (loss, BLEU-4, CIDEr-D, exact names).

The phase begins after ``train.scst_after_steps`` or ``scst_after_minutes`` of cross-entropy in
the same run, or a fresh run starts in it from the weights of another (``train.scst_from``,
checked by ``scst_start``); ``self_critical_phase`` builds it for the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from sacrebleu.metrics import BLEU
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.caption_metrics import caption_words
from seq2seq.cider_d import CiderD, TfIdf
from seq2seq.config import ConfigError, DecodeConfig, config_differences, to_dict
from seq2seq.data.captions import CaptionBatch, CaptionImages, ImageCaptions, caption_vocab
from seq2seq.data.parallel import TextCodec
from seq2seq.decoding import Hypotheses, generate
from seq2seq.inference.hypothesis import SPECIAL_IDS
from seq2seq.inference.loading import metadata_entry, read_trained_run
from seq2seq.models import Seq2Seq
from seq2seq.run_configs import CaptionConfig, CaptionTrainConfig, ScstBaseline
from seq2seq.text.vocab import vocabulary_change
from seq2seq.training.trainer import BatchLoss, TrainingPhase, TrainingTask

if TYPE_CHECKING:
    from seq2seq.training.caption_task import CaptionBatching, CaptionTask

Words = list[str]


class CaptionReward:
    """The reward of a caption: its CIDEr-D against its image's references, with the document
    frequencies of the training references, mixed with sentence BLEU-4 (0..1) by ``bleu4_weight``.

    training_references: every training image's references, as caption words.
    """

    def __init__(self, training_references: Sequence[Sequence[Words]], bleu4_weight: float = 0.0) -> None:
        self.cider = CiderD(training_references)
        self.bleu4_weight = bleu4_weight
        self.bleu = BLEU(tokenize="none", effective_order=True)

    def rewards(self, captions: Sequence[Sequence[Words]], references: Sequence[Sequence[Words]]) -> Tensor:
        """(B, N) rewards of N captions of each of B images; references: each image's references."""
        rows = []
        for samples, image_references in zip(captions, references):
            vectors = [self.cider.vector(words) for words in image_references]
            rows.append([self._reward(words, vectors, image_references) for words in samples])
        return torch.tensor(rows, dtype=torch.float32)

    def _reward(self, words: Words, vectors: list[TfIdf], references: Sequence[Words]) -> float:
        reward = self.cider.score(words, vectors)
        if self.bleu4_weight > 0:
            bleu4 = self.bleu.sentence_score(" ".join(words), [" ".join(r) for r in references]).score / 100.0
            reward = (1.0 - self.bleu4_weight) * reward + self.bleu4_weight * bleu4
        return reward


@dataclass(frozen=True)
class ScstSettings:
    """How the self-critical phase samples and scores (from the ``train.scst_*`` keys).

    samples: captions sampled per image (K); baseline: "others" or "greedy";
    max_length and ban_unk: those of the run's decoding section.
    """

    samples: int
    baseline: ScstBaseline
    max_length: int
    ban_unk: bool

    @classmethod
    def of(cls, train: CaptionTrainConfig, decoding: DecodeConfig) -> ScstSettings:
        return cls(train.scst_samples, train.scst_baseline, decoding.max_length, decoding.ban_unk)

    def sampling(self) -> DecodeConfig:
        """Plain sampling from the model's distribution (no temperature, top-k or top-p), K per image."""
        return DecodeConfig(method="sample", num_samples=self.samples, max_length=self.max_length, ban_unk=self.ban_unk)

    def greedy(self) -> DecodeConfig:
        return DecodeConfig(method="greedy", max_length=self.max_length, ban_unk=self.ban_unk)


class SelfCriticalTask:
    """Batches of training images, the self-critical loss, and the cross-entropy task's validation.

    images: the training images (with the training transform); references: each one's
    references as caption words, in the same order; batching: as the cross-entropy task's, in
    images instead of (image, caption) pairs.
    """

    def __init__(
        self,
        images: CaptionImages,
        references: list[list[Words]],
        reward: CaptionReward,
        codec: TextCodec,
        settings: ScstSettings,
        batching: CaptionBatching,
        validation: TrainingTask,
        device: torch.device,
    ) -> None:
        self.images = images
        self.references = references
        self.reward = reward
        self.codec = codec
        self.settings = settings
        self.batching = batching
        self.validation = validation
        self.device = device

    def batches(self, epoch: int, start: int) -> Iterator[CaptionBatch]:
        return self.batching.batches(self.images, self.device, epoch, start)

    def batch_loss(self, model: nn.Module, batch: CaptionBatch) -> BatchLoss:
        """The policy-gradient loss of K sampled captions per image; stats: the mean reward, the
        mean baseline and the share of samples above their baseline.

        Identical samples of an image run through the teacher-forced pass once, with the sum of
        their advantages, and those whose advantages sum to zero (an image whose K samples are
        all the same) not at all: the loss and its gradient are those of all K samples.
        """
        decoder_model = unwrapped(model)
        samples = generate(decoder_model, batch.images, self.settings.sampling(), SPECIAL_IDS)  # tokens (B, K, T)
        references = [self.references[i] for i in batch.indices.tolist()]
        rewards = self.reward.rewards(self.caption_words(samples), references)  # (B, K)
        baseline = self._baseline(decoder_model, batch, rewards, references)  # (B, K)
        sampled = samples.tokens.to(self.device)
        rows, weights = distinct_moving_samples(sampled, (rewards - baseline).to(self.device))  # (R,) each
        flat = sampled.flatten(0, 1).index_select(0, rows)  # (R, T)
        longest = max(int((flat != SPECIAL_IDS.pad).sum(dim=1).max()), 1)
        image_rows = rows // sampled.shape[1]  # (R,)
        log_probs, real = sampled_log_probs(model, batch.images, flat[:, :longest], image_rows)  # (R, T') each
        tokens = int((sampled != SPECIAL_IDS.pad).sum())  # of all B * K samples
        loss = -(weights.view(-1, 1) * log_probs * real).sum() / max(tokens, 1)
        stats = {
            "reward": float(rewards.mean()),
            "baseline": float(baseline.mean()),
            "above_baseline": float((rewards > baseline).float().mean()),
        }
        return BatchLoss(loss, tokens, stats)

    def _baseline(self, model: Seq2Seq, batch: CaptionBatch, rewards: Tensor, references: list[list[Words]]) -> Tensor:
        """(B, K): each sample's baseline, the mean of the image's other samples or its greedy caption's reward."""
        if self.settings.baseline == "greedy":
            greedy = generate(model, batch.images, self.settings.greedy(), SPECIAL_IDS)  # tokens (B, 1, T)
            return self.reward.rewards(self.caption_words(greedy), references).expand_as(rewards)
        samples = rewards.shape[1]
        return (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)

    def caption_words(self, found: Hypotheses) -> list[list[Words]]:
        """Each image's captions as caption words: (B, N) lists."""
        return [[caption_words(self.codec.decode(row)) for row in image.tolist()] for image in found.tokens]

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self.validation.validate(model)

    def state_dict(self) -> dict[str, Tensor]:
        """Nothing to carry: the data position is the trainer's, the sampling draws from the saved RNG."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore (see ``state_dict``)."""


def unwrapped(model: nn.Module) -> Seq2Seq:
    """The Seq2Seq model inside a DistributedDataParallel wrapper (or the model itself)."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    return cast(Seq2Seq, inner)


#: Advantages summing to less than this (in reward units) are rounding: the samples are the image's only caption.
NO_ADVANTAGE = 1e-4


def distinct_moving_samples(tokens: Tensor, advantage: Tensor) -> tuple[Tensor, Tensor]:
    """The samples the policy gradient needs, each once: tokens (B, K, T), advantage (B, K) ->
    rows (R,) into the flattened (B * K) samples, ascending, and weights (R,): the summed
    advantage of the image's samples equal to that row. Rows whose weight is zero are left out,
    but one row always stays (with weight zero if need be), so that every data-parallel process
    runs a forward and backward pass."""
    batch, samples, length = tokens.shape
    image = torch.arange(batch, device=tokens.device).repeat_interleave(samples).unsqueeze(1)  # (B * K, 1)
    keyed = torch.cat([image, tokens.reshape(batch * samples, length)], dim=1)  # (B * K, 1 + T)
    distinct, group = torch.unique(keyed, dim=0, return_inverse=True)  # group: (B * K,)
    weights = advantage.new_zeros(len(distinct)).index_add_(0, group, advantage.flatten())  # (G,)
    every_row = torch.arange(batch * samples, device=tokens.device)
    first = torch.full_like(weights, batch * samples, dtype=torch.long).scatter_reduce_(0, group, every_row, "amin")
    moving = weights.abs() > NO_ADVANTAGE
    if not bool(moving.any()):
        moving[0] = True
    rows, order = first[moving].sort()
    return rows, weights[moving][order]


def sampled_log_probs(model: nn.Module, images: Tensor, tokens: Tensor, image_rows: Tensor) -> tuple[Tensor, Tensor]:
    """The log-probabilities, with gradients, of sampled captions under teacher forcing.

    images: (B, ...); tokens: (R, T) sampled ids, eos included, pad after it; image_rows: (R,)
    the image of each caption. Only the images some caption needs are encoded, each once.
    Returns (R, T) log-probabilities of each token and an (R, T) float mask of the real ones.
    """
    target_out = tokens.to(images.device)  # (R, T)
    used, source_rows = torch.unique(image_rows.to(images.device), return_inverse=True)  # (B',), (R,)
    bos = target_out.new_full((len(target_out), 1), SPECIAL_IDS.bos)
    target_in = torch.cat([bos, target_out[:, :-1]], dim=1)  # (R, T)
    logits, _ = model(images.index_select(0, used), target_in, source_rows=source_rows)  # (R, T, V)
    log_probs = logits.float().log_softmax(dim=-1).gather(-1, target_out.unsqueeze(-1)).squeeze(-1)  # (R, T)
    return log_probs, (target_out != SPECIAL_IDS.pad).float()


# ---- preparing the phase ------------------------------------------------------------------


#: The keys that start a self-critical phase, and whether each one is set.
SCST_STARTS: dict[str, Callable[[CaptionTrainConfig], bool]] = {
    "scst_from": lambda train: train.scst_from is not None,
    "scst_after_steps": lambda train: train.scst_after_steps > 0,
    "scst_after_minutes": lambda train: train.scst_after_minutes > 0,
}

#: The sections an SCST run must share with the cross-entropy run it starts from (train.scst_from).
SCST_MODEL_SECTIONS = ("image_encoder", "decoder")


def check_scst_config(train: CaptionTrainConfig) -> None:
    """Refuses an SCST phase that cannot work, naming the keys to change."""
    starts = [key for key, value in SCST_STARTS.items() if value(train)]
    if len(starts) > 1:
        raise ConfigError(
            f"{' and '.join(f'train.{key}' for key in starts)} each start a self-critical phase: set one of them "
            "(scst_from starts this run from another run's weights, scst_after_steps or scst_after_minutes after "
            "this run's own cross-entropy training)"
        )
    if train.scst() and train.scst_baseline == "others" and train.scst_samples < 2:
        raise ConfigError(
            "train.scst_baseline=others averages the rewards of an image's other samples: "
            "set train.scst_samples to 2 or more, or train.scst_baseline=greedy"
        )


def describe_start(train: CaptionTrainConfig) -> str:
    """When the self-critical phase begins, in words."""
    if train.scst_after_steps:
        return f"from step {train.scst_after_steps}"
    if train.scst_after_minutes:
        return f"after {train.scst_after_minutes:g} minutes"
    return "from the start"


@dataclass(frozen=True)
class ScstStart:
    """The cross-entropy checkpoint an SCST run starts from: its step directory and its codec."""

    directory: Path
    codec: TextCodec


def scst_start(config: CaptionConfig, train_sets: list[ImageCaptions]) -> ScstStart:
    """The checkpoint ``train.scst_from`` names, once it is known to fit this run: a captioning
    model with this config's image_encoder and decoder sections, whose vocabulary is the one
    this config's training captions give."""
    source = read_trained_run(cast(str, config.train.scst_from), "caption")
    advice = (
        f"train.scst_from ({config.train.scst_from}) must be a cross-entropy run of this model and data: "
        "train SCST with the config of that run (base: it and change only train), or train a cross-entropy "
        "run with this config first"
    )
    mine = to_dict(config)
    changed = config_differences(
        {key: to_dict(getattr(source.config, key)) for key in SCST_MODEL_SECTIONS},
        {key: mine[key] for key in SCST_MODEL_SECTIONS},
    )
    if changed:
        raise ConfigError(f"{source.directory} has another model:\n  " + "\n  ".join(changed) + f"\n{advice}")
    codec = TextCodec.from_dict(metadata_entry(source, "codec"))
    vocab = caption_vocab(config.data, train_sets, codec.tokenizer)
    if vocab != codec.vocab:
        raise ConfigError(
            f"{source.directory} has a vocabulary of {len(codec.vocab)} tokens, but this config's training captions "
            f"give {len(vocab)} ({vocabulary_change(codec.vocab, vocab)}). {advice}"
        )
    return ScstStart(source.directory, codec)


def self_critical_phase(
    config: CaptionConfig, train_sets: list[ImageCaptions], cross_entropy: CaptionTask
) -> TrainingPhase:
    """SCST over the training images of ``cross_entropy`` (read through its store), validated as it validates."""
    train = config.train
    references = [[caption_words(caption) for caption in image.captions] for image in train_sets]
    task = SelfCriticalTask(
        CaptionImages.of_pairs(train_sets, cross_entropy.train),
        references,
        CaptionReward(references, train.scst_bleu4_weight),
        cross_entropy.codec,
        ScstSettings.of(train, config.decoding),
        cross_entropy.batching,  # data.batch_size images per step
        cross_entropy,
        cross_entropy.device,
    )
    return TrainingPhase(
        "self-critical training", task, train.scst_lr, train.scst_after_steps, train.scst_after_minutes * 60
    )
