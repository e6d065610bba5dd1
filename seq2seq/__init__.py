"""seq2seq: recurrent sequence generation with one attentional RNN decoder.

The Python API::

    from seq2seq import Translator, Captioner, TextGenerator, train

    train("translate", "multi30k_de_en")                     # or a YAML path, with overrides
    translator = Translator.from_checkpoint("runs/multi30k_de_en")
    translator.translate(["Ein Mann fährt Fahrrad."], beam=5, n_best=2)
    Captioner.from_checkpoint("runs/emoji_scratch").caption(["photo.png"], beam=3)
    TextGenerator.from_checkpoint("runs/shakespeare_char").generate("ROMEO:", length=200, seed=1)

The names are imported on first use, so that ``import seq2seq`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_PUBLIC = {
    "Translator": "seq2seq.inference.translator",
    "Translation": "seq2seq.inference.translator",
    "ForcedScore": "seq2seq.inference.translator",
    "Captioner": "seq2seq.inference.captioner",
    "CaptionResult": "seq2seq.inference.captioner",
    "TextGenerator": "seq2seq.inference.text_generator",
    "GeneratedText": "seq2seq.inference.text_generator",
    "Hypothesis": "seq2seq.inference.hypothesis",
    "train": "seq2seq.training.tasks",
    "register_encoder": "seq2seq.models.registry",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # the same names for type checkers ("X as X": re-exported)
    from seq2seq.inference.captioner import Captioner as Captioner
    from seq2seq.inference.captioner import CaptionResult as CaptionResult
    from seq2seq.inference.hypothesis import Hypothesis as Hypothesis
    from seq2seq.inference.text_generator import GeneratedText as GeneratedText
    from seq2seq.inference.text_generator import TextGenerator as TextGenerator
    from seq2seq.inference.translator import ForcedScore as ForcedScore
    from seq2seq.inference.translator import Translation as Translation
    from seq2seq.inference.translator import Translator as Translator
    from seq2seq.models.registry import register_encoder as register_encoder
    from seq2seq.training.tasks import train as train


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
