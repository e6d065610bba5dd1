"""The number formats a model decodes in: fp32 (the default), bf16, or int8 weights on the CPU.

bf16 halves the memory traffic and runs on the matrix units of CPUs that have them (AMX,
AVX512-BF16) and of GPUs; elsewhere it is slower than fp32 and only saves memory. int8 is
PyTorch's dynamic quantization of the linear and recurrent layers (``seq2seq.quantization``),
on the CPU. Checkpoints stay fp32: the format is applied after loading. Scores and the softmax
are always computed in fp32.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from seq2seq.quantization import quantize_int8

#: The floating-point formats a model can decode in, by name.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}

ModelT = TypeVar("ModelT", bound=nn.Module)


def decoding_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A floating-point format by name (float32/fp32, bfloat16/bf16) or as a torch.dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or torch.float32, torch.bfloat16), got {dtype!r}")


def with_numerics(model: ModelT, dtype: str | torch.dtype = "float32", quantize: str | None = None) -> ModelT:
    """``model`` (loaded, on its device, in eval mode) converted to ``dtype``, or with
    ``quantize="int8"`` to int8 linear and recurrent layers (the model must then be fp32 on the CPU)."""
    chosen = decoding_dtype(dtype)
    if quantize is None:
        return model.to(chosen)
    if quantize != "int8":
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if chosen != torch.float32:
        raise ValueError(
            "int8 decoding quantizes the fp32 model: choose one of bf16 (dtype='bfloat16', --bf16) and int8 "
            "(quantize='int8', --int8)"
        )
    return quantize_int8(model)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating-point format of the model's (unquantized) parameters: what inputs such as
    images must be given in."""
    return next(model.parameters()).dtype
