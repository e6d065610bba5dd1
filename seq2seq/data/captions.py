"""Image-caption sets for captioning: loaders, caption tokenisation, datasets and batches.

Formats. ``karpathy``: one JSON file in the layout of Karpathy's split files (Flickr8k,
Flickr30k, COCO)::

    {"images": [{"filename": "x.jpg", "filepath": "<optional subfolder>",
                 "split": "train|val|test|restval",
                 "sentences": [{"raw": "A dog runs.", "tokens": ["a", "dog", "runs"]}, ...]}, ...]}

An image's file is ``images / filepath / filename``; "val" is called "valid" here and
"restval" counts as training data unless ``restval_as_train`` is off (then it is left out).
``table``: a folder of images and one TSV or CSV file with a header row naming the columns
``image`` (path relative to the folder), ``caption`` and, optionally, ``split``; several rows
for one image give it several reference captions. Without a split column, each image goes
to valid, test or train by a hash of its path, so the split never changes between runs.

Policy for awkward captions and images:

- empty captions are dropped while loading (and counted in the log); an image left without
  any caption is dropped with them.
- training (:class:`CaptionPairs`) keeps the (image, caption) pairs whose caption has 1 to
  ``max_length`` tokens; the others are counted in the log. Evaluation
  (:class:`CaptionImages`) keeps every image and every reference untouched.
- an image that cannot be read (``seq2seq.data.images.load_rgb`` raises ``BadImageError``) is
  skipped and counted by reason in the dataset's ``skips``; a bad image never stops an epoch.

Ids. A caption of n tokens gives ``target_in`` = bos + its ids and ``target_out`` = its
ids + eos, both of length n + 1, padded with pad (0) in a batch, as in translation.

Batches. :func:`caption_batches` fixes the order of an epoch by (seed, epoch), cuts it into
batches of ``batch_size`` items (all processes together; process r takes rows r, r + W, ...
of each), and loads only the batches from ``start`` on, so that training resumes at any
batch. A :class:`CaptionBatch` looks like translation's ``Batch`` to shared code: its
``source`` is the images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import torch
from PIL import Image
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, get_worker_info

from seq2seq.config import ConfigError
from seq2seq.data.caption_settings import CaptionDataConfig, CaptionFormat, CaptionTokenizerKind
from seq2seq.data.feature_cache import FeatureCache
from seq2seq.data.images import BadImageError, SkipCounter, image_of, load_rgb, pixels_of
from seq2seq.data.parallel import SPLITS, TextCodec
from seq2seq.data.text_files import DataError, decode_utf8, read_bytes
from seq2seq.text import SentencePieceTokenizer, Tokenizer, Vocab, WordTokenizer

log = logging.getLogger(__name__)

FORMATS = get_args(CaptionFormat)
TOKENIZER_KINDS = get_args(CaptionTokenizerKind)
KARPATHY_SPLITS = {"train": "train", "val": "valid", "test": "test", "restval": "train"}
TABLE_SPLITS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
TABLE_DELIMITERS = {".tsv": "\t", ".csv": ","}
MISSING_SHOWN = 5  # missing image files named in the error

Transform = Callable[[Image.Image], Tensor]  # PIL RGB image -> (3, S, S)


@dataclass
class ImageCaptions:
    """One image and its reference captions."""

    image_id: str  # the image's path relative to the images folder (unique within a set)
    path: Path  # where the image file is
    captions: list[str]  # raw reference captions, in file order
    split: str  # "train" | "valid" | "test"


# ---- the Karpathy JSON --------------------------------------------------------------------------


def load_karpathy(json_path: str | Path, images_root: str | Path, restval_as_train: bool = True) -> list[ImageCaptions]:
    """Every image of a Karpathy-format JSON file, in file order ("val" becomes "valid").

    A caption is a sentence's "raw" text, or its "tokens" joined by spaces when there is no
    "raw". "restval" images count as training images, or are left out when
    ``restval_as_train`` is False.

    Raises:
        DataError: the file is missing, not UTF-8 or not JSON; an image lacks a key, has an
            unknown split, no captions, or repeats another image's path.
    """
    json_path, images_root = Path(json_path), Path(images_root)
    text = decode_utf8(read_bytes(json_path, "caption JSON file"), f"caption JSON file {json_path}", json_path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{json_path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}). "
            "Download or prepare it again (see data_scripts/)."
        ) from None
    images = document.get("images") if isinstance(document, dict) else None
    if not isinstance(images, list):
        raise DataError(
            f"{json_path} has no 'images' list at the top level: it is not a Karpathy-format caption file "
            '({"images": [{"filename": ..., "split": ..., "sentences": [...]}, ...]}). '
            "Use data.format: table for a TSV/CSV captions file."
        )
    sets, seen, restval_left_out, empty = [], set(), 0, 0
    for index, entry in enumerate(images):
        where = f"{json_path}: image {index}"
        filename, split, sentences = (_karpathy_field(entry, key, where) for key in ("filename", "split", "sentences"))
        if split not in KARPATHY_SPLITS:
            raise DataError(f"{where} has split {split!r}; use one of {sorted(KARPATHY_SPLITS)}")
        if split == "restval" and not restval_as_train:
            restval_left_out += 1
            continue
        image_id = (Path(entry.get("filepath") or "") / str(filename)).as_posix()
        if image_id in seen:
            raise DataError(f"{where} repeats the image {image_id!r}; each image may be listed only once")
        seen.add(image_id)
        if not isinstance(sentences, list):
            raise DataError(f"{where} ({image_id}): 'sentences' must be a list of {{'raw': ...}} objects")
        raw = [
            _karpathy_caption(sentence, f"{where} ({image_id}), sentence {k}") for k, sentence in enumerate(sentences)
        ]
        captions = [caption for caption in raw if caption]
        empty += len(raw) - len(captions)
        if not captions:
            raise DataError(
                f"{where} ({image_id}) has no captions: its 'sentences' list is empty or every sentence is blank. "
                "Give it at least one caption, or remove the image from the file."
            )
        sets.append(ImageCaptions(image_id, images_root / image_id, captions, KARPATHY_SPLITS[split]))
    if restval_left_out:
        log.info("%s: left out %d restval image(s) (data.restval_as_train is false)", json_path, restval_left_out)
    if empty:
        log.info("%s: dropped %d empty caption(s)", json_path, empty)
    return sets


def _karpathy_field(entry: object, key: str, where: str) -> Any:
    """``entry[key]``, refusing an entry that is not an object or lacks the key."""
    if not isinstance(entry, dict):
        raise DataError(f"{where} is not a JSON object but {type(entry).__name__}")
    if key not in entry:
        raise DataError(
            f"{where} has no {key!r} key; every image needs 'filename', 'split' and 'sentences' "
            f"(it has {sorted(entry)})"
        )
    return entry[key]


def _karpathy_caption(sentence: object, where: str) -> str:
    """A sentence's "raw" text, else its "tokens" joined by spaces; stripped."""
    if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
        return sentence["raw"].strip()
    tokens = sentence.get("tokens") if isinstance(sentence, dict) else None
    if isinstance(tokens, list) and all(isinstance(token, str) for token in tokens):
        return " ".join(tokens).strip()
    raise DataError(f"{where} has neither a 'raw' string nor a 'tokens' list of strings")


# ---- a folder of images and a captions table -----------------------------------------------------


def load_table(
    table_path: str | Path, images_root: str | Path, valid_fraction: float = 0.05, test_fraction: float = 0.05
) -> list[ImageCaptions]:
    """Every image of a TSV or CSV captions table, in order of first appearance.

    The header row names the columns ``image``, ``caption`` and optionally ``split`` (train,
    valid or val, test); other columns are ignored. TSV fields are taken as they are (no
    quoting); CSV fields follow the usual quoting rules. Without a split column the split
    comes from :func:`hash_split`.

    Raises:
        DataError: the file is missing, not .tsv/.csv, not UTF-8, lacks a column, has a row
            with the wrong number of fields, an unknown split, or one image in two splits.
    """
    table_path, images_root = Path(table_path), Path(images_root)
    _check_fractions(valid_fraction, test_fraction)
    delimiter = TABLE_DELIMITERS.get(table_path.suffix.lower())
    if delimiter is None:
        raise DataError(
            f"captions table {table_path} must end in .tsv (tab-separated) or .csv (comma-separated), "
            "so that its columns can be read; rename it, or use data.format: karpathy for a JSON file."
        )
    text = decode_utf8(read_bytes(table_path, "captions table"), f"captions table {table_path}", table_path)
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
    )
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        columns = _table_columns(header, table_path)
        captions: dict[str, list[str]] = {}
        splits: dict[str, str] = {}
        empty = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            where = f"captions table {table_path}, line {reader.line_num}"
            if len(row) != len(header):
                raise DataError(
                    f"{where} has {len(row)} field(s) but the header has {len(header)}"
                    + (": quote captions that contain commas" if delimiter == "," else "")
                )
            image_id = Path(row[columns["image"]].strip()).as_posix()
            if image_id == ".":
                raise DataError(f"{where} has an empty image path")
            split = _table_split(row, columns, image_id, valid_fraction, test_fraction, where)
            if splits.setdefault(image_id, split) != split:
                raise DataError(f"{where} puts {image_id} in {split}, but an earlier row put it in {splits[image_id]}")
            caption = row[columns["caption"]].strip()
            captions.setdefault(image_id, [])
            if caption:
                captions[image_id].append(caption)
            else:
                empty += 1
    except csv.Error as error:
        raise DataError(f"captions table {table_path}, line {reader.line_num}: {error}") from None
    if empty:
        log.info("%s: dropped %d empty caption(s)", table_path, empty)
    sets = [
        ImageCaptions(image_id, images_root / image_id, texts, splits[image_id])
        for image_id, texts in captions.items()
        if texts
    ]
    if len(sets) < len(captions):
        log.info("%s: dropped %d image(s) whose captions are all empty", table_path, len(captions) - len(sets))
    if not sets:
        raise DataError(f"captions table {table_path} holds no captions: add rows below the header")
    return sets


def _table_columns(header: list[str], table_path: Path) -> dict[str, int]:
    """Positions of the ``image``, ``caption`` and (when present) ``split`` columns."""
    missing = [name for name in ("image", "caption") if name not in header]
    if missing:
        raise DataError(
            f"captions table {table_path} has no {' or '.join(repr(name) for name in missing)} column "
            f"(its header row reads {header}). The first row must name the columns image, caption and "
            "optionally split, separated by tabs (.tsv) or commas (.csv)."
        )
    return {name: header.index(name) for name in ("image", "caption", "split") if name in header}


def _table_split(
    row: list[str], columns: dict[str, int], image_id: str, valid_fraction: float, test_fraction: float, where: str
) -> str:
    """The row's split: its split column, or the hash split of its image."""
    if "split" not in columns:
        return hash_split(image_id, valid_fraction, test_fraction)
    name = row[columns["split"]].strip().lower()
    if name not in TABLE_SPLITS:
        raise DataError(f"{where} has split {name!r}; use one of {sorted(TABLE_SPLITS)}")
    return TABLE_SPLITS[name]


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (valid_fraction >= 0 and test_fraction >= 0 and valid_fraction + test_fraction < 1):
        raise ConfigError(
            "data.valid_fraction and data.test_fraction must be at least 0 and sum to less than 1 "
            f"(got {valid_fraction} and {test_fraction})"
        )


def hash_split(image_id: str, valid_fraction: float, test_fraction: float) -> str:
    """The split of an image ("valid", "test" or "train") by a hash of its path: the same on every run and machine."""
    position = int.from_bytes(hashlib.sha1(image_id.encode("utf-8")).digest()[:8], "big") / 2**64  # in [0, 1)
    if position < valid_fraction:
        return "valid"
    if position < valid_fraction + test_fraction:
        return "test"
    return "train"


# ---- both formats --------------------------------------------------------------------------------


def load_caption_sets(config: CaptionDataConfig) -> dict[str, list[ImageCaptions]]:
    """The images of each split ("train", "valid", "test"; a split may be empty).

    Raises:
        ConfigError: an unknown data.format.
        DataError: the annotations cannot be read, or image files they list do not exist.
    """
    if config.format == "karpathy":
        images = load_karpathy(config.annotations, config.images, config.restval_as_train)
    elif config.format == "table":
        images = load_table(config.annotations, config.images, config.valid_fraction, config.test_fraction)
    else:
        raise ConfigError(f"data.format must be one of {list(FORMATS)}, got {config.format!r}")
    missing = [image.path for image in images if not image.path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:MISSING_SHOWN])
        raise DataError(
            f"{len(missing):,} of the {len(images):,} image files listed in {config.annotations} do not exist "
            f"(e.g. {shown}). Check that data.images ({config.images}) is the folder the image paths are "
            "relative to, or prepare the data set again."
        )
    sets: dict[str, list[ImageCaptions]] = {split: [] for split in SPLITS}
    for image in images:
        sets[image.split].append(image)
    for split, split_images in sets.items():
        log.info(
            "%s: %d images, %d captions (%s)",
            split,
            len(split_images),
            sum(len(image.captions) for image in split_images),
            config.annotations,
        )
    return sets


# ---- tokenisation -------------------------------------------------------------------------------


def make_caption_codec(
    config: CaptionDataConfig, train_sets: Sequence[ImageCaptions], work_dir: str | Path
) -> TextCodec:
    """The captions' tokenizer and vocabulary, both from the training captions.

    The word tokenizer lowercases as the config says; a SentencePiece model is trained on the
    training captions into ``work_dir/sentencepiece.model``. The vocabulary holds the tokens of
    the training captions that training keeps (1 to ``max_length`` tokens) seen at least
    ``min_freq`` times.
    """
    captions = [caption for image in train_sets for caption in image.captions]
    if not captions:
        raise DataError(f"there are no training captions in {config.annotations}: the train split is empty")
    tokenizer = _caption_tokenizer(config, captions, Path(work_dir))
    vocab = caption_vocab(config, train_sets, tokenizer)
    log.info("caption vocabulary: %d entries (%s tokenizer, min_freq %d)", len(vocab), tokenizer.kind, config.min_freq)
    return TextCodec(tokenizer, vocab)


def caption_vocab(config: CaptionDataConfig, train_sets: Sequence[ImageCaptions], tokenizer: Tokenizer) -> Vocab:
    """The vocabulary of the training captions that training keeps (1 to ``max_length`` tokens),
    tokens seen at least ``min_freq`` times."""
    captions = (caption for image in train_sets for caption in image.captions)
    token_lists = [tokens for tokens in map(tokenizer.tokenize, captions) if _trainable(len(tokens), config.max_length)]
    return Vocab.build(token_lists, min_freq=config.min_freq)


def _caption_tokenizer(config: CaptionDataConfig, captions: list[str], work_dir: Path) -> Tokenizer:
    """A word tokenizer, or a SentencePiece model trained on ``captions``."""
    if config.tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(f"data.tokenizer must be one of {list(TOKENIZER_KINDS)}, got {config.tokenizer!r}")
    if config.tokenizer == "word":
        return WordTokenizer(lowercase=config.lowercase, keep_newlines=False)
    if config.lowercase:
        raise ConfigError(
            "data.lowercase applies to the word tokenizer only; set data.lowercase: false with "
            "data.tokenizer: sentencepiece"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    text_file = work_dir / "sentencepiece.captions.txt"
    text_file.write_text("".join(" ".join(caption.split()) + "\n" for caption in captions), encoding="utf-8")
    log.info(
        "training a SentencePiece model of %d pieces on %d captions", config.sentencepiece_vocab_size, len(captions)
    )
    try:
        return SentencePieceTokenizer.train(
            [text_file], config.sentencepiece_vocab_size, model_prefix=work_dir / "sentencepiece"
        )
    except ValueError as error:  # e.g. more pieces asked for than the captions can give
        reason = str(error).rstrip(".")
        raise DataError(f"{reason}; lower data.sentencepiece_vocab_size") from None
    finally:
        text_file.unlink(missing_ok=True)


def _trainable(tokens: int, max_length: int) -> bool:
    """Whether training keeps a caption of ``tokens`` tokens (1 to max_length; max_length 0: no limit)."""
    return tokens > 0 and (max_length == 0 or tokens <= max_length)


# ---- datasets -----------------------------------------------------------------------------------


class _ImageStore:
    """Reads images by index, from disk, from a preloaded uint8 copy, or (a frozen encoder's
    grids) from a feature cache, counting bad ones in ``skips``."""

    def __init__(
        self,
        images: Sequence[ImageCaptions],
        transform: Transform,
        max_pixels: int,
        preload: bool,
        features: FeatureCache | None = None,
    ) -> None:
        self.paths = [image.path for image in images]
        self.keys = [image.image_id for image in images]
        self.transform = transform
        self.max_pixels = max_pixels
        self.features = features
        self.skips = SkipCounter()
        self.pixels: list[Tensor | None] | None = None  # each (3, H, W) uint8, None for a bad image
        if preload and features is None:
            self.pixels = [self._decoded(path) for path in self.paths]
            good = sum(pixels is not None for pixels in self.pixels)
            log.info("preloaded %d of %d images (%.1f MB)", good, len(self.paths), self.preloaded_bytes() / 1e6)

    def preloaded_bytes(self) -> int:
        """Memory held by the preloaded images."""
        return sum(pixels.numel() for pixels in self.pixels or [] if pixels is not None)

    def is_bad(self, index: int) -> bool:
        """Whether image ``index`` is known to be unreadable (preloading and the feature cache
        find out in advance)."""
        if self.features is not None:
            return self.keys[index] not in self.features
        return self.pixels is not None and self.pixels[index] is None

    def tensor(self, index: int) -> Tensor | None:
        """Image ``index`` transformed, (3, S, S), or its cached grid (k*k, C) float16; None when
        it cannot be read."""
        if self.features is not None:
            # A FeatureCache has no get().
            return self.features[self.keys[index]] if self.keys[index] in self.features else None  # noqa: SIM401
        if self.pixels is None:
            try:
                image = load_rgb(self.paths[index], self.max_pixels)
            except BadImageError as error:
                self.skips.add(error)
                return None
        else:
            pixels = self.pixels[index]
            if pixels is None:
                return None
            image = image_of(pixels)  # exact: uint8 RGB back to the decoded image
        return self.transform(image)

    def _decoded(self, path: Path) -> Tensor | None:
        """The image's pixels as (3, H, W) uint8; None (counted) when it cannot be read."""
        try:
            return pixels_of(load_rgb(path, self.max_pixels))
        except BadImageError as error:
            self.skips.add(error)
            return None


class _StoredImages(Dataset):
    """A dataset whose images come from an ``_ImageStore``; ``skips`` counts the unreadable ones."""

    store: _ImageStore

    @property
    def skips(self) -> SkipCounter:
        """Unreadable images met so far, by reason."""
        return self.store.skips

    @skips.setter
    def skips(self, counter: SkipCounter) -> None:
        self.store.skips = counter


class CaptionPairs(_StoredImages):
    """Training: one item per (image, caption) pair whose caption training keeps.

    Item i is ``(image (3, S, S) or its cached grid (k*k, C), caption ids (T_i,), i)``, or
    None when the image cannot be read (counted in ``skips``). Caption ids carry no specials;
    :func:`collate_pairs` adds bos and eos.
    """

    def __init__(
        self,
        images: Sequence[ImageCaptions],
        codec: TextCodec,
        transform: Transform,
        max_length: int,
        max_pixels: int = 50_000_000,
        preload: bool = False,
        features: FeatureCache | None = None,
    ) -> None:
        self.store = _ImageStore(images, transform, max_pixels, preload, features)
        self.pairs: list[tuple[int, Tensor]] = []  # (image index, caption ids (T,))
        empty = long = bad = 0
        for image_index, image in enumerate(images):
            for caption in image.captions:
                ids = codec.encode(caption)
                if not ids:
                    empty += 1
                elif max_length and len(ids) > max_length:
                    long += 1
                elif self.store.is_bad(image_index):
                    bad += 1
                else:
                    self.pairs.append((image_index, torch.tensor(ids, dtype=torch.long)))
        log.info(
            "training pairs: %d kept; dropped %d with no tokens, %d with more than %d tokens, %d of unreadable images",
            len(self.pairs),
            empty,
            long,
            max_length,
            bad,
        )
        if not self.pairs:
            raise DataError(
                f"no training pairs are left after dropping empty and over-long captions (data.max_length "
                f"{max_length}) and unreadable images: raise data.max_length or check the data"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int] | None:
        image_index, ids = self.pairs[index]
        image = self.store.tensor(image_index)  # (3, S, S)
        return None if image is None else (image, ids, index)

    @staticmethod
    def collate(items: Sequence[tuple[Tensor, Tensor, int] | None]) -> CaptionBatch | None:
        """Items to a batch: :func:`collate_pairs`."""
        return collate_pairs(items)


class CaptionImages(_StoredImages):
    """Evaluation: one item per image, ``(image (3, S, S), index)``, or None when it cannot be read."""

    def __init__(
        self,
        images: Sequence[ImageCaptions],
        transform: Transform,
        max_pixels: int = 50_000_000,
        preload: bool = False,
        features: FeatureCache | None = None,
    ) -> None:
        self.images = list(images)
        self.store = _ImageStore(images, transform, max_pixels, preload, features)

    @classmethod
    def of_pairs(cls, images: Sequence[ImageCaptions], pairs: CaptionPairs) -> CaptionImages:
        """``images``, those ``pairs`` was made from in the same order, read through the pairs'
        store: the same transform and cache, and no second preloaded copy."""
        dataset = cls.__new__(cls)
        dataset.images = list(images)
        dataset.store = pairs.store
        return dataset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        image = self.store.tensor(index)  # (3, S, S)
        return None if image is None else (image, index)

    @staticmethod
    def collate(items: Sequence[tuple[Tensor, int] | None]) -> CaptionBatch | None:
        """Items to a batch: :func:`collate_images`."""
        return collate_images(items)


# ---- batches ------------------------------------------------------------------------------------


@dataclass
class CaptionBatch:
    """Images and (for training) their padded caption ids."""

    images: Tensor  # (B, 3, S, S)
    target_in: Tensor | None  # (B, T) bos + caption ids, padded with pad_id; None for evaluation
    target_out: Tensor | None  # (B, T) caption ids + eos, padded with pad_id; None for evaluation
    indices: Tensor  # (B,) each row's item index in its dataset; stays on the CPU
    target_lengths: Tensor | None = None  # (B,) real tokens per target_out row; stays on the CPU
    pad_id: int = Vocab.pad_id

    @property
    def source(self) -> Tensor:
        """The images, (B, 3, S, S): what the encoder reads, as for a translation ``Batch``."""
        return self.images

    @property
    def target_tokens(self) -> int:
        """Real (non-pad) tokens in ``target_out``: what the loss averages over; 0 without targets."""
        return 0 if self.target_lengths is None else int(self.target_lengths.sum())

    @property
    def batch_size(self) -> int:
        """Images in the batch."""
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> CaptionBatch:
        """The batch with its images and targets on ``device`` (indices and lengths stay on the CPU)."""
        return CaptionBatch(
            self.images.to(device, non_blocking=True),
            None if self.target_in is None else self.target_in.to(device, non_blocking=True),
            None if self.target_out is None else self.target_out.to(device, non_blocking=True),
            self.indices,
            self.target_lengths,
            self.pad_id,
        )


def collate_pairs(items: Sequence[tuple[Tensor, Tensor, int] | None]) -> CaptionBatch | None:
    """Training items (image, caption ids, index) as one batch; None items (bad images) are
    dropped, and None is returned when nothing is left."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    images, captions, indices = zip(*kept)
    bos, eos = torch.tensor([Vocab.bos_id]), torch.tensor([Vocab.eos_id])
    target_in = pad_sequence([torch.cat([bos, ids]) for ids in captions], batch_first=True, padding_value=Vocab.pad_id)
    target_out = pad_sequence([torch.cat([ids, eos]) for ids in captions], batch_first=True, padding_value=Vocab.pad_id)
    return CaptionBatch(
        torch.stack(images),  # (B, 3, S, S)
        target_in,  # (B, T)
        target_out,  # (B, T)
        torch.tensor(indices, dtype=torch.long),  # (B,)
        torch.tensor([len(ids) + 1 for ids in captions], dtype=torch.long),  # (B,)
    )


def collate_images(items: Sequence[tuple[Tensor, int] | None]) -> CaptionBatch | None:
    """Evaluation items (image, index) as one batch without targets; None items are dropped,
    and None is returned when nothing is left."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    images, indices = zip(*kept)
    return CaptionBatch(torch.stack(images), None, None, torch.tensor(indices, dtype=torch.long))


CaptionDataset = CaptionPairs | CaptionImages


def plan_batches(
    size: int, batch_size: int, epoch: int = 0, seed: int = 0, world_size: int = 1, shuffle: bool = True
) -> list[list[int]]:
    """Every batch of an epoch over ``size`` items, all processes' rows together.

    The order is a permutation seeded by (seed, epoch), or item order when not ``shuffle``.
    Batches hold ``batch_size`` items; a last batch with fewer than ``world_size`` items (too
    few to share) joins the one before it.
    """
    if batch_size < world_size:
        raise ConfigError(f"data.batch_size ({batch_size}) must be at least the process count ({world_size})")
    if size < world_size:
        raise DataError(f"{size} item(s) cannot be shared by {world_size} processes")
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(size, generator=generator).tolist()
    else:
        order = list(range(size))
    batches = [order[k : k + batch_size] for k in range(0, size, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < world_size:
        last = batches.pop()
        batches[-1] += last
    return batches


def batches_per_epoch(dataset: CaptionDataset, batch_size: int, world_size: int = 1) -> int:
    """How many batches :func:`caption_batches` plans for an epoch (before any all-bad batch is skipped)."""
    return len(plan_batches(len(dataset), batch_size, world_size=world_size, shuffle=False))


def caption_batches(
    dataset: CaptionDataset,
    batch_size: int,
    epoch: int = 0,
    start: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    shuffle: bool = True,
) -> Iterator[CaptionBatch]:
    """This process's part of each batch of ``epoch``, from batch ``start`` on.

    Only the batches from ``start`` on are loaded. Process ``rank`` of ``world_size`` takes
    rows rank, rank + world_size, ... of each planned batch. Bad images shrink their batch; a
    batch whose images are all bad is skipped. With ``num_workers`` > 0 the images are decoded
    in worker processes, whose skip counts are added to ``dataset.skips`` as batches arrive.
    """
    plan = plan_batches(len(dataset), batch_size, epoch, seed, world_size, shuffle)
    parts = [rows[rank::world_size] for rows in plan[start:]]
    collate = _WorkerCollate(dataset.collate)
    # The loader draws its workers' seed from this generator, not from torch's global one, which
    # would then differ between a run resumed mid-epoch and the same run uninterrupted.
    workers_seed = torch.Generator().manual_seed((seed * 100_003 + epoch) * 100_003 + start)
    loader = DataLoader(
        dataset, batch_sampler=parts, collate_fn=collate, num_workers=num_workers, generator=workers_seed
    )
    empty = 0
    for batch, worker_skips in loader:
        if worker_skips is not None:
            dataset.skips.merge(worker_skips)
        if batch is None:
            empty += 1
        else:
            yield batch
    if dataset.skips.total:
        log.info(
            "epoch %d: %d batch(es) skipped (every image bad); unreadable images so far: %s",
            epoch,
            empty,
            dataset.skips.summary(),
        )


class _WorkerCollate:
    """Collates in a DataLoader worker and hands back the skips that worker counted since its last batch.

    Each worker holds its own copy of the dataset, so its skip counts would otherwise never
    reach the training process. In the training process itself (no workers) nothing is handed
    back: the dataset there counts directly.
    """

    def __init__(self, collate: Callable[[Sequence[Any]], CaptionBatch | None]) -> None:
        self.collate = collate

    def __call__(self, items: Sequence[Any]) -> tuple[CaptionBatch | None, SkipCounter | None]:
        batch = self.collate(items)
        worker = get_worker_info()
        if worker is None:
            return batch, None
        dataset = cast(_StoredImages, worker.dataset)  # this module's loaders load only these
        skips, dataset.skips = dataset.skips, SkipCounter()
        return batch, skips
