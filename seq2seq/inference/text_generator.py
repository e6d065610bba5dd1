"""Text generation with a trained language model: sampled, greedy, streamed.

generator = TextGenerator.from_checkpoint("runs/shakespeare_char")
print(generator.generate("ROMEO:", length=500, temperature=0.8, top_k=40, seed=1)[0].text)
for piece in generator.stream("ROMEO:", length=200):
    print(piece, end="", flush=True)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from typing_extensions import Unpack

from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import TextCodec
from seq2seq.decoding import LogitsProcessor, SpecialIds, check_decode_config, generate
from seq2seq.inference.loading import (
    Checkpoints,
    DecodableModel,
    LoadedModel,
    TrainedRun,
    decoding_model,
    metadata_entry,
    read_trained_runs,
)
from seq2seq.inference.options import SamplingOptions, sampling_options
from seq2seq.models import Seq2Seq, build_language_model
from seq2seq.models.encoders import empty_source
from seq2seq.run_configs import TextGenConfig
from seq2seq.text import Tokenizer, UnknownTokensError, Vocab, tokenizer_from_dict

TASK = "textgen"


@dataclass(frozen=True)
class GeneratedText:
    """One generated continuation of a prime.

    text: the new text (the prime not included), up to and including the first stop string
    token_ids: the generated ids, as many as were generated before a stop
    """

    prime: str
    text: str
    token_ids: tuple[int, ...]


class TextGenerator(LoadedModel):
    """A trained language model, loaded once, with its tokenizer and generation defaults."""

    config: TextGenConfig

    def __init__(
        self, model: DecodableModel, codec: TextCodec, config: TextGenConfig, checkpoints: Sequence[Path]
    ) -> None:
        super().__init__(model, config, checkpoints)
        self.codec = codec

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoints,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        quantize: str | None = None,
    ) -> TextGenerator:
        """Load a run directory (its best checkpoint) or one step checkpoint directory.

        device, dtype, quantize and several checkpoints (an ensemble): see ``decoding_model``.
        """
        runs = read_trained_runs(checkpoint, TASK)
        first = runs[0]
        codec = TextCodec(
            tokenizer_from_dict(metadata_entry(first, "tokenizer")), Vocab.from_dict(metadata_entry(first, "vocab"))
        )

        def build(run: TrainedRun) -> Seq2Seq:
            config: TextGenConfig = run.config
            return build_language_model(config.decoder, len(codec.vocab), Vocab.pad_id)

        model = decoding_model(runs, build, device, dtype, quantize)
        return cls(model, codec, first.config, [run.directory for run in runs])

    @property
    def tokenizer(self) -> Tokenizer:
        return self.codec.tokenizer

    @property
    def vocab(self) -> Vocab:
        return self.codec.vocab

    def decode_config(
        self,
        length: int | None = None,
        num_samples: int | None = None,
        greedy: bool = False,
        **options: Unpack[SamplingOptions],
    ) -> DecodeConfig:
        """The checkpoint's ``decoding`` settings with these choices on top (None keeps each one):
        length: new tokens at most; greedy: always the most likely token; ``options``
        (``SamplingOptions``): temperature, top_k, top_p, repetition_penalty, seed, stop,
        no_repeat_ngram, ..."""
        if length is not None:
            options["max_length"] = length
        decode = sampling_options(self.config.decoding, num_samples, **options)
        if greedy:
            decode = replace(decode, method="greedy")
            check_decode_config(decode)
        return decode

    def prime_ids(self, prime: str, unknown: str = "error") -> torch.Tensor:
        """The prime's token ids, (1, P) on the model's device.

        unknown: "error" refuses characters or words the model never saw (naming them);
        "unk" maps them to <unk>.
        """
        tokens = self.tokenizer.tokenize(prime)
        if not tokens:
            raise ValueError("the prime is empty: give at least one character (for example a newline, '\\n')")
        try:
            ids = self.vocab.encode(tokens, unknown=unknown)
        except UnknownTokensError as error:
            advice = "Remove or replace them, or map them to <unk> (unknown='unk'; on the command line --unknown unk)."
            raise UnknownTokensError(error.tokens, advice) from None
        return torch.tensor([ids], device=self.device)

    def generate(
        self,
        prime: str = "\n",
        length: int | None = None,
        num_samples: int | None = None,
        greedy: bool = False,
        unknown: str = "error",
        processors: Sequence[LogitsProcessor] = (),
        **options: Unpack[SamplingOptions],
    ) -> list[GeneratedText]:
        """``num_samples`` continuations of ``prime``, generated together as one batch.

        length: new tokens at most. ``options``: temperature (0 is greedy), top_k, top_p and
        repetition_penalty shape each step's distribution in that order; seed makes the samples
        reproducible; a sample ends once it contains one of the ``stop`` strings. unknown:
        "error" refuses prime characters the model never saw, "unk" maps them to <unk>.
        processors: your own logits processors ``(prefix_ids (B, t), logits (B, V)) -> logits``,
        applied after the built-in ones. Special tokens (padding, start, unknown) are never generated.
        """
        decode = self.decode_config(length, num_samples, greedy, **options)
        run = _Run(self, decode, self.prime_ids(prime, unknown), processors)
        run.decode(on_tokens=None)
        return [GeneratedText(prime, text, tuple(ids)) for text, ids in zip(run.texts(), run.generated)]

    def stream(
        self,
        prime: str = "\n",
        length: int | None = None,
        greedy: bool = False,
        unknown: str = "error",
        processors: Sequence[LogitsProcessor] = (),
        **options: Unpack[SamplingOptions],
    ) -> Iterator[str]:
        """One continuation of ``prime``, yielded piece by piece as it is generated (the options
        are those of ``generate``). The pieces joined are the text ``generate`` would give with
        the same seed. Leaving the loop early stops the generation."""
        decode = self.decode_config(length, 1, greedy, **options)
        run = _Run(self, decode, self.prime_ids(prime, unknown), processors)
        pieces: queue.Queue[str | BaseException | None] = queue.Queue()
        printed = 0

        def on_tokens() -> None:
            nonlocal printed
            text = run.texts()[0]
            if len(text) > printed:
                pieces.put(text[printed:])
                printed = len(text)

        def work() -> None:
            try:
                run.decode(on_tokens)
            except BaseException as error:  # handed to the reading thread, which raises it
                pieces.put(error)
            else:
                pieces.put(None)

        worker = threading.Thread(target=work, name="seq2seq-stream", daemon=True)
        worker.start()
        try:
            while (piece := pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            run.cancelled.set()
            worker.join()


class _Run:
    """One call of ``generate``: the ids generated so far per sample, the stop strings, cancelling."""

    def __init__(
        self,
        generator: TextGenerator,
        decode: DecodeConfig,
        prefix: torch.Tensor,
        processors: Sequence[LogitsProcessor],
    ) -> None:
        self.generator = generator
        self.decode_config = decode
        self.prefix = prefix  # (1, P)
        self.processors = list(processors)
        self.generated: list[list[int]] = [[] for _ in range(decode.num_samples)]
        self.cancelled = threading.Event()

    def texts(self) -> list[str]:
        """Each sample's text so far, cut after its first stop string."""
        decode = self.generator.codec.decode
        return [cut_at_stop(decode(ids), self.decode_config.stop) for ids in self.generated]

    def decode(self, on_tokens: Callable[[], None] | None) -> None:
        vocab = self.generator.vocab
        special = SpecialIds(vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id)

        def on_step(tokens: torch.Tensor) -> None:  # (N,) this step's token of each sample
            for row, token in enumerate(tokens.tolist()):
                if token not in (vocab.pad_id, vocab.eos_id):
                    self.generated[row].append(token)
            if on_tokens is not None:
                on_tokens()

        def should_stop(_: torch.Tensor) -> torch.Tensor:  # (N,) True for samples that are done
            if self.cancelled.is_set():
                return torch.ones(len(self.generated), dtype=torch.bool, device=self.prefix.device)
            stops = self.decode_config.stop
            texts = [self.generator.codec.decode(ids) for ids in self.generated]
            return torch.tensor([any(s in text for s in stops) for text in texts], device=self.prefix.device)

        model, device = self.generator.model, self.prefix.device
        generate(
            model, empty_source(1, device), self.decode_config, special, self.prefix, on_step, should_stop,
            processors=self.processors,
        )  # fmt: skip


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text up to and including the first stop string."""
    ends = [text.index(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text
