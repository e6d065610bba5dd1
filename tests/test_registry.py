"""Tests for seq2seq.models.registry: the Encoder protocol and the registry of text encoders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config import ConfigError, DecodeConfig, DecoderConfig, TextEncoderConfig, load_config
from seq2seq.decoding import SpecialIds, generate
from seq2seq.models import (
    Encoder,
    EncoderOutput,
    RNNEncoder,
    build_text_encoder,
    build_translation_model,
    register_encoder,
    registered_encoders,
)
from seq2seq.run_configs import TranslationConfig

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SOURCE_VOCAB, TARGET_VOCAB = 13, 11


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MeanEncoder(nn.Module):
    """A tiny encoder: the source embeddings are the memory, their mean over real positions the summary."""

    def __init__(self, config: TextEncoderConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.output_size = config.options.get("size", config.embedding_size)
        self.embedding = nn.Embedding(vocab_size, self.output_size, padding_idx=pad_id)

    def forward(self, source: Tensor) -> EncoderOutput:
        """source: (B, S) ids padded with pad_id -> memory (B, S, H), mask (B, S), summary (B, H)."""
        mask = source != self.pad_id  # (B, S)
        memory = self.embedding(source)  # (B, S, H)
        counts = mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
        summary = (memory * mask.unsqueeze(-1)).sum(dim=1) / counts  # (B, H)
        return EncoderOutput(source.shape[0], memory=memory, mask=mask, summary=summary)


def build_mean_encoder(config: TextEncoderConfig, vocab_size: int, pad_id: int) -> nn.Module:
    return MeanEncoder(config, vocab_size, pad_id)


register_encoder("test_mean", build_mean_encoder)


def padded_source() -> Tensor:
    """(3, 5) source ids with 5, 2 and 4 real tokens, padded at the end."""
    torch.manual_seed(5)
    tokens = torch.randint(4, SOURCE_VOCAB, (3, 5))
    lengths = torch.tensor([5, 2, 4])
    return tokens.masked_fill(torch.arange(5) >= lengths.unsqueeze(1), PAD)


def mean_translation_model(attention: str = "general") -> nn.Module:
    config = load_config(
        TranslationConfig,
        overrides=[
            "encoder.kind=test_mean",
            "encoder.options={size: 10}",
            f"decoder.attention={attention}",
            "decoder.embedding_size=8",
            "decoder.hidden_size=12",
        ],
    )
    torch.manual_seed(0)
    return build_translation_model(config.encoder, config.decoder, SOURCE_VOCAB, TARGET_VOCAB, PAD).eval()


def test_rnn_is_registered_by_the_package() -> None:
    assert "rnn" in registered_encoders()
    encoder = build_text_encoder(TextEncoderConfig(hidden_size=6), SOURCE_VOCAB, PAD)
    assert isinstance(encoder, RNNEncoder)
    assert isinstance(encoder, Encoder)
    assert encoder.output_size == 12


def test_a_registered_encoder_builds_a_translation_model_that_trains_and_decodes() -> None:
    model = mean_translation_model()
    assert isinstance(model.encoder, MeanEncoder) and isinstance(model.encoder, Encoder)
    assert model.encoder.output_size == 10  # from encoder.options
    source = padded_source()
    target_in = torch.randint(4, TARGET_VOCAB, (3, 4))
    logits, _ = model(source, target_in)
    assert logits.shape == (3, 4, TARGET_VOCAB)
    logits.sum().backward()
    assert model.encoder.embedding.weight.grad is not None  # attention and bridge reach the encoder

    special = SpecialIds(pad=PAD, bos=BOS, eos=EOS, unk=UNK)
    for method in ("greedy", "beam"):
        config = DecodeConfig(method=method, beam_size=3, max_length=6)
        result = generate(model, source, config, special)
        assert result.tokens.shape[:2] == (3, 1)
        assert result.tokens.shape[2] <= 6
        assert result.attention is not None and result.attention.shape[-1] == source.shape[1]
        # Attention never reads padding: the second sentence has two real tokens.
        assert torch.all(result.attention[1, :, :, 2:] == 0)


def test_a_registered_encoder_without_attention_starts_the_decoder_from_its_summary() -> None:
    model = mean_translation_model(attention="none")
    source = padded_source()
    state = model.decoder.init_state(model.encode(source))
    other = model.decoder.init_state(model.encode(source.flip(0)))
    assert not torch.allclose(state.hidden, other.hidden)


def test_an_unknown_kind_lists_the_registered_encoders_and_says_to_import_the_module() -> None:
    with pytest.raises(ConfigError) as error:
        build_text_encoder(TextEncoderConfig(kind="transformer"), SOURCE_VOCAB, PAD)
    message = str(error.value)
    assert "encoder.kind 'transformer'" in message
    assert "rnn" in message and "test_mean" in message
    assert "import" in message


def test_a_taken_name_is_refused_unless_replaced() -> None:
    register_encoder("test_mean", build_mean_encoder)  # the same builder again: nothing changes
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("rnn", build_mean_encoder)
    register_encoder("test_other", build_mean_encoder)
    register_encoder(
        "test_other", lambda config, vocab_size, pad_id: MeanEncoder(config, vocab_size, pad_id), replace=True
    )


def test_an_encoder_without_output_size_is_refused() -> None:
    register_encoder("test_no_size", lambda config, vocab_size, pad_id: nn.Identity())
    with pytest.raises(TypeError, match="output_size"):
        build_text_encoder(TextEncoderConfig(kind="test_no_size"), SOURCE_VOCAB, PAD)


def test_the_decoder_sizes_attention_and_bridge_from_output_size() -> None:
    model = mean_translation_model("general")
    assert model.decoder.bridge.in_features == 10
    assert model.decoder.combine.in_features == 12 + 10


def test_a_decoder_config_alone_is_enough_for_the_default_encoder() -> None:
    model = build_translation_model(TextEncoderConfig(), DecoderConfig(attention="dot", hidden_size=512), 9, 9, PAD)
    assert isinstance(model.encoder, RNNEncoder)
