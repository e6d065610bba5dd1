"""Tests for seq2seq.models.encoders: the RNN encoder over padded source sentences."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ConfigError, TextEncoderConfig
from seq2seq.models import RNNEncoder
from seq2seq.models.encoders import EncoderOutput
from seq2seq.models.unpacked_rnn import rnn_without_packing

VOCAB, PAD = 11, 0
HIDDEN = 6
LENGTHS = [5, 2, 4]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_encoder(cell: str = "gru", bidirectional: bool = True, layers: int = 1, dropout: float = 0.0) -> RNNEncoder:
    torch.manual_seed(0)
    config = TextEncoderConfig(
        cell=cell, embedding_size=5, hidden_size=HIDDEN, num_layers=layers, bidirectional=bidirectional, dropout=dropout
    )
    return RNNEncoder(VOCAB, config, PAD).eval()


def padded_source(lengths: list[int] = LENGTHS, seed: int = 1) -> torch.Tensor:
    """(B, max(lengths)) random ids, padded at the end."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (len(lengths), max(lengths)), generator=generator)
    return tokens.masked_fill(torch.arange(max(lengths)) >= torch.tensor(lengths).unsqueeze(1), PAD)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_output_shapes_and_mask(cell: str, bidirectional: bool, layers: int) -> None:
    encoder = make_encoder(cell, bidirectional, layers)
    source = padded_source()
    output = encoder(source)
    size = (2 if bidirectional else 1) * HIDDEN
    assert encoder.output_size == size
    assert output.batch_size == len(LENGTHS)
    assert output.memory.shape == (len(LENGTHS), max(LENGTHS), size)
    assert output.summary.shape == (len(LENGTHS), size)
    assert torch.equal(output.mask, source != PAD)
    assert output.keys is None


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_is_never_read(cell: str) -> None:
    encoder = make_encoder(cell, layers=2)
    source = padded_source()
    with torch.no_grad():
        together = encoder(source)
        for row, length in enumerate(LENGTHS):
            alone = encoder(source[row : row + 1, :length])
            more_padding = encoder(torch.nn.functional.pad(source[row : row + 1, :length], (0, 3), value=PAD))
            assert torch.allclose(together.memory[row, :length], alone.memory[0], atol=1e-5)
            assert torch.allclose(together.summary[row], alone.summary[0], atol=1e-5)
            assert torch.allclose(more_padding.summary[0], alone.summary[0], atol=1e-5)
    assert (together.memory.masked_select(~together.mask.unsqueeze(-1)) == 0).all()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_summary_is_the_final_forward_and_backward_states(cell: str) -> None:
    encoder = make_encoder(cell, layers=2)
    with torch.no_grad():
        output = encoder(padded_source())
    for row, length in enumerate(LENGTHS):
        forward_end = output.memory[row, length - 1, :HIDDEN]  # the forward RNN's last real step
        backward_end = output.memory[row, 0, HIDDEN:]  # the backward RNN ends at the first token
        assert torch.allclose(output.summary[row], torch.cat([forward_end, backward_end]), atol=1e-6)


def test_unidirectional_summary_is_the_last_real_state() -> None:
    encoder = make_encoder(bidirectional=False)
    with torch.no_grad():
        output = encoder(padded_source())
    for row, length in enumerate(LENGTHS):
        assert torch.allclose(output.summary[row], output.memory[row, length - 1], atol=1e-6)


def test_an_empty_source_row_is_read_as_one_pad_token() -> None:
    encoder = make_encoder()
    source = padded_source([3, 0, 2])
    with torch.no_grad():
        output = encoder(source)
        lone_pad = encoder(torch.full((1, 1), PAD))
    assert output.mask[1].tolist() == [True, False, False]
    assert torch.isfinite(output.memory).all() and torch.isfinite(output.summary).all()
    assert torch.allclose(output.summary[1], lone_pad.summary[0], atol=1e-6)


def test_a_batch_of_empty_sources_still_encodes() -> None:
    output = make_encoder()(torch.empty(2, 0, dtype=torch.long))
    assert output.memory.shape == (2, 1, 2 * HIDDEN)
    assert output.mask.all()


def test_dropout_is_active_in_training_mode_only() -> None:
    encoder = make_encoder(layers=2, dropout=0.5)
    source = padded_source()
    with torch.no_grad():
        assert torch.equal(encoder(source).memory, encoder(source).memory)
        encoder.train()
        assert not torch.equal(encoder(source).memory, encoder(source).memory)


def test_gradients_reach_every_parameter() -> None:
    encoder = make_encoder("lstm", layers=2).train()
    output = encoder(padded_source())
    (output.memory.sum() + output.summary.sum()).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_training_without_packing_reads_as_packing_does(cell: str, bidirectional: bool, layers: int) -> None:
    """With gradients on the CPU the encoder runs its RNN over the padded batch; its memory and
    summary are those of the packed run that decoding uses, and so are the weights' gradients."""
    encoder = make_encoder(cell, bidirectional, layers)
    source = padded_source()
    with torch.no_grad():
        packed = encoder(source)
    unpacked = encoder(source)
    assert unpacked.memory.requires_grad
    torch.testing.assert_close(unpacked.memory, packed.memory, atol=1e-6, rtol=0)
    torch.testing.assert_close(unpacked.summary, packed.summary, atol=1e-6, rtol=0)

    inputs = torch.randn(len(LENGTHS), max(LENGTHS), 5)
    lengths = torch.tensor(LENGTHS)
    outputs, finals = rnn_without_packing(encoder.rnn, inputs, lengths)
    (outputs.square().sum() + finals.sum()).backward()
    without_packing = {name: p.grad.clone() for name, p in encoder.rnn.named_parameters() if p.grad is not None}
    encoder.rnn.zero_grad()
    packed_out, final = encoder.rnn(pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed_out, batch_first=True)
    final_hidden = final[0] if isinstance(final, tuple) else final  # (L * D, B, H)
    (padded.square().sum() + final_hidden[-finals.shape[0] :].sum()).backward()
    assert without_packing.keys() == {name for name, _ in encoder.rnn.named_parameters()}
    for name, parameter in encoder.rnn.named_parameters():
        torch.testing.assert_close(without_packing[name], parameter.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_unknown_encoder_cell_is_named_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"encoder.cell must be one of lstm, gru, rnn; got 'transformer'"):
        RNNEncoder(VOCAB, TextEncoderConfig(cell="transformer"), PAD)


@pytest.mark.parametrize(
    ("key", "value"), [("hidden_size", 0), ("num_layers", 0), ("dropout", 1.0), ("embedding_size", -3)]
)
def test_sizes_out_of_range_are_refused_by_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^encoder.{key} must be"):
        RNNEncoder(VOCAB, TextEncoderConfig(**{key: value}), PAD)


def shared_and_copied(copies: int) -> tuple[EncoderOutput, EncoderOutput]:
    """An encoder output for 3 inputs repeated ``copies`` times: shared, and copied per row."""
    encoder = make_encoder().eval()
    with torch.no_grad():
        output = encoder(padded_source([4, 2, 3]))
    output = dataclasses.replace(output, keys=output.memory * 2)
    rows = torch.arange(3).repeat_interleave(copies)
    return output.repeated(copies), output.index_select(rows)


def assert_same_rows(shared: EncoderOutput, copied: EncoderOutput) -> None:
    """``shared``, its memory, mask and keys repeated for the rows that read them, is ``copied``."""
    assert copied.copies == 1 and shared.batch_size == copied.batch_size
    for name in ("memory", "mask", "keys"):
        assert torch.equal(getattr(shared, name).repeat_interleave(shared.copies, dim=0), getattr(copied, name)), name
    assert torch.equal(shared.summary, copied.summary)


def test_a_repeated_output_shares_one_memory_per_input() -> None:
    shared, copied = shared_and_copied(copies=2)
    assert (shared.batch_size, shared.copies) == (6, 2)
    assert shared.memory is not None and shared.memory.shape[0] == 3
    assert_same_rows(shared, copied)


def test_selecting_whole_inputs_keeps_the_memory_shared() -> None:
    shared, copied = shared_and_copied(copies=2)
    rows = torch.tensor([4, 5, 0, 1])  # inputs 2 and 0, each with both of its rows
    picked = shared.index_select(rows)
    assert (picked.batch_size, picked.copies) == (4, 2)
    assert picked.memory is not None and picked.memory.shape[0] == 2
    assert_same_rows(picked, copied.index_select(rows))


@pytest.mark.parametrize("rows", [[0, 1, 2], [1, 0, 2, 3], [2, 3, 3, 2]])
def test_selecting_rows_that_split_an_input_copies_the_memory_out(rows: list[int]) -> None:
    shared, copied = shared_and_copied(copies=2)
    picked = shared.index_select(torch.tensor(rows))
    assert picked.copies == 1
    assert_same_rows(picked, copied.index_select(torch.tensor(rows)))
