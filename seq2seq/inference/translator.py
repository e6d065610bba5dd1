"""Translation with a trained model: batching sentences, beam or greedy search, forced decoding.

translator = Translator.from_checkpoint("runs/multi30k_de_en")
results = translator.translate(["Ein Mann fährt Fahrrad."], beam=5, n_best=2)
results[0].text, results[0].hypotheses[1].score
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F
from typing_extensions import Unpack

from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import Batch, ParallelData, TextCodec, TokenBudgetBatcher, encode_sources
from seq2seq.data.text_files import DataError
from seq2seq.decoding import generate
from seq2seq.inference.hypothesis import EMPTY, SPECIAL_IDS, Hypothesis, hypotheses_of_rows
from seq2seq.inference.loading import (
    Checkpoints,
    DecodableModel,
    LoadedModel,
    TrainedRun,
    decoding_model,
    metadata_entry,
    read_trained_runs,
)
from seq2seq.inference.options import SearchOptions, search_options
from seq2seq.inference.parallel_batches import default_parallel_batches, run_batches
from seq2seq.models import Seq2Seq, build_translation_model
from seq2seq.run_configs import TranslationConfig
from seq2seq.text import Vocab

TASK = "translate"
#: The default limit on a source line's tokens: this many times the training data.max_length,
#: or UNBOUNDED_TRAINING_LIMIT when training kept pairs of every length.
SOURCE_LIMIT_FACTOR = 4
UNBOUNDED_TRAINING_LIMIT = 1024
#: Padded source tokens per batch when translating (``DecodeBatching``): on 2 CPU cores the
#: fastest budget for greedy search and level with the best fixed batch for beam 5
#: (benchmarks/translate.py, part 5); and the sentences per batch when batching by sentences.
DEFAULT_BATCH_TOKENS = 5000
DEFAULT_BATCH_SENTENCES = 64


@dataclass(frozen=True)
class Translation:
    """The translations of one source line, best first (``n_best`` of them)."""

    source: str
    hypotheses: list[Hypothesis]

    @property
    def text(self) -> str:
        """The best translation."""
        return self.hypotheses[0].text

    @property
    def score(self) -> float:
        """The best translation's summed log-probability."""
        return self.hypotheses[0].score


@dataclass(frozen=True)
class ForcedScore:
    """How likely the model finds a given translation of a source line.

    log_probability: summed log-probability of the target's tokens and eos
    token_log_probabilities: one per target token, eos last
    tokens: the target's tokens as the model's vocabulary reads them (unknown ones as <unk>)
    """

    log_probability: float
    token_log_probabilities: list[float]
    tokens: list[str]

    @property
    def per_token(self) -> float:
        """The average log-probability per token (eos included)."""
        return self.log_probability / len(self.token_log_probabilities)


class Translator(LoadedModel):
    """A trained translation model, loaded once, with its tokenizers and decoding defaults."""

    config: TranslationConfig

    def __init__(
        self,
        model: DecodableModel,
        source: TextCodec,
        target: TextCodec,
        config: TranslationConfig,
        checkpoints: Sequence[Path],
    ) -> None:
        super().__init__(model, config, checkpoints)
        self.source = source
        self.target = target

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoints,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        quantize: str | None = None,
    ) -> Translator:
        """Load a run directory (its best checkpoint) or one step checkpoint directory.

        device, dtype, quantize and several checkpoints (an ensemble): see ``decoding_model``.
        """
        runs = read_trained_runs(checkpoint, TASK)
        source = TextCodec.from_dict(metadata_entry(runs[0], "source"))
        target = TextCodec.from_dict(metadata_entry(runs[0], "target"))

        def build(run: TrainedRun) -> Seq2Seq:
            config: TranslationConfig = run.config
            return build_translation_model(
                config.encoder, config.decoder, len(source.vocab), len(target.vocab), Vocab.pad_id
            )

        model = decoding_model(runs, build, device, dtype, quantize)
        return cls(model, source, target, runs[0].config, [run.directory for run in runs])

    def decode_config(self, **options: Unpack[SearchOptions]) -> DecodeConfig:
        """The checkpoint's ``decoding`` settings with ``options`` on top (``SearchOptions``:
        beam, greedy, n_best, max_length, max_length_ratio, min_length, min_length_ratio,
        length_penalty, alpha, no_repeat_ngram, ban_unk; None keeps the checkpoint's value)."""
        return search_options(self.config.decoding, **options)

    def translate(
        self,
        lines: str | Sequence[str],
        batch_size: int | None = None,
        attention: bool = False,
        max_source_tokens: int | None = None,
        batch_tokens: int | None = None,
        parallel_batches: int | None = None,
        **options: Unpack[SearchOptions],
    ) -> list[Translation]:
        """The translations of raw text lines, one ``Translation`` per line, in input order.

        Lines are batched in order of length (``DecodeBatching.choose``): ``batch_tokens`` padded
        source tokens at a time, or ``batch_size`` sentences when only that is given, with
        ``parallel_batches`` batches decoded at once (default: 2 on a CPU with 2 or more threads);
        an empty line gets the empty translation. ``options`` choose the search
        (``decode_config``), e.g. ``beam=5, n_best=2``; attention: keep each hypothesis's
        (T, S) attention over the source tokens. A line of more than ``max_source_tokens``
        tokens is refused with a DataError naming it (default: ``source_limit``; 0: no limit).
        """
        lines = [lines] if isinstance(lines, str) else list(lines)
        data = self.encode(lines, self.source_limit(max_source_tokens))
        batching = DecodeBatching.choose(batch_size, batch_tokens, parallel_batches)
        found = self.translate_data(data, self.decode_config(**options), batching, attention)
        return [Translation(line, hypotheses) for line, hypotheses in zip(lines, found)]

    def source_limit(self, max_source_tokens: int | None = None) -> int:
        """The most tokens a source line may have: ``max_source_tokens`` (0: no limit), by default
        SOURCE_LIMIT_FACTOR times the longest pairs training kept (data.max_length)."""
        if max_source_tokens is None:
            trained = self.config.data.max_length
            return SOURCE_LIMIT_FACTOR * trained if trained else UNBOUNDED_TRAINING_LIMIT
        if max_source_tokens < 0:
            raise ValueError(f"max_source_tokens must be >= 0 (0: no limit), got {max_source_tokens}")
        return max_source_tokens

    def encode(self, lines: Sequence[str], limit: int = 0) -> ParallelData:
        """Source lines as ids; a blank line becomes an empty source. A line of more than
        ``limit`` tokens (0: no limit) is refused with a DataError naming it."""
        data = encode_sources([line if line.strip() else "" for line in lines], self.source)
        too_long = [
            (number, len(ids)) for number, ids in enumerate(data.sources, start=1) if limit and len(ids) > limit
        ]
        if too_long:
            shown = ", ".join(f"line {number}: {count:,}" for number, count in too_long[:3])
            trained = self.config.data.max_length
            raise DataError(
                f"{len(too_long)} input line(s) have more than {limit:,} source tokens ({shown}); this model was "
                f"trained on pairs of {f'up to {trained}' if trained else 'any number of'} tokens. Split long "
                "lines into sentences, or raise the limit: --max-source-tokens N on the command line, "
                "max_source_tokens=N in Python (0: no limit)."
            )
        return data

    def translate_data(
        self, data: ParallelData, decode: DecodeConfig, batching: DecodeBatching, attention: bool = False
    ) -> list[list[Hypothesis]]:
        """The hypotheses of every source of ``data``, in data order: ``translate_data``."""
        return translate_data(self.model, data, self.target, decode, batching, attention)

    def source_tokens(self, line: str) -> list[str]:
        """The source tokens of ``line`` as the model reads them (what attention is over)."""
        return self.source.tokenizer.tokenize(line)

    def score(self, sources: Sequence[str], targets: Sequence[str], batch_size: int = 64) -> list[ForcedScore]:
        """Forced decoding: the log-probability the model gives each target as the translation
        of its source (teacher forcing, eos included; no search)."""
        if len(sources) != len(targets):
            raise ValueError(
                f"score needs one target per source, got {len(sources)} sources and {len(targets)} targets"
            )
        data = self.encode(sources)
        targets_ids = [self.target.encode(line) for line in targets]
        results: list[ForcedScore] = []
        for start in range(0, len(sources), batch_size):
            chunk = range(start, min(start + batch_size, len(sources)))
            results += self._score_batch([data.sources[i] for i in chunk], [targets_ids[i] for i in chunk])
        return results

    @torch.inference_mode()
    def _score_batch(self, sources: list[torch.Tensor], targets: list[list[int]]) -> list[ForcedScore]:
        pad, device = Vocab.pad_id, self.device
        source = _padded([ids.tolist() or [pad] for ids in sources], pad).to(device)  # (B, S)
        target_in = _padded([[Vocab.bos_id, *ids] for ids in targets], pad).to(device)  # (B, T)
        target_out = _padded([[*ids, Vocab.eos_id] for ids in targets], pad).to(device)  # (B, T)
        logits, _ = self.model(source, target_in)  # (B, T, V)
        log_probs = F.log_softmax(logits.float(), dim=-1).gather(-1, target_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        scores = []
        for row, ids in enumerate(targets):
            per_token = log_probs[row, : len(ids) + 1].tolist()
            words = [self.target.vocab.id_to_token(i) for i in ids]
            scores.append(ForcedScore(sum(per_token), per_token, words))
        return scores


def _padded(rows: list[list[int]], pad: int) -> torch.Tensor:
    """Rows of ids as one (B, max length) tensor, padded on the right."""
    width = max(len(row) for row in rows)
    return torch.tensor([row + [pad] * (width - len(row)) for row in rows], dtype=torch.long)


@dataclass(frozen=True)
class DecodeBatching:
    """How sources are grouped for decoding, longest first, and how many batches run at once.

    batch_tokens:     each batch holds at most this many padded source tokens (beam search runs
                      beam-size rows for each); 0: ``batch_sentences`` sources per batch instead
    parallel_batches: batches decoded side by side, each on its share of the CPU threads
                      (``seq2seq.inference.parallel_batches``); 0: ``default_parallel_batches``
    """

    batch_sentences: int = DEFAULT_BATCH_SENTENCES
    batch_tokens: int = 0
    parallel_batches: int = 0

    def __post_init__(self) -> None:
        if self.parallel_batches < 0:
            raise ValueError(f"parallel_batches must be >= 0 (0: automatic), got {self.parallel_batches}")

    @classmethod
    def choose(
        cls, batch_size: int | None = None, batch_tokens: int | None = None, parallel_batches: int | None = None
    ) -> DecodeBatching:
        """By ``batch_tokens`` when given (0: by sentences), by ``batch_size`` sentences when
        only that is given, else by DEFAULT_BATCH_TOKENS; ``parallel_batches`` None or 0: automatic."""
        for name, value in (("batch_size", batch_size), ("batch_tokens", batch_tokens)):
            if value is not None and value < (1 if name == "batch_size" else 0):
                raise ValueError(f"{name} must be >= {1 if name == 'batch_size' else 0}, got {value}")
        if batch_tokens is None:
            batch_tokens = 0 if batch_size is not None else DEFAULT_BATCH_TOKENS
        return cls(batch_size or DEFAULT_BATCH_SENTENCES, batch_tokens, parallel_batches or 0)

    def parallel_on(self, device: torch.device) -> int:
        """The batches decoded at once on ``device``."""
        return self.parallel_batches or default_parallel_batches(device)

    def batcher(self, data: ParallelData) -> TokenBudgetBatcher:
        if self.batch_tokens:
            return TokenBudgetBatcher(data, batch_tokens=self.batch_tokens, shuffle=False)
        return TokenBudgetBatcher(data, batch_sentences=self.batch_sentences, shuffle=False)

    def describe(self, device: torch.device) -> str:
        """E.g. "batches of 5,000 source tokens, 2 at once" (on ``device``)."""
        size = f"{self.batch_tokens:,} source tokens" if self.batch_tokens else f"{self.batch_sentences} sentences"
        return f"batches of {size}, {self.parallel_on(device)} at once"


def translate_data(
    model: DecodableModel,
    data: ParallelData,
    target: TextCodec,
    decode: DecodeConfig,
    batching: DecodeBatching,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """The ``decode.n_best`` translations of every source of ``data``, best first, in data order.

    Sources are batched by ``batching`` in order of length, so that padding stays small, and
    ``batching.parallel_on(device)`` batches are decoded at once; an empty source is not batched
    and gets the empty translation.
    """
    if decode.method not in ("beam", "greedy"):
        raise ValueError(f"translation decodes with beam or greedy search, got method {decode.method!r}")
    device = next(model.parameters()).device
    results = [[EMPTY] * decode.n_best for _ in range(len(data))]
    if not any(len(ids) for ids in data.sources):
        return results

    def translate_batch(batch: Batch) -> None:
        found = generate(model, batch.source.to(device), decode, SPECIAL_IDS)  # tokens (B, N, T)
        indices = batch.indices.tolist()
        lengths = [len(data.sources[index]) for index in indices]
        for index, hypotheses in zip(indices, hypotheses_of_rows(found, target, attention, lengths)):
            results[index] = hypotheses

    run_batches(batching.batcher(data).batches(), translate_batch, batching.parallel_on(device))
    return results
