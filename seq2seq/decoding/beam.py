"""Beam search, batched over inputs and beams with fixed (B, K) shapes.

Each step extends the K alive beams of every input by one token and takes the 2K best of the
K * V candidates. The eos candidates among the best K finish: they enter the input's pool of K
finished hypotheses, ranked by their length-penalised score. The best K candidates that did not
end become the next alive beams, and the decoder state follows them through ``index_select``
on the flattened (B * K) batch. Each step records only its tokens, backpointers and attention;
the returned hypotheses are recovered at the end by following the backpointers. With K = 1
this is greedy search. The inputs whose search has ended leave the decoder's batch (see
``LiveRows``), so that a batch costs less as its inputs finish.

Only the 2K best tokens of each beam can be among its input's 2K best candidates, so a step
needs no (B * K, V) log-probabilities: the built-in bans are written into the live rows' logits
in place, the 2K best logits of each row are taken, and the row's log-sum-exp (of the logits
before the bans, as a log-softmax followed by bans would give) turns them into
log-probabilities. Only a caller's own processors, which read whole rows of log-probabilities,
make the search compute those in full.

An input is done once its pool is full and no alive beam, penalised at its current length,
scores better than the worst finished hypothesis (without a length penalty no later hypothesis
could). At an input's maximum length its best K candidates finish whatever their last token, so
every input gets a result even from a model that never ends a sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
from seq2seq.decoding.processors import (
    BanningProcessor,
    BanTokens,
    LogitsProcessor,
    MinLength,
    NoRepeatNGram,
    apply_processors,
)


def beam_search(
    model: DecodingModel,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> Hypotheses:
    """The ``config.n_best`` best hypotheses of a search with ``config.beam_size`` beams per input.

    The arguments are those of ``generate``, which calls this for method "beam" with a checked
    config and the model in eval and inference mode; ``processors`` run on the (B * K, V)
    log-probabilities after the built-in bans. Hypotheses come best first by length-penalised
    score; their scores are the summed log-probabilities (as the processors leave them),
    without the penalty. Where the model allows fewer than N distinct hypotheses, the places
    left over have length 0 and score -inf.
    """
    beam_size = config.beam_size
    primed = prime_decoder(model, source, prefix, special, beam_size, share_memory=True)
    encoder_output, state = primed.encoder_output, primed.state
    min_lengths, max_lengths = length_limits(config, encoder_output, primed.prefix.device)  # (B * K,)
    last_step = max_lengths.view(-1, beam_size)[:, 0] - 1  # (B,)
    steps = int(last_step.max()) + 1
    prompt_length = primed.prefix.shape[1]
    bans = _beam_processors(config, special, min_lengths, prompt_length)
    beams = _Beams.start(primed.prefix, beam_size, steps)

    previous = primed.prefix[:, -1]  # (B * K,)
    live = LiveRows.every(len(previous), previous.device)
    check_interval = finished_check_interval(previous.device)
    with onednn_disabled():
        for step in range(steps):
            logits, state, attention = model.decoder.step(live.select(previous), state, encoder_output)  # (A, V)
            best_scores, best_tokens = _best_extensions(
                logits.float(), beam_size, bans, processors, live, beams.so_far(step)
            )  # (B * K, 2K) each
            penalty = _length_penalty(config, step + 1)
            attention = live.expand(attention, 0.0)  # (B * K, S) or None
            rows = beams.advance(step, best_scores, best_tokens, attention, special.eos, last_step == step, penalty)
            state = state.index_select(live.follow(rows))
            previous = beams.tokens[-1].view(-1)  # (B * K,)
            if (step + 1) % check_interval == 0:
                if bool(beams.done.all()):
                    break
                live, kept = live.without(beams.done.repeat_interleave(beam_size))
                if kept is not None:
                    state, encoder_output = state.index_select(kept), encoder_output.index_select(kept)
                    bans = _beam_processors(config, special, live.select(min_lengths), prompt_length)
    return beams.best(config.n_best, special.pad)


def _best_extensions(
    logits: Tensor,
    beam_size: int,
    bans: Sequence[BanningProcessor],
    processors: Sequence[LogitsProcessor],
    live: LiveRows,
    prefix_ids: Tensor,
) -> tuple[Tensor, Tensor]:
    """The 2K best next tokens of every beam and their log-probabilities, (B * K, 2K) each.

    logits: (A, V) of the live rows, the search's own: the built-in ``bans`` (built for the live
    rows) write into them. prefix_ids: (B * K, t) every row's tokens so far. Without
    ``processors`` only each row's 2K best logits are normalised, by the row's log-sum-exp taken
    before the bans; the caller's ``processors`` read the whole (B * K, V) log-probabilities.
    """
    per_beam = min(2 * beam_size, logits.shape[-1])
    normaliser = logits.logsumexp(dim=-1, keepdim=True)  # (A, 1), of the logits before the bans
    live_prefix = live.select(prefix_ids)  # (A, t)
    for ban in bans:
        ban.ban_(live_prefix, logits)
    if processors:
        log_probs = live.expand(logits.sub_(normaliser), float("-inf"))  # (B * K, V)
        return apply_processors(processors, prefix_ids, log_probs).topk(per_beam, dim=-1)
    best_logits, best_tokens = logits.topk(per_beam, dim=-1)  # (A, 2K)
    return live.expand(best_logits - normaliser, float("-inf")), live.expand(best_tokens, 0)


def _length_penalty(config: DecodeConfig, length: int) -> float:
    """What the summed log-probability of a hypothesis of ``length`` tokens is divided by."""
    if config.length_penalty == "gnmt":
        return ((5 + length) / 6) ** config.alpha
    if config.length_penalty == "average":
        return float(length)
    return 1.0


def _beam_processors(
    config: DecodeConfig, special: SpecialIds, min_lengths: Tensor, prompt_length: int
) -> list[BanningProcessor]:
    """Processors that only ban tokens, so that scores stay the model's log-probabilities.
    min_lengths: (rows,) the fewest tokens of each row the processors will see."""
    banned = special.banned(config)
    processors: list[BanningProcessor] = [BanTokens(banned)] if banned else []
    if config.no_repeat_ngram > 0:
        processors.append(NoRepeatNGram(config.no_repeat_ngram))
    if config.min_length > 0 or config.min_length_ratio > 0:
        processors.append(MinLength(special.eos, min_lengths, prompt_length))
    return processors


@dataclass
class _Pool:
    """The K best finished hypotheses of each input, best first; empty places score -inf.

    scores:      (B, K) summed log-probabilities divided by the length penalty
    raw_scores:  (B, K) summed log-probabilities
    ends:        (B, K) the step of the last token
    parents:     (B, K) the alive beam that the last token extended
    last_tokens: (B, K)
    """

    scores: Tensor
    raw_scores: Tensor
    ends: Tensor
    parents: Tensor
    last_tokens: Tensor

    @classmethod
    def empty(cls, batch_size: int, beam_size: int, device: torch.device) -> _Pool:
        no_scores = torch.full((batch_size, beam_size), float("-inf"), device=device)
        zeros = torch.zeros(batch_size, beam_size, dtype=torch.long, device=device)
        return cls(no_scores, no_scores, zeros, zeros, zeros)

    def add(self, scores: Tensor, raw_scores: Tensor, step: int, parents: Tensor, tokens: Tensor) -> _Pool:
        """Merges (B, K) new hypotheses (-inf where nothing finished); on ties the older stay."""
        beam_size = self.scores.shape[1]
        merged = torch.cat([self.scores, scores], dim=1)  # (B, 2K)
        keep = merged.sort(dim=1, descending=True, stable=True).indices[:, :beam_size]  # (B, K)
        ends = torch.full_like(parents, step)
        return _Pool(
            merged.gather(1, keep),
            _merge(self.raw_scores, raw_scores, keep),
            _merge(self.ends, ends, keep),
            _merge(self.parents, parents, keep),
            _merge(self.last_tokens, tokens, keep),
        )

    def top(self, n: int) -> _Pool:
        """The n best places of each input."""
        places = slice(0, n)
        return _Pool(
            self.scores[:, places],
            self.raw_scores[:, places],
            self.ends[:, places],
            self.parents[:, places],
            self.last_tokens[:, places],
        )


def _merge(old: Tensor, new: Tensor, keep: Tensor) -> Tensor:
    """(B, K) + (B, K) -> (B, K): the places ``keep`` picks from both side by side."""
    return torch.cat([old, new], dim=1).gather(1, keep)


@dataclass
class _Beams:
    """The search's state for B inputs with K beams each.

    sequences: (B * K, P + steps) the prompt and tokens of the alive beams, in beam order
    scores:    (B, K) summed log-probabilities of the alive beams, best first
    pool:      the finished hypotheses
    done:      (B,) inputs whose search has ended
    tokens, parents: per step, (B, K) the token each alive beam took and the beam it extended
    attention: per step, (B, K, S) the attention of the beams that the step extended
    """

    sequences: Tensor
    prompt_length: int
    scores: Tensor
    pool: _Pool
    done: Tensor
    tokens: list[Tensor]
    parents: list[Tensor]
    attention: list[Tensor]

    @classmethod
    def start(cls, prefix: Tensor, beam_size: int, steps: int) -> _Beams:
        """K identical beams per input from its (B * K, P) repeated prefix."""
        rows, prompt_length = prefix.shape
        batch_size = rows // beam_size
        sequences = prefix.new_zeros(rows, prompt_length + steps)
        sequences[:, :prompt_length] = prefix
        scores = torch.full((batch_size, beam_size), float("-inf"), device=prefix.device)
        scores[:, 0] = 0.0  # the beams start identical, so only the first one is extended at first
        done = torch.zeros(batch_size, dtype=torch.bool, device=prefix.device)
        pool = _Pool.empty(batch_size, beam_size, prefix.device)
        return cls(sequences, prompt_length, scores, pool, done, tokens=[], parents=[], attention=[])

    def so_far(self, step: int) -> Tensor:
        """(B * K, P + step) the prompt and the tokens of each alive beam."""
        return self.sequences[:, : self.prompt_length + step]

    def advance(
        self,
        step: int,
        best_log_probs: Tensor,
        best_tokens: Tensor,
        attention: Tensor | None,
        eos_id: int,
        at_limit: Tensor,
        penalty: float,
    ) -> Tensor:
        """Extends the beams by one token.

        best_log_probs, best_tokens: (B * K, 2K) the 2K best next tokens of each beam (or all
        of them, where the vocabulary is smaller) and their processed log-probabilities.
        attention: (B * K, S) or None. at_limit: (B,) inputs at their last step, whose best
        candidates finish whatever their token. penalty: the length penalty at this step.
        Returns the (B * K,) rows of the old beams that the new ones continue.
        """
        beam_size = self.scores.shape[1]
        scores, parents, tokens = self._candidates(best_log_probs, best_tokens)  # (B, 2K) each, best first
        ended = tokens == eos_id

        best = slice(0, beam_size)
        finishing = (ended[:, best] | at_limit.unsqueeze(-1)) & ~self.done.unsqueeze(-1)  # (B, K)
        penalised = (scores[:, best] / penalty).masked_fill(~finishing, float("-inf"))
        self.pool = self.pool.add(penalised, scores[:, best], step, parents[:, best], tokens[:, best])

        going_on = ended.long().sort(dim=1, stable=True).indices[:, :beam_size]  # (B, K) best that did not end
        self.scores = scores.gather(1, going_on)
        self.done |= at_limit | (self.pool.scores[:, -1] >= self.scores[:, 0] / penalty)
        return self._record(step, parents.gather(1, going_on), tokens.gather(1, going_on), attention)

    def _candidates(self, beam_scores: Tensor, beam_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The 2K best extensions of each input: summed scores, parent beams, tokens; (B, 2K) each.

        They are among the 2K best tokens of each beam, (B * K, 2K) ``beam_scores`` and
        ``beam_tokens``, so only those are summed and compared.
        """
        batch_size, beam_size = self.scores.shape
        per_beam = beam_scores.shape[-1]
        candidates = self.scores.unsqueeze(-1) + beam_scores.view(batch_size, beam_size, per_beam)  # (B, K, 2K)
        scores, ids = candidates.view(batch_size, -1).topk(2 * beam_size, dim=1)  # (B, 2K)
        return scores, ids // per_beam, beam_tokens.view(batch_size, -1).gather(1, ids)

    def _record(self, step: int, parents: Tensor, tokens: Tensor, attention: Tensor | None) -> Tensor:
        """Stores the new beams' (B, K) parents and tokens; returns the (B * K,) rows they continue."""
        batch_size, beam_size = parents.shape
        self.tokens.append(tokens)
        self.parents.append(parents)
        if attention is not None:
            self.attention.append(attention.view(batch_size, beam_size, -1))
        first_rows = torch.arange(batch_size, device=parents.device).unsqueeze(-1) * beam_size  # (B, 1)
        rows = (first_rows + parents).view(-1)  # (B * K,)
        self.sequences = self.sequences.index_select(0, rows)
        self.sequences[:, self.prompt_length + step] = tokens.view(-1)
        return rows

    def best(self, n_best: int, pad_id: int) -> Hypotheses:
        """The n best finished hypotheses of each input, recovered along the backpointers."""
        finished = self.pool.top(n_best)
        lengths = torch.where(torch.isfinite(finished.scores), finished.ends + 1, 0)  # (B, N)
        longest = int(lengths.max())
        tokens = torch.full((*lengths.shape, longest), pad_id, dtype=torch.long, device=lengths.device)
        attention = None
        if self.attention:
            attention = self.attention[0].new_zeros(*lengths.shape, longest, self.attention[0].shape[-1])

        beam = finished.parents  # (B, N) the alive beam that holds each hypothesis after a step
        for step in reversed(range(longest)):
            ending = finished.ends == step
            tokens[:, :, step] = torch.where(ending, finished.last_tokens, self.tokens[step].gather(1, beam))
            parent = torch.where(ending, finished.parents, self.parents[step].gather(1, beam))
            if attention is not None:
                along_source = parent.unsqueeze(-1).expand(-1, -1, attention.shape[-1])  # (B, N, S)
                attention[:, :, step] = self.attention[step].gather(1, along_source)
            beam = parent

        outside = torch.arange(longest, device=lengths.device) >= lengths.unsqueeze(-1)  # (B, N, T)
        if attention is not None:
            attention = attention.masked_fill(outside.unsqueeze(-1), 0.0)
        return Hypotheses(tokens.masked_fill(outside, pad_id), lengths, finished.raw_scores, attention)
