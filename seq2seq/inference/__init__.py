"""Using trained models: load a checkpoint once, batch inputs, decode, return small dataclasses.

The Python API (``seq2seq.Translator``, ``Captioner``, ``TextGenerator``), the command line,
the benchmarks and the validation during training all decode through this package.
"""

from seq2seq.inference.captioner import Captioner, CaptionResult
from seq2seq.inference.hypothesis import Hypothesis
from seq2seq.inference.text_generator import GeneratedText, TextGenerator
from seq2seq.inference.translator import ForcedScore, Translation, Translator

__all__ = [
    "CaptionResult",
    "Captioner",
    "ForcedScore",
    "GeneratedText",
    "Hypothesis",
    "TextGenerator",
    "Translation",
    "Translator",
]
