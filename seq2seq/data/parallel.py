"""Parallel text for translation: line-aligned files, their ids, and length-bucketed batches.

Files. A split is two line-aligned UTF-8 files, ``<prefix>.<source_lang>`` and
``<prefix>.<target_lang>``, plain or gzipped (``<prefix>.<lang>.gz`` is used when the plain
file does not exist): line i of one is the translation of line i of the other.

Policy for awkward pairs:

- training: a pair whose source or target is empty (after stripping spaces) is dropped, and
  so is a pair with more than ``max_length`` tokens on either side; both counts are logged.
- evaluation: nothing is dropped, so that outputs stay aligned with the references. A pair
  whose source is empty is never put in a batch: its translation is the empty string.

Ids. Each side of a split is one :class:`RaggedIds` (all ids in one flat tensor), read
like a list of 1-D tensors. Lines are tokenised one at a time into indices of their distinct
tokens, so that the token strings of a whole split are never held at once; the vocabulary is
then built from the kept training lines and the indices are mapped to its ids in one step.
Sources are token ids without specials. A target of n tokens gives ``target_in`` =
bos + its ids and ``target_out`` = its ids + eos, both of length n + 1. Each language has its
own vocabulary, built from its side of the training data (also when the SentencePiece model
is joint).

Batches. :class:`TokenBudgetBatcher` fills a batch while (longest side, padded) x (sentences)
stays within ``batch_tokens``, or takes ``batch_sentences`` sentences at a time. Training
batches come from pools of ``pool_size`` shuffled pairs, each pool sorted by length so that
padding stays small, and the batches are then shuffled; the order is fixed by (seed, epoch),
so that training resumes at any batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from seq2seq.config import ConfigError, bounded
from seq2seq.data.ragged import RaggedIds
from seq2seq.data.text_files import DataError, decode_utf8, read_bytes, split_lines
from seq2seq.text import SentencePieceTokenizer, Tokenizer, Vocab, build_tokenizer, tokenizer_from_dict

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
TokenizerKind = Literal["sentencepiece", "word", "char"]
TOKENIZER_KINDS = get_args(TokenizerKind)


@dataclass
class ParallelDataConfig:
    """Where the parallel text is, how it is tokenised, and how it is batched."""

    train_prefix: str = "data/multi30k/train"  # training files: <prefix>.<lang> or <prefix>.<lang>.gz
    prepared: str | None = None  # a folder made by `seq2seq translate prepare`: train from it instead of train_prefix
    valid_prefix: str = "data/multi30k/val"  # validation files, same naming
    test_prefix: str = "data/multi30k/test_2016_flickr"  # test files, same naming
    source_lang: str = "de"  # file suffix of the source language
    target_lang: str = "en"  # file suffix of the target language
    tokenizer: TokenizerKind = "sentencepiece"  # sentencepiece | word | char
    joint_sentencepiece: bool = True  # one SentencePiece model for both languages; False: one per language
    sentencepiece_vocab_size: int = bounded(8000, at_least=1)  # pieces of each SentencePiece model that is trained
    sentencepiece_model_type: Literal["unigram", "bpe"] = "unigram"  # unigram | bpe
    sentencepiece_sample_size: int | None = bounded(
        None, at_least=1
    )  # learn the pieces from this many training sentences drawn at random; None: from all of them
    source_sentencepiece_model: str | None = None  # a .model for the source (both sides when joint); None trains one
    target_sentencepiece_model: str | None = None  # a .model for the target (separate models only); None trains one
    lowercase: bool = False  # lowercase the text first (word and char tokenizers only)
    min_freq: int = bounded(1, at_least=1)  # training tokens seen fewer times than this become <unk>
    max_length: int = bounded(
        100, at_least=0
    )  # training pairs with more tokens than this on either side are dropped; 0 keeps all
    batch_tokens: int = bounded(
        4096, at_least=1
    )  # token budget per batch, all processes together: longest side x sentences
    batch_sentences: int = bounded(
        0, at_least=0
    )  # > 0: fixed batches of this many sentences instead of the token budget
    pool_size: int = bounded(
        10_000, at_least=1
    )  # training pairs shuffled together, then sorted by length and cut into batches


# ---- reading files ----------------------------------------------------------------------------


def language_file(prefix: str | Path, lang: str) -> Path:
    """``<prefix>.<lang>`` if it exists, else ``<prefix>.<lang>.gz``."""
    plain = Path(f"{prefix}.{lang}")
    gzipped = Path(f"{plain}.gz")
    for candidate in (plain, gzipped):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"neither {plain} nor {gzipped} exists. Check data.*_prefix and data.source_lang / data.target_lang "
        "in the config, or prepare the data first (e.g. python data_scripts/multi30k.py)."
    )


def split_files(config: ParallelDataConfig, split: str) -> tuple[Path, Path]:
    """The (source, target) files of ``split``: "train", "valid" or "test"."""
    prefixes = {"train": config.train_prefix, "valid": config.valid_prefix, "test": config.test_prefix}
    if split not in prefixes:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLITS)}")
    return language_file(prefixes[split], config.source_lang), language_file(prefixes[split], config.target_lang)


def read_lines(path: str | Path, what: str = "text file") -> list[str]:
    """The lines of a UTF-8 file (plain or ``.gz``), without line endings.

    Lines end at ``\\n`` only (a ``\\r`` before it is removed), so that exotic Unicode line
    separators inside a sentence cannot break the alignment of parallel files.

    Raises:
        DataError: the file is missing, not gzip despite its suffix, not UTF-8 (naming the
            line), or holds no text.
    """
    path = Path(path)
    lines = split_lines(decode_utf8(read_bytes(path, what), f"{what} {path}", path))
    if not any(line.strip() for line in lines):
        raise DataError(f"{what} {path} holds no text: every line is empty.")
    return lines


def read_parallel(source_path: str | Path, target_path: str | Path) -> tuple[list[str], list[str]]:
    """The lines of two line-aligned files; refuses files whose line counts differ."""
    sources = read_lines(source_path, "source file")
    targets = read_lines(target_path, "target file")
    if len(sources) != len(targets):
        raise DataError(
            f"parallel files differ in length: {source_path} has {len(sources):,} lines but {target_path} "
            f"has {len(targets):,}. Line i of one must translate line i of the other: check that both "
            "files are the same split of the same release."
        )
    return sources, targets


# ---- tokenizers and vocabularies --------------------------------------------------------------


@dataclass
class TextCodec:
    """One language: raw text <-> token ids, through its tokenizer and vocabulary."""

    tokenizer: Tokenizer
    vocab: Vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without specials; unknown tokens become <unk>."""
        return self.vocab.encode(self.tokenizer.tokenize(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Raw text of ``ids``: stops at eos, skips pad and bos, then detokenises."""
        return self.tokenizer.detokenize(self.vocab.decode(ids))

    def to_dict(self) -> dict[str, Any]:
        """``{"tokenizer": ..., "vocab": ...}``, as stored in a checkpoint's metadata."""
        return {"tokenizer": self.tokenizer.to_dict(), "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextCodec:
        """Rebuild from ``to_dict()`` output."""
        if not isinstance(d, dict) or not {"tokenizer", "vocab"} <= set(d):
            raise ValueError("a text codec description needs 'tokenizer' and 'vocab' entries (see TextCodec.to_dict)")
        return cls(tokenizer_from_dict(d["tokenizer"]), Vocab.from_dict(d["vocab"]))


@dataclass
class TokenizedLines:
    """Lines as indices into their distinct tokens: what a vocabulary is built from and encodes."""

    types: list[str]  # each distinct token once, in order of first appearance
    sentences: RaggedIds  # each line's tokens, as indices into types

    def token_lists(self) -> Iterator[list[str]]:
        """Each line's tokens, one line at a time."""
        for indices in self.sentences:
            yield [self.types[i] for i in indices.tolist()]

    def take(self, indices: Sequence[int]) -> TokenizedLines:
        """The lines ``indices``, in that order."""
        return TokenizedLines(self.types, self.sentences.take(indices))

    def encode(self, vocab: Vocab) -> RaggedIds:
        """Each line's ids in ``vocab``, without specials; tokens not in it become <unk>."""
        lookup = torch.tensor([vocab.token_to_id(token) for token in self.types], dtype=torch.long)  # (types,)
        return RaggedIds(lookup[self.sentences.ids], self.sentences.offsets)


def tokenize_lines(lines: Iterable[str], tokenizer: Tokenizer) -> TokenizedLines:
    """Tokenise ``lines`` one at a time, keeping each distinct token string once."""
    index: dict[str, int] = {}
    sentences = RaggedIds.from_sequences(
        [index.setdefault(token, len(index)) for token in tokenizer.tokenize(line)] for line in lines
    )
    return TokenizedLines(list(index), sentences)


def make_tokenizers(
    config: ParallelDataConfig, work_dir: Path, read_files_first: bool = True
) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers the config asks for.

    SentencePiece models not given in the config are trained on the training files and
    written to ``work_dir`` (``sentencepiece.model``, or ``sentencepiece.<lang>.model`` each
    when the models are separate). ``read_files_first`` reads the files whole beforehand, for
    a clear error about unusable files (``prepare``, whose corpus may not fit in memory, checks
    them as it reads them instead).
    """
    if config.tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(f"data.tokenizer must be one of {list(TOKENIZER_KINDS)}, got {config.tokenizer!r}")
    if config.tokenizer != "sentencepiece":
        tokenizer = build_tokenizer(config.tokenizer, lowercase=config.lowercase)
        return tokenizer, tokenizer
    if config.lowercase:
        raise ConfigError("data.lowercase applies to the word and char tokenizers, not to sentencepiece")
    if config.joint_sentencepiece and config.target_sentencepiece_model is not None:
        raise ConfigError(
            "data.target_sentencepiece_model is only read when data.joint_sentencepiece is false; "
            "a joint model is given as data.source_sentencepiece_model"
        )
    source_file, target_file = split_files(config, "train")
    needs_training = config.source_sentencepiece_model is None or (
        not config.joint_sentencepiece and config.target_sentencepiece_model is None
    )
    if needs_training and read_files_first:
        read_parallel(source_file, target_file)  # a clear error before SentencePiece reads bad files
    if config.joint_sentencepiece:
        files = [source_file, target_file]
        joint = _sentencepiece(config, config.source_sentencepiece_model, files, work_dir / "sentencepiece")
        return joint, joint
    source = _sentencepiece(
        config, config.source_sentencepiece_model, [source_file], work_dir / f"sentencepiece.{config.source_lang}"
    )
    target = _sentencepiece(
        config, config.target_sentencepiece_model, [target_file], work_dir / f"sentencepiece.{config.target_lang}"
    )
    return source, target


def _sentencepiece(config: ParallelDataConfig, model: str | None, files: list[Path], prefix: Path) -> Tokenizer:
    """Load ``model``, or train one on ``files`` into ``<prefix>.model``."""
    if model is not None:
        return SentencePieceTokenizer.load(model)
    log.info(
        "training a %s SentencePiece model of %d pieces on %s",
        config.sentencepiece_model_type,
        config.sentencepiece_vocab_size,
        ", ".join(str(file) for file in files),
    )
    try:
        return SentencePieceTokenizer.train(
            files,
            config.sentencepiece_vocab_size,
            config.sentencepiece_model_type,
            model_prefix=prefix,
            sample_sentences=config.sentencepiece_sample_size,
        )
    except ValueError as error:  # e.g. more pieces asked for than the text can give
        reason = str(error).rstrip(".")
        raise DataError(f"{reason}; adjust data.sentencepiece_vocab_size or the training text") from None


# ---- encoded splits -----------------------------------------------------------------------------


@dataclass
class ParallelData:
    """One split: its raw lines and their ids, in file order (less any pairs dropped for training)."""

    source_lines: list[str]
    target_lines: list[str] | None  # None: sources only (text to translate)
    sources: RaggedIds  # each (S_i,): source token ids, no specials
    targets: RaggedIds | None  # each (T_i,): target token ids, no specials

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class ParallelCorpus:
    """What training needs: both languages' codecs and the encoded training and validation splits."""

    source: TextCodec
    target: TextCodec
    train: ParallelData
    valid: ParallelData


def load_parallel_corpus(
    config: ParallelDataConfig,
    tokenizers: tuple[Tokenizer, Tokenizer],
    vocabs: tuple[Vocab, Vocab] | None = None,
) -> ParallelCorpus:
    """Read, filter and encode the training and validation splits.

    ``vocabs`` (source, target) are built from the kept training pairs unless given (as when
    training resumes from a checkpoint).
    """
    lines, tokens = _tokenized_split(config, "train", tokenizers, training=True)
    if vocabs is None:
        vocabs = (
            Vocab.build(tokens[0].token_lists(), min_freq=config.min_freq),
            Vocab.build(tokens[1].token_lists(), min_freq=config.min_freq),
        )
    source, target = TextCodec(tokenizers[0], vocabs[0]), TextCodec(tokenizers[1], vocabs[1])
    train = _encode(lines, tokens, source.vocab, target.vocab)
    valid = load_split(config, "valid", source, target)
    return ParallelCorpus(source, target, train, valid)


def load_split(
    config: ParallelDataConfig, split: str, source: TextCodec, target: TextCodec, training: bool = False
) -> ParallelData:
    """Read and encode one split; ``training`` applies the dropping policy, otherwise every pair stays."""
    lines, tokens = _tokenized_split(config, split, (source.tokenizer, target.tokenizer), training)
    data = _encode(lines, tokens, source.vocab, target.vocab)
    unknown = sum(int((side.ids == Vocab.unk_id).sum()) for side in (data.sources, data.targets) if side is not None)
    if unknown:
        log.info("%s: %d tokens are not in the training vocabularies and count as <unk>", split, unknown)
    return data


def encode_sources(lines: Sequence[str], source: TextCodec) -> ParallelData:
    """Text to translate (no references); empty lines stay, and are never batched."""
    sources = RaggedIds.from_sequences(source.encode(line) for line in lines)
    return ParallelData(list(lines), None, sources, None)


def _tokenized_split(
    config: ParallelDataConfig, split: str, tokenizers: tuple[Tokenizer, Tokenizer], training: bool
) -> tuple[tuple[list[str], list[str]], tuple[TokenizedLines, TokenizedLines]]:
    """The split's (source, target) lines and tokens, filtered when ``training``."""
    source_file, target_file = split_files(config, split)
    source_lines, target_lines = read_parallel(source_file, target_file)
    source_tokens = tokenize_lines(source_lines, tokenizers[0])
    target_tokens = tokenize_lines(target_lines, tokenizers[1])
    if training:
        keep = kept_for_training(
            source_lines,
            target_lines,
            source_tokens.sentences.lengths.tolist(),
            target_tokens.sentences.lengths.tolist(),
            config.max_length,
        )
        log.info("%s (%s): %d of %d pairs kept", split, source_file, len(keep), len(source_lines))
        if not keep:
            raise DataError(
                f"no training pairs are left in {source_file} / {target_file} after dropping empty and "
                f"over-long ones (data.max_length {config.max_length}): raise data.max_length or check the files"
            )
        source_lines, target_lines = [source_lines[i] for i in keep], [target_lines[i] for i in keep]
        source_tokens, target_tokens = source_tokens.take(keep), target_tokens.take(keep)
    return (source_lines, target_lines), (source_tokens, target_tokens)


def kept_for_training(
    source_lines: Sequence[str],
    target_lines: Sequence[str],
    source_lengths: Sequence[int],
    target_lengths: Sequence[int],
    max_length: int,
) -> list[int]:
    """Indices of the pairs training keeps: both sides non-empty, neither over ``max_length`` tokens (0: no limit).

    ``source_lengths`` and ``target_lengths`` count each line's tokens.

    The dropped pairs are counted in the log.
    """
    keep, empty, long = [], 0, 0
    for i, (source_line, target_line) in enumerate(zip(source_lines, target_lines)):
        if not (source_line.strip() and target_line.strip() and source_lengths[i] and target_lengths[i]):
            empty += 1
        elif max_length and max(source_lengths[i], target_lengths[i]) > max_length:
            long += 1
        else:
            keep.append(i)
    if empty or long:
        log.info(
            "dropped %d training pair(s) with an empty side and %d with more than %d tokens on a side",
            empty,
            long,
            max_length,
        )
    return keep


def _encode(
    lines: tuple[list[str], list[str]], tokens: tuple[TokenizedLines, TokenizedLines], source: Vocab, target: Vocab
) -> ParallelData:
    """Map both sides' tokens to their vocabularies' ids."""
    return ParallelData(lines[0], lines[1], tokens[0].encode(source), tokens[1].encode(target))


# ---- batches ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Padded ids of some pairs of a ParallelData split."""

    source: Tensor  # (B, S) source ids, padded with pad_id
    source_lengths: Tensor  # (B,) real tokens per source row; kept on the CPU, as packing wants
    target_in: Tensor | None  # (B, T) bos + target ids, padded; None without references
    target_out: Tensor | None  # (B, T) target ids + eos, padded; None without references
    indices: Tensor  # (B,) each row's position in its ParallelData, to restore input order
    target_tokens: int  # real (non-pad) tokens in target_out: what the loss averages over
    index: int = 0  # position of this batch in its epoch
    pad_id: int = Vocab.pad_id

    def to(self, device: torch.device | str) -> Batch:
        """The batch with its id tensors on ``device`` (source_lengths stays on the CPU)."""
        return Batch(
            self.source.to(device, non_blocking=True),
            self.source_lengths,
            _to_device(self.target_in, device),
            _to_device(self.target_out, device),
            self.indices,
            self.target_tokens,
            self.index,
            self.pad_id,
        )


def _to_device(tensor: Tensor | None, device: torch.device | str) -> Tensor | None:
    """``tensor`` on ``device``; None stays None."""
    return None if tensor is None else tensor.to(device, non_blocking=True)


def collate(data: ParallelData, indices: Sequence[int], index: int = 0) -> Batch:
    """The pairs ``indices`` of ``data`` as one padded batch, rows in the given order."""
    if not indices:
        raise ValueError("cannot collate an empty batch")
    sources = [data.sources[i] for i in indices]
    targets = None if data.targets is None else [data.targets[i] for i in indices]
    return collate_pairs(sources, targets, indices, index)


def collate_pairs(sources: list[Tensor], targets: list[Tensor] | None, indices: Sequence[int], index: int = 0) -> Batch:
    """Each row's source ids (S_i,) and target ids (T_i,) (no specials) as one padded batch;
    ``indices`` name the rows' pairs."""
    source = pad_sequence(sources, batch_first=True, padding_value=Vocab.pad_id)  # (B, S)
    source_lengths = torch.tensor([len(ids) for ids in sources], dtype=torch.long)  # (B,)
    target_in = target_out = None
    target_tokens = 0
    if targets is not None:
        bos, eos = torch.tensor([Vocab.bos_id]), torch.tensor([Vocab.eos_id])
        target_in = pad_sequence([torch.cat([bos, ids]) for ids in targets], batch_first=True)  # (B, T)
        target_out = pad_sequence([torch.cat([ids, eos]) for ids in targets], batch_first=True)  # (B, T)
        target_tokens = sum(len(ids) + 1 for ids in targets)
    return Batch(source, source_lengths, target_in, target_out, torch.tensor(list(indices)), target_tokens, index)


def check_batching(batch_tokens: int, batch_sentences: int, pool_size: int, world_size: int) -> None:
    """Refuse batching settings that cannot work for ``world_size`` processes, naming the key."""
    if batch_sentences < 0 or (batch_sentences == 0 and batch_tokens < 1):
        raise ConfigError(
            f"give data.batch_tokens >= 1 or data.batch_sentences >= 1 (got {batch_tokens} and {batch_sentences})"
        )
    if 0 < batch_sentences < world_size:
        raise ConfigError(f"data.batch_sentences ({batch_sentences}) must be at least the process count ({world_size})")
    if pool_size < 2 * world_size:
        raise ConfigError(f"data.pool_size ({pool_size}) must be at least twice the process count ({world_size})")


class TokenBudgetBatcher:
    """Batches of one split, by token budget or fixed size, bucketed by length.

    Training (``shuffle``): for epoch e the pairs are shuffled with a generator seeded by
    (seed, e), cut into pools of about ``pool_size``, each pool is sorted by target then
    source length and cut into batches, and the batches are shuffled. Evaluation (not
    ``shuffle``): all pairs sorted by length, longest first. Pairs with an empty source are
    never batched.

    Each batch is shared by ``world_size`` processes: process r takes rows r, r + W, ... of
    it, so every process sees the same number of batches and the budgets count all of them.
    """

    def __init__(
        self,
        data: ParallelData,
        batch_tokens: int = 4096,
        batch_sentences: int = 0,
        pool_size: int = 10_000,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_batching(batch_tokens, batch_sentences, pool_size, world_size)
        self.data = data
        self.batch_tokens = batch_tokens
        self.batch_sentences = batch_sentences
        self.pool_size = pool_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.source_lengths: list[int] = data.sources.lengths.tolist()
        self.target_lengths: list[int] = (
            (data.targets.lengths + 1).tolist() if data.targets is not None else [0] * len(data)
        )
        self.usable = [i for i, length in enumerate(self.source_lengths) if length > 0]
        if len(self.usable) < world_size:
            raise DataError(
                f"{len(self.usable)} pair(s) with a non-empty source cannot be shared by {world_size} processes"
            )

    def cost(self, i: int) -> int:
        """Padded tokens pair ``i`` needs per row: its longer side."""
        return max(self.source_lengths[i], self.target_lengths[i])

    def plan(self, epoch: int = 0) -> list[list[int]]:
        """Every batch of ``epoch``, all processes' rows together, as lists of pair indices."""
        if not self.shuffle:
            order = sorted(self.usable, key=lambda i: (self.source_lengths[i], self.target_lengths[i]), reverse=True)
            return self._cut(order)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        usable = torch.tensor(self.usable)
        shuffled = usable[torch.randperm(len(usable), generator=generator)]
        pools = torch.tensor_split(shuffled, -(-len(shuffled) // self.pool_size))
        batches = []
        for pool in pools:  # sorted() is stable: equal lengths keep their shuffled order
            batches += self._cut(sorted(pool.tolist(), key=lambda i: (self.target_lengths[i], self.source_lengths[i])))
        return [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """This process's part of each batch of ``epoch``, from batch ``start`` on (to resume)."""
        plan = self.plan(epoch)
        for index in range(start, len(plan)):
            yield collate(self.data, plan[index][self.rank :: self.world_size], index)

    def _cut(self, order: list[int]) -> list[list[int]]:
        """Consecutive runs of ``order`` within the budget (see ``cut_batches``)."""
        spans = cut_batches([self.cost(i) for i in order], self.batch_tokens, self.batch_sentences, self.world_size)
        return [order[start:end] for start, end in spans]


def cut_batches(
    costs: Sequence[int], batch_tokens: int, batch_sentences: int, world_size: int
) -> list[tuple[int, int]]:
    """(start, end) spans of consecutive positions of ``costs`` (each pair's padded tokens per row),
    each within ``batch_tokens`` (longest cost x rows) or of ``batch_sentences`` rows, and each of at
    least ``world_size`` rows. A final span too short to share is added to the one before it."""
    if batch_sentences:
        spans = [(k, min(k + batch_sentences, len(costs))) for k in range(0, len(costs), batch_sentences)]
    else:
        spans, start, longest = [], 0, 0
        for position, cost in enumerate(costs):
            widest = max(longest, cost)
            rows = position - start
            if rows >= world_size and widest * (rows + 1) > batch_tokens:
                spans.append((start, position))
                start, widest = position, cost
            longest = widest
        spans.append((start, len(costs)))
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < world_size:
        last_end = spans.pop()[1]
        spans[-1] = (spans[-1][0], last_end)
    return spans
