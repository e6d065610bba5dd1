"""Decoding modes of a trained translation model, each measured beside fp32 in the same run.

- int8 (dynamic quantization): beam 5 and greedy sentences/s and BLEU against fp32;
- batching: token budgets against fixed sentence batches, beam 5 and greedy;
- an ensemble of checkpoints: BLEU against its best member, speed against one model.

Speeds are of ``Translator.translate_data`` over the whole test set (tokenised once; batching,
search and detokenisation timed), after an untimed warm-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import say
from seq2seq import Translator
from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import ParallelData
from seq2seq.inference.translator import DecodeBatching
from seq2seq.metrics import corpus_bleu

BEAM = 5
SPEED_BATCH = 64  # the fixed batch of the headline speeds
SENTENCE_BATCHES = (32, 64, 128, 256)
TOKEN_BUDGETS = (1_000, 2_000, 3_500, 5_000, 8_000)  # padded source tokens per batch


@dataclass
class ModeRun:
    mode: str  # e.g. "fp32", "int8", "tokens 5000", "ensemble of 3"
    search: str  # "beam5" | "greedy"
    seconds: float
    sentences: int
    bleu: float

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds


def searches(translator: Translator) -> dict[str, DecodeConfig]:
    return {f"beam{BEAM}": translator.decode_config(beam=BEAM), "greedy": translator.decode_config(greedy=True)}


def timed(
    translator: Translator, data: ParallelData, references: list[str], mode: str, search: str, batching: DecodeBatching
) -> ModeRun:
    """One timed translation of ``data`` and the BLEU of its best translations."""
    decode = searches(translator)[search]
    started = time.perf_counter()
    results = translator.translate_data(data, decode, batching)
    seconds = time.perf_counter() - started
    bleu = corpus_bleu([best.text for best, *_ in results], references).score
    run = ModeRun(mode, search, seconds, len(data), bleu)
    say(f"  {mode:<16} {search:<6}: {run.sentences_per_second:6.1f} sentences/s, BLEU {bleu:.2f}")
    return run


def warmed_up(translator: Translator, sources: list[str]) -> ParallelData:
    """The sources encoded, after one small untimed translation."""
    data = translator.encode(sources)
    translator.translate_data(translator.encode(sources[:SPEED_BATCH]), searches(translator)["beam5"], DecodeBatching())
    return data


def int8_against_fp32(checkpoint: Path, sources: list[str], references: list[str]) -> list[ModeRun]:
    """fp32 and int8 of one checkpoint, beam 5 and greedy at SPEED_BATCH sentences per batch."""
    runs = []
    for mode, quantize in (("fp32", None), ("int8", "int8")):
        translator = Translator.from_checkpoint(checkpoint, "cpu", quantize=quantize)
        data = warmed_up(translator, sources)
        for search in searches(translator):
            runs.append(timed(translator, data, references, mode, search, DecodeBatching(SPEED_BATCH, 0)))
    return runs


def batching_runs(checkpoint: Path, sources: list[str], references: list[str]) -> list[ModeRun]:
    """Fixed sentence batches against token budgets, beam 5 and greedy."""
    translator = Translator.from_checkpoint(checkpoint, "cpu")
    data = warmed_up(translator, sources)
    choices = [(f"sentences {n}", DecodeBatching(n, 0)) for n in SENTENCE_BATCHES]
    choices += [(f"tokens {n}", DecodeBatching(SPEED_BATCH, n)) for n in TOKEN_BUDGETS]
    return [
        timed(translator, data, references, mode, search, batching)
        for search in searches(translator)
        for mode, batching in choices
    ]


def ensemble_against_members(checkpoints: list[Path], sources: list[str], references: list[str]) -> list[ModeRun]:
    """Each member alone and the ensemble of all, beam 5 at SPEED_BATCH sentences per batch."""
    runs = []
    for index, checkpoint in enumerate(checkpoints, start=1):
        translator = Translator.from_checkpoint(checkpoint, "cpu")
        say(f"  member {index}: {translator.checkpoint}")
        data = warmed_up(translator, sources)
        runs.append(timed(translator, data, references, f"member {index}", "beam5", DecodeBatching(SPEED_BATCH, 0)))
    ensemble = Translator.from_checkpoint(checkpoints, "cpu")
    data = warmed_up(ensemble, sources)
    mode = f"ensemble of {len(checkpoints)}"
    runs.append(timed(ensemble, data, references, mode, "beam5", DecodeBatching(SPEED_BATCH, 0)))
    return runs


def pick(runs: list[ModeRun], mode: str, search: str) -> ModeRun:
    return next(run for run in runs if run.mode == mode and run.search == search)


def fastest(runs: list[ModeRun], search: str, prefix: str) -> ModeRun:
    """The fastest run of ``search`` among the modes that start with ``prefix``."""
    chosen = [run for run in runs if run.search == search and run.mode.startswith(prefix)]
    return max(chosen, key=lambda run: run.sentences_per_second)
