"""Tests for seq2seq.models: the shared RNN decoder, its state, attention in it, encoder outputs, the builders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.nn import functional as F

from seq2seq.config import ConfigError, DecoderConfig, TextEncoderConfig
from seq2seq.models import (
    DecoderState,
    EncoderOutput,
    PrimeEncoder,
    RNNDecoder,
    Seq2Seq,
    build_language_model,
    build_translation_model,
)
from seq2seq.models import decoder as decoder_module
from seq2seq.models.decoder import count_parameters
from seq2seq.models.encoders import empty_source
from seq2seq.models.stepwise_linear import StepwiseLinear

VOCAB, PAD = 13, 0
BATCH, LENGTH = 3, 7
CELLS = ["lstm", "gru", "rnn"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from threads, and threads fighting over busy cores are slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_decoder(cell: str = "lstm", layers: int = 1, seed: int = 0, **changes: object) -> RNNDecoder:
    torch.manual_seed(seed)
    config = DecoderConfig(cell=cell, embedding_size=8, hidden_size=12, num_layers=layers, dropout=0.3, **changes)
    return RNNDecoder(VOCAB, config, PAD).eval()


def random_tokens(batch: int = BATCH, length: int = LENGTH, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def no_input(batch: int = BATCH) -> EncoderOutput:
    return EncoderOutput(batch_size=batch)


def assert_states_close(a: DecoderState, b: DecoderState) -> None:
    assert torch.allclose(a.hidden, b.hidden, atol=1e-6)
    assert (a.cell is None) == (b.cell is None)
    if a.cell is not None:
        assert torch.allclose(a.cell, b.cell, atol=1e-6)


# --- shapes and state -------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_step_shapes(cell: str, layers: int) -> None:
    decoder = make_decoder(cell, layers)
    logits, state = decoder(random_tokens(), no_input())
    assert logits.shape == (BATCH, LENGTH, VOCAB)
    assert state.hidden.shape == (layers, BATCH, 12)
    assert (state.cell is not None) == (cell == "lstm")
    if state.cell is not None:
        assert state.cell.shape == state.hidden.shape
    step_logits, next_state, attention = decoder.step(random_tokens()[:, 0], state, no_input())
    assert step_logits.shape == (BATCH, VOCAB)
    assert next_state.hidden.shape == state.hidden.shape
    assert attention is None


@pytest.mark.parametrize("cell", CELLS)
def test_init_state_is_zero_and_sized_by_the_encoder_output(cell: str) -> None:
    state = make_decoder(cell, layers=2).init_state(no_input(batch=5))
    assert state.hidden.shape == (2, 5, 12)
    assert not state.hidden.any()
    assert (state.cell is not None) == (cell == "lstm")


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_step_in_a_loop_equals_forward(cell: str, layers: int) -> None:
    decoder = make_decoder(cell, layers)
    tokens = random_tokens()
    with torch.no_grad():
        full, full_state = decoder(tokens, no_input())
        state = decoder.init_state(no_input())
        stepped = []
        for position in range(LENGTH):
            logits, state, _ = decoder.step(tokens[:, position], state, no_input())
            stepped.append(logits)
    assert torch.allclose(torch.stack(stepped, dim=1), full, atol=1e-5)
    assert_states_close(state, full_state)


@pytest.mark.parametrize("cell", CELLS)
def test_state_carried_between_halves_equals_one_pass(cell: str) -> None:
    decoder = make_decoder(cell, layers=2)
    tokens = random_tokens(length=10)
    with torch.no_grad():
        whole, whole_state = decoder(tokens, no_input())
        first, carried = decoder(tokens[:, :4], no_input())
        second, end_state = decoder(tokens[:, 4:], no_input(), carried)
        fresh_second, _ = decoder(tokens[:, 4:], no_input())
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-5)
    assert_states_close(end_state, whole_state)
    assert not torch.allclose(fresh_second, whole[:, 4:], atol=1e-5)  # the carried state matters


def test_outputs_do_not_depend_on_the_rest_of_the_batch() -> None:
    decoder = make_decoder("gru", layers=2)
    tokens = random_tokens(batch=4)
    with torch.no_grad():
        together, _ = decoder(tokens, no_input(4))
        alone, _ = decoder(tokens[2:3], no_input(1))
    assert torch.allclose(together[2:3], alone, atol=1e-5)


def test_dropout_is_active_in_training_mode_only() -> None:
    decoder = make_decoder("lstm", layers=2)
    tokens = random_tokens()
    with torch.no_grad():
        assert torch.equal(decoder(tokens, no_input())[0], decoder(tokens, no_input())[0])
        decoder.train()
        assert not torch.equal(decoder(tokens, no_input())[0], decoder(tokens, no_input())[0])


# --- DecoderState -----------------------------------------------------------------------------


@pytest.mark.parametrize("with_cell", [True, False])
def test_state_index_select_reorders_and_repeats_the_batch(with_cell: bool) -> None:
    hidden = torch.arange(2 * 3 * 4, dtype=torch.float).view(2, 3, 4)  # (L, B, H)
    state = DecoderState(hidden, -hidden if with_cell else None)
    index = torch.tensor([2, 0, 0, 1])
    picked = state.index_select(index)
    assert picked.hidden.shape == (2, 4, 4)
    for new, old in enumerate(index.tolist()):
        assert torch.equal(picked.hidden[:, new], hidden[:, old])
        if with_cell:
            assert torch.equal(picked.cell[:, new], -hidden[:, old])
    assert (picked.cell is None) == (not with_cell)


@pytest.mark.parametrize("cell", CELLS)
def test_state_tensors_round_trip(cell: str) -> None:
    decoder = make_decoder(cell, layers=2)
    _, state = decoder(random_tokens(), no_input())
    tensors = state.tensors()
    assert set(tensors) == ({"hidden", "cell"} if cell == "lstm" else {"hidden"})
    restored = DecoderState.from_tensors(tensors)
    assert_states_close(restored, state)


def test_state_detach_cuts_the_graph() -> None:
    decoder = make_decoder("lstm").train()
    _, state = decoder(random_tokens(), no_input())
    assert state.hidden.requires_grad and state.cell.requires_grad
    detached = state.detach()
    assert not detached.hidden.requires_grad and not detached.cell.requires_grad
    assert torch.equal(detached.hidden, state.hidden)


# --- EncoderOutput and PrimeEncoder -----------------------------------------------------------


def test_encoder_output_index_select_picks_every_field() -> None:
    memory = torch.randn(3, 5, 6)  # (B, S, H)
    mask = torch.rand(3, 5) > 0.5  # (B, S)
    summary = torch.randn(3, 6)  # (B, H)
    output = EncoderOutput(3, memory, mask, summary)
    index = torch.tensor([1, 1, 2, 0, 2])
    picked = output.index_select(index)
    assert picked.batch_size == 5
    assert torch.equal(picked.memory, memory[index])
    assert torch.equal(picked.mask, mask[index])
    assert torch.equal(picked.summary, summary[index])


def test_encoder_output_index_select_keeps_missing_fields_missing() -> None:
    picked = no_input(2).index_select(torch.tensor([0, 0, 1]))
    assert picked.batch_size == 3
    assert picked.memory is None and picked.mask is None and picked.summary is None


def test_prime_encoder_carries_only_the_batch_size() -> None:
    output = PrimeEncoder()(empty_source(4))
    assert output.batch_size == 4
    assert output.memory is None and output.summary is None
    assert empty_source(4).shape == (4, 0)


# --- tied embeddings and construction ---------------------------------------------------------


@pytest.mark.parametrize(("embedding", "hidden"), [(12, 12), (8, 12)])
def test_tied_embeddings_share_storage(embedding: int, hidden: int) -> None:
    torch.manual_seed(0)
    config = DecoderConfig(embedding_size=embedding, hidden_size=hidden, tie_embeddings=True)
    decoder = RNNDecoder(VOCAB, config, PAD)
    assert decoder.output.weight is decoder.embedding.weight
    assert decoder.output.weight.data_ptr() == decoder.embedding.weight.data_ptr()
    logits, _ = decoder(random_tokens(), no_input())
    assert logits.shape == (BATCH, LENGTH, VOCAB)
    logits.sum().backward()
    assert decoder.embedding.weight.grad is not None
    untied = RNNDecoder(VOCAB, DecoderConfig(embedding_size=embedding, hidden_size=hidden), PAD)
    assert count_parameters(decoder) < count_parameters(untied)


def test_tied_weights_stay_shared_after_an_update() -> None:
    decoder = RNNDecoder(VOCAB, DecoderConfig(embedding_size=8, hidden_size=12, tie_embeddings=True), PAD)
    optimizer = torch.optim.SGD(decoder.parameters(), lr=0.5)
    logits, _ = decoder(random_tokens(), no_input())
    logits.pow(2).mean().backward()
    optimizer.step()
    assert torch.equal(decoder.output.weight, decoder.embedding.weight)


def test_count_parameters_counts_shared_tensors_once() -> None:
    decoder = RNNDecoder(VOCAB, DecoderConfig(embedding_size=12, hidden_size=12, tie_embeddings=True), PAD)
    unique = {id(p): p.numel() for module in decoder.modules() for p in module.parameters(recurse=False)}
    assert count_parameters(decoder) == sum(unique.values())


def test_unknown_cell_is_named_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"decoder.cell must be one of lstm, gru, rnn; got 'transformer'"):
        RNNDecoder(VOCAB, DecoderConfig(cell="transformer"), PAD)


def test_language_model_runs_the_decoder_on_an_empty_source() -> None:
    torch.manual_seed(0)
    model = build_language_model(DecoderConfig(embedding_size=8, hidden_size=12), VOCAB, PAD).eval()
    tokens = random_tokens()
    with torch.no_grad():
        logits, _ = model(empty_source(BATCH), tokens)
        direct, _ = model.decoder(tokens, no_input())
    assert torch.equal(logits, direct)


# --- learning ---------------------------------------------------------------------------------


def test_tiny_model_overfits_a_repeated_text() -> None:
    torch.manual_seed(0)
    text = torch.tensor([4, 5, 6] * 11)  # "abcabc..." as ids
    inputs, targets = text[:-1].view(2, -1), text[1:].view(2, -1)  # (2, 16)
    model = build_language_model(DecoderConfig(embedding_size=16, hidden_size=32), vocab_size=7, pad_id=PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first_loss = None
    for _ in range(300):
        logits, _ = model(empty_source(2), inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first_loss = first_loss if first_loss is not None else loss.item()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1 < first_loss


# --- attention, input feeding, the bridge and the translation model ---------------------------

SOURCE_VOCAB = 11
SOURCE_LENGTHS = [5, 2, 4]
ATTENTIONS = ["bahdanau", "dot", "general"]


def make_translator(
    attention: str = "bahdanau",
    input_feeding: bool = False,
    query: str = "auto",
    cell: str = "gru",
    layers: int = 1,
    bridge: str = "linear",
    seed: int = 0,
) -> Seq2Seq:
    """A tiny translation model; memory (2 * 6) equals the decoder's hidden size, so dot works."""
    torch.manual_seed(seed)
    decoder = DecoderConfig(
        cell=cell,
        embedding_size=8,
        hidden_size=12,
        num_layers=layers,
        dropout=0.3,
        attention=attention,
        attention_query=query,
        input_feeding=input_feeding,
        bridge=bridge,
    )
    encoder = TextEncoderConfig(cell=cell, embedding_size=5, hidden_size=6)
    return build_translation_model(encoder, decoder, SOURCE_VOCAB, VOCAB, PAD).eval()


def padded_source(lengths: list[int] = SOURCE_LENGTHS, seed: int = 2) -> torch.Tensor:
    """(B, max(lengths)) source ids, padded at the end."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, SOURCE_VOCAB, (len(lengths), max(lengths)), generator=generator)
    return tokens.masked_fill(torch.arange(max(lengths)) >= torch.tensor(lengths).unsqueeze(1), PAD)


def run_steps(model: Seq2Seq, source: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, list, DecoderState]:
    """Teacher forcing through ``step``: logits (B, T, V), the weights of each step, final state."""
    encoder_output = model.encode(source)
    state = model.decoder.init_state(encoder_output)
    logits, weights = [], []
    for position in range(tokens.shape[1]):
        step_logits, state, step_weights = model.decoder.step(tokens[:, position], state, encoder_output)
        logits.append(step_logits)
        weights.append(step_weights)
    return torch.stack(logits, dim=1), weights, state


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("query", ["previous", "current"])
@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attention_step_in_a_loop_equals_forward(attention: str, input_feeding: bool, query: str, cell: str) -> None:
    model = make_translator(attention, input_feeding, query, cell, layers=2)
    source, tokens = padded_source(), random_tokens()
    with torch.no_grad():
        full, full_state = model(source, tokens)
        stepped, _, state = run_steps(model, source, tokens)
    assert torch.allclose(stepped, full, atol=1e-5)
    assert_states_close(state, full_state)
    assert (state.input_feed is not None) == input_feeding
    if input_feeding:
        assert torch.allclose(state.input_feed, full_state.input_feed, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("query", ["previous", "current"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_input_feeding_gradients_of_forward_equal_those_of_step_in_a_loop(
    attention: str, query: str, cell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teacher forcing computes each per-position weight's gradient in one product over all
    positions (StepwiseLinear); ``step`` leaves it to autograd, one product per position."""
    made: list[int] = []
    original_init = StepwiseLinear.__init__
    monkeypatch.setattr(StepwiseLinear, "__init__", lambda self, *args: made.append(1) or original_init(self, *args))
    model = make_translator(attention, True, query, cell, layers=2)
    source, tokens = padded_source(), random_tokens()
    parameters = [p for p in model.parameters() if p.requires_grad]
    full, _ = model(source, tokens)
    full_grads = torch.autograd.grad(full.square().sum(), parameters, allow_unused=True)
    stepwise_maps = len(made)
    stepped, _, _ = run_steps(model, source, tokens)
    stepped_grads = torch.autograd.grad(stepped.square().sum(), parameters, allow_unused=True)
    # feed, 2 recurrent, 1 input (layer 2) and combine; Bahdanau's query layer too
    assert stepwise_maps == 5 + (attention == "bahdanau") and len(made) == stepwise_maps
    for full_grad, stepped_grad in zip(full_grads, stepped_grads, strict=True):
        assert (full_grad is None) == (stepped_grad is None)
        if full_grad is not None:
            assert torch.allclose(full_grad, stepped_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_forward_returns_the_attention_of_each_step(attention: str, input_feeding: bool) -> None:
    model = make_translator(attention, input_feeding, layers=2)
    source, tokens = padded_source(), random_tokens()
    with torch.no_grad():
        logits, _, weights = model(source, tokens, return_attention=True)
        plain, _ = model(source, tokens)
        _, step_weights, _ = run_steps(model, source, tokens)
    assert torch.equal(logits, plain)
    assert torch.allclose(weights, torch.stack(step_weights, dim=1), atol=1e-5)


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_step_weights_sum_to_one_and_are_zero_on_padding(attention: str, input_feeding: bool) -> None:
    model = make_translator(attention, input_feeding)
    source = padded_source()
    with torch.no_grad():
        _, weights, _ = run_steps(model, source, random_tokens(length=3))
    real = source != PAD  # (B, S)
    for step_weights in weights:
        assert step_weights.shape == source.shape
        assert torch.allclose(step_weights.sum(-1), torch.ones(BATCH), atol=1e-6)
        assert (step_weights[~real] == 0).all() and (step_weights[real] > 0).all()


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("query", ["previous", "current"])
def test_previous_queries_attend_before_the_token_is_read(query: str, input_feeding: bool) -> None:
    model = make_translator("bahdanau", input_feeding, query)
    encoder_output = model.encode(padded_source())
    state = model.decoder.init_state(encoder_output)
    tokens = random_tokens()
    with torch.no_grad():
        _, _, first = model.decoder.step(tokens[:, 0], state, encoder_output)
        _, _, second = model.decoder.step(tokens[:, 1], state, encoder_output)
    assert torch.equal(first, second) == (query == "previous")


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("query", ["previous", "current"])
def test_the_query_is_the_top_hidden_state_before_or_after_the_step(query: str, input_feeding: bool) -> None:
    model = make_translator("general", input_feeding, query, cell="lstm", layers=2)
    queries: list[torch.Tensor] = []
    model.decoder.attention.register_forward_hook(lambda _, args, __: queries.append(args[0]))
    encoder_output = model.encode(padded_source())
    before = model.decoder.init_state(encoder_output)
    with torch.no_grad():
        _, after, _ = model.decoder.step(random_tokens()[:, 0], before, encoder_output)
    expected = before.hidden[-1] if query == "previous" else after.hidden[-1]
    assert len(queries) == 1 and torch.allclose(queries[0].reshape(expected.shape), expected)


def test_input_feeding_reaches_the_rnn() -> None:
    model = make_translator("dot", input_feeding=True)
    encoder_output = model.encode(padded_source())
    state = model.decoder.init_state(encoder_output)
    fed = DecoderState(state.hidden, state.cell, torch.randn(state.input_feed.shape))
    with torch.no_grad():
        plain, plain_state, _ = model.decoder.step(random_tokens()[:, 0], state, encoder_output)
        changed, changed_state, _ = model.decoder.step(random_tokens()[:, 0], fed, encoder_output)
    assert not torch.allclose(plain_state.hidden, changed_state.hidden)
    assert not torch.allclose(plain, changed)


def count_calls(module: torch.nn.Module) -> list[int]:
    """A one-element list that counts the module's forward calls."""
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("query", ["previous", "current"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_forward_without_input_feeding_takes_the_fused_path(attention: str, query: str) -> None:
    model = make_translator(attention, query=query, cell="lstm", layers=2)
    rnn_calls, attention_calls = count_calls(model.decoder.rnn), count_calls(model.decoder.attention)
    with torch.no_grad():
        model(padded_source(), random_tokens())
    assert rnn_calls == [1] and attention_calls == [1]


def test_forward_with_input_feeding_steps_through_the_positions() -> None:
    model = make_translator("general", input_feeding=True)
    attention_calls = count_calls(model.decoder.attention)
    with torch.no_grad():
        model(padded_source(), random_tokens())
    assert attention_calls == [LENGTH]


def test_keys_are_prepared_once_per_source() -> None:
    model = make_translator("bahdanau", input_feeding=True)
    prepared = [0]
    original = model.decoder.attention.prepare

    def counting_prepare(memory: torch.Tensor) -> torch.Tensor:
        prepared[0] += 1
        return original(memory)

    model.decoder.attention.prepare = counting_prepare
    with torch.no_grad():
        run_steps(model, padded_source(), random_tokens())
        model(padded_source(), random_tokens())
    assert prepared == [2]  # one per encoded source, none per step


@pytest.mark.parametrize("attention", ["dot", "general"])
def test_encoder_output_repeats_with_its_keys(attention: str) -> None:
    model = make_translator(attention)
    with torch.no_grad():
        encoder_output = model.encode(padded_source())
    index = torch.tensor([2, 2, 0])
    picked = encoder_output.index_select(index)
    assert torch.equal(picked.keys, encoder_output.keys[index])
    assert (picked.keys is picked.memory) == (attention == "dot")


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_translation_does_not_depend_on_the_rest_of_the_batch(attention: str, input_feeding: bool) -> None:
    model = make_translator(attention, input_feeding, cell="lstm")
    source = padded_source()
    target_lengths = [7, 3, 5]
    tokens = random_tokens().masked_fill(torch.arange(LENGTH) >= torch.tensor(target_lengths).unsqueeze(1), PAD)
    with torch.no_grad():
        together, _ = model(source, tokens)
        for row, (source_length, target_length) in enumerate(zip(SOURCE_LENGTHS, target_lengths)):
            alone, _ = model(source[row : row + 1, :source_length], tokens[row : row + 1, :target_length])
            assert torch.allclose(together[row, :target_length], alone[0], atol=1e-5)


def test_state_with_input_feed_reorders_detaches_and_round_trips() -> None:
    model = make_translator("dot", input_feeding=True, cell="lstm").train()
    _, state = model(padded_source(), random_tokens())
    assert state.input_feed.shape == (BATCH, 12) and state.input_feed.requires_grad
    index = torch.tensor([1, 1, 0])
    assert torch.equal(state.index_select(index).input_feed, state.input_feed[index])
    assert not state.detach().input_feed.requires_grad
    tensors = state.tensors()
    assert set(tensors) == {"hidden", "cell", "input_feed"}
    assert torch.equal(DecoderState.from_tensors(tensors).input_feed, state.input_feed)


def test_a_state_without_input_feed_is_refused_by_an_input_feeding_decoder() -> None:
    model = make_translator("dot", input_feeding=True)
    encoder_output = model.encode(padded_source())
    state = DecoderState(model.decoder.init_state(encoder_output).hidden)
    with pytest.raises(ValueError, match="init_state"):
        model.decoder.step(random_tokens()[:, 0], state, encoder_output)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_linear_bridge_starts_every_layer_from_the_encoder_summary(cell: str) -> None:
    model = make_translator(cell=cell, layers=2, input_feeding=True)
    encoder_output = model.encode(padded_source())
    state = model.decoder.init_state(encoder_output)
    expected = torch.tanh(model.decoder.bridge(encoder_output.summary))  # (B, H)
    assert torch.allclose(state.hidden[0], expected) and torch.allclose(state.hidden[1], expected)
    assert (state.cell is None) == (cell == "gru")
    if state.cell is not None:
        assert not state.cell.any()
    assert not state.input_feed.any()


@pytest.mark.parametrize("bridge", ["copy", "none"])
def test_copy_and_no_bridge(bridge: str) -> None:
    model = make_translator(bridge=bridge)
    assert model.decoder.bridge is None
    encoder_output = model.encode(padded_source())
    hidden = model.decoder.init_state(encoder_output).hidden
    assert torch.equal(hidden[0], encoder_output.summary if bridge == "copy" else torch.zeros_like(hidden[0]))


def test_without_attention_the_translation_model_reads_the_source_through_the_bridge() -> None:
    model = make_translator("none")
    assert model.decoder.attention is None
    with torch.no_grad():
        logits, _ = model(padded_source(), random_tokens())
        other, _ = model(padded_source(seed=5), random_tokens())
    assert logits.shape == (BATCH, LENGTH, VOCAB)
    assert not torch.allclose(logits, other)


def test_the_language_model_keeps_its_parameters() -> None:
    model = build_language_model(DecoderConfig(embedding_size=8, hidden_size=12), VOCAB, PAD)
    names = {name for name, _ in model.named_parameters()}
    assert names == {
        "decoder.embedding.weight",
        "decoder.rnn.weight_ih_l0",
        "decoder.rnn.weight_hh_l0",
        "decoder.rnn.bias_ih_l0",
        "decoder.rnn.bias_hh_l0",
        "decoder.output.weight",
        "decoder.output.bias",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attention": "luong"}, r"decoder.attention must be one of none, bahdanau, dot, general; got 'luong'"),
        ({"attention_query": "next"}, r"decoder.attention_query.*previous.*'next'"),
        ({"bridge": "mlp"}, r"decoder.bridge must be one of linear, copy, none"),
        ({"input_feeding": True}, r"decoder.input_feeding.*needs attention"),
        ({"hidden_size": 0}, r"decoder.hidden_size must be >= 1, got 0"),
        ({"dropout": 1.5}, r"decoder.dropout must be in \[0, 1\), got 1.5"),
    ],
)
def test_bad_attention_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_translation_model(TextEncoderConfig(), DecoderConfig(**changes), SOURCE_VOCAB, VOCAB, PAD)


def test_attention_without_an_encoder_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="set decoder.attention=none"):
        build_language_model(DecoderConfig(attention="general"), VOCAB, PAD)


def test_copy_bridge_needs_matching_sizes() -> None:
    decoder = DecoderConfig(hidden_size=32, bridge="copy")
    with pytest.raises(ConfigError, match=r"summary size \(16\).*decoder.hidden_size \(32\)"):
        build_translation_model(TextEncoderConfig(hidden_size=8), decoder, SOURCE_VOCAB, VOCAB, PAD)


@pytest.mark.parametrize(("attention", "input_feeding"), [("general", False), ("bahdanau", True)])
def test_tiny_translation_model_learns_to_reverse(attention: str, input_feeding: bool) -> None:
    torch.manual_seed(0)
    bos, eos = 1, 2
    source = torch.tensor([[3, 4, 5, 6], [6, 5, 7, 0], [4, 7, 3, 0], [5, 3, 0, 0]])
    reversed_rows = [[t for t in row if t != PAD][::-1] for row in source.tolist()]
    target = torch.tensor([[bos, *row, eos] + [PAD] * (4 - len(row)) for row in reversed_rows])
    target_in, target_out = target[:, :-1], target[:, 1:]
    decoder = DecoderConfig(
        cell="gru", embedding_size=16, hidden_size=32, attention=attention, input_feeding=input_feeding
    )
    encoder = TextEncoderConfig(embedding_size=16, hidden_size=16)
    model = build_translation_model(encoder, decoder, source_vocab_size=8, target_vocab_size=8, pad_id=PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(150):
        logits, _ = model(source, target_in)
        loss = F.cross_entropy(logits.flatten(0, 1), target_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() < 0.05:
            break
    assert losses[-1] < 0.05 < losses[0]


@pytest.mark.parametrize("tie", [False, True])
def test_unprojected_forward_returns_what_the_output_layer_reads(tie: bool) -> None:
    model = make_translator("bahdanau", input_feeding=True)
    if tie:
        config = DecoderConfig(embedding_size=6, hidden_size=10, tie_embeddings=True, attention="general")
        model = build_translation_model(TextEncoderConfig(), config, SOURCE_VOCAB, VOCAB, PAD)
    model.eval()
    source, target = padded_source(), random_tokens()
    with torch.no_grad():
        logits, state = model(source, target)
        features, unprojected_state = model(source, target, project=False)
    assert features.shape[-1] == model.decoder.output.in_features
    assert torch.allclose(model.decoder.output(features), logits, atol=1e-6)
    assert torch.equal(state.hidden, unprojected_state.hidden)


# --- the embedding gates folded into a table for decoding -------------------------------------


@pytest.mark.parametrize(
    ("attention", "input_feeding", "cell"),
    [("bahdanau", True, "gru"), ("bahdanau", True, "lstm"), ("general", False, "gru"), ("dot", False, "lstm")],
)
def test_folded_embedding_gates_decode_as_the_products_do(attention: str, input_feeding: bool, cell: str) -> None:
    model = make_translator(attention, input_feeding, cell=cell, layers=2)
    source, tokens = padded_source(), random_tokens()
    with torch.no_grad():
        computed, computed_weights, computed_state = run_steps(model, source, tokens)
        forced, _ = model(source, tokens)
        model.decoder.fold_embedding_gates()
        embedding_calls, rnn_calls = count_calls(model.decoder.embedding), count_calls(model.decoder.rnn)
        looked_up, looked_up_weights, looked_up_state = run_steps(model, source, tokens)
        if input_feeding:  # teacher forcing with input feeding reads the table as well
            forced_looked_up, _ = model(source, tokens)
            assert torch.allclose(forced_looked_up, forced, atol=1e-5)
    gates = model.decoder.rnn.weight_ih_l0.shape[0]
    assert model.decoder.embedding_gate_table is not None
    assert model.decoder.embedding_gate_table.shape == (VOCAB, gates)
    assert embedding_calls == [0] and rnn_calls == [0]  # the steps read the table and run the cells themselves
    assert torch.allclose(looked_up, computed, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(looked_up_weights, computed_weights))
    assert_states_close(looked_up_state, computed_state)
    assert (looked_up_state.input_feed is None) == (not input_feeding)


def test_a_decoder_without_attention_keeps_its_fused_step() -> None:
    decoder = make_decoder("lstm", layers=2)
    decoder.fold_embedding_gates()
    assert decoder.embedding_gate_table is None
    rnn_calls = count_calls(decoder.rnn)
    with torch.no_grad():
        decoder.step(random_tokens()[:, 0], decoder.init_state(no_input()), no_input())
    assert rnn_calls == [1]


def test_the_gate_table_is_dropped_for_training_and_follows_the_dtype() -> None:
    model = make_translator("bahdanau", input_feeding=True)
    model.decoder.fold_embedding_gates()
    model.to(torch.float64)
    assert model.decoder.embedding_gate_table is not None
    assert model.decoder.embedding_gate_table.dtype == torch.float64
    assert "decoder.embedding_gate_table" not in model.state_dict()  # checkpoints do not carry it
    model.train()
    assert model.decoder.embedding_gate_table is None


def test_folding_a_decoder_in_training_mode_is_refused() -> None:
    model = make_translator("bahdanau", input_feeding=True).train()
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first"):
        model.decoder.fold_embedding_gates()
    assert model.decoder.embedding_gate_table is None


def test_no_gate_table_beyond_its_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_translator("bahdanau", input_feeding=True)
    table_bytes = VOCAB * model.decoder.rnn.weight_ih_l0.shape[0] * 4
    monkeypatch.setattr(decoder_module, "GATE_TABLE_MAX_BYTES", table_bytes - 1)
    model.decoder.fold_embedding_gates()
    assert model.decoder.embedding_gate_table is None
    monkeypatch.setattr(decoder_module, "GATE_TABLE_MAX_BYTES", table_bytes)
    model.decoder.fold_embedding_gates()
    assert model.decoder.embedding_gate_table is not None
