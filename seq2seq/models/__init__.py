"""Encoders, the shared RNN decoder and the model that joins them."""

from seq2seq.models.decoder import DecoderState, RNNDecoder
from seq2seq.models.encoders import EncoderOutput, PrimeEncoder
from seq2seq.models.seq2seq import Seq2Seq, build_language_model

__all__ = [
    "DecoderState",
    "EncoderOutput",
    "PrimeEncoder",
    "RNNDecoder",
    "Seq2Seq",
    "build_language_model",
]
