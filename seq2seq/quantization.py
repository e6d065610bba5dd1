"""int8 decoding on the CPU: PyTorch's dynamic quantization of linear and recurrent layers.

``quantize_int8(model)`` turns the weights of every ``nn.Linear``, ``nn.GRU`` and ``nn.LSTM``
into int8 with a scale per tensor; activations are quantized on the fly at each call, so no
calibration data is needed. Embeddings, convolutions, attention arithmetic and the softmax
stay fp32, as do the layers a module names in its ``fp32_layers`` (those whose weights it
reads directly, such as Bahdanau attention's energy vector). It is applied after loading:
checkpoints stay fp32. The decoder's input-feeding
step runs its RNN weights through ``nn.Linear`` copies (``RNNDecoder.separate_step_weights``)
so that those are quantized too.

The kernels are PyTorch's own (fbgemm/x86 on Intel and AMD CPUs, qnnpack on ARM), reached
through ``torch.ao.quantization.quantize_dynamic``. PyTorch marks that API deprecated in
favour of torchao's ``quantize_``, but torchao's int8 dynamic quantization runs its CPU matrix
products in eager mode at a fraction of the fp32 speed (1.8 against 55 GFLOP/s for a 64x512 by
512x1536 linear layer, torchao 0.18 with torch 2.14 on an AVX2 CPU): it needs ``torch.compile``,
which recompiles for every new batch shape of a search. So this module uses the kernels that
are fast today, and ``QuantizationUnavailable`` says why when a build or CPU has none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import torch
from torch import nn

from seq2seq.models.decoder import RNNDecoder

#: The layer types whose weights become int8.
QUANTIZED_LAYERS: set[type[nn.Module]] = {nn.Linear, nn.GRU, nn.LSTM}
#: Quantized engines in order of preference: x86 and fbgemm (Intel, AMD), qnnpack (ARM).
ENGINES = ("x86", "fbgemm", "qnnpack")

ModelT = TypeVar("ModelT", bound=nn.Module)


class QuantizationUnavailable(RuntimeError):
    """int8 decoding cannot run here: on this device, CPU or PyTorch build."""


def quantize_int8(model: ModelT) -> ModelT:
    """``model`` (on the CPU, in eval mode, for decoding only) with int8 linear and recurrent
    layers, changed in place. Raises QuantizationUnavailable, saying why, where it cannot run."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise QuantizationUnavailable(
            f"int8 decoding runs on the CPU, and the model is on {device}: decode with --device cpu "
            "(device='cpu' in Python), or drop --int8 (quantize=None) on a GPU"
        )
    select_engine()
    for module in model.modules():
        if isinstance(module, RNNDecoder):
            module.separate_step_weights()
        for name in getattr(module, "fp32_layers", ()):
            getattr(module, name).qconfig = None  # a module's own qconfig overrides the layer types below
    with warnings.catch_warnings():
        # The deprecation of torch.ao.quantization (see the module docstring) and of the
        # quantized tensor type it builds on.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor.*")
        quantized = dynamic_quantizer()(model, QUANTIZED_LAYERS, dtype=torch.qint8, inplace=True)
    return cast(ModelT, quantized.eval())


def select_engine() -> str:
    """Sets and returns the fastest quantized engine this build has for this CPU."""
    engine = choose_engine(torch.backends.quantized.supported_engines)
    torch.backends.quantized.engine = engine
    return engine


def choose_engine(supported: Sequence[str]) -> str:
    """The first of ENGINES among the ``supported`` ones; QuantizationUnavailable when none is."""
    for engine in ENGINES:
        if engine in supported:
            return engine
    raise QuantizationUnavailable(
        f"this PyTorch build has no int8 CPU engine (it has {', '.join(supported) or 'none'}; int8 decoding needs "
        f"one of {', '.join(ENGINES)}): decode in fp32 (drop --int8), or install the standard PyTorch wheel"
    )


def dynamic_quantizer() -> Callable[..., nn.Module]:
    """PyTorch's dynamic quantization function, or QuantizationUnavailable once it is gone."""
    try:
        from torch.ao.quantization import quantize_dynamic as function
    except ImportError as error:
        raise QuantizationUnavailable(
            f"this PyTorch ({torch.__version__}) no longer has torch.ao.quantization.quantize_dynamic, whose CPU int8 "
            f"kernels int8 decoding uses ({error}): decode in fp32 (drop --int8), or use PyTorch 2.14 or older"
        ) from None
    return function
