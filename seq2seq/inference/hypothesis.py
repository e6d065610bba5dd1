"""What every task's decoding returns: hypotheses as small dataclasses, not tensors or tuples."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from seq2seq.data.parallel import TextCodec
from seq2seq.decoding import Hypotheses, SpecialIds
from seq2seq.text import Vocab

#: The special ids of every vocabulary the tasks build (the Vocab's fixed specials).
SPECIAL_IDS = SpecialIds(Vocab.pad_id, Vocab.bos_id, Vocab.eos_id, Vocab.unk_id)


@dataclass(frozen=True)
class Hypothesis:
    """One output of a search: a translation, a caption or a generated text.

    text:      the detokenised text
    tokens:    its tokens (pieces, words or characters) as the vocabulary spells them, eos excluded
    token_ids: the generated ids, eos included where the output ended with it
    score:     summed log-probability of ``token_ids`` under the model, before any length
               penalty (-inf marks a place the search could not fill)
    attention: (len(token_ids), S) attention of each generated token over the input's S
               positions (source tokens, image grid cells); None unless asked for, or without
               attention
    """

    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    score: float
    attention: Tensor | None = None


EMPTY = Hypothesis("", (), (), 0.0)


def hypotheses_of_rows(
    found: Hypotheses, codec: TextCodec, with_attention: bool, source_lengths: list[int] | None = None
) -> list[list[Hypothesis]]:
    """The (B, N) hypotheses of a search as B lists of N ``Hypothesis``, best first.

    source_lengths: each row's real input length, to cut the attention's padding; None keeps
    every input position (an image grid has no padding).
    """
    tokens, lengths, scores = found.tokens.tolist(), found.lengths.tolist(), found.scores.tolist()
    attention = found.attention if with_attention else None  # (B, N, T, S) or None
    rows = []
    for row, (row_ids, row_lengths, row_scores) in enumerate(zip(tokens, lengths, scores)):
        span = None if source_lengths is None else source_lengths[row]
        rows.append(
            [
                _hypothesis(
                    codec, ids[:length], score, None if attention is None else attention[row, n, :length, :span]
                )
                for n, (ids, length, score) in enumerate(zip(row_ids, row_lengths, row_scores))
            ]
        )
    return rows


def _hypothesis(codec: TextCodec, ids: list[int], score: float, attention: Tensor | None) -> Hypothesis:
    words = tuple(codec.vocab.id_to_token(i) for i in ids if i != Vocab.eos_id)
    return Hypothesis(codec.decode(ids), words, tuple(ids), score, None if attention is None else attention.cpu())
