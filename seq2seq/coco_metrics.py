"""The COCO caption evaluation's metrics, as published caption tables report them.

``coco_scores(hypotheses, references)`` runs the scorers of the COCO caption evaluation
(pycocoevalcap): PTB tokenisation (Stanford CoreNLP's tokenizer, lowercased, punctuation
removed), BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE.

Three of them run in Java: the PTB tokenizer, METEOR and SPICE. Without a Java runtime
(``sudo apt-get install default-jre-headless``) they are reported as unavailable with that
line, and BLEU, ROUGE-L and CIDEr-D are computed over the project's own caption words
(``caption_words``) instead of PTB tokens. SPICE also needs Stanford CoreNLP 3.6.0, which
pycocoevalcap downloads on first use; where it cannot be fetched SPICE is reported unavailable,
with the reason and the two files to place by hand. A metric that fails never hides the others.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pycocoevalcap.spice
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from seq2seq.caption_metrics import caption_words
from seq2seq.metrics import reference_streams

JRE_INSTALL = "sudo apt-get install default-jre-headless"
COCO_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
#: Where pycocoevalcap keeps the Stanford CoreNLP files SPICE needs, and where they come from.
SPICE_LIB = Path(pycocoevalcap.spice.__file__).parent / "lib"
SPICE_CORENLP_FILES = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
SPICE_CORENLP_ZIP = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
DOWNLOAD_TIMEOUT_S = 30.0

#: Captions of each image: image number -> caption texts (tokenised or not).
Captions = dict[int, list[str]]


@dataclass
class CocoScores:
    """The COCO metrics that could be computed, and why the others could not.

    scores: metric name (``COCO_METRICS``) -> score as pycocoevalcap gives it (1.0 = 100)
    unavailable: metric name -> why it is missing and what to do
    tokenization: how the captions were split into words
    """

    scores: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    tokenization: str = ""

    def __str__(self) -> str:
        shown = " | ".join(f"{name} {100 * self.scores[name]:.2f}" for name in COCO_METRICS if name in self.scores)
        lines = [f"{shown}  (COCO caption evaluation, x100; tokens: {self.tokenization})"]
        lines += [f"  {name} unavailable: {reason}" for name, reason in self.unavailable.items()]
        return "\n".join(lines)


def java_available() -> bool:
    """Whether a ``java`` command is on the PATH."""
    return shutil.which("java") is not None


def coco_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> CocoScores:
    """The COCO caption evaluation of one caption per image against the image's references."""
    reference_streams(hypotheses, references)  # checks the counts and types
    result = CocoScores()
    java = java_available()
    tokenized: tuple[Captions, Captions] | None = None
    if java:
        try:
            tokenized = ptb_tokenized(references, hypotheses)
            result.tokenization = "PTB tokenizer (Stanford CoreNLP), lowercased, punctuation removed"
        except (OSError, subprocess.CalledProcessError) as error:  # e.g. a read-only pycocoevalcap folder
            result.tokenization = f"caption words (the PTB tokenizer failed: {error})"
    else:
        result.tokenization = f"caption words (the PTB tokenizer needs Java: {JRE_INSTALL})"
    if tokenized is None:
        tokenized = (
            {i: [" ".join(caption_words(r)) for r in refs] for i, refs in enumerate(references)},
            {i: [" ".join(caption_words(h))] for i, h in enumerate(hypotheses)},
        )
    tokenized_references, tokenized_hypotheses = tokenized
    scorers: list[tuple[tuple[str, ...], Callable[[], object]]] = [
        (("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"), Bleu),
        (("METEOR",), _meteor),
        (("ROUGE-L",), Rouge),
        (("CIDEr-D",), Cider),
        (("SPICE",), _spice),
    ]
    for names, make in scorers:
        if names[0] in ("METEOR", "SPICE") and not java:
            result.unavailable[names[0]] = f"needs a Java runtime; install one with: {JRE_INSTALL}"
            continue
        try:
            scorer = make()
            score = _score(scorer, tokenized_references, tokenized_hypotheses)
        except MetricUnavailable as error:
            result.unavailable[names[0]] = str(error)
            continue
        except (OSError, subprocess.CalledProcessError, ValueError) as error:
            result.unavailable[names[0]] = f"the scorer failed: {error}"
            continue
        values = score if isinstance(score, list) else [score]
        result.scores.update({name: float(value) for name, value in zip(names, values)})
    return result


class MetricUnavailable(RuntimeError):
    """A metric that cannot run on this machine; the message says why and what to do."""


def ptb_tokenized(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[Captions, Captions]:
    """Each image's references and hypothesis through the COCO evaluation's PTB tokenizer (Java),
    all in one run of it."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {("reference", i): [{"caption": caption} for caption in texts] for i, texts in enumerate(references)}
    captions.update({("hypothesis", i): [{"caption": caption}] for i, caption in enumerate(hypotheses)})
    tokenized = PTBTokenizer().tokenize(captions)
    return (
        {i: tokenized[("reference", i)] for i in range(len(references))},
        {i: tokenized[("hypothesis", i)] for i in range(len(hypotheses))},
    )


def _score(scorer: object, references: Captions, hypotheses: Captions) -> float | list[float]:
    """The corpus score of one pycocoevalcap scorer (BLEU gives four)."""
    if isinstance(scorer, Bleu):
        score, _ = scorer.compute_score(references, hypotheses, verbose=0)
    else:
        score, _ = scorer.compute_score(references, hypotheses)  # type: ignore[attr-defined]
    return [float(value) for value in score] if isinstance(score, list) else float(score)


def _meteor() -> object:
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _spice() -> object:
    """pycocoevalcap's SPICE, once the Stanford CoreNLP files are in place (fetched if they can be)."""
    missing = [name for name in SPICE_CORENLP_FILES if not (SPICE_LIB / name).is_file()]
    if missing:
        from pycocoevalcap.spice.get_stanford_models import get_stanford_models

        try:
            with _download_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(sys.stderr):  # its progress
                get_stanford_models()
        except OSError as error:  # URLError, timeouts, no space
            raise MetricUnavailable(
                f"Stanford CoreNLP could not be fetched ({error}). Place {' and '.join(missing)} from "
                f"{SPICE_CORENLP_ZIP} (folder stanford-corenlp-full-2015-12-09/) in {SPICE_LIB}"
            ) from None
    from pycocoevalcap.spice.spice import Spice

    return Spice()


@contextlib.contextmanager
def _download_timeout(seconds: float) -> Iterator[None]:
    """A socket timeout for a download that would otherwise wait forever on a silent network."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
