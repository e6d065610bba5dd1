"""``generate``: the one entry point of decoding, which checks the options and runs the search
that ``config.method`` names (greedy search and sampling in ``sampling``, beam search in
``beam``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.decoding.beam import beam_search
from seq2seq.decoding.common import DecodingModel, Hypotheses, SpecialIds
from seq2seq.decoding.options import check_decode_config
from seq2seq.decoding.processors import LogitsProcessor
from seq2seq.decoding.sampling import greedy_or_sample


def generate(
    model: DecodingModel,
    source: Tensor,
    config: DecodeConfig,
    special: SpecialIds,
    prefix: Tensor | None = None,
    on_step: Callable[[Tensor], None] | None = None,
    should_stop: Callable[[Tensor], Tensor] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> Hypotheses:
    """Generates ``config.num_samples`` continuations of each input, or with method "beam" the
    ``config.n_best`` best of a beam search (see ``seq2seq.decoding.beam``).

    source: the task's input, (B, ...) on the model's device; (B, 0) for text generation.
    prefix: (B, P) ids that prime the decoder, the same length for every input; default bos.
    on_step: called after each step with the (B * N,) new tokens (pad once a sequence is done).
    should_stop: maps the (B * N, t) tokens generated so far to a (B * N,) bool tensor that is
        True for sequences that are done; eos always ends a sequence. Each step calls on_step
        first, so should_stop already sees the step's token.
    processors: the caller's own logits processors, ``(prefix_ids (rows, t), logits (rows, V))
        -> logits``, applied in order after the built-in ones; the prefix holds the prompt and
        the tokens generated so far. Beam search passes them its log-probabilities after its
        bans and ranks (and scores) hypotheses by what they return.
    The repetition penalty counts the prefix as already seen. The model runs in eval mode and
    gets its previous mode back afterwards.
    """
    check_decode_config(config)
    if config.method == "beam" and (on_step is not None or should_stop is not None):
        raise ValueError("on_step and should_stop work with greedy search and sampling, not with beam search")
    processors = tuple(processors)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if config.method == "beam":
                hypotheses = beam_search(model, source, config, special, prefix, processors)
            else:
                hypotheses = greedy_or_sample(model, source, config, special, prefix, on_step, should_stop, processors)
    finally:
        model.train(was_training)
    return hypotheses.usable_outside_inference_mode()
