"""What an encoder promises the shared decoder, and the registry of translation's text encoders.

A translation model's encoder is named by ``encoder.kind`` in its config and built by
``build_text_encoder`` from the builder registered under that name. The package registers
``rnn`` (``RNNEncoder``). To use an encoder of your own::

    from seq2seq.models import register_encoder

    class MeanEncoder(nn.Module):
        ...  # forward(source) -> EncoderOutput, and an output_size attribute

    register_encoder("mean", lambda config, vocab_size, pad_id: MeanEncoder(config, vocab_size, pad_id))

then set ``encoder.kind: mean`` (and its settings under ``encoder.options``). The registry
lives in the process: the module that registers the encoder must be imported before a model
with that kind is trained or loaded, or the kind is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from seq2seq.config import ConfigError, TextEncoderConfig
from seq2seq.models.encoders import EncoderOutput, RNNEncoder


@runtime_checkable
class Encoder(Protocol):
    """An encoder the shared decoder can read (an ``nn.Module`` in practice).

    ``forward(source)`` takes the task's input, (B, S) token ids padded at the end with the
    pad id for text, and returns an ``EncoderOutput`` with ``batch_size`` B and:

    - ``memory``: (B, S', H) the vectors attention reads, or None when there is nothing to
      attend to (the decoder then needs ``decoder.attention: none``);
    - ``mask``: (B, S') True at real positions, or None when every position is real;
    - ``summary``: (B, H) the vector the decoder's bridge starts its state from, or None to
      start from zeros.

    ``output_size`` is H: the decoder sizes its attention and its bridge from it. Each row
    of the output depends on its own input row only (the same sentence encodes the same way
    in any batch), and padding is never read: a row's memory, mask and summary do not change
    with the padding after it. Positions where ``mask`` is False are never attended to.
    """

    output_size: int

    def __call__(self, source: Tensor) -> EncoderOutput: ...


#: Builds an encoder from the ``encoder`` section, the source vocabulary size and the pad id.
EncoderBuilder = Callable[[TextEncoderConfig, int, int], nn.Module]

_ENCODERS: dict[str, EncoderBuilder] = {}


def register_encoder(name: str, builder: EncoderBuilder, *, replace: bool = False) -> None:
    """Make ``encoder.kind: <name>`` build its encoder with ``builder(config, vocab_size, pad_id)``.

    Registering another builder under a taken name is refused unless ``replace`` is set;
    registering the same builder again does nothing.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an encoder's name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise TypeError(f"the builder of encoder {name!r} must be callable, got {builder!r}")
    if name in _ENCODERS and _ENCODERS[name] is not builder and not replace:
        raise ValueError(f"an encoder named {name!r} is already registered; pass replace=True to replace it")
    _ENCODERS[name] = builder


def registered_encoders() -> list[str]:
    """The names ``encoder.kind`` can take, sorted."""
    return sorted(_ENCODERS)


def build_text_encoder(config: TextEncoderConfig, vocab_size: int, pad_id: int) -> nn.Module:
    """The encoder that ``config.kind`` names, for a source vocabulary of ``vocab_size``."""
    builder = _ENCODERS.get(config.kind)
    if builder is None:
        raise ConfigError(
            f"encoder.kind {config.kind!r} is not a registered encoder; registered: "
            f"{', '.join(registered_encoders())}. A custom encoder registers itself with "
            "seq2seq.models.register_encoder when its module is imported: import that module "
            "before training or loading a model that uses it."
        )
    encoder = builder(config, vocab_size, pad_id)
    size = getattr(encoder, "output_size", None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise TypeError(
            f"the encoder built for encoder.kind {config.kind!r} ({type(encoder).__name__}) needs an "
            f"output_size attribute, the size H of its memory and summary vectors; got {size!r}"
        )
    return encoder


def _build_rnn_encoder(config: TextEncoderConfig, vocab_size: int, pad_id: int) -> nn.Module:
    return RNNEncoder(vocab_size, config, pad_id)


register_encoder("rnn", _build_rnn_encoder)
