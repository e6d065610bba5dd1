"""Decoding modes of a trained translation model, each measured beside fp32 in the same run.

- int8 (dynamic quantization): beam 5 and greedy sentences/s and BLEU against fp32;
- batching: token budgets against fixed sentence batches, beam 5 and greedy;
- an ensemble of checkpoints: BLEU against its best member, speed against its members' mean speed alone.

Speeds are of ``Translator.translate_data`` over the whole test set (tokenised once; batching,
search and detokenisation timed), after an untimed warm-up. The choices that are compared with
each other are timed in TIMING_ROUNDS rounds, every other round in reverse order, and each
choice's fastest round counts: a machine that slows down or speeds up during the comparison then
weighs on every choice alike, and the comparison does not rest on one noisy timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import say
from seq2seq import Translator
from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import ParallelData
from seq2seq.inference.translator import DecodeBatching
from seq2seq.metrics import corpus_bleu

BEAM = 5
SPEED_BATCH = 64  # sentences per batch of the headline speeds, as in the comparison table
SENTENCE_BATCHES = (32, 64, 128, 256)
TOKEN_BUDGETS = (1_000, 2_000, 3_500, 5_000, 8_000)  # padded source tokens per batch
SEARCHES = (f"beam{BEAM}", "greedy")  # how the test set is translated, as named in the figures
TIMING_ROUNDS = 2  # timings of each compared choice (batchings; an ensemble and its members)


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


def job(
    translator: Translator, data: ParallelData, references: list[str], mode: str, search: str, batching: DecodeBatching
) -> Callable[[], ModeRun]:
    """A timed translation to run later (see ``in_rounds``)."""
    return lambda: timed(translator, data, references, mode, search, batching)


def warmed_up(translator: Translator, sources: list[str]) -> ParallelData:
    """The sources encoded, after one small untimed translation."""
    data = translator.encode(sources)
    translator.translate_data(translator.encode(sources[:SPEED_BATCH]), searches(translator)["beam5"], DecodeBatching())
    return data


def in_rounds(jobs: Sequence[Callable[[], ModeRun]], rounds: int = TIMING_ROUNDS) -> list[ModeRun]:
    """Each job's fastest of ``rounds`` timed runs, in the jobs' order; every other round runs
    the jobs in reverse order."""
    fastest_runs: dict[int, ModeRun] = {}
    for round_index in range(rounds):
        order = range(len(jobs)) if round_index % 2 == 0 else reversed(range(len(jobs)))
        for index in order:
            run = jobs[index]()
            if index not in fastest_runs or run.seconds < fastest_runs[index].seconds:
                fastest_runs[index] = run
    return [fastest_runs[index] for index in range(len(jobs))]


def int8_against_fp32(checkpoint: Path, sources: list[str], references: list[str]) -> list[ModeRun]:
    """fp32 and int8 of one checkpoint, beam 5 and greedy at SPEED_BATCH sentences per batch, in
    TIMING_ROUNDS rounds."""
    jobs = []
    for mode, quantize in (("fp32", None), ("int8", "int8")):
        translator = Translator.from_checkpoint(checkpoint, "cpu", quantize=quantize)
        data = warmed_up(translator, sources)
        jobs += [job(translator, data, references, mode, search, DecodeBatching(SPEED_BATCH, 0)) for search in SEARCHES]
    return in_rounds(jobs)


def batching_runs(checkpoint: Path, sources: list[str], references: list[str]) -> list[ModeRun]:
    """Fixed sentence batches against token budgets, beam 5 and greedy, in TIMING_ROUNDS rounds."""
    translator = Translator.from_checkpoint(checkpoint, "cpu")
    data = warmed_up(translator, sources)
    choices = [(f"sentences {n}", DecodeBatching(n, 0)) for n in SENTENCE_BATCHES]
    choices += [(f"tokens {n}", DecodeBatching(SPEED_BATCH, n)) for n in TOKEN_BUDGETS]
    return in_rounds(
        [job(translator, data, references, mode, search, batching) for search in SEARCHES for mode, batching in choices]
    )


def ensemble_against_members(checkpoints: list[Path], sources: list[str], references: list[str]) -> list[ModeRun]:
    """Each member alone and the ensemble of all, beam 5 at SPEED_BATCH sentences per batch, in
    TIMING_ROUNDS rounds: the members' runs, then the ensemble's."""
    translators = []
    for index, checkpoint in enumerate(checkpoints, start=1):
        translators.append((f"member {index}", Translator.from_checkpoint(checkpoint, "cpu")))
        say(f"  member {index}: {translators[-1][1].checkpoint}")
    translators.append((f"ensemble of {len(checkpoints)}", Translator.from_checkpoint(checkpoints, "cpu")))
    batching = DecodeBatching(SPEED_BATCH, 0)
    return in_rounds(
        [job(t, warmed_up(t, sources), references, mode, f"beam{BEAM}", batching) for mode, t in translators]
    )


def ensemble_speed_ratio(runs: list[ModeRun]) -> float:
    """The ensemble's speed (the last run) over its members' mean speed alone (the runs before)."""
    ensemble, members = runs[-1], runs[:-1]
    return ensemble.sentences_per_second / (sum(run.sentences_per_second for run in members) / len(members))


def pick(runs: list[ModeRun], mode: str, search: str) -> ModeRun:
    return next(run for run in runs if run.mode == mode and run.search == search)


def fastest(runs: list[ModeRun], search: str, prefix: str) -> ModeRun:
    """The fastest run of ``search`` among the modes that start with ``prefix``."""
    chosen = [run for run in runs if run.search == search and run.mode.startswith(prefix)]
    return max(chosen, key=lambda run: run.sentences_per_second)
