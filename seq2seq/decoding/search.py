"""Greedy search and sampling: one loop over fixed-shape buffers.

``generate`` encodes the input, primes the decoder with a prefix (a prompt, or just bos),
repeats everything for the N samples of each input so that they run as one batch, and then
steps the decoder until every sequence has finished; finished sequences leave the decoder's
batch at regular checks (``LiveRows``). Greedy search and sampling differ only in how the
next token is chosen from the processed logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.decoding.processors import MinLength, apply_processors, build_processors, is_greedy
from seq2seq.models.decoder import DecoderState
from seq2seq.models.encoders import EncoderOutput
from seq2seq.models.seq2seq import Seq2Seq

SEARCH_METHODS = ("greedy", "sample", "beam")
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
    """Generates ``config.num_samples`` continuations of each input, or with method "beam" the
    ``config.n_best`` best of a beam search (see ``seq2seq.decoding.beam``).

    source: the task's input, (B, ...) on the model's device; (B, 0) for text generation.
    prefix: (B, P) ids that prime the decoder, the same length for every input; default bos.
    on_step: called after each step with the (B * N,) new tokens (pad once a sequence is done).
    should_stop: maps the (B * N, t) tokens generated so far to a (B * N,) bool tensor that is
        True for sequences that are done; eos always ends a sequence. Each step calls on_step
        first, so should_stop already sees the step's token.
    The repetition penalty counts the prefix as already seen. The model runs in eval mode and
    gets its previous mode back afterwards.
    """
    _check_config(config)
    if config.method == "beam" and (on_step is not None or should_stop is not None):
        raise ValueError("on_step and should_stop work with greedy search and sampling, not with beam search")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if config.method == "beam":
                hypotheses = _beam_search(model, source, config, special, prefix)
            else:
                hypotheses = _greedy_or_sample(model, source, config, special, prefix, on_step, should_stop)
    finally:
        model.train(was_training)
    return _usable_outside_inference_mode(hypotheses)


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
        _, state = model.decoder(prefix[:, :-1], encoder_output, state, project=False)
    repeat = torch.arange(batch_size, device=prefix.device).repeat_interleave(copies)  # (B * copies,)
    return PrimedBatch(
        encoder_output.index_select(repeat), state.index_select(repeat), prefix.index_select(0, repeat)
    )


@dataclass(frozen=True)
class LiveRows:
    """The rows of a search that the decoder still runs.

    Rows that have finished leave the decoder's batch at the checks every
    FINISHED_CHECK_INTERVAL steps, so later steps cost only what the unfinished rows need; the
    search itself keeps its full-size buffers, where finished rows are filled in.

    rows:  (A,) the live rows' places in the full batch, ascending
    total: the full batch size
    """

    rows: Tensor
    total: int

    @classmethod
    def every(cls, total: int, device: torch.device) -> LiveRows:
        return cls(torch.arange(total, device=device), total)

    @property
    def complete(self) -> bool:
        """Whether every row is live (the decoder's batch is the full batch)."""
        return len(self.rows) == self.total

    def select(self, full: Tensor) -> Tensor:
        """(total, ...) -> (A, ...) the live rows."""
        return full if self.complete else full.index_select(0, self.rows)

    def expand(self, live: Tensor | None, fill: float) -> Tensor | None:
        """(A, X) -> (total, X): the live rows in their places, ``fill`` elsewhere."""
        if live is None or self.complete:
            return live
        full = live.new_full((self.total, *live.shape[1:]), fill)
        return full.index_copy_(0, self.rows, live)

    def follow(self, parents: Tensor) -> Tensor:
        """(total,) full-batch rows that the next step continues -> (A,) the live rows' places
        in the decoder's batch (a live row continues a live row)."""
        if self.complete:
            return parents
        return torch.searchsorted(self.rows, parents.index_select(0, self.rows))

    def without(self, finished: Tensor) -> tuple[LiveRows, Tensor | None]:
        """These rows less the ``finished`` ones ((total,) bool), and the (A',) places in the
        decoder's batch that stay; None when no live row has finished."""
        staying = ~finished.index_select(0, self.rows)  # (A,)
        if bool(staying.all()):
            return self, None
        kept = staying.nonzero().squeeze(1)  # (A',)
        return LiveRows(self.rows.index_select(0, kept), self.total), kept


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


def _greedy_or_sample(
    model: Seq2Seq,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None,
    on_step: Callable[[Tensor], None] | None,
    should_stop: Callable[[Tensor], Tensor] | None,
) -> Hypotheses:
    """The shared loop: one token per sequence per step until all have finished.

    Each row stops at eos or at its maximum length (``length_limits``); before its minimum
    length eos is banned.
    """
    primed = prime_decoder(model, source, prefix, special, config.num_samples)
    encoder_output, state = primed.encoder_output, primed.state
    device = primed.prefix.device
    min_lengths, max_lengths = length_limits(config, encoder_output, device)  # (B * N,)
    steps = int(max_lengths.max())
    progress = _Progress.start(primed.prefix, steps, special.pad)
    banned = [token for token in special.never_generated() if config.ban_unk or token != special.unk]
    processors = build_processors(config, banned)
    if config.min_length > 0 or config.min_length_ratio > 0:
        processors.insert(0, MinLength(special.eos, min_lengths, primed.prefix.shape[1]))
    choose = _token_chooser(config, device)

    previous = primed.prefix[:, -1]  # (B * N,)
    live = LiveRows.every(len(previous), device)
    with _onednn_disabled():
        for step in range(steps):
            logits, state, attention = model.decoder.step(live.select(previous), state, encoder_output)  # (A, V)
            logits, attention = live.expand(logits, 0.0), live.expand(attention, 0.0)  # (B * N, V), (B * N, S)
            token = choose(apply_processors(processors, progress.so_far(step), logits))  # (B * N,)
            token = token.masked_fill(progress.finished, special.pad)
            progress.record(step, token, logits, attention)
            progress.finished |= (token == special.eos) | (progress.lengths >= max_lengths)
            if on_step is not None:
                on_step(token)
            if should_stop is not None:
                progress.finished |= _checked_stop(should_stop(progress.generated(step + 1)), len(token))
            previous = token
            if (step + 1) % FINISHED_CHECK_INTERVAL == 0:
                if bool(progress.finished.all()):
                    break
                live, kept = live.without(progress.finished)
                if kept is not None:
                    state, encoder_output = state.index_select(kept), encoder_output.index_select(kept)
    return _as_hypotheses(progress, config.num_samples)


def length_limits(
    config: DecodeConfig, encoder_output: EncoderOutput, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(rows,) the fewest tokens before eos and the most new tokens (eos included) of each row.

    A ratio applies to the row's source length: the minimum is rounded down, the maximum up.
    """
    rows = encoder_output.batch_size
    min_lengths = torch.full((rows,), config.min_length, device=device)
    max_lengths = torch.full((rows,), config.max_length, device=device)
    if config.min_length_ratio > 0 or config.max_length_ratio > 0:
        sources = source_lengths(encoder_output).to(device).float()  # (rows,)
        if config.min_length_ratio > 0:
            min_lengths = min_lengths.maximum((config.min_length_ratio * sources).floor().long())
        if config.max_length_ratio > 0:
            most = (config.max_length_ratio * sources).ceil().long()
            max_lengths = max_lengths.minimum(most).clamp(min=1)
    return min_lengths, max_lengths


def source_lengths(encoder_output: EncoderOutput) -> Tensor:
    """(rows,) the real positions of each source: from the mask, or all positions of the memory."""
    if encoder_output.mask is not None:
        return encoder_output.mask.sum(dim=1)
    if encoder_output.memory is not None:
        return torch.full((encoder_output.batch_size,), encoder_output.memory.shape[1])
    raise ValueError(
        "decode.min_length_ratio and decode.max_length_ratio need a model that reads a source, and this "
        "one has none; set them to 0 and use decode.min_length and decode.max_length"
    )


def _beam_search(
    model: Seq2Seq, source: Tensor, config: DecodeConfig, special: SpecialIds, prefix: Tensor | None
) -> Hypotheses:
    """Beam search, whose module builds on this one and is therefore imported here."""
    from seq2seq.decoding.beam import beam_search

    return beam_search(model, source, config, special, prefix)


@contextmanager
def _onednn_disabled() -> Iterator[None]:
    """Turns off oneDNN (mkldnn) while stepping: its CPU RNN kernels cost several times more
    than the native ones when called one token at a time."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


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


def _as_hypotheses(progress: _Progress, copies: int) -> Hypotheses:
    """Trims the buffers to the longest sequence and splits rows into (B, N)."""
    longest = int(progress.lengths.max())
    batch_size = len(progress.lengths) // copies
    tokens = progress.generated(longest).reshape(batch_size, copies, longest)
    attention = progress.attention
    if attention is not None:
        attention = attention[:, :longest].reshape(batch_size, copies, longest, attention.shape[-1])
    return Hypotheses(
        tokens=tokens,
        lengths=progress.lengths.view(batch_size, copies),
        scores=progress.scores.view(batch_size, copies),
        attention=attention,
    )


def _usable_outside_inference_mode(hypotheses: Hypotheses) -> Hypotheses:
    """Copies the results into ordinary tensors, which callers may change in place."""
    attention = hypotheses.attention
    return Hypotheses(
        tokens=hypotheses.tokens.clone(),
        lengths=hypotheses.lengths.clone(),
        scores=hypotheses.scores.clone(),
        attention=None if attention is None else attention.clone(),
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


def describe_decoding(config: DecodeConfig) -> str:
    """The decoding settings in words, as the recipes print them next to their results."""
    if config.method == "sample":
        parts = [
            f"sampling {config.num_samples} per input at temperature {config.temperature}, "
            f"top-k {config.top_k}, top-p {config.top_p}, seed {config.seed}"
        ]
    elif config.method == "greedy" or config.beam_size == 1:
        parts = ["greedy search"]
    else:
        penalty = {"none": "no length penalty", "average": "average length penalty"}.get(
            config.length_penalty, f"gnmt length penalty (alpha {config.alpha})"
        )
        parts = [f"beam search with {config.beam_size} beams", penalty, f"{config.n_best} best"]
    limit = f"at most {config.max_length} tokens"
    if config.max_length_ratio:
        limit += f" and {config.max_length_ratio} x the source length"
    parts.append(limit)
    if config.min_length or config.min_length_ratio:
        parts.append(f"at least {config.min_length} tokens and {config.min_length_ratio} x the source length")
    if config.no_repeat_ngram:
        parts.append(f"no repeated {config.no_repeat_ngram}-grams")
    parts.append("unk banned" if config.ban_unk else "unk allowed")
    return ", ".join(parts)


def _check_config(config: DecodeConfig) -> None:
    if config.method not in SEARCH_METHODS:
        raise ValueError(
            f"decode.method {config.method!r} is not available; choose one of: {', '.join(SEARCH_METHODS)}"
        )
    if config.max_length < 1:
        raise ValueError(f"decode.max_length must be >= 1 new token, got {config.max_length}")
    if config.num_samples < 1:
        raise ValueError(f"decode.num_samples must be >= 1, got {config.num_samples}")
