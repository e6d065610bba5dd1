"""Tests for seq2seq.models: the shared RNN decoder, its state, encoder outputs, the LM builder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.nn import functional as F

from seq2seq.config import ModelConfig
from seq2seq.models import DecoderState, EncoderOutput, PrimeEncoder, RNNDecoder, build_language_model
from seq2seq.models.decoder import count_parameters
from seq2seq.models.encoders import empty_source

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
    config = ModelConfig(cell=cell, embedding_size=8, hidden_size=12, num_layers=layers, dropout=0.3, **changes)
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
    config = ModelConfig(embedding_size=embedding, hidden_size=hidden, tie_embeddings=True)
    decoder = RNNDecoder(VOCAB, config, PAD)
    assert decoder.output.weight is decoder.embedding.weight
    assert decoder.output.weight.data_ptr() == decoder.embedding.weight.data_ptr()
    logits, _ = decoder(random_tokens(), no_input())
    assert logits.shape == (BATCH, LENGTH, VOCAB)
    logits.sum().backward()
    assert decoder.embedding.weight.grad is not None
    untied = RNNDecoder(VOCAB, ModelConfig(embedding_size=embedding, hidden_size=hidden), PAD)
    assert count_parameters(decoder) < count_parameters(untied)


def test_tied_weights_stay_shared_after_an_update() -> None:
    decoder = RNNDecoder(VOCAB, ModelConfig(embedding_size=8, hidden_size=12, tie_embeddings=True), PAD)
    optimizer = torch.optim.SGD(decoder.parameters(), lr=0.5)
    logits, _ = decoder(random_tokens(), no_input())
    logits.pow(2).mean().backward()
    optimizer.step()
    assert torch.equal(decoder.output.weight, decoder.embedding.weight)


def test_count_parameters_counts_shared_tensors_once() -> None:
    decoder = RNNDecoder(VOCAB, ModelConfig(embedding_size=12, hidden_size=12, tie_embeddings=True), PAD)
    unique = {id(p): p.numel() for module in decoder.modules() for p in module.parameters(recurse=False)}
    assert count_parameters(decoder) == sum(unique.values())


def test_unknown_cell_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"model.cell.*gru.*lstm.*rnn.*'transformer'"):
        RNNDecoder(VOCAB, ModelConfig(cell="transformer"), PAD)


def test_language_model_runs_the_decoder_on_an_empty_source() -> None:
    torch.manual_seed(0)
    model = build_language_model(ModelConfig(embedding_size=8, hidden_size=12), VOCAB, PAD).eval()
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
    model = build_language_model(ModelConfig(embedding_size=16, hidden_size=32), vocab_size=7, pad_id=PAD)
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
