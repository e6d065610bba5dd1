"""Greedy search and sampling: one loop over fixed-shape buffers.

``generate`` encodes the input, primes the decoder with a prefix (a prompt, or just bos),
repeats everything for the N samples of each input so that they run as one batch, and then
steps the decoder until every sequence has finished. Greedy search and sampling differ only
in how the next token is chosen from the processed logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.decoding.processors import apply_processors, build_processors, is_greedy
from seq2seq.models.decoder import DecoderState
from seq2seq.models.encoders import EncoderOutput
from seq2seq.models.seq2seq import Seq2Seq

SEARCH_METHODS = ("greedy", "sample")
# Steps between the checks whether every sequence has finished (each one waits for the device).
FINISHED_CHECK_INTERVAL = 4

TokenChooser = Callable[[Tensor], Tensor]


@dataclass
class Hypotheses:
    """What a search returns for B inputs with N hypotheses each.

    tokens:    (B, N, T) generated ids after the prefix, eos included, padded with pad
    lengths:   (B, N) generated tokens, eos included
    scores:    (B, N) sum of the model's log-probabilities (of the raw logits) of those tokens
    attention: (B, N, T, S) attention weights at each generated token, or None without attention
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    attention: Tensor | None


@dataclass(frozen=True)
class SpecialIds:
    """The ids of the vocabulary's special tokens."""

    pad: int
    bos: int
    eos: int
    unk: int

    def never_generated(self) -> list[int]:
        """The ids a search must never produce: every special token except eos."""
        return sorted({self.pad, self.bos, self.unk} - {self.eos})


@dataclass
class PrimedBatch:
    """The decoder ready to generate, with every input repeated ``copies`` times.

    encoder_output and state have batch B * copies; prefix: (B * copies, P). Row
    ``b * copies + i`` is copy i of input b.
    """

    encoder_output: EncoderOutput
    state: DecoderState
    prefix: Tensor


def generate(
    model: Seq2Seq,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None = None,
    on_step: Callable[[Tensor], None] | None = None,
    should_stop: Callable[[Tensor], Tensor] | None = None,
) -> Hypotheses:
    """Generates ``config.num_samples`` continuations of each input.

    source: the task's input, (B, ...) on the model's device; (B, 0) for text generation.
    prefix: (B, P) ids that prime the decoder, the same length for every input; default bos.
    on_step: called after each step with the (B * N,) new tokens (pad once a sequence is done).
    should_stop: maps the (B * N, t) tokens generated so far to a (B * N,) bool tensor that is
        True for sequences that are done; eos always ends a sequence.
    The model runs in eval mode and gets its previous mode back afterwards.
    """
    _check_config(config)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _greedy_or_sample(model, source, config, special, prefix, on_step, should_stop)
    finally:
        model.train(was_training)


def prime_decoder(
    model: Seq2Seq, source: Tensor, prefix: Tensor | None, special: SpecialIds, copies: int
) -> PrimedBatch:
    """Encodes the input, runs the prefix but its last token through the decoder, and repeats.

    The prefix runs once per input under teacher forcing; only then are the encoder output
    and the state repeated ``copies`` times, so the prompt costs the same for any N.
    """
    encoder_output = model.encode(source)
    batch_size = encoder_output.batch_size
    if prefix is None:
        prefix = torch.full((batch_size, 1), special.bos, dtype=torch.long, device=source.device)
    _check_prefix(prefix, batch_size)
    prefix = prefix.to(source.device)
    state = model.decoder.init_state(encoder_output)
    if prefix.shape[1] > 1:
        _, state = model.decoder(prefix[:, :-1], encoder_output, state)
    repeat = torch.arange(batch_size, device=prefix.device).repeat_interleave(copies)  # (B * copies,)
    return PrimedBatch(
        encoder_output.index_select(repeat), state.index_select(repeat), prefix.index_select(0, repeat)
    )


def _greedy_or_sample(
    model: Seq2Seq,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None,
    on_step: Callable[[Tensor], None] | None,
    should_stop: Callable[[Tensor], Tensor] | None,
) -> Hypotheses:
    """The shared loop: one token per sequence per step until all have finished."""
    copies = config.num_samples
    primed = prime_decoder(model, source, prefix, special, copies)
    encoder_output, state = primed.encoder_output, primed.state
    rows, prompt_length = primed.prefix.shape  # rows = B * N
    device = primed.prefix.device

    sequences = torch.full(
        (rows, prompt_length + config.max_length), special.pad, dtype=torch.long, device=device
    )  # (B * N, P + max_length) the prompt, then the generated tokens
    sequences[:, :prompt_length] = primed.prefix
    scores = torch.zeros(rows, device=device)  # (B * N,)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)  # (B * N,)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)  # (B * N,)
    attention: Tensor | None = None  # (B * N, max_length, S), allocated at the first step
    processors = build_processors(config, special.never_generated())
    choose = _token_chooser(config, device)

    previous = primed.prefix[:, -1]  # (B * N,)
    for step in range(config.max_length):
        position = prompt_length + step
        logits, state, step_attention = model.decoder.step(previous, state, encoder_output)  # (B * N, V)
        token = choose(apply_processors(processors, sequences[:, :position], logits))
        token = token.masked_fill(finished, special.pad)  # (B * N,)
        log_probs = logits.float().log_softmax(dim=-1)  # (B * N, V)
        scores += log_probs.gather(-1, token.unsqueeze(-1)).squeeze(-1).masked_fill(finished, 0.0)
        lengths += ~finished
        sequences[:, position] = token
        if step_attention is not None:
            if attention is None:
                attention = step_attention.new_zeros(rows, config.max_length, step_attention.shape[-1])
            attention[:, step] = step_attention.masked_fill(finished.unsqueeze(-1), 0.0)
        finished |= token == special.eos
        if should_stop is not None:
            finished |= _checked_stop(should_stop(sequences[:, prompt_length : position + 1]), rows)
        if on_step is not None:
            on_step(token)
        previous = token
        if (step + 1) % FINISHED_CHECK_INTERVAL == 0 and bool(finished.all()):
            break

    return _as_hypotheses(sequences[:, prompt_length:], lengths, scores, attention, copies)


def _token_chooser(config: DecodeConfig, device: torch.device) -> TokenChooser:
    """argmax for greedy search; a draw from the softmax, seeded when the config has a seed."""
    if is_greedy(config):
        return _argmax
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed)
    return partial(_draw, generator=generator)


def _argmax(logits: Tensor) -> Tensor:
    """(B, V) -> (B,)"""
    return logits.argmax(dim=-1)


def _draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, V) -> (B,) one token drawn from softmax(logits)."""
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _as_hypotheses(
    generated: Tensor, lengths: Tensor, scores: Tensor, attention: Tensor | None, copies: int
) -> Hypotheses:
    """Trims the buffers to the longest sequence and splits rows into (B, N)."""
    longest = int(lengths.max())
    batch_size = generated.shape[0] // copies
    tokens = generated[:, :longest].reshape(batch_size, copies, longest)
    if attention is not None:
        attention = attention[:, :longest].reshape(batch_size, copies, longest, attention.shape[-1])
    return Hypotheses(
        tokens=tokens,
        lengths=lengths.view(batch_size, copies),
        scores=scores.view(batch_size, copies),
        attention=attention,
    )


def _checked_stop(done: Tensor, rows: int) -> Tensor:
    """Validates what a should_stop callback returned: a (B * N,) bool tensor."""
    if not isinstance(done, Tensor) or done.dtype != torch.bool or done.shape != (rows,):
        got = f"{done.dtype} tensor of shape {tuple(done.shape)}" if isinstance(done, Tensor) else repr(done)
        raise ValueError(
            f"should_stop must return a bool tensor of shape ({rows},), one flag per sequence; got {got}"
        )
    return done


def _check_prefix(prefix: Tensor, batch_size: int) -> None:
    if prefix.dim() != 2 or prefix.shape[1] < 1:
        raise ValueError(
            f"prefix must be a (batch, length >= 1) tensor of token ids, got shape {tuple(prefix.shape)}; "
            "start it with bos"
        )
    if prefix.shape[0] != batch_size:
        raise ValueError(
            f"prefix has {prefix.shape[0]} rows but the input has {batch_size}; give one prefix per input"
        )
    if prefix.dtype != torch.long:
        raise ValueError(f"prefix must hold token ids as torch.long, got {prefix.dtype}")


def _check_config(config: DecodeConfig) -> None:
    if config.method not in SEARCH_METHODS:
        raise ValueError(
            f"decode.method {config.method!r} is not available; choose one of: {', '.join(SEARCH_METHODS)}"
        )
    if config.max_length < 1:
        raise ValueError(f"decode.max_length must be >= 1 new token, got {config.max_length}")
    if config.num_samples < 1:
        raise ValueError(f"decode.num_samples must be >= 1, got {config.num_samples}")
