"""Several trained models of one task and vocabulary decoding as one.

At each step every member runs its own decoder on its own state and encoder output, and the
ensemble's next-token distribution is the normalised geometric mean of the members'
distributions: the softmax of the mean of their logits. (The mean of the members'
log-probabilities differs from the mean of their logits by one constant per row, which the
search's softmax removes, so the members' own softmaxes are never computed.) Where every
member's output layer is a plain ``nn.Linear``, that mean is one product (``JointOutput``).
The encoder outputs and states travel together (``EnsembleEncoding``, ``EnsembleState``), so
a beam search that reorders rows reorders every member's. The searches themselves do not know
an ensemble from a single model: both offer ``encode`` and a ``decoder`` with ``init_state``,
``prime`` and ``step`` (``seq2seq.decoding.common.DecodingModel``).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.models.attention import Attention
from seq2seq.models.decoder import DecoderState, RNNDecoder
from seq2seq.models.encoders import EncoderOutput
from seq2seq.models.onednn_linear import onednn_linear
from seq2seq.models.seq2seq import Seq2Seq


@dataclass
class EnsembleEncoding:
    """Each member's encoder output for the same B inputs."""

    members: list[EncoderOutput]

    @property
    def batch_size(self) -> int:
        return self.members[0].batch_size

    @property
    def memory(self) -> Tensor | None:
        """The first member's (B / copies, S, H) memory: its S positions are every member's."""
        return self.members[0].memory

    @property
    def mask(self) -> Tensor | None:
        """(B / copies, S) True at real positions (the same for every member)."""
        return self.members[0].mask

    @property
    def copies(self) -> int:
        """Rows that read each input's memory (the same for every member)."""
        return self.members[0].copies

    def index_select(self, index: Tensor) -> EnsembleEncoding:
        """Every member's rows ``index`` (B',)."""
        return EnsembleEncoding([output.index_select(index) for output in self.members])

    def repeated(self, copies: int) -> EnsembleEncoding:
        """Every member's inputs for ``copies`` rows each (``EncoderOutput.repeated``)."""
        return EnsembleEncoding([output.repeated(copies) for output in self.members])


@dataclass
class EnsembleState:
    """Each member's decoder state."""

    members: list[DecoderState]

    def index_select(self, index: Tensor) -> EnsembleState:
        """Every member's rows ``index`` (B',)."""
        return EnsembleState([state.index_select(index) for state in self.members])


@dataclass(frozen=True)
class JointOutput:
    """The members' output layers as one linear layer over their inputs side by side.

    The mean of M members' logits, (1/M) sum_i (W_i f_i + b_i), is [W_1 ... W_M] / M applied to
    [f_1; ...; f_M], plus the mean bias: one (B, K_1 + ... + K_M) by (K_1 + ... + K_M, V)
    product with the arithmetic of the M separate ones, which a CPU runs faster (a wider inner
    dimension), and no (M, B, V) stack of logits to average.

    weight: (V, K_1 + ... + K_M); bias: (V,)
    """

    weight: Tensor
    bias: Tensor

    @classmethod
    def of(cls, layers: Sequence[nn.Module]) -> JointOutput | None:
        """The joint layer of ``layers`` as their weights are now; None unless every layer is a
        plain ``nn.Linear`` of one dtype and vocabulary size (a quantized layer keeps its own
        product)."""
        linears = [layer for layer in layers if type(layer) is nn.Linear]
        if len(linears) != len(layers) or len({(layer.weight.dtype, layer.out_features) for layer in linears}) != 1:
            return None
        with torch.no_grad():
            weight = torch.cat([layer.weight for layer in linears], dim=1) / len(linears)
            biases: list[Tensor] = [
                layer.weight.new_zeros(layer.out_features) if layer.bias is None else layer.bias for layer in linears
            ]
            return cls(weight, torch.stack(biases).mean(dim=0))

    def __call__(self, features: Sequence[Tensor]) -> Tensor:
        """features: each member's (B, K_i) output-layer inputs -> the mean (B, V) logits."""
        return onednn_linear(torch.cat(list(features), dim=-1), self.weight, self.bias)


class EnsembleDecoder:
    """The members' decoders stepping together; their logits averaged."""

    def __init__(self, decoders: Sequence[RNNDecoder]) -> None:
        self.decoders = list(decoders)
        self.joint_output: JointOutput | None = None  # built by init_state, for the search that follows

    @property
    def attention(self) -> Attention | None:
        """The first member's attention that exists (None when no member attends)."""
        return next((decoder.attention for decoder in self.decoders if decoder.attention is not None), None)

    def init_state(self, encoding: EnsembleEncoding) -> EnsembleState:
        """Every member's first state. It also joins the members' output layers as their weights
        are now, for the steps of the search that starts here (once per batch of inputs)."""
        self.joint_output = JointOutput.of([decoder.output for decoder in self.decoders])
        return EnsembleState([d.init_state(e) for d, e in zip(self.decoders, encoding.members)])

    def prime(self, target_in: Tensor, encoding: EnsembleEncoding, state: EnsembleState) -> EnsembleState:
        """Every member's state after reading target_in (B, T) under teacher forcing."""
        members = zip(self.decoders, encoding.members, state.members)
        return EnsembleState([d.prime(target_in, e, s) for d, e, s in members])

    def step(
        self, previous: Tensor, state: EnsembleState, encoding: EnsembleEncoding
    ) -> tuple[Tensor, EnsembleState, Tensor | None]:
        """previous: (B,). Returns the members' mean (B, V) logits (fp32), the new states and
        the members' mean (B, S) attention weights (None without attention)."""
        joint = self.joint_output
        outputs, states, weights = [], [], []
        for decoder, member_state, member_encoding in zip(self.decoders, state.members, encoding.members):
            output, new_state, attention = decoder.step(previous, member_state, member_encoding, project=joint is None)
            outputs.append(output)  # (B, K_i) output-layer inputs when joint, else (B, V) logits
            states.append(new_state)
            if attention is not None:
                weights.append(attention)
        if joint is not None:
            logits = joint(outputs).float()
        else:
            logits = torch.stack([output.float() for output in outputs]).mean(dim=0)
        return logits, EnsembleState(states), _mean_attention(weights)


def _mean_attention(weights: list[Tensor]) -> Tensor | None:
    """The mean of the members' (B, S) attention weights when they share a shape; else the
    first member's (members over image grids of different sizes)."""
    if not weights:
        return None
    if all(w.shape == weights[0].shape for w in weights):
        return torch.stack(weights).mean(dim=0)
    return weights[0]


class Ensemble(nn.Module):
    """Trained models of one task and vocabulary that decode as one (see the module docstring).

    ``forward`` (teacher forcing, for forced scoring) returns the members' mean (B, T, V)
    logits, as ``decoder.step`` does for one position: their softmax is the ensemble's
    distribution.
    """

    def __init__(self, members: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 models, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.decoder = EnsembleDecoder([member.decoder for member in members])

    @property
    def models(self) -> list[Seq2Seq]:
        """The members, in order."""
        return typing.cast(list[Seq2Seq], list(self.members))

    def encode(self, source: Tensor) -> EnsembleEncoding:
        """Every member's prepared encoder output for source (B, ...)."""
        return EnsembleEncoding([member.encode(source) for member in self.models])

    def forward(self, source: Tensor, target_in: Tensor) -> tuple[Tensor, EnsembleState]:
        """source: the task's input; target_in: (B, T). Returns the (B, T, V) mean logits (fp32)
        and the members' states after the last position."""
        logits, states = [], []
        for member in self.models:
            member_logits, state = member(source, target_in)[:2]
            logits.append(member_logits.float())
            states.append(state)
        return torch.stack(logits).mean(dim=0), EnsembleState(states)


def first_model(model: Seq2Seq | Ensemble) -> Seq2Seq:
    """The model itself, or an ensemble's first member (for what one model's parts answer,
    such as image features)."""
    return model.models[0] if isinstance(model, Ensemble) else model
