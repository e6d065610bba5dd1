"""Greedy search and sampling on a tiny random language model."""

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from seq2seq.config import DecodeConfig, DecoderConfig
from seq2seq.decoding import Hypotheses, SpecialIds, common, generate
from seq2seq.models import DecoderState, RNNDecoder, Seq2Seq, build_language_model
from seq2seq.models.encoders import EncoderOutput, empty_source

VOCAB = 20
SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
FIRST_WORD = 4  # ids below are special


def tiny_model(cell: str = "lstm") -> Seq2Seq:
    torch.manual_seed(0)
    return build_language_model(DecoderConfig(cell=cell, embedding_size=8, hidden_size=16), VOCAB, SPECIAL.pad)


def boost(model: Seq2Seq, token_ids: list[int], amount: float) -> Seq2Seq:
    """Adds ``amount`` to the output bias of the given tokens."""
    with torch.no_grad():
        model.decoder.output.bias[token_ids] += amount
    return model


@pytest.fixture
def model() -> Seq2Seq:
    return tiny_model()


def run(model: Seq2Seq, config: DecodeConfig, batch_size: int = 2) -> Hypotheses:
    """generate() from bos for a batch of a text-generation model."""
    return generate(model, empty_source(batch_size), config, SPECIAL)


def word_prefix(batch_size: int, length: int, seed: int = 1) -> Tensor:
    """(B, P) bos followed by random non-special ids."""
    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(FIRST_WORD, VOCAB, (batch_size, length - 1), generator=generator)
    return torch.cat([torch.full((batch_size, 1), SPECIAL.bos), words], dim=1)


def teacher_forced_scores(model: Seq2Seq, prefix: Tensor, hyps: Hypotheses) -> Tensor:
    """(B, N) the summed log-probabilities of each hypothesis under teacher forcing."""
    batch_size, copies, length = hyps.tokens.shape
    prefix = prefix.repeat_interleave(copies, dim=0)  # (B * N, P)
    tokens = hyps.tokens.reshape(batch_size * copies, length)
    with torch.no_grad():
        logits, _ = model(empty_source(len(tokens)), torch.cat([prefix, tokens[:, :-1]], dim=1))
    log_probs = logits[:, prefix.shape[1] - 1 :].log_softmax(dim=-1)  # (B * N, T, V)
    chosen = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B * N, T)
    in_sequence = torch.arange(length) < hyps.lengths.reshape(-1, 1)
    return (chosen * in_sequence).sum(dim=1).view(batch_size, copies)


def test_greedy_equals_sampling_at_temperature_zero(model: Seq2Seq) -> None:
    greedy = run(model, DecodeConfig(method="greedy", max_length=15))
    zero = run(model, DecodeConfig(method="sample", temperature=0.0, max_length=15, seed=3))
    assert torch.equal(greedy.tokens, zero.tokens)
    assert torch.equal(greedy.scores, zero.scores)


def test_sampling_at_a_tiny_temperature_equals_greedy(model: Seq2Seq) -> None:
    greedy = run(model, DecodeConfig(method="greedy", max_length=15), batch_size=3)
    cold = run(model, DecodeConfig(method="sample", temperature=1e-4, max_length=15, seed=5), batch_size=3)
    assert torch.equal(greedy.tokens, cold.tokens)


def test_seeded_sampling_is_reproducible_and_seeds_differ(model: Seq2Seq) -> None:
    first = run(model, DecodeConfig(max_length=20, num_samples=2, seed=11))
    again = run(model, DecodeConfig(max_length=20, num_samples=2, seed=11))
    other = run(model, DecodeConfig(max_length=20, num_samples=2, seed=12))
    assert torch.equal(first.tokens, again.tokens)
    assert not torch.equal(first.tokens, other.tokens)


def test_n_samples_come_back_as_b_by_n(model: Seq2Seq) -> None:
    hyps = run(model, DecodeConfig(max_length=12, num_samples=3, seed=0))
    assert hyps.tokens.shape[:2] == (2, 3)
    assert hyps.tokens.shape[2] == int(hyps.lengths.max()) <= 12
    assert hyps.lengths.shape == hyps.scores.shape == (2, 3)
    assert hyps.attention is None
    assert len({tuple(sample.tolist()) for sample in hyps.tokens[0]}) > 1


def test_each_copy_continues_its_own_input(model: Seq2Seq) -> None:
    prefix = word_prefix(batch_size=2, length=3)
    config = DecodeConfig(method="greedy", max_length=10)
    single = generate(model, empty_source(2), config, SPECIAL, prefix=prefix)
    two_each = dataclasses.replace(config, num_samples=2)
    copied = generate(model, empty_source(2), two_each, SPECIAL, prefix=prefix)
    assert torch.equal(copied.tokens[:, 0], single.tokens[:, 0])
    assert torch.equal(copied.tokens[:, 1], single.tokens[:, 0])


def test_greedy_does_not_depend_on_the_rest_of_the_batch(model: Seq2Seq) -> None:
    prefix = word_prefix(batch_size=3, length=4)
    config = DecodeConfig(method="greedy", max_length=10)
    together = generate(model, empty_source(3), config, SPECIAL, prefix=prefix)
    for row in range(3):
        alone = generate(model, empty_source(1), config, SPECIAL, prefix=prefix[row : row + 1])
        length = int(alone.lengths[0, 0])
        assert torch.equal(together.tokens[row, 0, :length], alone.tokens[0, 0])


def test_eos_stops_a_sequence_and_pads_after() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], 2.0)
    max_length = 30
    hyps = run(model, DecodeConfig(max_length=max_length, num_samples=8, seed=0))
    lengths = hyps.lengths.flatten().tolist()
    assert min(lengths) < max_length
    for tokens, length in zip(hyps.tokens.flatten(0, 1), lengths):
        assert SPECIAL.eos not in tokens[: length - 1].tolist()
        assert tokens[length - 1] == SPECIAL.eos or length == max_length
        assert (tokens[length:] == SPECIAL.pad).all()


def test_on_the_cpu_a_finished_row_leaves_the_decoders_batch_at_the_next_step() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], 2.0)
    rows_per_step = []
    step = model.decoder.step

    def counting_step(previous: Tensor, *args: object, **kwargs: object) -> tuple:
        rows_per_step.append(len(previous))
        return step(previous, *args, **kwargs)

    model.decoder.step = counting_step  # type: ignore[method-assign]
    hyps = run(model, DecodeConfig(max_length=30, num_samples=8, seed=0))
    lengths = hyps.lengths.flatten()
    assert len(set(lengths.tolist())) > 2  # rows finished at several steps
    unfinished_before_step = [int((lengths > step).sum()) for step in range(len(rows_per_step))]
    assert rows_per_step == unfinished_before_step
    assert common.finished_check_interval(torch.device("cpu")) == 1
    assert common.finished_check_interval(torch.device("cuda")) == common.GPU_FINISHED_CHECK_INTERVAL > 1


def test_scores_are_raw_log_probabilities_of_the_tokens() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], 1.0)
    prefix = word_prefix(batch_size=2, length=3)
    config = DecodeConfig(max_length=25, num_samples=3, temperature=0.7, repetition_penalty=1.5, seed=4)
    hyps = generate(model, empty_source(2), config, SPECIAL, prefix=prefix)
    assert torch.allclose(hyps.scores, teacher_forced_scores(model, prefix, hyps), atol=1e-5)


def test_priming_equals_feeding_the_prefix_step_by_step() -> None:
    model = boost(tiny_model("gru"), [SPECIAL.eos], -1e4).eval()
    prefix = word_prefix(batch_size=2, length=5)
    max_length = 8
    config = DecodeConfig(method="greedy", max_length=max_length)
    hyps = generate(model, empty_source(2), config, SPECIAL, prefix=prefix)

    encoder_output = model.encode(empty_source(2))
    expected, scores = [], torch.zeros(2)
    with torch.no_grad():
        state = model.decoder.init_state(encoder_output)
        for position in range(prefix.shape[1] - 1):
            _, state, _ = model.decoder.step(prefix[:, position], state, encoder_output)
        previous = prefix[:, -1]
        for _ in range(max_length):
            logits, state, _ = model.decoder.step(previous, state, encoder_output)
            allowed = logits.clone()
            allowed[:, SPECIAL.never_generated()] = float("-inf")
            previous = allowed.argmax(dim=-1)
            scores += logits.log_softmax(dim=-1).gather(1, previous.unsqueeze(1)).squeeze(1)
            expected.append(previous)
    assert torch.equal(hyps.tokens[:, 0], torch.stack(expected, dim=1))
    assert torch.allclose(hyps.scores[:, 0], scores, atol=1e-5)


def test_a_prefix_longer_than_the_priming_window_primes_in_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model().eval()
    prefix = word_prefix(batch_size=2, length=23)
    config = DecodeConfig(method="greedy", max_length=6)
    whole = generate(model, empty_source(2), config, SPECIAL, prefix=prefix)
    monkeypatch.setattr(common, "PRIME_WINDOW", 4)
    widths, forward = [], model.decoder.forward

    def counted_forward(inputs: Tensor, *args: object, **kwargs: object) -> object:
        widths.append(inputs.shape[1])
        return forward(inputs, *args, **kwargs)

    monkeypatch.setattr(model.decoder, "forward", counted_forward)
    windowed = generate(model, empty_source(2), config, SPECIAL, prefix=prefix)
    assert widths == [4, 4, 4, 4, 4, 2]  # the 22 tokens before the last, the state carried
    assert torch.equal(windowed.tokens, whole.tokens)
    assert torch.allclose(windowed.scores, whole.scores, atol=1e-5)


def test_should_stop_ends_the_sequences_it_flags() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], -1e4)
    stop_word, max_length = 5, 40
    hyps = generate(
        model,
        empty_source(2),
        DecodeConfig(max_length=max_length, num_samples=4, seed=0),
        SPECIAL,
        should_stop=lambda generated: generated[:, -1] == stop_word,
    )
    lengths = hyps.lengths.flatten().tolist()
    assert min(lengths) < max_length
    for tokens, length in zip(hyps.tokens.flatten(0, 1), lengths):
        assert stop_word not in tokens[: length - 1].tolist()
        assert tokens[length - 1] == stop_word or length == max_length
        assert (tokens[length:] == SPECIAL.pad).all()


def test_should_stop_sees_only_generated_tokens(model: Seq2Seq) -> None:
    seen_lengths = []

    def after_three(generated: Tensor) -> Tensor:
        seen_lengths.append(generated.shape[1])
        return torch.full((len(generated),), generated.shape[1] >= 3)

    prefix = word_prefix(batch_size=2, length=4)
    config = DecodeConfig(method="greedy", max_length=10)
    hyps = generate(model, empty_source(2), config, SPECIAL, prefix=prefix, should_stop=after_three)
    assert seen_lengths[:3] == [1, 2, 3]
    assert (hyps.lengths <= 3).all()


def test_should_stop_with_a_wrong_answer_is_a_clear_error(model: Seq2Seq) -> None:
    with pytest.raises(ValueError, match="should_stop must return a bool tensor"):
        generate(model, empty_source(2), DecodeConfig(), SPECIAL, should_stop=lambda generated: True)


def test_on_step_receives_every_token() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], 2.0)
    received: list[Tensor] = []
    config = DecodeConfig(max_length=30, num_samples=3, seed=1)
    hyps = generate(model, empty_source(2), config, SPECIAL, on_step=received.append)
    streamed = torch.stack(received, dim=1)  # (B * N, steps)
    length = hyps.tokens.shape[2]
    assert torch.equal(streamed[:, :length], hyps.tokens.reshape(6, length))
    assert (streamed[:, length:] == SPECIAL.pad).all()


def test_boosted_special_tokens_are_never_generated() -> None:
    never = SPECIAL.never_generated()
    model = boost(tiny_model(), never, 50.0)
    for method in ("greedy", "sample"):
        hyps = run(model, DecodeConfig(max_length=20, num_samples=4, method=method, seed=0))
        for tokens, length in zip(hyps.tokens.flatten(0, 1), hyps.lengths.flatten().tolist()):
            assert not set(tokens[:length].tolist()) & set(never)


def test_repetition_penalty_applies_to_greedy_search(model: Seq2Seq) -> None:
    plain = run(model, DecodeConfig(method="greedy", max_length=20))
    penalised = run(model, DecodeConfig(method="greedy", max_length=20, repetition_penalty=100.0))
    assert not torch.equal(plain.tokens, penalised.tokens)


class AttendingDecoder(RNNDecoder):
    """A decoder that reports attention over three source positions."""

    def step(
        self, previous: Tensor, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor]:
        logits, state, _ = super().step(previous, state, encoder_output)
        return logits, state, logits[:, :3].softmax(dim=-1)


def test_attention_is_collected_per_token_and_zero_after_the_end() -> None:
    model = boost(tiny_model(), [SPECIAL.eos], 2.0)
    decoder = AttendingDecoder(VOCAB, DecoderConfig(embedding_size=8, hidden_size=16), SPECIAL.pad)
    decoder.load_state_dict(model.decoder.state_dict())
    model.decoder = decoder
    hyps = run(model, DecodeConfig(max_length=20, num_samples=3, seed=2))
    batch_size, copies, length = hyps.tokens.shape
    assert hyps.attention.shape == (batch_size, copies, length, 3)
    in_sequence = torch.arange(length) < hyps.lengths.unsqueeze(-1)  # (B, N, T)
    assert torch.allclose(hyps.attention.sum(-1)[in_sequence], torch.tensor(1.0))
    assert (hyps.attention[~in_sequence] == 0).all()


def test_generation_runs_in_eval_mode_and_restores_the_mode(model: Seq2Seq) -> None:
    modes: list[bool] = []
    model.train()
    config = DecodeConfig(max_length=3)
    generate(model, empty_source(1), config, SPECIAL, on_step=lambda _: modes.append(model.training))
    assert modes and not any(modes)
    assert model.training
    model.eval()
    run(model, DecodeConfig(max_length=3))
    assert not model.training


def test_on_step_runs_before_should_stop(model: Seq2Seq) -> None:
    streamed: list[Tensor] = []

    def stop_check(generated: Tensor) -> Tensor:
        assert len(streamed) == generated.shape[1]
        assert torch.equal(streamed[-1], generated[:, -1])
        return torch.zeros(len(generated), dtype=torch.bool)

    run_config = DecodeConfig(max_length=6, seed=0)
    generate(model, empty_source(2), run_config, SPECIAL, on_step=streamed.append, should_stop=stop_check)
    assert streamed


def test_results_can_be_changed_in_place(model: Seq2Seq) -> None:
    hyps = run(model, DecodeConfig(max_length=5, seed=0))
    hyps.tokens[hyps.tokens == SPECIAL.eos] = SPECIAL.pad
    hyps.scores += 1.0
    assert not (hyps.tokens == SPECIAL.eos).any()


def test_unknown_method_is_refused_with_the_available_methods(model: Seq2Seq) -> None:
    with pytest.raises(ValueError, match="greedy, sample, beam"):
        run(model, DecodeConfig(method="nucleus"))


@pytest.mark.parametrize(
    ("config", "key"),
    [(DecodeConfig(max_length=0), "max_length"), (DecodeConfig(num_samples=0), "num_samples")],
)
def test_bad_lengths_are_refused(model: Seq2Seq, config: DecodeConfig, key: str) -> None:
    with pytest.raises(ValueError, match=f"decoding.{key}"):
        run(model, config)


def test_a_prefix_per_input_is_required(model: Seq2Seq) -> None:
    three_rows = word_prefix(batch_size=3, length=2)
    with pytest.raises(ValueError, match="one prefix per input"):
        generate(model, empty_source(2), DecodeConfig(), SPECIAL, prefix=three_rows)
    with pytest.raises(ValueError, match="start it with bos"):
        generate(model, empty_source(2), DecodeConfig(), SPECIAL, prefix=torch.zeros(2, 0, dtype=torch.long))


class BanOne:
    """A caller's processor that bans one token and records the prefixes it sees."""

    def __init__(self, token: int) -> None:
        self.token = token
        self.prefix_shapes: list[tuple[int, ...]] = []

    def __call__(self, prefix_ids: Tensor, logits: Tensor) -> Tensor:
        self.prefix_shapes.append(tuple(prefix_ids.shape))
        return logits.index_fill(-1, torch.tensor([self.token], device=logits.device), float("-inf"))


def force(token: int) -> Callable[[Tensor, Tensor], Tensor]:
    """A caller's processor that leaves only ``token`` possible."""

    def forced(prefix_ids: Tensor, logits: Tensor) -> Tensor:
        others = torch.arange(logits.shape[-1], device=logits.device) != token  # (V,)
        return logits.masked_fill(others, float("-inf"))

    return forced


@pytest.mark.parametrize("method", ["greedy", "sample"])
def test_a_processor_of_the_caller_keeps_its_token_out(method: str) -> None:
    favourite = FIRST_WORD + 1
    model = boost(tiny_model(), [favourite], 5.0)
    config = DecodeConfig(method=method, max_length=12, num_samples=3, seed=0)
    plain = run(model, config)
    assert (plain.tokens == favourite).any()
    ban = BanOne(favourite)
    banned = generate(model, empty_source(2), config, SPECIAL, prefix=word_prefix(2, 3), processors=[ban])
    assert not (banned.tokens == favourite).any()
    assert ban.prefix_shapes[0] == (2 * 3, 3) and ban.prefix_shapes[1] == (2 * 3, 4)  # prompt, then generated


def test_a_processor_of_the_caller_that_forces_a_token_decides_greedy_search(model: Seq2Seq) -> None:
    config = DecodeConfig(method="greedy", max_length=7)
    forced = generate(model, empty_source(2), config, SPECIAL, processors=[force(FIRST_WORD + 2)])
    assert (forced.tokens == FIRST_WORD + 2).all() and (forced.lengths == 7).all()
