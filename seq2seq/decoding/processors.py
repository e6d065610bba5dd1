"""Logits processors: small callables that reshape next-token logits before a choice.

Every processor follows one contract, ``(prefix_ids, logits) -> logits``: it reads the
tokens so far, ``(B, t)``, and returns new logits, ``(B, V)``, without changing its input.
Greedy search, sampling and beam search share them; ``build_processors`` chains the ones a
``DecodeConfig`` asks for greedy search and sampling in a fixed order: bans -> n-gram block ->
repetition penalty -> temperature -> top-k -> top-p. Beam search builds its own chain of the
processors that only ban tokens (see ``seq2seq.decoding.beam``). A caller's own processors run
after the built-in ones in every search.

The processors that only ban tokens (``BanTokens``, ``MinLength``, ``NoRepeatNGram``) also
offer ``ban_(prefix_ids, logits)``, which writes the same -inf into the logits it is given
instead of a copy: for a search that owns its logits and would otherwise copy a (B, V) tensor
per ban and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.decoding.options import is_greedy


class LogitsProcessor(Protocol):
    """``(prefix_ids (B, t), logits (B, V)) -> logits (B, V)``"""

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor: ...


class BanningProcessor(LogitsProcessor, Protocol):
    """A processor that only sets logits to -inf, and can do so in place: ``ban_`` changes and
    returns its ``logits`` argument."""

    def ban_(self, prefix_ids: Tensor, logits: Tensor) -> Tensor: ...


class BanTokens:
    """Gives the listed tokens a logit of -inf so that they are never chosen."""

    def __init__(self, ids: list[int]) -> None:
        if not ids:
            raise ValueError("BanTokens needs at least one token id to ban")
        if min(ids) < 0:
            raise ValueError(f"BanTokens: token ids must be >= 0, got {sorted(ids)}")
        self.ids = torch.tensor(sorted(set(ids)), dtype=torch.long)
        self.largest_id = max(ids)

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        return self.ban_(prefix_ids, logits.clone())

    def ban_(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        _check_in_vocabulary("BanTokens: token id", self.largest_id, logits)
        return logits.index_fill_(-1, self.ids.to(logits.device), float("-inf"))


class MinLength:
    """Bans eos from the rows that have generated fewer tokens than their minimum.

    min_lengths: (B,) the fewest tokens each row generates before eos.
    prompt_length: the tokens at the start of every prefix that were given, not generated.
    """

    def __init__(self, eos_id: int, min_lengths: Tensor, prompt_length: int) -> None:
        if min_lengths.dim() != 1 or bool((min_lengths < 0).any()):
            raise ValueError(f"MinLength needs a 1-d tensor of lengths >= 0, got {min_lengths.tolist()}")
        self.eos_id = eos_id
        self.min_lengths = min_lengths
        self.prompt_length = prompt_length

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        return self.ban_(prefix_ids, logits.clone())

    def ban_(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        if len(self.min_lengths) != len(logits):
            raise ValueError(f"MinLength was built for {len(self.min_lengths)} rows but the logits have {len(logits)}")
        _check_in_vocabulary("MinLength: eos id", self.eos_id, logits)
        generated = prefix_ids.shape[1] - self.prompt_length
        too_short = self.min_lengths.to(logits.device) > generated  # (B,)
        logits.select(-1, self.eos_id).masked_fill_(too_short, float("-inf"))  # the eos column, in place
        return logits


class NoRepeatNGram:
    """Bans every token that would complete an n-gram already in the prefix.

    With n = 1 no token appears twice. The n-grams of all rows are compared at once.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"no-repeat n-gram blocking needs n >= 1, got {n}")
        self.n = n

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        return self.ban_(prefix_ids, logits.clone())

    def ban_(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        if prefix_ids.shape[1] < self.n:
            return logits
        ngrams = prefix_ids.unfold(1, self.n, 1)  # (B, G, n) every n-gram so far
        last = prefix_ids[:, prefix_ids.shape[1] - self.n + 1 :]  # (B, n - 1) the n-gram being started
        repeats = (ngrams[:, :, :-1] == last.unsqueeze(1)).all(dim=-1)  # (B, G)
        vocab_size = logits.shape[-1]
        # The n-grams that do not repeat point at a spare last column, which is then dropped.
        completions = torch.where(repeats, ngrams[:, :, -1], vocab_size)  # (B, G)
        banned = torch.zeros(len(logits), vocab_size + 1, dtype=torch.bool, device=logits.device)
        return logits.masked_fill_(banned.scatter_(-1, completions, True)[:, :vocab_size], float("-inf"))


class RepetitionPenalty:
    """CTRL-style penalty on tokens already in the prefix.

    A positive logit is divided by the penalty and a negative one multiplied by it, so a
    penalty above 1 always makes a repeated token less likely.
    """

    def __init__(self, penalty: float) -> None:
        if penalty <= 0:
            raise ValueError(f"repetition penalty must be > 0 (1 disables it), got {penalty}")
        self.penalty = penalty

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        seen = logits.gather(-1, prefix_ids)  # (B, t)
        penalised = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(-1, prefix_ids, penalised)


class Temperature:
    """Divides the logits by t: below 1 sharpens the distribution, above 1 flattens it."""

    def __init__(self, t: float) -> None:
        if t <= 0:
            raise ValueError(f"temperature must be > 0, got {t}; use greedy search for temperature 0")
        self.t = t

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        return logits / self.t


class TopK:
    """Keeps exactly the k largest logits; the rest become -inf."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        self.k = k

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        if self.k >= logits.shape[-1]:
            return logits
        kept, indices = logits.topk(self.k, dim=-1)  # (B, k)
        return torch.full_like(logits, float("-inf")).scatter(-1, indices, kept)


class TopP:
    """Nucleus filtering: keeps the smallest set of most likely tokens whose probability reaches p.

    The most likely token is always kept.
    """

    def __init__(self, p: float) -> None:
        if not 0 < p <= 1:
            raise ValueError(f"top-p needs 0 < p <= 1 (1 disables it), got {p}")
        self.p = p

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.float().softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V) probability of the more likely tokens
        dropped = mass_before >= self.p
        filtered = sorted_logits.masked_fill(dropped, float("-inf"))
        return logits.scatter(-1, order, filtered)


def build_processors(config: DecodeConfig, banned_ids: list[int]) -> list[LogitsProcessor]:
    """The processors of greedy search and sampling, in order: bans, n-gram block, repetition
    penalty, temperature, top-k, top-p.

    Only processors that change something are included. Temperature, top-k and top-p never
    change the most likely token, so greedy search gets only the bans, the n-gram block and
    the penalty. The config is taken as checked (``check_decode_config``).
    """
    processors: list[LogitsProcessor] = []
    if banned_ids:
        processors.append(BanTokens(banned_ids))
    if config.no_repeat_ngram > 0:
        processors.append(NoRepeatNGram(config.no_repeat_ngram))
    if config.repetition_penalty != 1:
        processors.append(RepetitionPenalty(config.repetition_penalty))
    if is_greedy(config):
        return processors
    if config.temperature != 1:
        processors.append(Temperature(config.temperature))
    if config.top_k > 0:
        processors.append(TopK(config.top_k))
    if config.top_p < 1:
        processors.append(TopP(config.top_p))
    return processors


def apply_processors(processors: Sequence[LogitsProcessor], prefix_ids: Tensor, logits: Tensor) -> Tensor:
    """Runs the chain. prefix_ids: (B, t); logits: (B, V) -> (B, V)"""
    for processor in processors:
        logits = processor(prefix_ids, logits)
    return logits


def _check_in_vocabulary(what: str, token_id: int, logits: Tensor) -> None:
    """A clear error when ``token_id`` is no column of the (rows, V) ``logits``."""
    if not 0 <= token_id < logits.shape[-1]:
        raise ValueError(
            f"{what} {token_id} is outside the vocabulary of {logits.shape[-1]}; "
            "check that the special ids come from the model's vocabulary"
        )
