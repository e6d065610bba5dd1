"""Translation as a training task: its data, model and training task for the shared run
skeleton (``TRANSLATION``), its loss and its validation.

Loss: cross-entropy of the teacher-forced target with label smoothing, padding ignored,
averaged over the batch's real target tokens (eos included). Validation: the same loss
without smoothing (and its perplexity) over the validation split, and, when enabled,
sacreBLEU BLEU and chrF of free-running translations, detokenised, against the raw
references.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, DecodeConfig
from seq2seq.data.parallel import (
    Batch,
    ParallelCorpus,
    ParallelData,
    ParallelDataConfig,
    TextCodec,
    TokenBudgetBatcher,
    load_parallel_corpus,
    load_split,
    make_tokenizers,
)
from seq2seq.data.prepared_parallel import PreparedParallel, ShardedBatcher, open_prepared_parallel
from seq2seq.decoding import check_decode_config
from seq2seq.inference.options import search_options
from seq2seq.inference.translator import DecodeBatching, translate_data
from seq2seq.metrics import corpus_bleu, corpus_chrf, perplexity
from seq2seq.models import Seq2Seq, build_translation_model
from seq2seq.run_configs import MODEL_SECTIONS, TranslationConfig, TranslationValidationConfig
from seq2seq.text import Tokenizer, Vocab, tokenizer_from_dict
from seq2seq.text.tokenizers import canonical_descriptions
from seq2seq.text.vocab import vocabulary_change
from seq2seq.training.output_loss import output_cross_entropy, output_layer
from seq2seq.training.run import PreparedRun, TaskTraining, seeded_model
from seq2seq.training.runtime import Runtime, gather_objects
from seq2seq.training.trainer import BatchLoss


def translation_loss(model: nn.Module, batch: Batch, label_smoothing: float = 0.0) -> Tensor:
    """Summed cross-entropy over the batch's real target tokens (padding ignored)."""
    assert batch.target_out is not None  # training and validation batches carry their targets
    features, _ = model(batch.source, batch.target_in, project=False)  # (B, T, H)
    return output_cross_entropy(
        features, output_layer(model), batch.target_out, ignore_index=batch.pad_id, label_smoothing=label_smoothing
    )


def first_sentences(data: ParallelData, count: int) -> ParallelData:
    """The first ``count`` pairs of ``data`` (all of them for 0)."""
    if count == 0 or count >= len(data):
        return data
    targets = None if data.targets is None else data.targets[:count]
    target_lines = None if data.target_lines is None else data.target_lines[:count]
    return ParallelData(data.source_lines[:count], target_lines, data.sources[:count], targets)


#: Where training batches come from: text read into memory, or a prepared set's shards.
TrainingBatcher = TokenBudgetBatcher | ShardedBatcher


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
        train: TrainingBatcher,
        valid: ParallelData,
        target: TextCodec,
        device: torch.device,
        validation: TranslationValidationConfig,
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
        seq2seq_model = cast(Seq2Seq, model)  # the trainer validates the model this task built
        translations = translate_data(
            seq2seq_model, data, self.target, self.decode, DecodeBatching(self.validation.batch_sentences)
        )
        hypotheses = [best.text for best, *_ in translations]
        references = data.target_lines
        assert references is not None  # the validation split keeps its references
        bleu = corpus_bleu(hypotheses, references)
        chrf = corpus_chrf(hypotheses, references)
        return {"val_bleu": bleu.score, "val_chrf": chrf.score}

    def state_dict(self) -> dict[str, Tensor]:
        """Nothing to carry: the data position is the trainer's."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Nothing to restore (see ``state_dict``)."""


# ---- preparing a run ------------------------------------------------------------------------


def check_translation_config(config: TranslationConfig) -> None:
    """Refuses validation and decoding settings that cannot work, before anything is written."""
    config.validation.check(config.train.best_metric)
    search_options(config.decoding)
    check_decode_config(config.validation.decode_config(config.decoding))


def prepare_translation(
    config: TranslationConfig, run_dir: Path, runtime: Runtime, saved: dict[str, Any] | None
) -> PreparedRun:
    """The data (text files read now, or a prepared set when ``data.prepared`` is set; a fresh
    run's tokenizers made now, or a resumed run's own), the model and this process's training task."""
    data = config.data
    if data.prepared is not None:
        prepared = open_prepared_parallel(data)
        if saved is not None:
            check_prepared_codecs(prepared, saved)
        source, target = prepared.source, prepared.target
        valid = load_split(data, "valid", source, target)
        train: TrainingBatcher = ShardedBatcher(
            prepared,
            data.batch_tokens,
            data.batch_sentences,
            data.pool_size,
            seed=config.train.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
        sizes = f"{len(prepared)} prepared training pairs ({len(prepared.manifest.shards)} shards in {prepared.folder})"
    else:
        if saved is None:
            corpus = load_parallel_corpus(data, shared_tokenizers(data, run_dir, runtime))
        else:
            corpus = resumed_corpus(data, saved)
        source, target, valid = corpus.source, corpus.target, corpus.valid
        train = training_batcher(config, corpus.train, runtime)
        sizes = f"{len(corpus.train)} training"
    source_size, target_size = len(source.vocab), len(target.vocab)
    model = seeded_model(
        lambda: build_translation_model(config.encoder, config.decoder, source_size, target_size, Vocab.pad_id),
        runtime,
        config.train.seed,
    )
    description = (
        f"{sizes} / {len(valid)} validation pairs, vocabularies "
        f"{source_size} ({data.source_lang}) and {target_size} ({data.target_lang})"
    )
    metadata = {"source": source.to_dict(), "target": target.to_dict()}
    return PreparedRun(model, task_of(config, train, valid, target, runtime), metadata, description)


def training_batcher(config: TranslationConfig, train: ParallelData, runtime: Runtime) -> TokenBudgetBatcher:
    """The training batches of text read into memory, for this process."""
    data = config.data
    return TokenBudgetBatcher(
        train,
        data.batch_tokens,
        data.batch_sentences,
        data.pool_size,
        shuffle=True,
        seed=config.train.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )


def task_of(
    config: TranslationConfig, train: TrainingBatcher, valid: ParallelData, target: TextCodec, runtime: Runtime
) -> TranslationTask:
    return TranslationTask(
        train,
        valid,
        target,
        runtime.device,
        config.validation,
        config.decoding,
        label_smoothing=config.train.label_smoothing,
        validation_batch_tokens=config.data.batch_tokens,
    )


def check_prepared_codecs(prepared: PreparedParallel, saved: dict[str, Any]) -> None:
    """Refuse to resume a run on a prepared set whose tokenizers or vocabularies are not the run's."""
    for side in ("source", "target"):
        if canonical_descriptions(saved[side]) != canonical_descriptions(prepared.manifest.codecs[side]):
            kept, now = Vocab.from_dict(saved[side]["vocab"]), Vocab.from_dict(prepared.manifest.codecs[side]["vocab"])
            what = "vocabulary" if kept != now else "tokenizer"
            detail = f" ({vocabulary_change(kept, now)})" if kept != now else ""
            raise CheckpointError(
                f"the prepared data in {prepared.folder} has another {side} {what} than the run{detail}: it was "
                "prepared again since the run started. Point data.prepared at the data the run started with, "
                "choose another --run-dir, or pass --fresh to start over."
            )


def shared_tokenizers(data: ParallelDataConfig, run_dir: Path, runtime: Runtime) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers: the main process makes them (training SentencePiece into
    the run directory when the config asks for it) and the other processes receive them."""
    made = make_tokenizers(data, run_dir) if runtime.is_main else None
    described = None if made is None else [tokenizer.to_dict() for tokenizer in made]
    main = gather_objects(described, runtime)[0]
    assert main is not None  # the main process made them
    source, target = main
    return tokenizer_from_dict(source), tokenizer_from_dict(target)


def resumed_corpus(data: ParallelDataConfig, saved: dict[str, Any]) -> ParallelCorpus:
    """The corpus read with the run's own tokenizers; refuses training data whose vocabularies
    are no longer those of the run (the files changed since it started)."""
    source, target = TextCodec.from_dict(saved["source"]), TextCodec.from_dict(saved["target"])
    corpus = load_parallel_corpus(data, (source.tokenizer, target.tokenizer))
    sides = (
        (data.source_lang, source.vocab, corpus.source.vocab),
        (data.target_lang, target.vocab, corpus.target.vocab),
    )
    for lang, kept, built in sides:
        if built != kept:
            raise CheckpointError(
                f"the run's {lang} vocabulary ({len(kept)} tokens) is not the one its training data gives now "
                f"({len(built)} tokens; {vocabulary_change(kept, built)}): the files at data.train_prefix "
                f"({data.train_prefix}) changed since the run started. Restore them, choose another --run-dir, "
                "or pass --fresh to start over."
            )
    return corpus


TRANSLATION = TaskTraining(check_translation_config, MODEL_SECTIONS["translate"], prepare_translation)
