"""Beam search on tiny random language models and on hand-built Markov models whose answers are known."""

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config import DecodeConfig, DecoderConfig, TextEncoderConfig
from seq2seq.decoding import Hypotheses, SpecialIds, generate
from seq2seq.decoding import beam as beam_module
from seq2seq.decoding.common import PrimedBatch, prime_decoder
from seq2seq.models import DecoderState, Seq2Seq, build_language_model, build_translation_model
from seq2seq.models.encoders import EncoderOutput, PrimeEncoder, empty_source
from tests.test_search import BanOne, teacher_forced_scores

SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
A, B, C, D, E, F = range(4, 10)
WORDS = [A, B, C, D, E, F]
VOCAB = 10
LM_VOCAB = 20


class MarkovDecoder(nn.Module):
    """The next token depends on the previous one only: logits = table[previous].

    With a source it attends to position ``previous % S``, so that attention can be traced.
    """

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.table = table  # (V, V) log-probabilities, one row per previous token
        self.steps = 0  # calls of step()

    def prepare(self, encoder_output: EncoderOutput) -> EncoderOutput:
        return encoder_output

    def init_state(self, encoder_output: EncoderOutput) -> DecoderState:
        return DecoderState(torch.zeros(1, encoder_output.batch_size, 1))

    def forward(
        self, target_in: Tensor, encoder_output: EncoderOutput, state: DecoderState | None = None
    ) -> tuple[Tensor, DecoderState]:
        return self.table[target_in], state or self.init_state(encoder_output)

    def step(
        self, previous: Tensor, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        self.steps += 1
        attention = None
        if encoder_output.memory is not None:
            positions = encoder_output.memory.shape[1]
            attention = nn.functional.one_hot(previous % positions, positions).float()  # (B, S)
        return self.table[previous], state, attention


class PaddedSourceEncoder(nn.Module):
    """Reads (B, S) source ids padded with pad; only the mask and the shape matter."""

    def forward(self, source: Tensor) -> EncoderOutput:
        memory = torch.zeros(*source.shape, 1)  # (B, S, 1)
        return EncoderOutput(len(source), memory=memory, mask=source != SPECIAL.pad)


def markov(rules: dict[int, dict[int, float]]) -> Tensor:
    """(V, V) log-probabilities; rows not in ``rules`` are uniform over the words (never eos)."""
    probs = torch.zeros(VOCAB, VOCAB)
    probs[:, WORDS] = 1.0 / len(WORDS)
    for previous, following in rules.items():
        probs[previous] = 0.0
        for token, prob in following.items():
            probs[previous, token] = prob
    return probs.log()


def random_table(can_end: bool = False) -> Tensor:
    """(V, V) random log-probabilities; unless ``can_end``, eos never follows."""
    logits = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0)) * 2
    if not can_end:
        logits[:, SPECIAL.eos] = float("-inf")
    return logits.log_softmax(dim=-1)


def markov_model(table: Tensor, with_source: bool = False) -> Seq2Seq:
    return Seq2Seq(PaddedSourceEncoder() if with_source else PrimeEncoder(), MarkovDecoder(table))


def sources(*lengths: int) -> Tensor:
    """(B, S) word ids padded on the right to the longest length."""
    batch = torch.full((len(lengths), max(lengths)), SPECIAL.pad)
    for row, length in enumerate(lengths):
        batch[row, :length] = A
    return batch


def tiny_lm(eos_boost: float = 0.1) -> Seq2Seq:
    torch.manual_seed(0)
    config = DecoderConfig(cell="gru", embedding_size=8, hidden_size=16)
    model = build_language_model(config, LM_VOCAB, SPECIAL.pad)
    with torch.no_grad():
        model.decoder.output.bias[SPECIAL.eos] += eos_boost
    return model


def tiny_translator(attention: str, input_feeding: bool) -> Seq2Seq:
    torch.manual_seed(0)
    encoder = TextEncoderConfig(embedding_size=8, hidden_size=8)
    decoder = DecoderConfig(
        cell="gru", embedding_size=8, hidden_size=16, attention=attention, input_feeding=input_feeding
    )
    return build_translation_model(encoder, decoder, LM_VOCAB, LM_VOCAB, SPECIAL.pad)


def random_sources(*lengths: int) -> Tensor:
    """(B, S) random source words padded on the right to the longest length."""
    generator = torch.Generator().manual_seed(2)
    batch = torch.full((len(lengths), max(lengths)), SPECIAL.pad)
    for row, length in enumerate(lengths):
        batch[row, :length] = torch.randint(4, LM_VOCAB, (length,), generator=generator)
    return batch


def word_prefix(batch_size: int, length: int) -> Tensor:
    """(B, P) bos followed by random words of the language model."""
    words = torch.randint(4, LM_VOCAB, (batch_size, length - 1), generator=torch.Generator().manual_seed(1))
    return torch.cat([torch.full((batch_size, 1), SPECIAL.bos), words], dim=1)


def beam(**settings: object) -> DecodeConfig:
    return DecodeConfig(method="beam", **settings)


def hypotheses(hyps: Hypotheses, row: int = 0) -> list[list[int]]:
    """The token lists of one input's hypotheses, without padding."""
    return [tokens[:length].tolist() for tokens, length in zip(hyps.tokens[row], hyps.lengths[row].tolist())]


def assert_well_formed(hyps: Hypotheses, pad_id: int = SPECIAL.pad) -> None:
    """eos only as the last token of a hypothesis, padding after it."""
    for tokens, length in zip(hyps.tokens.flatten(0, 1), hyps.lengths.flatten().tolist()):
        assert SPECIAL.eos not in tokens[: length - 1].tolist()
        assert (tokens[length:] == pad_id).all()


def penalised(hyps: Hypotheses, config: DecodeConfig) -> Tensor:
    """(B, N) the scores the search ranks by."""
    lengths = hyps.lengths.float()
    if config.length_penalty == "gnmt":
        return hyps.scores / ((5 + lengths) / 6) ** config.alpha
    if config.length_penalty == "average":
        return hyps.scores / lengths
    return hyps.scores


@pytest.mark.parametrize("length_penalty", ["none", "gnmt", "average"])
def test_beam_size_one_equals_greedy(length_penalty: str) -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=6, length=4)
    greedy = generate(model, empty_source(6), DecodeConfig(method="greedy", max_length=12), SPECIAL, prefix)
    config = beam(beam_size=1, max_length=12, length_penalty=length_penalty)
    one = generate(model, empty_source(6), config, SPECIAL, prefix)
    assert (greedy.lengths < 12).any() and (greedy.lengths == 12).any()
    assert torch.equal(one.tokens, greedy.tokens)
    assert torch.equal(one.lengths, greedy.lengths)
    assert torch.allclose(one.scores, greedy.scores, atol=1e-5)


def test_beam_size_one_gathers_the_same_attention_as_greedy() -> None:
    model, source = markov_model(random_table(), with_source=True), sources(3, 7)
    greedy = generate(model, source, DecodeConfig(method="greedy", max_length=6), SPECIAL)
    one = generate(model, source, beam(beam_size=1, max_length=6), SPECIAL)
    assert torch.equal(one.tokens, greedy.tokens)
    assert torch.equal(one.attention, greedy.attention)


@pytest.mark.parametrize(("attention", "input_feeding"), [("bahdanau", True), ("dot", False)])
def test_beam_size_one_equals_greedy_with_attention(attention: str, input_feeding: bool) -> None:
    model, source = tiny_translator(attention, input_feeding), random_sources(3, 7, 5)
    greedy = generate(model, source, DecodeConfig(method="greedy", max_length=8), SPECIAL)
    one = generate(model, source, beam(beam_size=1, max_length=8), SPECIAL)
    assert torch.equal(one.tokens, greedy.tokens)
    assert torch.allclose(one.scores, greedy.scores, atol=1e-5)
    assert torch.allclose(one.attention, greedy.attention)


def test_a_translation_does_not_depend_on_the_batch() -> None:
    model, source = tiny_translator("bahdanau", input_feeding=True), random_sources(3, 7, 5)
    config = beam(beam_size=3, n_best=2, max_length=20, max_length_ratio=1.5)
    together = generate(model, source, config, SPECIAL)
    assert together.lengths[:, 0].tolist() == [5, 11, 8]
    for row, length in enumerate([3, 7, 5]):
        alone = generate(model, source[row : row + 1, :length], config, SPECIAL)
        assert hypotheses(together, row) == hypotheses(alone)
        assert torch.allclose(together.scores[row], alone.scores[0], atol=1e-5)
        steps = alone.tokens.shape[2]
        assert torch.allclose(together.attention[row, :, :steps, :length], alone.attention[0], atol=1e-5)


def test_an_input_gets_the_same_hypotheses_in_any_batch() -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=3, length=4)
    config = beam(beam_size=4, n_best=3, max_length=10)
    together = generate(model, empty_source(3), config, SPECIAL, prefix)
    assert_well_formed(together)
    for row in range(3):
        alone = generate(model, empty_source(1), config, SPECIAL, prefix[row : row + 1])
        assert hypotheses(together, row) == hypotheses(alone)
        assert torch.allclose(together.scores[row], alone.scores[0], atol=1e-5)


def test_per_input_length_limits_do_not_depend_on_the_batch() -> None:
    model, lengths = markov_model(random_table(can_end=True), with_source=True), [2, 6, 4]
    config = beam(beam_size=3, n_best=2, max_length_ratio=1.5, min_length_ratio=0.5)
    together = generate(model, sources(*lengths), config, SPECIAL)
    for row, length in enumerate(lengths):
        alone = generate(model, sources(length), config, SPECIAL)
        assert hypotheses(together, row) == hypotheses(alone)


def test_beam_finds_the_best_sequence_that_greedy_misses() -> None:
    # Greedy takes A (0.5) and ends with probability 0.3: 0.15. B (0.4) then eos (0.9) gives 0.36.
    table = markov(
        {
            SPECIAL.bos: {A: 0.5, B: 0.4, C: 0.1},
            A: {SPECIAL.eos: 0.3, C: 0.28, D: 0.27, E: 0.15},
            B: {SPECIAL.eos: 0.9, D: 0.1},
            C: {SPECIAL.eos: 1.0},
            D: {SPECIAL.eos: 1.0},
            E: {SPECIAL.eos: 1.0},
        }
    )
    model = markov_model(table)
    greedy = generate(model, empty_source(1), DecodeConfig(method="greedy", max_length=50), SPECIAL)
    model.decoder.steps = 0
    found = generate(model, empty_source(1), beam(beam_size=2, length_penalty="none", max_length=50), SPECIAL)
    assert hypotheses(greedy) == [[A, SPECIAL.eos]]
    assert hypotheses(found) == [[B, SPECIAL.eos]]
    assert torch.allclose(found.scores, torch.tensor(0.36).log())
    assert model.decoder.steps < 10  # stopped once nothing could beat the finished hypotheses


def test_n_best_are_sorted_distinct_and_scored_by_their_tokens() -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=2, length=2)
    config = beam(beam_size=5, n_best=5, max_length=8, length_penalty="gnmt", alpha=1.0)
    hyps = generate(model, empty_source(2), config, SPECIAL, prefix)
    assert hyps.tokens.shape[:2] == hyps.scores.shape == (2, 5)
    ranked = penalised(hyps, config)
    assert (ranked[:, :-1] >= ranked[:, 1:]).all()
    for row in range(2):
        assert len({tuple(tokens) for tokens in hypotheses(hyps, row)}) == 5
    assert_well_formed(hyps)
    assert torch.allclose(hyps.scores, teacher_forced_scores(model, prefix, hyps), atol=1e-5)


def test_the_best_hypothesis_does_not_depend_on_n_best() -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=3, length=2)
    one = generate(model, empty_source(3), beam(beam_size=4, n_best=1, max_length=10), SPECIAL, prefix)
    four = generate(model, empty_source(3), beam(beam_size=4, n_best=4, max_length=10), SPECIAL, prefix)
    assert [hypotheses(one, row)[0] for row in range(3)] == [hypotheses(four, row)[0] for row in range(3)]


# "A eos" scores 0.55 * 0.9 = 0.495; "B C D eos" 0.45 * 0.95^3 = 0.386, higher per token.
SHORT_OR_LONG = markov(
    {
        SPECIAL.bos: {A: 0.55, B: 0.45},
        A: {SPECIAL.eos: 0.9, F: 0.1},
        B: {C: 0.95, F: 0.05},
        C: {D: 0.95, F: 0.05},
        D: {SPECIAL.eos: 0.95, F: 0.05},
    }
)


@pytest.mark.parametrize(
    ("length_penalty", "alpha", "best"),
    [
        ("none", 0.6, [A, SPECIAL.eos]),
        ("gnmt", 0.0, [A, SPECIAL.eos]),
        ("gnmt", 2.0, [B, C, D, SPECIAL.eos]),
        ("average", 0.6, [B, C, D, SPECIAL.eos]),
    ],
)
def test_length_penalty_decides_between_short_and_long(length_penalty: str, alpha: float, best: list[int]) -> None:
    config = beam(beam_size=2, n_best=2, max_length=10, length_penalty=length_penalty, alpha=alpha)
    hyps = generate(markov_model(SHORT_OR_LONG), empty_source(1), config, SPECIAL)
    assert hypotheses(hyps)[0] == best
    assert sorted(map(len, hypotheses(hyps))) == [2, 4]


def repeated_ngrams(tokens: list[int], n: int) -> bool:
    ngrams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(ngrams) != len(set(ngrams))


@pytest.mark.parametrize("config", [beam(beam_size=4, n_best=4, length_penalty="none"), DecodeConfig(method="greedy")])
def test_no_repeat_ngram_blocks_repeats(config: DecodeConfig) -> None:
    ping_pong = {SPECIAL.bos: {A: 1.0}, A: {B: 0.95, SPECIAL.eos: 0.05}, B: {A: 0.95, SPECIAL.eos: 0.05}}
    model = markov_model(markov(ping_pong))
    config = dataclasses.replace(config, max_length=8)
    free = generate(model, empty_source(1), config, SPECIAL)
    blocked = generate(model, empty_source(1), dataclasses.replace(config, no_repeat_ngram=2), SPECIAL)
    assert any(repeated_ngrams(tokens, 2) for tokens in hypotheses(free))
    assert not any(repeated_ngrams(tokens, 2) for tokens in hypotheses(blocked))


EOS_AT_ONCE = markov(
    {SPECIAL.bos: {SPECIAL.eos: 0.9, A: 0.1}, A: {SPECIAL.eos: 0.9, B: 0.1}, B: {SPECIAL.eos: 0.9, A: 0.1}}
)


def test_min_length_forbids_an_early_eos() -> None:
    model = markov_model(EOS_AT_ONCE)
    free = generate(model, empty_source(1), beam(beam_size=3, n_best=3, max_length=10), SPECIAL)
    held = generate(model, empty_source(1), beam(beam_size=3, n_best=3, max_length=10, min_length=3), SPECIAL)
    assert min(map(len, hypotheses(free))) < 4
    assert all(len(tokens) >= 4 and SPECIAL.eos not in tokens[:3] for tokens in hypotheses(held))


def test_min_length_ratio_follows_each_source_length() -> None:
    model = markov_model(EOS_AT_ONCE, with_source=True)
    config = beam(beam_size=3, n_best=3, max_length=20, min_length_ratio=1.0)
    hyps = generate(model, sources(2, 5), config, SPECIAL)
    assert (hyps.lengths[0] >= 3).all() and (hyps.lengths[1] >= 6).all()
    assert (hyps.lengths[0] < 6).any()


def test_places_without_a_hypothesis_are_empty() -> None:
    only_one = markov({SPECIAL.bos: {A: 1.0}, A: {SPECIAL.eos: 1.0}})
    hyps = generate(markov_model(only_one), empty_source(1), beam(beam_size=3, n_best=3, max_length=5), SPECIAL)
    assert hypotheses(hyps) == [[A, SPECIAL.eos], [], []]
    assert hyps.scores[0, 0] == 0 and torch.isneginf(hyps.scores[0, 1:]).all()


def test_a_model_that_never_ends_still_returns_max_length_results() -> None:
    config = beam(beam_size=3, n_best=3, max_length=7)
    hyps = generate(markov_model(random_table()), empty_source(2), config, SPECIAL)
    assert (hyps.lengths == 7).all()
    assert torch.isfinite(hyps.scores).all()
    assert not (hyps.tokens == SPECIAL.eos).any()


def test_max_length_ratio_follows_each_source_length() -> None:
    model = markov_model(random_table(), with_source=True)
    config = beam(beam_size=2, n_best=2, max_length=50, max_length_ratio=1.5)
    hyps = generate(model, sources(2, 5), config, SPECIAL)
    assert hyps.lengths.tolist() == [[3, 3], [8, 8]]
    capped = generate(model, sources(2, 5), beam(beam_size=2, max_length=4, max_length_ratio=1.5), SPECIAL)
    assert capped.lengths.flatten().tolist() == [3, 4]


@pytest.mark.parametrize("ban_unk", [True, False])
def test_unk_appears_only_without_the_ban(ban_unk: bool) -> None:
    table = random_table()
    table[:, SPECIAL.unk] += 5.0
    config = beam(beam_size=3, n_best=3, max_length=6, ban_unk=ban_unk)
    hyps = generate(markov_model(table), empty_source(2), config, SPECIAL)
    assert (hyps.tokens == SPECIAL.unk).any() != ban_unk


def test_attention_follows_the_backpointers() -> None:
    model, source = markov_model(random_table(), with_source=True), sources(VOCAB, 4)
    hyps = generate(model, source, beam(beam_size=3, n_best=3, max_length=6), SPECIAL)
    batch_size, copies, length = hyps.tokens.shape
    assert hyps.attention.shape == (batch_size, copies, length, VOCAB)
    previous = torch.cat([torch.full((batch_size, copies, 1), SPECIAL.bos), hyps.tokens[:, :, :-1]], dim=2)
    attended = previous % source.shape[1]  # the position the toy decoder attends to
    assert torch.equal(hyps.attention.argmax(dim=-1), attended)
    assert torch.allclose(hyps.attention.sum(dim=-1), torch.tensor(1.0))


def test_prefix_and_training_mode_are_handled_as_in_greedy_search() -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=2, length=5)
    model.train()
    hyps = generate(model, empty_source(2), beam(beam_size=3, max_length=6), SPECIAL, prefix)
    assert model.training
    assert torch.allclose(hyps.scores, teacher_forced_scores(model.eval(), prefix, hyps), atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 2, "n_best": 3}, "n_best"),
        ({"length_penalty": "longest"}, "length_penalty"),
        ({"alpha": -1.0}, "alpha"),
        ({"min_length": -1}, "min_length"),
        ({"max_length_ratio": -0.5}, "max_length_ratio"),
        ({"no_repeat_ngram": -2}, "no_repeat_ngram"),
        ({"repetition_penalty": 1.2}, "repetition_penalty"),
    ],
)
def test_bad_beam_settings_name_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=f"decoding.{key}"):
        generate(tiny_lm(), empty_source(1), beam(**settings), SPECIAL)


def test_length_ratios_without_a_source_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="need a model that reads a source"):
        generate(tiny_lm(), empty_source(1), beam(max_length_ratio=1.5), SPECIAL)


def test_streaming_callbacks_are_refused_with_beam_search() -> None:
    with pytest.raises(ValueError, match="not with beam search"):
        generate(tiny_lm(), empty_source(1), beam(), SPECIAL, on_step=lambda token: None)


@pytest.mark.parametrize(
    "settings",
    [{"min_length": 4}, {"min_length_ratio": 1.0}, {"max_length_ratio": 1.2}, {"ban_unk": False}],
)
def test_greedy_search_keeps_the_length_limits_and_bans_of_a_beam_of_one(settings: dict[str, object]) -> None:
    ends_early = "min_length" in settings or "min_length_ratio" in settings
    table = random_table(can_end=ends_early)  # eos is likely (to be held off) or impossible
    table[:, SPECIAL.unk] += 2.0
    if ends_early:
        table[:, SPECIAL.eos] += 3.0
    model, source = markov_model(table, with_source=True), sources(3, 6)
    greedy = generate(model, source, DecodeConfig(method="greedy", max_length=12, **settings), SPECIAL)
    one = generate(model, source, beam(beam_size=1, max_length=12, **settings), SPECIAL)
    plain = generate(model, source, DecodeConfig(method="greedy", max_length=12), SPECIAL)
    assert torch.equal(one.tokens, greedy.tokens)
    assert torch.equal(one.lengths, greedy.lengths)
    assert torch.allclose(one.scores, greedy.scores, atol=1e-5)
    assert not torch.equal(plain.lengths, greedy.lengths) or not torch.equal(plain.tokens, greedy.tokens)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"min_length": 3, "no_repeat_ngram": 2},
        {"min_length_ratio": 1.0, "ban_unk": False, "length_penalty": "gnmt"},
    ],
)
def test_the_search_from_the_best_logits_equals_the_search_over_whole_log_probabilities(
    settings: dict[str, object],
) -> None:
    """Without processors of the caller a step bans in place and normalises only the best
    logits of each row; a processor that changes nothing makes it compute every
    log-probability. Inputs finish at different steps, so rows leave the decoder's batch."""
    model, source = tiny_translator("bahdanau", input_feeding=True), random_sources(2, 7, 4, 9, 1, 5, 3)
    with torch.no_grad():
        model.decoder.output.bias[SPECIAL.eos] += 0.5  # some inputs end early, some run to the limit
    config = beam(beam_size=3, n_best=3, max_length=12, **settings)
    fast = generate(model, source, config, SPECIAL)
    whole = generate(model, source, config, SPECIAL, processors=[lambda prefix, log_probs: log_probs])
    assert torch.equal(fast.tokens, whole.tokens)
    assert torch.equal(fast.lengths, whole.lengths)
    assert torch.allclose(fast.scores, whole.scores, atol=1e-5)
    assert len(set(fast.lengths[:, 0].tolist())) > 1  # the inputs ended at different lengths


def test_a_processor_of_the_caller_keeps_its_token_out_of_beam_search() -> None:
    model, prefix = tiny_lm(), word_prefix(batch_size=3, length=3)
    config = beam(beam_size=4, n_best=4, max_length=10)
    plain = generate(model, empty_source(3), config, SPECIAL, prefix=prefix)
    favourite = int(plain.tokens[plain.tokens > SPECIAL.unk].mode().values)  # the commonest word
    ban = BanOne(favourite)
    banned = generate(model, empty_source(3), config, SPECIAL, prefix=prefix, processors=[ban])
    assert not (banned.tokens == favourite).any()
    assert ban.prefix_shapes[0] == (3 * 4, 3)  # every beam, with the prompt
    assert_well_formed(banned)
    # The processor sees log-probabilities after the built-in bans: a token it does not touch
    # keeps the score of the plain search.
    assert torch.allclose(banned.scores, teacher_forced_scores(model, prefix, banned), atol=1e-5)


@pytest.mark.parametrize(("attention", "input_feeding"), [("bahdanau", True), ("bahdanau", False), ("dot", False)])
def test_beams_that_share_their_inputs_memory_search_as_beams_with_copies_of_it(
    attention: str, input_feeding: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beam search primes with one memory per input for its K beams (``share_memory``); with a
    copy of the memory per beam it finds the same hypotheses. Inputs end at different steps
    (their length limits differ), so whole inputs leave the decoder's batch."""
    model, source = tiny_translator(attention, input_feeding), random_sources(2, 7, 4, 9, 1, 5, 3)
    config = beam(beam_size=3, n_best=3, max_length=12, max_length_ratio=1.5)  # inputs end at their limits
    shared = generate(model, source, config, SPECIAL)
    primed_with_copies: list[int] = []

    def prime_with_copies(*args: Any, share_memory: bool = False) -> PrimedBatch:
        primed = prime_decoder(*args, share_memory=False)
        primed_with_copies.append(primed.encoder_output.copies)
        return primed

    monkeypatch.setattr(beam_module, "prime_decoder", prime_with_copies)
    copied = generate(model, source, config, SPECIAL)
    assert primed_with_copies == [1]
    assert torch.equal(shared.tokens, copied.tokens)
    assert torch.allclose(shared.scores, copied.scores, atol=1e-5)
    assert shared.attention is not None and copied.attention is not None
    assert torch.allclose(shared.attention, copied.attention, atol=1e-6)
    assert len(set(shared.lengths[:, 0].tolist())) > 1  # the inputs ended at different lengths
