"""Logits processors on fixed, hand-written logits."""

import math
from collections.abc import Callable

import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.decoding import (
    BanTokens,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_processors,
    build_processors,
)
from seq2seq.decoding.processors import BanningProcessor, MinLength, NoRepeatNGram

NO_PREFIX = torch.zeros(2, 0, dtype=torch.long)
LOGITS = torch.tensor(
    [
        [1.0, 4.0, -2.0, 3.0, 0.5],
        [-1.0, 0.0, 2.0, -3.0, 5.0],
    ]
)


def kept(logits: torch.Tensor) -> list[set[int]]:
    """The token ids of each row that keep a finite logit."""
    return [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in logits]


def test_ban_tokens_gives_minus_infinity_and_leaves_the_rest() -> None:
    out = BanTokens([0, 3])(NO_PREFIX, LOGITS)
    assert kept(out) == [{1, 2, 4}, {1, 2, 4}]
    assert torch.equal(out[:, [1, 2, 4]], LOGITS[:, [1, 2, 4]])


BANS_IN_PLACE = [
    (BanTokens([0, 3]), NO_PREFIX),
    (MinLength(eos_id=1, min_lengths=torch.tensor([2, 0]), prompt_length=0), torch.tensor([[4], [4]])),
    (NoRepeatNGram(2), torch.tensor([[2, 4, 2], [0, 1, 3]])),
]


@pytest.mark.parametrize(("ban", "prefix"), BANS_IN_PLACE, ids=["tokens", "min_length", "no_repeat"])
def test_a_ban_in_place_writes_what_the_processor_returns(ban: BanningProcessor, prefix: torch.Tensor) -> None:
    logits = LOGITS.clone()
    returned = ban(prefix, logits)
    assert torch.equal(logits, LOGITS)  # the processor left its input alone
    assert kept(returned) != kept(LOGITS)  # and banned something
    assert ban.ban_(prefix, logits) is logits
    assert torch.equal(logits, returned)


def test_min_length_with_an_eos_outside_the_vocabulary_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="eos id 7 is outside the vocabulary of 5"):
        MinLength(eos_id=7, min_lengths=torch.tensor([2, 0]), prompt_length=0)(NO_PREFIX, LOGITS)


def test_banned_tokens_are_never_sampled_even_with_huge_logits() -> None:
    logits = torch.zeros(64, 6)
    logits[:, 2] = 1e4
    logits[:, 5] = 1e4
    probs = BanTokens([2, 5])(torch.zeros(64, 0, dtype=torch.long), logits).softmax(dim=-1)
    generator = torch.Generator().manual_seed(0)
    draws = torch.multinomial(probs, num_samples=20, replacement=True, generator=generator)
    assert not torch.isin(draws, torch.tensor([2, 5])).any()


def test_ban_tokens_outside_the_vocabulary_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        BanTokens([7])(NO_PREFIX, LOGITS)


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits() -> None:
    prefix = torch.tensor([[1, 2, 1], [3, 3, 3]])  # row 0: 4.0 and -2.0 seen; row 1: -3.0 seen
    out = RepetitionPenalty(2.0)(prefix, LOGITS)
    assert out[0, 1] == LOGITS[0, 1] / 2
    assert out[0, 2] == LOGITS[0, 2] * 2
    assert out[1, 3] == LOGITS[1, 3] * 2
    unseen = torch.ones_like(LOGITS, dtype=torch.bool)
    unseen[0, [1, 2]] = False
    unseen[1, 3] = False
    assert torch.equal(out[unseen], LOGITS[unseen])


def test_repetition_penalty_makes_a_seen_token_less_likely() -> None:
    prefix = torch.tensor([[1, 1], [2, 2]])  # one repeated token per row
    before = LOGITS.softmax(dim=-1)
    after = RepetitionPenalty(1.5)(prefix, LOGITS).softmax(dim=-1)
    assert (after.gather(1, prefix) < before.gather(1, prefix)).all()


def test_temperature_scales_logits() -> None:
    assert torch.allclose(Temperature(0.5)(NO_PREFIX, LOGITS), LOGITS * 2)
    hot = Temperature(10.0)(NO_PREFIX, LOGITS).softmax(dim=-1)
    assert hot.max() < LOGITS.softmax(dim=-1).max()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_top_k_keeps_exactly_the_k_largest(k: int) -> None:
    out = TopK(k)(NO_PREFIX, LOGITS)
    expected = [set(row.topk(k).indices.tolist()) for row in LOGITS]
    assert kept(out) == expected
    assert torch.equal(out[torch.isfinite(out)], LOGITS[torch.isfinite(out)])


def test_top_k_keeps_exactly_k_among_ties() -> None:
    out = TopK(2)(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 6))
    assert len(kept(out)[0]) == 2


def test_top_k_at_least_the_vocabulary_changes_nothing() -> None:
    assert torch.equal(TopK(5)(NO_PREFIX, LOGITS), LOGITS)
    assert torch.equal(TopK(50)(NO_PREFIX, LOGITS), LOGITS)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.tensor([[0.5, 0.05, 0.3, 0.15], [0.1, 0.2, 0.3, 0.4]]).log()
    prefix = torch.zeros(2, 0, dtype=torch.long)
    assert kept(TopP(0.65)(prefix, logits)) == [{0, 2}, {2, 3}]
    assert kept(TopP(0.85)(prefix, logits)) == [{0, 2, 3}, {1, 2, 3}]
    assert kept(TopP(1.0)(prefix, logits)) == [{0, 1, 2, 3}, {0, 1, 2, 3}]


def test_top_p_always_keeps_the_most_likely_token() -> None:
    out = TopP(0.01)(NO_PREFIX, LOGITS)
    assert kept(out) == [{1}, {4}]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Temperature(0.0),
        lambda: TopK(0),
        lambda: TopP(0.0),
        lambda: TopP(1.5),
        lambda: RepetitionPenalty(0),
        lambda: BanTokens([]),
    ],
)
def test_processors_reject_out_of_range_settings(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_build_processors_uses_the_fixed_order() -> None:
    config = DecodeConfig(method="sample", temperature=0.7, top_k=3, top_p=0.9, repetition_penalty=1.3)
    processors = build_processors(config, banned_ids=[0, 1])
    assert [type(p) for p in processors] == [BanTokens, RepetitionPenalty, Temperature, TopK, TopP]


def test_build_processors_leaves_out_those_that_change_nothing() -> None:
    assert build_processors(DecodeConfig(method="sample"), banned_ids=[]) == []
    only_bans = build_processors(DecodeConfig(method="sample"), banned_ids=[0])
    assert [type(p) for p in only_bans] == [BanTokens]


def test_build_processors_for_greedy_keeps_only_bans_and_penalty() -> None:
    config = DecodeConfig(method="greedy", temperature=0.7, top_k=3, top_p=0.9, repetition_penalty=1.3)
    assert [type(p) for p in build_processors(config, [0])] == [BanTokens, RepetitionPenalty]
    zero_temperature = DecodeConfig(method="sample", temperature=0.0, top_k=3)
    assert [type(p) for p in build_processors(zero_temperature, [0])] == [BanTokens]


def test_apply_processors_chains_in_order() -> None:
    processors = [BanTokens([1]), TopK(2)]
    out = apply_processors(processors, NO_PREFIX, LOGITS)
    assert kept(out) == [{0, 3}, {2, 4}]
    assert math.isinf(out[0, 1].item())
    assert torch.equal(apply_processors([], NO_PREFIX, LOGITS), LOGITS)


def test_min_length_bans_eos_only_in_rows_below_their_minimum() -> None:
    eos, prompt_length = 2, 1
    prefix = torch.tensor([[1, 4, 4], [1, 4, 4]])  # two tokens generated after the prompt
    out = MinLength(eos, torch.tensor([3, 2]), prompt_length)(prefix, LOGITS)
    assert kept(out) == [{0, 1, 3, 4}, {0, 1, 2, 3, 4}]
    assert torch.equal(out[0, [0, 1, 3, 4]], LOGITS[0, [0, 1, 3, 4]])
    assert torch.equal(out[1], LOGITS[1])


def test_min_length_of_zero_changes_nothing() -> None:
    assert torch.equal(MinLength(2, torch.tensor([0, 0]), 0)(NO_PREFIX, LOGITS), LOGITS)


def test_min_length_needs_one_length_per_row() -> None:
    with pytest.raises(ValueError, match="built for 3 rows"):
        MinLength(2, torch.tensor([1, 1, 1]), 0)(NO_PREFIX, LOGITS)
    with pytest.raises(ValueError, match="lengths >= 0"):
        MinLength(2, torch.tensor([-1, 1]), 0)


def test_no_repeat_ngram_bans_the_tokens_that_complete_a_seen_ngram() -> None:
    prefix = torch.tensor([[1, 2, 3, 1, 2], [1, 2, 3, 4, 0]])  # row 0 ends in (1, 2), seen before 3
    assert kept(NoRepeatNGram(3)(prefix, LOGITS)) == [{0, 1, 2, 4}, {0, 1, 2, 3, 4}]
    bigram_prefix = torch.tensor([[4, 1, 4, 3, 4], [0, 1, 1, 2, 3]])  # row 0: 4 came before 1 and 3
    assert kept(NoRepeatNGram(2)(bigram_prefix, LOGITS)) == [{0, 2, 4}, {0, 1, 2, 3, 4}]


def test_no_repeat_unigram_bans_every_token_seen() -> None:
    prefix = torch.tensor([[1, 3, 1], [0, 0, 0]])
    assert kept(NoRepeatNGram(1)(prefix, LOGITS)) == [{0, 2, 4}, {1, 2, 3, 4}]


def test_no_repeat_ngram_on_a_short_prefix_changes_nothing() -> None:
    assert torch.equal(NoRepeatNGram(3)(torch.tensor([[1, 2], [3, 4]]), LOGITS), LOGITS)


def test_no_repeat_ngram_needs_n_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        NoRepeatNGram(0)


def test_build_processors_adds_the_ngram_block_after_the_bans() -> None:
    config = DecodeConfig(method="greedy", no_repeat_ngram=3, repetition_penalty=1.3)
    assert [type(p) for p in build_processors(config, [0])] == [BanTokens, NoRepeatNGram, RepetitionPenalty]
