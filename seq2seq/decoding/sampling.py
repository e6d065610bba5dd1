"""Greedy search and sampling: one loop over fixed-shape buffers.

The decoder is primed with a prefix (a prompt, or just bos) and every input is repeated for
its N samples, so that they run as one batch; then the decoder steps until every sequence has
finished, and finished sequences leave the decoder's batch at regular checks (``LiveRows``).
Greedy search and sampling differ only in how the next token is chosen from the processed
logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.decoding.common import (
    DecodingModel,
    Hypotheses,
    LiveRows,
    SpecialIds,
    finished_check_interval,
    length_limits,
    onednn_disabled,
    prime_decoder,
)
from seq2seq.decoding.options import is_greedy
from seq2seq.decoding.processors import LogitsProcessor, MinLength, apply_processors, build_processors

TokenChooser = Callable[[Tensor], Tensor]


def greedy_or_sample(
    model: DecodingModel,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None = None,
    on_step: Callable[[Tensor], None] | None = None,
    should_stop: Callable[[Tensor], Tensor] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> Hypotheses:
    """``config.num_samples`` continuations of each input, one token per sequence per step
    until all have finished.

    The arguments are those of ``generate``, which calls this for methods "greedy" and
    "sample" with a checked config and the model in eval and inference mode. Each row stops at
    eos or at its maximum length (``length_limits``); before its minimum length eos is banned.
    """
    primed = prime_decoder(model, source, prefix, special, config.num_samples)
    encoder_output, state = primed.encoder_output, primed.state
    device = primed.prefix.device
    min_lengths, max_lengths = length_limits(config, encoder_output, device)  # (B * N,)
    steps = int(max_lengths.max())
    progress = _Progress.start(primed.prefix, steps, special.pad)
    chain = build_processors(config, special.banned(config))
    if config.min_length > 0 or config.min_length_ratio > 0:
        chain.insert(0, MinLength(special.eos, min_lengths, primed.prefix.shape[1]))
    chain.extend(processors)
    choose = _token_chooser(config, device)

    previous = primed.prefix[:, -1]  # (B * N,)
    live = LiveRows.every(len(previous), device)
    check_interval = finished_check_interval(device)
    with onednn_disabled():
        for step in range(steps):
            logits, state, attention = model.decoder.step(live.select(previous), state, encoder_output)  # (A, V)
            logits, attention = live.expand(logits, 0.0), live.expand(attention, 0.0)  # (B * N, V), (B * N, S)
            token = choose(apply_processors(chain, progress.so_far(step), logits))  # (B * N,)
            token = token.masked_fill(progress.finished, special.pad)
            progress.record(step, token, logits, attention)
            progress.finished |= (token == special.eos) | (progress.lengths >= max_lengths)
            if on_step is not None:
                on_step(token)
            if should_stop is not None:
                progress.finished |= _checked_stop(should_stop(progress.generated(step + 1)), len(token))
            previous = token
            if (step + 1) % check_interval == 0:
                if bool(progress.finished.all()):
                    break
                live, kept = live.without(progress.finished)
                if kept is not None:
                    state, encoder_output = state.index_select(kept), encoder_output.index_select(kept)
    return progress.as_hypotheses(config.num_samples)


@dataclass
class _Progress:
    """The loop's fixed-size buffers; rows = B * N.

    sequences: (rows, P + max_length) the prompt, then the generated tokens (pad after the end)
    scores:    (rows,) summed log-probabilities of the generated tokens
    lengths:   (rows,) generated tokens so far, eos included
    finished:  (rows,) True once a sequence has ended
    attention: (rows, max_length, S), allocated at the first step that has attention
    """

    sequences: Tensor
    prompt_length: int
    scores: Tensor
    lengths: Tensor
    finished: Tensor
    attention: Tensor | None = None

    @classmethod
    def start(cls, prefix: Tensor, max_length: int, pad_id: int) -> _Progress:
        rows, prompt_length = prefix.shape
        sequences = prefix.new_full((rows, prompt_length + max_length), pad_id)
        sequences[:, :prompt_length] = prefix
        return cls(
            sequences=sequences,
            prompt_length=prompt_length,
            scores=torch.zeros(rows, device=prefix.device),
            lengths=prefix.new_zeros(rows),
            finished=torch.zeros(rows, dtype=torch.bool, device=prefix.device),
        )

    def so_far(self, step: int) -> Tensor:
        """(rows, P + step) the prompt and the tokens generated before this step."""
        return self.sequences[:, : self.prompt_length + step]

    def generated(self, steps: int) -> Tensor:
        """(rows, steps) the first ``steps`` generated tokens."""
        return self.sequences[:, self.prompt_length : self.prompt_length + steps]

    def record(self, step: int, token: Tensor, logits: Tensor, attention: Tensor | None) -> None:
        """Stores the step's tokens (B * N,), their raw logits (B * N, V) and attention (B * N, S)."""
        log_probs = logits.float().log_softmax(dim=-1)  # (rows, V)
        chosen = log_probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)  # (rows,)
        self.scores += chosen.masked_fill(self.finished, 0.0)
        self.lengths += ~self.finished
        self.sequences[:, self.prompt_length + step] = token
        if attention is not None:
            if self.attention is None:
                max_length = self.sequences.shape[1] - self.prompt_length
                self.attention = attention.new_zeros(len(token), max_length, attention.shape[-1])
            self.attention[:, step] = attention.masked_fill(self.finished.unsqueeze(-1), 0.0)

    def as_hypotheses(self, copies: int) -> Hypotheses:
        """Trims the buffers to the longest sequence and splits rows into (B, N)."""
        longest = int(self.lengths.max())
        batch_size = len(self.lengths) // copies
        tokens = self.generated(longest).reshape(batch_size, copies, longest)
        attention = self.attention
        if attention is not None:
            attention = attention[:, :longest].reshape(batch_size, copies, longest, attention.shape[-1])
        return Hypotheses(
            tokens=tokens,
            lengths=self.lengths.view(batch_size, copies),
            scores=self.scores.view(batch_size, copies),
            attention=attention,
        )


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


def _checked_stop(done: Tensor, rows: int) -> Tensor:
    """Validates what a should_stop callback returned: a (B * N,) bool tensor."""
    if not isinstance(done, Tensor) or done.dtype != torch.bool or done.shape != (rows,):
        got = f"{done.dtype} tensor of shape {tuple(done.shape)}" if isinstance(done, Tensor) else repr(done)
        raise ValueError(f"should_stop must return a bool tensor of shape ({rows},), one flag per sequence; got {got}")
    return done
