"""The configuration of a run of each task: one dataclass per task, its sections, and the
validation settings of the tasks that decode while they train.

Every task has the sections ``name``, ``decoder`` (the shared RNN decoder), ``data``,
``train`` and ``decoding`` (the defaults of its decoding commands); translation adds its text
``encoder`` and captioning its ``image_encoder``; the two tasks that decode while they train
add ``validation``.

``load_config(TASK_CONFIGS[task], path, overrides)`` reads a YAML file into the task's class;
every checkpoint stores the result (``to_dict``) as its ``config``. ``upgrade_config`` turns a
config stored before these section names into today's layout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from seq2seq.config import (
    DecodeConfig,
    DecoderConfig,
    TextEncoderConfig,
    TrainConfig,
    bounded,
    check_best_metric,
    check_config,
)
from seq2seq.data.caption_settings import CaptionDataConfig
from seq2seq.data.lm_stream import LMDataConfig
from seq2seq.data.parallel import ParallelDataConfig
from seq2seq.decoding import search_config
from seq2seq.models.image_encoder import ImageEncoderConfig

#: The validation metrics a translation run can select its best checkpoints by.
TRANSLATION_VALIDATION_METRICS = ("val_loss", "val_ppl", "val_bleu", "val_chrf")
TRANSLATION_DECODED_METRICS = ("val_bleu", "val_chrf")


@dataclass
class TranslationValidationConfig:
    """What a validation measures besides the loss."""

    bleu: bool = True  # translate the validation sources and report val_bleu and val_chrf
    beam_size: int = bounded(1, at_least=1)  # 1: greedy search; > 1: beam search with this many beams (slower)
    max_sentences: int = bounded(0, at_least=0)  # translate only the first N validation sentences; 0: all of them
    batch_sentences: int = bounded(64, at_least=1)  # sentences translated together

    def check(self, best_metric: str) -> None:
        """Refuses settings that cannot work, naming the key to change."""
        switch = None if self.bleu else "validation.bleu"
        check_config(self, "validation")
        check_best_metric(
            best_metric, "translation", TRANSLATION_VALIDATION_METRICS, TRANSLATION_DECODED_METRICS, switch
        )

    def decode_config(self, defaults: DecodeConfig) -> DecodeConfig:
        """``defaults`` (the decoding section) with this validation's beam and one result each."""
        return search_config(defaults, self.beam_size)


#: The validation metrics a captioning run can select its best checkpoints by.
CAPTION_VALIDATION_METRICS = ("val_loss", "val_ppl", "val_bleu4", "val_cider_d", "val_exact")
CAPTION_DECODED_METRICS = ("val_bleu4", "val_cider_d", "val_exact")


@dataclass
class CaptionValidationConfig:
    """What a validation measures besides the loss."""

    metrics: bool = True  # caption the validation images: val_bleu4, val_cider_d and val_exact
    beam_size: int = bounded(1, at_least=1)  # 1: greedy search; > 1: beam search with this many beams (slower)
    max_images: int = bounded(0, at_least=0)  # caption only the first N validation images; 0: all of them
    batch_images: int = bounded(64, at_least=1)  # images captioned together

    def check(self, best_metric: str) -> None:
        """Refuses settings that cannot work, naming the key to change."""
        switch = None if self.metrics else "validation.metrics"
        check_config(self, "validation")
        check_best_metric(best_metric, "captioning", CAPTION_VALIDATION_METRICS, CAPTION_DECODED_METRICS, switch)

    def decode_config(self, defaults: DecodeConfig) -> DecodeConfig:
        """``defaults`` (the decoding section) as a search with this beam size and one result."""
        return search_config(defaults, self.beam_size)


@dataclass
class TranslationConfig:
    name: str = "translate"  # the run directory is runs/<name> unless --run-dir says otherwise
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: ParallelDataConfig = field(default_factory=ParallelDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: TranslationValidationConfig = field(default_factory=TranslationValidationConfig)
    # Defaults of the translate and evaluate commands (their flags override them).
    decoding: DecodeConfig = field(default_factory=lambda: DecodeConfig(method="beam", max_length=200))


@dataclass
class TextGenConfig:
    name: str = "textgen"  # the run directory is runs/<name> unless --run-dir says otherwise
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decoding: DecodeConfig = field(default_factory=DecodeConfig)  # defaults of the generate command


ScstBaseline = Literal["others", "greedy"]


@dataclass
class CaptionTrainConfig(TrainConfig):
    """The shared training loop, and captioning's self-critical phase (SCST, Rennie et al. 2017):
    sampled captions rewarded by their CIDEr-D against the image's references, above a baseline."""

    # Start this run in SCST from the weights of a cross-entropy captioning run (its best
    # checkpoint) or of a step directory; null: no such start.
    scst_from: str | None = None
    scst_after_steps: int = bounded(0, at_least=0)  # or begin SCST after this many cross-entropy steps; 0: never
    scst_after_minutes: float = bounded(0.0, at_least=0)  # or after this many minutes of cross-entropy; 0: never
    scst_samples: int = bounded(5, at_least=1)  # captions sampled per image (K)
    # others: the mean reward of the image's other K - 1 samples | greedy: the greedy caption's reward
    scst_baseline: ScstBaseline = "others"
    scst_bleu4_weight: float = bounded(0.0, at_least=0, at_most=1)  # reward = (1 - w) CIDEr-D + w BLEU-4
    scst_lr: float = bounded(5e-5, above=0)  # the constant learning rate of the SCST phase

    def scst(self) -> bool:
        """Whether this run has an SCST phase."""
        return self.scst_from is not None or self.scst_after_steps > 0 or self.scst_after_minutes > 0


@dataclass
class CaptionConfig:
    name: str = "caption"  # the run directory is runs/<name> unless --run-dir says otherwise
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(attention="bahdanau"))
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    train: CaptionTrainConfig = field(default_factory=CaptionTrainConfig)
    # Weight of the doubly stochastic attention regularisation (Show, Attend and Tell); 0 turns it off.
    attention_regularization: float = bounded(0.0, at_least=0)
    # With a frozen backbone: compute each image's features once into <run dir>/features and train from them.
    feature_cache: bool = True
    validation: CaptionValidationConfig = field(default_factory=CaptionValidationConfig)
    # Defaults of the caption and evaluate commands (their flags override them).
    decoding: DecodeConfig = field(default_factory=lambda: DecodeConfig(method="beam", beam_size=3, max_length=30))


#: Each task's name (as checkpoints and the command line call it) and its config class.
TASK_CONFIGS: dict[str, type] = {"textgen": TextGenConfig, "translate": TranslationConfig, "caption": CaptionConfig}

#: The sections that shape each task's model and data: a resumed run must keep them as they were.
MODEL_SECTIONS: dict[str, tuple[str, ...]] = {
    "textgen": ("decoder", "data"),
    "translate": ("encoder", "decoder", "data"),
    "caption": ("image_encoder", "decoder", "data"),
}

#: What each task's checkpoints carry in model.json besides its task and config: what decoding
#: (and resuming) needs to rebuild the model's tokenizers and vocabularies.
METADATA_ENTRIES: dict[str, tuple[str, ...]] = {
    "textgen": ("tokenizer", "vocab"),
    "translate": ("source", "target"),
    "caption": ("codec",),
}

# ---- configs stored in the older layout ------------------------------------------------------

#: The old ``model`` keys of the translation encoder and their names in the ``encoder`` section.
_OLD_ENCODER_KEYS = {
    "source_embedding_size": "embedding_size",
    "encoder_cell": "cell",
    "encoder_hidden_size": "hidden_size",
    "encoder_layers": "num_layers",
    "bidirectional": "bidirectional",
    "encoder_dropout": "dropout",
}
#: Each task's old name of its decoding section.
_OLD_DECODING_SECTIONS = {"translate": "translate", "textgen": "generate", "caption": "caption"}


def upgrade_config(task: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A config of ``task`` (as a checkpoint stores it) in today's layout; a copy.

    Checkpoints written before the decoder and the text encoder had sections of their own
    hold one ``model`` section (decoder keys plus, for every task, the translation encoder's
    ``source_embedding_size``, ``encoder_cell``, ``encoder_hidden_size``, ``encoder_layers``,
    ``bidirectional`` and ``encoder_dropout``) and name their decoding section ``translate``,
    ``generate`` or ``caption``. Those become ``decoder``, ``encoder`` (translation only, kind
    ``rnn``; the other tasks had no use for those keys) and ``decoding``. A config in today's
    layout comes back unchanged.
    """
    if task not in TASK_CONFIGS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASK_CONFIGS)}")
    upgraded = copy.deepcopy(raw)
    model = upgraded.pop("model", None)
    if isinstance(model, dict):
        encoder = {new: model.pop(old) for old, new in _OLD_ENCODER_KEYS.items() if old in model}
        if task == "translate" and "encoder" not in upgraded:
            upgraded["encoder"] = {"kind": "rnn", **encoder}
        upgraded.setdefault("decoder", model)
    old_decoding = _OLD_DECODING_SECTIONS.get(task)
    if old_decoding in upgraded and "decoding" not in upgraded:
        upgraded["decoding"] = upgraded.pop(old_decoding)
    return upgraded
