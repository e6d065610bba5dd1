"""The model: an encoder and the shared decoder, and the builders for each task."""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from seq2seq.config import DecoderConfig, TextEncoderConfig
from seq2seq.models.decoder import DecoderState, RNNDecoder
from seq2seq.models.encoders import EncoderOutput, PrimeEncoder
from seq2seq.models.image_encoder import CNNEncoder, ImageEncoderConfig
from seq2seq.models.registry import build_text_encoder


class Seq2Seq(nn.Module):
    """encoder(source) -> EncoderOutput -> decoder(target)."""

    def __init__(self, encoder: nn.Module, decoder: RNNDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, source: Tensor) -> EncoderOutput:
        """The encoder output, prepared once for the decoder's attention."""
        return self.decoder.prepare(self.encoder(source))

    def forward(
        self,
        source: Tensor,
        target_in: Tensor,
        state: DecoderState | None = None,
        return_attention: bool = False,
        project: bool = True,
        source_rows: Tensor | None = None,
    ) -> tuple[Tensor, DecoderState] | tuple[Tensor, DecoderState, Tensor | None]:
        """Teacher forcing. source: task input (B, ...); target_in: (B', T), one row per input, or
        with ``source_rows`` (B',) the input each row continues (several captions of one image,
        encoded once). Returns (B', T, V) logits (with ``project=False`` the output layer's
        inputs) and the state, and with ``return_attention`` the (B', T, S) attention weights
        (see ``RNNDecoder.forward``)."""
        encoder_output = self.encode(source)
        if source_rows is not None:
            encoder_output = encoder_output.index_select(source_rows)
        return self.decoder(target_in, encoder_output, state, return_attention, project)


def build_language_model(decoder: DecoderConfig, vocab_size: int, pad_id: int) -> Seq2Seq:
    """Free text generation: no input, the shared decoder alone."""
    return Seq2Seq(PrimeEncoder(), RNNDecoder(vocab_size, decoder, pad_id))


def build_translation_model(
    encoder: TextEncoderConfig, decoder: DecoderConfig, source_vocab_size: int, target_vocab_size: int, pad_id: int
) -> Seq2Seq:
    """Translation: the encoder that encoder.kind names (an RNN by default) over source tokens,
    and the shared decoder.

    The decoder attends over the encoder memory (decoder.attention) and starts from the
    encoder summary through the bridge (decoder.bridge), both sized by the encoder's
    ``output_size``.
    """
    text_encoder = build_text_encoder(encoder, source_vocab_size, pad_id)
    size = cast(int, text_encoder.output_size)  # build_text_encoder checked that it is an int
    text_decoder = RNNDecoder(target_vocab_size, decoder, pad_id, memory_size=size, summary_size=size)
    return Seq2Seq(text_encoder, text_decoder)


def build_captioning_model(
    image_encoder: ImageEncoderConfig, decoder: DecoderConfig, vocab_size: int, pad_id: int
) -> Seq2Seq:
    """Captioning: a CNN over the image and the shared decoder.

    With attention the decoder reads the CNN's k x k grid (Show, Attend and Tell); with
    decoder.attention=none only the pooled image vector starts its state (Show and Tell).
    """
    cnn = CNNEncoder(image_encoder)
    size = cnn.output_size
    return Seq2Seq(cnn, RNNDecoder(vocab_size, decoder, pad_id, memory_size=size, summary_size=size))
