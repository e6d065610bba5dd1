"""Quality metrics: sacreBLEU corpus BLEU and chrF, perplexity and bits.

BLEU and chrF are computed by sacreBLEU on *detokenised* hypotheses against the *raw*
references, so that the figures compare with published ones; each score carries sacreBLEU's
signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`` for BLEU), which
says exactly how it was computed and belongs next to the number wherever it is reported.

References come in one of two forms:

- one reference per sentence: ``["A dog runs.", "Two men talk."]``;
- several per sentence (captioning): ``[["A dog runs.", "A dog is running."], ["Two men talk."]]``.
  Sentences may have different numbers of references (the signature then says ``nrefs:var``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

# The largest exponent ``perplexity`` takes, so that a diverged model gives a large finite number.
_MAX_NATS = 50.0

References = Sequence[str] | Sequence[Sequence[str]]


@dataclass(frozen=True)
class Score:
    """One corpus-level score with the signature that makes it reproducible."""

    name: str  # "BLEU" | "chrF"
    score: float  # 0..100
    signature: str  # sacreBLEU's, e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0
    details: str  # sacreBLEU's own line, e.g. "BLEU = 35.45 66.1/42.0/28.3/19.2 (BP = 0.981 ...)"

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}  ({self.signature})"


def corpus_bleu(hypotheses: Sequence[str], references: References) -> Score:
    """sacreBLEU corpus BLEU (13a tokenisation, mixed case, exponential smoothing)."""
    return _corpus_score("BLEU", BLEU(), hypotheses, references)


def corpus_chrf(hypotheses: Sequence[str], references: References) -> Score:
    """sacreBLEU corpus chrF (character 6-grams, beta 2, no word n-grams)."""
    return _corpus_score("chrF", CHRF(), hypotheses, references)


def perplexity(nats_per_token: float) -> float:
    """exp(loss), capped at exp(50) so that a diverged model still gives a finite number."""
    return math.exp(min(nats_per_token, _MAX_NATS))


def nats_to_bits(nats: float) -> float:
    """A loss in nats (natural log) expressed in bits (log base 2)."""
    return nats / math.log(2)


def _corpus_score(name: str, metric: Metric, hypotheses: Sequence[str], references: References) -> Score:
    """Score with ``metric``; its signature is read after scoring, when it knows the reference count."""
    streams = reference_streams(hypotheses, references)
    # sacreBLEU takes None for a missing reference; its annotation says Sequence[Sequence[str]].
    result = metric.corpus_score(list(hypotheses), streams)  # type: ignore[arg-type]
    return Score(name, float(result.score), str(metric.get_signature()), str(result))


def reference_streams(hypotheses: Sequence[str], references: References) -> list[list[str | None]]:
    """sacreBLEU's layout: stream k holds every sentence's k-th reference (None where it has fewer).

    Raises:
        ValueError: no hypotheses, a hypothesis that is not a string, a count that differs
            from the references', or a sentence without any reference.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be lists of sentences, not one string")
    if not hypotheses:
        raise ValueError("there are no hypotheses to score")
    if not all(isinstance(hypothesis, str) for hypothesis in hypotheses):
        raise ValueError("every hypothesis must be a string (detokenised text), not a list of tokens or ids")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: give exactly one entry "
            "(a reference, or a list of references) per hypothesis, in the same order"
        )
    per_sentence = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    for number, refs in enumerate(per_sentence, start=1):
        if not refs or not all(isinstance(reference, str) for reference in refs):
            raise ValueError(
                f"sentence {number}: its references must be a non-empty list of strings, got {references[number - 1]!r}"
            )
    count = max(len(refs) for refs in per_sentence)
    return [[refs[k] if k < len(refs) else None for refs in per_sentence] for k in range(count)]
