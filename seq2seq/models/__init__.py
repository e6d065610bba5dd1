"""Encoders (behind the ``Encoder`` protocol and a registry), attention, the shared RNN decoder
and the model that joins them."""

from seq2seq.models.attention import (
    Attention,
    BahdanauAttention,
    DotAttention,
    GeneralAttention,
    build_attention,
)
from seq2seq.models.decoder import DecoderState, RNNDecoder
from seq2seq.models.encoders import EncoderOutput, PrimeEncoder, RNNEncoder
from seq2seq.models.image_encoder import CNNEncoder, ImageEncoderConfig
from seq2seq.models.registry import Encoder, build_text_encoder, register_encoder, registered_encoders
from seq2seq.models.seq2seq import Seq2Seq, build_captioning_model, build_language_model, build_translation_model

__all__ = [
    "Attention",
    "BahdanauAttention",
    "CNNEncoder",
    "DecoderState",
    "DotAttention",
    "Encoder",
    "EncoderOutput",
    "GeneralAttention",
    "ImageEncoderConfig",
    "PrimeEncoder",
    "RNNDecoder",
    "RNNEncoder",
    "Seq2Seq",
    "build_attention",
    "build_captioning_model",
    "build_language_model",
    "build_text_encoder",
    "build_translation_model",
    "register_encoder",
    "registered_encoders",
]
