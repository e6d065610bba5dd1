"""The shared recurrent decoder: one module for every task.

Embedding -> multi-layer RNN -> (attention) -> output projection to the vocabulary.

With attention, the top RNN output h_t and the context c_t read from the encoder memory
combine into the attentional vector h~_t = tanh(W [h_t; c_t]) (Luong et al.), which the
output layer reads. The query is the top hidden state before the step
(``attention_query: previous``, Bahdanau's order: attend, then run the RNN) or the top RNN
output of the step (``current``, Luong's order). With input feeding, h~_{t-1} goes into the
RNN next to the embedding of token t; nothing else from attention reaches the RNN.

``forward`` (teacher forcing) has two paths that compute the same function:

- fused, whenever input feeding is off: the whole target runs through one fused
  ``nn.LSTM``/``nn.GRU``/``nn.RNN`` call, then attention over all T positions is one
  batched call (``previous`` queries are the RNN outputs shifted by one position);
- stepped, with input feeding, where each position needs the previous attentional vector:
  a loop over positions. The embedding's share of the first layer's input gates is one
  matrix product for all positions before the loop, and the output layer runs once on all
  positions after it. While training, the weights used at every position are
  ``StepwiseLinear`` maps, whose gradients are one product over all positions each.

``step`` advances one token (what decoding calls) through the same code; a test holds
``step`` in a loop and ``forward`` together. A decoder loaded for decoding looks each token's
share of the first layer's input gates up in a table made once (``fold_embedding_gates``) and
runs its cells through the per-position products, which saves a product per step.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq.config import AttentionQuery, Bridge, ConfigError, DecoderConfig, check_config
from seq2seq.models.attention import Attention, build_attention
from seq2seq.models.encoders import RNN_CELLS, EncoderOutput
from seq2seq.models.onednn_linear import onednn_linear
from seq2seq.models.recurrent_maps import FusedWeights, RecurrentMaps, StepLinears, StepwiseWeights
from seq2seq.models.stepwise_linear import StepwiseLinear

ATTENTION_QUERIES = typing.get_args(AttentionQuery)
BRIDGES = typing.get_args(Bridge)
#: The largest table of per-token input gates that ``fold_embedding_gates`` builds (vocab x gates).
GATE_TABLE_MAX_BYTES = 64 * 2**20


@dataclass
class DecoderState:
    """The recurrent state between steps.

    hidden:     (L, B, H)
    cell:       (L, B, H) for LSTM, else None
    input_feed: (B, H) the last attentional vector, with input feeding; else None
    """

    hidden: Tensor
    cell: Tensor | None = None
    input_feed: Tensor | None = None

    def index_select(self, index: Tensor) -> DecoderState:
        """Reorder along the batch (beam search, n samples). index: (B',)"""
        cell = None if self.cell is None else self.cell.index_select(1, index)
        input_feed = None if self.input_feed is None else self.input_feed.index_select(0, index)
        return DecoderState(self.hidden.index_select(1, index), cell, input_feed)

    def detach(self) -> DecoderState:
        """Cut the graph between truncated-BPTT windows."""
        cell = None if self.cell is None else self.cell.detach()
        input_feed = None if self.input_feed is None else self.input_feed.detach()
        return DecoderState(self.hidden.detach(), cell, input_feed)

    def tensors(self) -> dict[str, Tensor]:
        """The state as named tensors (for checkpoints of carried state)."""
        named = {"hidden": self.hidden, "cell": self.cell, "input_feed": self.input_feed}
        return {name: tensor for name, tensor in named.items() if tensor is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> DecoderState:
        return cls(tensors["hidden"], tensors.get("cell"), tensors.get("input_feed"))

    def as_rnn_input(self) -> Tensor | tuple[Tensor, Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    @classmethod
    def from_rnn_output(cls, state: Tensor | tuple[Tensor, Tensor]) -> DecoderState:
        return cls(*state) if isinstance(state, tuple) else cls(state)


TensorMap = Callable[[Tensor], Tensor]


@dataclass
class PositionMaps:
    """The products of one input-feeding position: the RNN's, and in place of the attention's
    query layer and of the attentional layer ``combine``, when not None, maps computing the same."""

    recurrent: RecurrentMaps
    query: TensorMap | None = None
    combine: TensorMap | None = None


# One layer of one step from its input and recurrent gates: (gates, recurrent, hidden, cell) ->
# (hidden, cell). The gate layouts are PyTorch's, so the fused modules' weights serve as they are.
CellStep = Callable[[Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor | None]]


def _lstm_step(gates: Tensor, recurrent: Tensor, hidden: Tensor, cell: Tensor | None) -> tuple[Tensor, Tensor]:
    """gates, recurrent: (B, 4H) input and recurrent gates (i, f, g, o); hidden, cell: (B, H)."""
    assert cell is not None  # an LSTM state always has a cell
    input_gate, forget_gate, candidate, output_gate = (gates + recurrent).chunk(4, dim=1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell


def _gru_step(gates: Tensor, recurrent: Tensor, hidden: Tensor, cell: Tensor | None) -> tuple[Tensor, None]:
    """gates, recurrent: (B, 3H) input and recurrent gates (r, z, n); hidden: (B, H)."""
    size = hidden.shape[1]
    input_gates, input_candidate = gates.split([2 * size, size], dim=1)
    recurrent_gates, recurrent_candidate = recurrent.split([2 * size, size], dim=1)
    reset, update = torch.sigmoid(input_gates + recurrent_gates).chunk(2, dim=1)  # (B, H) each
    candidate = torch.tanh(input_candidate + reset * recurrent_candidate)
    return candidate + update * (hidden - candidate), None


def _tanh_step(gates: Tensor, recurrent: Tensor, hidden: Tensor, cell: Tensor | None) -> tuple[Tensor, None]:
    """gates, recurrent: (B, H) input and recurrent parts of an Elman RNN; hidden: (B, H)."""
    return torch.tanh(gates + recurrent), None


CELL_STEPS: dict[str, CellStep] = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _tanh_step}


class RNNDecoder(nn.Module):
    """Embedding -> multi-layer RNN -> attention (optional) -> output projection.

    config:       the ``decoder`` section.
    memory_size:  size of the encoder memory vectors (the encoder's ``output_size``); needed
                  for attention.
    summary_size: size of the encoder summary vector; with it the bridge starts the state.
    """

    def __init__(
        self,
        vocab_size: int,
        config: DecoderConfig,
        pad_id: int,
        memory_size: int | None = None,
        summary_size: int | None = None,
    ) -> None:
        super().__init__()
        _check_config(config, memory_size, summary_size)
        self.cell_type = config.cell
        self.cell_step = CELL_STEPS[config.cell]
        self.num_layers = config.num_layers
        self.hidden_size = config.hidden_size
        self.embedding_size = config.embedding_size
        self.input_feeding = config.input_feeding
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.layer_dropout = config.dropout if config.num_layers > 1 else 0.0
        feed_size = config.hidden_size if config.input_feeding else 0
        # The fused module; with input feeding, ``_cells`` runs its weights one step at a time
        # (through ``step_linears`` once ``separate_step_weights`` has copied them).
        self.rnn = RNN_CELLS[config.cell](
            config.embedding_size + feed_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=self.layer_dropout,
            batch_first=True,
        )
        self.bridge_kind = config.bridge if summary_size is not None else "none"
        self.bridge = (
            nn.Linear(summary_size, config.hidden_size)
            if summary_size is not None and self.bridge_kind == "linear"
            else None
        )
        self.attention: Attention | None = None
        self.combine: nn.Linear | None = None  # W of the attentional vector tanh(W [h; c])
        self.gate: nn.Linear | None = None  # the context gate sigmoid(w . query + b)
        if config.attention != "none":
            assert memory_size is not None  # _check_config refused attention without a memory
            self.attention = build_attention(config.attention, config.hidden_size, memory_size)
            self.combine = nn.Linear(config.hidden_size + memory_size, config.hidden_size)
            if config.attention_gate:
                self.gate = nn.Linear(config.hidden_size, 1)
        query = config.attention_query
        self.query_is_current = query == "current" or (query == "auto" and config.attention != "bahdanau")
        self.output_dropout = nn.Dropout(config.dropout)
        # Tying needs the output layer to read vectors of the embedding's size.
        needs_projection = config.tie_embeddings and config.hidden_size != config.embedding_size
        self.pre_output = nn.Linear(config.hidden_size, config.embedding_size) if needs_projection else None
        output_in = config.embedding_size if config.tie_embeddings else config.hidden_size
        self.output = nn.Linear(output_in, vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embedding.weight
        self.step_linears: StepLinears | None = None
        # (V, G) the first layer's input gates of every token, once fold_embedding_gates made them.
        self.embedding_gate_table: Tensor | None
        self.register_buffer("embedding_gate_table", None, persistent=False)

    def fold_embedding_gates(self) -> None:
        """For decoding: computes the embedding's share of the first layer's input gates for every
        token of the vocabulary at once, so that each step looks its tokens' gates up in place of
        a (B, E) x (E, G) product. The table follows the model's ``to()``; it is dropped when the
        decoder is set to train (its weights may then change), and not made when it would exceed
        ``GATE_TABLE_MAX_BYTES`` or once the RNN is quantized (fold first, then quantize).

        A decoder without attention keeps stepping its fused RNN: one native call per step
        beat the cells run one by one for a 2-layer LSTM language model (254 against 293
        characters/s for one sample, level at 64), where attention decoders gained 11-17%."""
        if self.training:
            raise RuntimeError(
                "fold_embedding_gates prepares a decoder for decoding, and this one is in training mode: "
                "call model.eval() first (the table would leave out the embedding's dropout)"
            )
        if self.attention is None or not isinstance(self.rnn, nn.RNNBase):
            return  # no attention: the fused step is faster; a quantized RNN has no float weights to fold
        weight = self.embedding.weight  # (V, E)
        fused = FusedWeights.of(self.rnn, self.embedding_size)
        gates = fused.embedding_weight.shape[0]
        if weight.shape[0] * gates * weight.element_size() > GATE_TABLE_MAX_BYTES:
            return
        with torch.no_grad():
            self.embedding_gate_table = fused.embedding_gates(weight)  # (V, G)

    def train(self, mode: bool = True) -> RNNDecoder:
        if mode:
            self.embedding_gate_table = None
        return super().train(mode)

    def separate_step_weights(self) -> None:
        """Copies the RNN's weights into ``step_linears``, which the steps of input feeding and
        of a folded decoder then run: linear modules that dynamic quantization converts (for
        decoding; training keeps updating the fused module's weights, so a model to train must
        not call this)."""
        if self.input_feeding or self.embedding_gate_table is not None:
            folded = self.embedding_gate_table is not None
            self.step_linears = StepLinears(self.rnn, self.embedding_size, with_embedding=not folded)

    def _recurrent_maps(self) -> RecurrentMaps:
        """The products of one position: the copies when made, else the fused weights."""
        if self.step_linears is not None:
            return self.step_linears
        return FusedWeights.of(self.rnn, self.embedding_size)

    def prepare(self, encoder_output: EncoderOutput) -> EncoderOutput:
        """The encoder output with the attention's keys, computed once per source.

        ``Seq2Seq.encode`` calls this; ``forward`` and ``step`` prepare an unprepared output
        themselves, which costs ``step`` the memory projection at every call.
        """
        if self.attention is None or encoder_output.keys is not None:
            return encoder_output
        if encoder_output.memory is None:
            raise ValueError(
                "this decoder attends over encoder memory, but the encoder output has none; "
                "models whose encoder has no memory need decoder.attention=none"
            )
        return dataclasses.replace(encoder_output, keys=self.attention.prepare(encoder_output.memory))

    def init_state(self, encoder_output: EncoderOutput) -> DecoderState:
        """The state before the first token: the bridged encoder summary, or zeros.

        The bridge gives every layer the same start, tanh(Linear(summary)) or the summary
        itself; an LSTM's cell and the input feed start at zero.
        """
        weight = self.embedding.weight
        shape = (self.num_layers, encoder_output.batch_size, self.hidden_size)
        summary = encoder_output.summary
        if summary is None or self.bridge_kind == "none":
            hidden = weight.new_zeros(shape)
        else:
            start = torch.tanh(self.bridge(summary)) if self.bridge is not None else summary  # (B, H)
            hidden = start.unsqueeze(0).expand(shape).contiguous()  # (L, B, H)
        cell = weight.new_zeros(shape) if self.cell_type == "lstm" else None
        input_feed = weight.new_zeros(shape[1:]) if self.input_feeding else None
        return DecoderState(hidden, cell, input_feed)

    def forward(
        self,
        target_in: Tensor,
        encoder_output: EncoderOutput,
        state: DecoderState | None = None,
        return_attention: bool = False,
        project: bool = True,
    ) -> tuple[Tensor, DecoderState] | tuple[Tensor, DecoderState, Tensor | None]:
        """Teacher forcing over a whole sequence.

        target_in: (B, T) token ids fed as inputs.
        Returns logits (B, T, V) and the state after the last position; with
        ``return_attention`` also the attention weights (B, T, S), or None without attention.
        ``project=False`` returns the output layer's inputs (B, T, H_out) instead of the logits
        (for a loss that applies ``self.output`` itself, see seq2seq.training.output_loss).
        """
        encoder_output = self.prepare(encoder_output)
        if state is None:
            state = self.init_state(encoder_output)
        weights: Tensor | None
        if self.input_feeding:
            features, state, weights = self._stepped(target_in, state, encoder_output)
        else:
            embedded = self.embedding_dropout(self.embedding(target_in))  # (B, T, E)
            features, state, weights = self._fused(embedded, state, encoder_output)
        outputs = self._project(features) if project else self._output_features(features)
        return (outputs, state, weights) if return_attention else (outputs, state)

    def prime(self, target_in: Tensor, encoder_output: EncoderOutput, state: DecoderState) -> DecoderState:
        """The state after reading target_in (B, T) under teacher forcing (a prompt, a prefix)."""
        return self(target_in, encoder_output, state, project=False)[1]

    def step(
        self, previous: Tensor, state: DecoderState, encoder_output: EncoderOutput, project: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoding step.

        previous: (B,) the last token of each sequence.
        Returns logits (B, V), the new state and attention weights (B, S) or None.
        ``project=False`` returns the output layer's inputs (B, H_out) instead of the logits
        (for an ensemble that runs its members' output layers as one product).
        """
        encoder_output = self.prepare(encoder_output)
        weights: Tensor | None
        if self.input_feeding or self.embedding_gate_table is not None:
            if self.input_feeding:
                self._check_input_feed(state)
            maps = PositionMaps(self._recurrent_maps())
            gates = self._embedding_gates(previous, maps.recurrent)  # (B, G)
            features, state, weights = self._position_step(gates, maps, state, encoder_output)
        else:
            embedded = self.embedding_dropout(self.embedding(previous))  # (B, E)
            features, state, weights = self._fused(embedded.unsqueeze(1), state, encoder_output)
            features = features.squeeze(1)  # (B, H)
            weights = None if weights is None else weights.squeeze(1)  # (B, S)
        outputs = self._project(features) if project else self._output_features(features)
        return outputs, state, weights

    def _embedding_gates(self, tokens: Tensor, maps: RecurrentMaps) -> Tensor:
        """(B, [T,]) tokens -> (B, [T,] G) their share of the first layer's input gates, bias
        included: looked up in the folded table when there is one (only in eval mode), else computed."""
        if self.embedding_gate_table is not None:
            return F.embedding(tokens, self.embedding_gate_table)
        return maps.embedding_gates(self.embedding_dropout(self.embedding(tokens)))

    def _fused(
        self, embedded: Tensor, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One RNN call over all positions, then one attention call over all of them.

        embedded: (B, T, E). Returns features (B, T, H), the new state, weights (B, T, S) or None.
        """
        rnn_out, rnn_state = self.rnn(embedded, state.as_rnn_input())  # (B, T, H)
        new_state = DecoderState.from_rnn_output(rnn_state)
        if self.attention is None:
            return rnn_out, new_state, None
        if self.query_is_current:
            queries = rnn_out
        else:
            queries = torch.cat([state.hidden[-1].unsqueeze(1), rnn_out[:, :-1]], dim=1)  # (B, T, H)
        context, weights = self._attend(queries, encoder_output)  # (B, T, Hm), (B, T, S)
        return self._attentional(rnn_out, context), new_state, weights

    def _stepped(
        self, target_in: Tensor, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """Input feeding: one position at a time.

        target_in: (B, T) -> features (B, T, H), the new state, weights (B, T, S).
        """
        self._check_input_feed(state)
        maps = self._position_maps(*target_in.shape)
        gates = self._embedding_gates(target_in, maps.recurrent)  # (B, T, G)
        features, weights = [], []
        for position_gates in gates.unbind(1):  # unbind, not indexing: one gradient copy, not T
            attentional, state, position_weights = self._position_step(position_gates, maps, state, encoder_output)
            assert position_weights is not None  # input feeding needs attention
            features.append(attentional)
            weights.append(position_weights)
        return torch.stack(features, dim=1), state, torch.stack(weights, dim=1)

    def _position_maps(self, batch: int, steps: int) -> PositionMaps:
        """The maps of a teacher-forced pass over ``steps`` positions with input feeding.

        While autograd records the decoder's parameters, the per-position products are
        ``StepwiseLinear`` maps: each weight's gradient is then one product over all positions.
        """
        recording = torch.is_grad_enabled() and self.combine is not None and self.combine.weight.requires_grad
        if not recording or self.step_linears is not None:
            return PositionMaps(self._recurrent_maps())
        assert self.combine is not None and self.attention is not None  # input feeding needs attention
        query_layer = self.attention.query_layer
        return PositionMaps(
            StepwiseWeights(self.rnn, self.embedding_size, steps, batch),
            None if query_layer is None else _stepwise(query_layer, steps, batch),
            _stepwise(self.combine, steps, batch),
        )

    def _position_step(
        self, embedding_gates: Tensor, maps: PositionMaps, state: DecoderState, encoder_output: EncoderOutput
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One position through the per-position products: every position with input feeding,
        and a decoding step that looked its embedding gates up.

        embedding_gates: (B, G) the embedding's share of the first layer's input gates, bias
        included. Returns the features (B, H) (the attentional vector, or the top RNN output
        without attention), the new state and weights (B, S) or None without attention.
        """
        if self.attention is not None and not self.query_is_current:
            context, weights = self._attend(state.hidden[-1], encoder_output, maps.query)
        gates = embedding_gates
        if state.input_feed is not None:
            gates = maps.recurrent.feed_gates(gates, state.input_feed)  # (B, G)
        hidden, cell = self._cells(gates, maps.recurrent, state)  # (L, B, H)
        if self.attention is None:
            return hidden[-1], DecoderState(hidden, cell), None
        if self.query_is_current:
            context, weights = self._attend(hidden[-1], encoder_output, maps.query)
        attentional = self._attentional(hidden[-1], context, maps.combine)  # (B, H)
        return attentional, DecoderState(hidden, cell, attentional if self.input_feeding else None), weights

    def _cells(self, first_gates: Tensor, maps: RecurrentMaps, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """Every layer for one position.

        first_gates: (B, G) input gates of the first layer. Returns hidden and cell (L, B, H).
        """
        hiddens: list[Tensor] = []
        cells: list[Tensor] = []
        gates = first_gates
        previous_cells = [None] * self.num_layers if state.cell is None else state.cell.unbind(0)
        for layer, (hidden, cell) in enumerate(zip(state.hidden.unbind(0), previous_cells)):
            if layer > 0:
                below = F.dropout(hiddens[-1], self.layer_dropout, self.training)
                gates = maps.input_gates(layer, below)  # (B, G)
            hidden, cell = self.cell_step(gates, maps.recurrent_gates(layer, hidden), hidden, cell)
            hiddens.append(hidden)
            if cell is not None:  # every layer's, exactly when the state has cells (an LSTM)
                cells.append(cell)
        return torch.stack(hiddens), None if state.cell is None else torch.stack(cells)

    def _attend(
        self, query: Tensor, encoder_output: EncoderOutput, query_map: TensorMap | None = None
    ) -> tuple[Tensor, Tensor]:
        """query: (B, [T,] H) -> context (B, [T,] Hm), weights (B, [T,] S)

        Rows that share their input's memory (``encoder_output.copies`` C > 1, the beams of
        one input) attend as the C [* T] queries of that input: (B / C, C [* T], H)."""
        assert self.attention is not None  # called only by a decoder with attention
        memory, mask, keys = encoder_output.memory, encoder_output.mask, encoder_output.keys
        queries = query
        if encoder_output.copies > 1:
            queries = query.reshape(query.shape[0] // encoder_output.copies, -1, query.shape[-1])
        context, weights = self.attention(queries, memory, mask, keys, query_map)
        if encoder_output.copies > 1:
            context = context.reshape(*query.shape[:-1], context.shape[-1])
            weights = weights.reshape(*query.shape[:-1], weights.shape[-1])
        if self.gate is not None:
            context = torch.sigmoid(self.gate(query)) * context  # (B, [T,] 1) scales each context
        return context, weights

    def _attentional(self, rnn_out: Tensor, context: Tensor, combine: TensorMap | None = None) -> Tensor:
        """tanh(W [h; c]): (B, [T,] H) and (B, [T,] Hm) -> (B, [T,] H)"""
        assert self.combine is not None  # called only by a decoder with attention
        return torch.tanh((combine or self.combine)(torch.cat([rnn_out, context], dim=-1)))

    def _check_input_feed(self, state: DecoderState) -> None:
        if state.input_feed is None:
            raise ValueError(
                "this decoder feeds its attentional vector back as input, but the state has no "
                "input_feed; start from decoder.init_state(encoder_output)"
            )

    def _project(self, features: Tensor) -> Tensor:
        """(B, [T,] H) -> (B, [T,] V)"""
        features = self._output_features(features)
        if type(self.output) is not nn.Linear:  # a quantized layer
            return typing.cast(Tensor, self.output(features))
        return onednn_linear(features, self.output.weight, self.output.bias)

    def _output_features(self, features: Tensor) -> Tensor:
        """The output layer's inputs: (B, [T,] H) -> (B, [T,] H_out), dropout applied."""
        features = self.output_dropout(features)
        return features if self.pre_output is None else self.pre_output(features)


def _check_config(config: DecoderConfig, memory_size: int | None, summary_size: int | None) -> None:
    """Refuses settings the decoder cannot build, saying which key to change."""
    check_config(config, "decoder")  # types, choices and ranges, as the config loader checks them
    if config.attention != "none" and memory_size is None:
        raise ConfigError(
            f"decoder.attention={config.attention} needs an encoder memory to attend to, and this "
            "model's encoder has none (text generation); set decoder.attention=none"
        )
    if config.attention_gate and config.attention == "none":
        raise ConfigError(
            "decoder.attention_gate scales the attention context, so it needs decoder.attention; "
            "set one or turn the gate off"
        )
    if config.input_feeding and config.attention == "none":
        raise ConfigError(
            "decoder.input_feeding feeds the attentional vector back into the RNN, so it needs "
            "attention: set decoder.attention (bahdanau, dot or general) or decoder.input_feeding=false"
        )
    if config.bridge == "copy" and summary_size is not None and summary_size != config.hidden_size:
        raise ConfigError(
            f"decoder.bridge=copy needs the encoder summary size ({summary_size}) to equal "
            f"decoder.hidden_size ({config.hidden_size}); use decoder.bridge=linear or make them equal"
        )


def _stepwise(layer: nn.Module, steps: int, batch: int) -> StepwiseLinear:
    """``layer`` (an ``nn.Linear``) as a ``StepwiseLinear`` over ``steps`` positions of ``batch`` rows."""
    assert isinstance(layer, nn.Linear)  # training runs the float layers
    return StepwiseLinear(layer.weight, layer.bias, steps, batch)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, shared (tied) tensors counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
