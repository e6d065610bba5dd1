"""Vocabulary: token strings <-> integer ids, with four specials at fixed ids.

Every vocabulary starts with ``<pad>`` (0), ``<s>`` (1), ``</s>`` (2) and ``<unk>`` (3);
ordinary tokens follow from id 4. Fixed special ids let models, losses and decoding code
use ``Vocab.pad_id`` and friends without a vocabulary at hand.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
UNKNOWN_POLICIES = ("unk", "error")


class UnknownTokensError(ValueError):
    """Tokens that are not in the vocabulary, met by ``Vocab.encode(..., unknown="error")``."""

    def __init__(
        self,
        tokens: list[str],
        advice: str = "Remove or replace them, or encode with unknown='unk' to map them to <unk>.",
    ) -> None:
        self.tokens = tokens
        noun = "token" if len(tokens) == 1 else "tokens"
        listed = ", ".join(repr(token) for token in tokens)
        super().__init__(f"the input contains {len(tokens)} {noun} not in the vocabulary: {listed}. {advice}")


class Vocab:
    """A fixed mapping between token strings and ids; specials first, at ids 0-3."""

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3

    def __init__(self, tokens: list[str]) -> None:
        """``tokens`` are the ordinary (non-special) entries, given ids 4, 5, ... in order."""
        misplaced = [token for token in tokens if token in SPECIALS]
        if misplaced:
            raise ValueError(
                f"special tokens {misplaced} must not be among the ordinary tokens; Vocab adds them itself at ids 0-3"
            )
        duplicates = sorted(token for token, count in Counter(tokens).items() if count > 1)
        if duplicates:
            raise ValueError(f"each token must appear once in a vocabulary; repeated: {duplicates}")
        self._id_to_token: list[str] = [*SPECIALS, *tokens]
        self._token_to_id: dict[str, int] = {token: idx for idx, token in enumerate(self._id_to_token)}

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """Count tokens and keep the frequent ones, most frequent first.

        Ties are broken by the token string, so the result does not depend on input order.
        Tokens equal to a special string are skipped. ``max_size`` limits the number of
        ordinary tokens (the four specials are not counted); ``None`` keeps all.
        """
        counts = Counter(token for tokens in token_lists for token in tokens)
        return cls.from_counts(counts, min_freq, max_size)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """``build`` from each token's count (as when the counts were made in several processes)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be non-negative or None, got {max_size}")
        frequent = [(token, count) for token, count in counts.items() if count >= min_freq and token not in SPECIALS]
        frequent.sort(key=lambda token_count: (-token_count[1], token_count[0]))
        return cls([token for token, _ in frequent[:max_size]])

    def __len__(self) -> int:
        return len(self._id_to_token)

    def __contains__(self, token: object) -> bool:
        return token in self._token_to_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._id_to_token == other._id_to_token

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def special_ids(self) -> list[int]:
        """Ids of pad, bos, eos and unk."""
        return [self.pad_id, self.bos_id, self.eos_id, self.unk_id]

    def token_to_id(self, token: str) -> int:
        """The token's id, or ``unk_id`` if it is not in the vocabulary."""
        return self._token_to_id.get(token, self.unk_id)

    def id_to_token(self, idx: int) -> str:
        """The token with this id; an IndexError names the valid range otherwise."""
        if not 0 <= idx < len(self):
            raise IndexError(f"token id {idx} is outside this vocabulary's range 0..{len(self) - 1}")
        return self._id_to_token[idx]

    def encode(self, tokens: Sequence[str], unknown: str = "unk") -> list[int]:
        """Map tokens to ids.

        ``unknown="unk"`` maps tokens not in the vocabulary to ``unk_id``; ``unknown="error"``
        raises ``UnknownTokensError`` naming each unknown token once, in order of appearance.
        """
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        if unknown == "error":
            missing = [token for token in dict.fromkeys(tokens) if token not in self._token_to_id]
            if missing:
                raise UnknownTokensError(missing)
        return [self.token_to_id(token) for token in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Map ids to tokens.

        With ``strip_specials`` the output stops at the first eos and drops pad and bos;
        unk stays as ``"<unk>"`` so that the reader sees where a token was lost. Accepts any
        iterable of integers, including a 1-D tensor.
        """
        tokens: list[str] = []
        for element in ids:
            idx = int(element)
            if strip_specials:
                if idx == self.eos_id:
                    break
                if idx in (self.pad_id, self.bos_id):
                    continue
            tokens.append(self.id_to_token(idx))
        return tokens

    def to_dict(self) -> dict[str, Any]:
        """``{"tokens": [...]}`` with every token, specials included, in id order."""
        return {"tokens": list(self._id_to_token)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        """Rebuild from ``to_dict()`` output, checking that the specials sit at ids 0-3."""
        tokens = d.get("tokens") if isinstance(d, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise ValueError("a vocabulary description needs 'tokens': a list of strings in id order")
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f"the vocabulary's first tokens must be the specials {list(SPECIALS)} at ids 0-3, "
                f"found {tokens[: len(SPECIALS)]}; it was not written by Vocab.to_dict or is corrupted"
            )
        return cls(tokens[len(SPECIALS) :])

    def save(self, path: Path) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(self.to_dict(), file, ensure_ascii=False, indent=0)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> Vocab:
        """Read a vocabulary written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"vocabulary file {path} is not valid JSON: {error}") from error
        return cls.from_dict(d)


def vocabulary_change(old: Vocab, new: Vocab) -> str:
    """A short account of how two vocabularies differ."""
    old_tokens, new_tokens = old.to_dict()["tokens"], new.to_dict()["tokens"]
    old_set, new_set = set(old_tokens), set(new_tokens)
    added = [token for token in new_tokens if token not in old_set]
    gone = [token for token in old_tokens if token not in new_set]
    if not added and not gone:
        return "the same tokens in another order, as their frequencies changed"
    return f"{len(added)} new, e.g. {added[:5]}; {len(gone)} gone, e.g. {gone[:5]}"
