"""Tests for seq2seq.data.captions: the Karpathy and table loaders, caption codecs, datasets, batches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from seq2seq.config import ConfigError, from_dict
from seq2seq.data.caption_settings import ImageTransformConfig
from seq2seq.data.captions import (
    CaptionBatch,
    CaptionDataConfig,
    CaptionImages,
    CaptionPairs,
    batches_per_epoch,
    caption_batches,
    collate_pairs,
    load_caption_sets,
    load_karpathy,
    load_table,
    make_caption_codec,
)
from seq2seq.data.images import SkipCounter, build_transform
from seq2seq.data.parallel import TextCodec
from seq2seq.data.text_files import DataError
from seq2seq.text import Vocab

CAPTIONS = [
    "A red square.",
    "A green square on white.",
    "A blue square.",
    "A small yellow square.",
    "A dark square.",
    "A bright square.",
    "A purple square on grey.",
]
FIXED = build_transform(ImageTransformConfig(image_size=8, normalize="none"), train=False)


def write_image(path: Path, shade: int) -> Path:
    """An 8x8 image of one colour, PNG or JPEG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 255 - shade, (7 * shade) % 256)).save(path)
    return path


def write_karpathy(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "dataset_tiny.json"
    path.write_text(json.dumps({"dataset": "tiny", "images": entries}), encoding="utf-8")
    return path


def karpathy_entries(tmp_path: Path) -> list[dict]:
    """Seven images in a subfolder: four train, one val, one test, one restval; the files exist."""
    splits = ["train", "train", "train", "train", "val", "test", "restval"]
    entries = []
    for i, (split, caption) in enumerate(zip(splits, CAPTIONS)):
        suffix = "jpg" if i % 2 else "png"
        write_image(tmp_path / "images" / "sub" / f"im{i}.{suffix}", 30 * i)
        sentences = [{"raw": caption, "tokens": ["ignored"]}, {"tokens": ["another", "view", str(i)]}]
        entry = {"filename": f"im{i}.{suffix}", "filepath": "sub", "split": split, "imgid": i, "sentences": sentences}
        entries.append(entry)
    return entries


def karpathy_config(tmp_path: Path, **fields: object) -> CaptionDataConfig:
    annotations = write_karpathy(tmp_path, karpathy_entries(tmp_path))
    transform = ImageTransformConfig(image_size=8, normalize="none")
    images = str(tmp_path / "images")
    return CaptionDataConfig(annotations=str(annotations), images=images, transform=transform, **fields)


def training_pairs(tmp_path: Path, **options: object) -> CaptionPairs:
    config = karpathy_config(tmp_path)
    train = load_caption_sets(config)["train"]
    codec = make_caption_codec(config, train, tmp_path)
    return CaptionPairs(train, codec, FIXED, config.max_length, **options)


def write_table(path: Path, rows: list[list[str]], delimiter: str) -> Path:
    path.write_text("".join(delimiter.join(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---- Karpathy JSON -------------------------------------------------------------------------------


def test_karpathy_reads_splits_captions_and_paths(tmp_path: Path) -> None:
    path = write_karpathy(tmp_path, karpathy_entries(tmp_path))
    images = load_karpathy(path, tmp_path / "images", restval_as_train=True)
    assert [image.split for image in images] == ["train"] * 4 + ["valid", "test", "train"]
    assert images[0].image_id == "sub/im0.png"
    assert images[1].path == tmp_path / "images" / "sub" / "im1.jpg"
    assert images[0].captions == [CAPTIONS[0], "another view 0"]  # raw when present, else joined tokens
    assert all(image.path.is_file() for image in images)


def test_karpathy_restval_can_be_left_out(tmp_path: Path) -> None:
    path = write_karpathy(tmp_path, karpathy_entries(tmp_path))
    with_restval = load_karpathy(path, tmp_path / "images", restval_as_train=True)
    without = load_karpathy(path, tmp_path / "images", restval_as_train=False)
    assert len(with_restval) - len(without) == 1
    assert "sub/im6.png" not in {image.image_id for image in without}


def test_karpathy_refuses_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_karpathy(tmp_path / "absent.json", tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json is not valid JSON \(line 1"):
        load_karpathy(broken, tmp_path)
    not_karpathy = write_karpathy(tmp_path, [])
    not_karpathy.write_text('{"annotations": []}', encoding="utf-8")
    with pytest.raises(DataError, match="no 'images' list"):
        load_karpathy(not_karpathy, tmp_path)


@pytest.mark.parametrize("key", ["filename", "split", "sentences"])
def test_karpathy_names_a_missing_key_and_the_image(tmp_path: Path, key: str) -> None:
    entries = karpathy_entries(tmp_path)
    del entries[2][key]
    with pytest.raises(DataError, match=rf"image 2 has no '{key}' key"):
        load_karpathy(write_karpathy(tmp_path, entries), tmp_path / "images")


@pytest.mark.parametrize("sentences", [[], [{"raw": "  "}]])
def test_karpathy_refuses_an_image_without_captions(tmp_path: Path, sentences: list) -> None:
    entries = karpathy_entries(tmp_path)
    entries[3]["sentences"] = sentences
    with pytest.raises(DataError, match=r"image 3 \(sub/im3.jpg\) has no captions"):
        load_karpathy(write_karpathy(tmp_path, entries), tmp_path / "images")


def test_karpathy_refuses_unknown_splits_and_bad_sentences(tmp_path: Path) -> None:
    entries = karpathy_entries(tmp_path)
    entries[1]["split"] = "dev"
    with pytest.raises(DataError, match="image 1 has split 'dev'"):
        load_karpathy(write_karpathy(tmp_path, entries), tmp_path / "images")
    entries = karpathy_entries(tmp_path)
    entries[0]["sentences"] = [{"text": "a caption"}]
    with pytest.raises(DataError, match="image 0 .* sentence 0 has neither a 'raw' string nor a 'tokens' list"):
        load_karpathy(write_karpathy(tmp_path, entries), tmp_path / "images")


# ---- TSV / CSV tables ----------------------------------------------------------------------------


def test_tsv_and_csv_tables_give_the_same_images(tmp_path: Path) -> None:
    rows = [
        ["a.png", "A cat, sitting.", "train"],
        ["b.png", "A dog.", "val"],
        ["a.png", "A cat on a mat.", "train"],
        ["c.png", "", "test"],
        ["c.png", "A bird.", "test"],
    ]
    tsv = write_table(tmp_path / "captions.tsv", [["image", "caption", "split"], *rows], "\t")
    csv_rows = [[image, f'"{caption}"', split] for image, caption, split in rows]
    csv = write_table(tmp_path / "captions.csv", [["image", "caption", "split"], *csv_rows], ",")
    from_tsv, from_csv = load_table(tsv, tmp_path), load_table(csv, tmp_path)
    assert from_tsv == from_csv
    assert [image.image_id for image in from_tsv] == ["a.png", "b.png", "c.png"]
    assert from_tsv[0].captions == ["A cat, sitting.", "A cat on a mat."]  # several rows, several references
    assert from_tsv[2].captions == ["A bird."]  # the empty caption is dropped
    assert [image.split for image in from_tsv] == ["train", "valid", "test"]


def test_table_without_split_column_is_split_by_path_hash(tmp_path: Path) -> None:
    names = [f"photos/p{i:04d}.jpg" for i in range(2000)]
    rows = [["image", "caption"]] + [[name, "A photo."] for name in names]
    table = write_table(tmp_path / "captions.tsv", rows, "\t")
    images = load_table(table, tmp_path, valid_fraction=0.2, test_fraction=0.1)
    splits = {image.image_id: image.split for image in images}
    counts = {split: list(splits.values()).count(split) for split in ("train", "valid", "test")}
    assert 300 < counts["valid"] < 500 and 130 < counts["test"] < 270 and counts["train"] > 1200
    # The same image lands in the same split whatever else the table holds.
    subset = write_table(tmp_path / "subset.tsv", [["image", "caption"]] + [[name, "x"] for name in names[::7]], "\t")
    assert all(splits[image.image_id] == image.split for image in load_table(subset, tmp_path, 0.2, 0.1))


def test_table_errors_say_what_is_wrong(tmp_path: Path) -> None:
    no_caption = write_table(tmp_path / "a.tsv", [["image", "text"], ["x.png", "A cat."]], "\t")
    with pytest.raises(DataError, match="no 'caption' column"):
        load_table(no_caption, tmp_path)
    latin1 = tmp_path / "b.csv"
    latin1.write_bytes("image,caption\nx.png,Un caf\xe9.\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        load_table(latin1, tmp_path)
    unquoted = write_table(tmp_path / "c.csv", [["image", "caption"], ["x.png", "A cat", " sitting."]], ",")
    with pytest.raises(DataError, match="line 2 has 3 field.* quote captions that contain commas"):
        load_table(unquoted, tmp_path)
    bad_split = write_table(tmp_path / "d.tsv", [["image", "caption", "split"], ["x.png", "A cat.", "dev"]], "\t")
    with pytest.raises(DataError, match="line 2 has split 'dev'"):
        load_table(bad_split, tmp_path)
    with pytest.raises(DataError, match=r"must end in \.tsv .* or \.csv"):
        load_table(write_table(tmp_path / "e.txt", [["image", "caption"]], "\t"), tmp_path)
    with pytest.raises(ConfigError, match="valid_fraction"):
        load_table(no_caption, tmp_path, valid_fraction=0.6, test_fraction=0.5)


# ---- both formats --------------------------------------------------------------------------------


def test_caption_sets_by_split_from_a_table(tmp_path: Path) -> None:
    rows = [["image", "caption", "split"]]
    for i, split in enumerate(["train", "train", "valid", "test"]):
        write_image(tmp_path / "images" / f"{i}.png", 50 * i)
        rows.append([f"{i}.png", CAPTIONS[i], split])
    table = write_table(tmp_path / "captions.csv", rows, ",")
    config = CaptionDataConfig(format="table", annotations=str(table), images=str(tmp_path / "images"))
    sets = load_caption_sets(config)
    assert {split: len(images) for split, images in sets.items()} == {"train": 2, "valid": 1, "test": 1}


def test_missing_image_files_are_counted_and_the_first_named(tmp_path: Path) -> None:
    config = karpathy_config(tmp_path)
    entries = json.loads(Path(config.annotations).read_text(encoding="utf-8"))["images"]
    for entry in entries:
        (tmp_path / "images" / "sub" / entry["filename"]).unlink()
    expected = r"7 of the 7 image files .* do not exist \(e\.g\. .*im0\.png.*data\.images"
    with pytest.raises(DataError, match=expected) as info:
        load_caption_sets(config)
    assert "im4" in str(info.value) and "im5" not in str(info.value)  # the first five only


def test_config_becomes_a_data_section_with_a_nested_transform() -> None:
    config = from_dict(CaptionDataConfig, {"format": "table", "transform": {"image_size": 64, "augment": True}})
    assert config.transform == ImageTransformConfig(image_size=64, augment=True)
    with pytest.raises(ConfigError, match="format"):
        load_caption_sets(CaptionDataConfig(format="coco"))


# ---- codecs --------------------------------------------------------------------------------------


def test_word_codec_round_trips_and_respects_min_freq(tmp_path: Path) -> None:
    config = karpathy_config(tmp_path, min_freq=2)
    train = load_caption_sets(config)["train"]
    codec = make_caption_codec(config, train, tmp_path)
    assert codec.decode(codec.encode("A red square.")) == "a <unk> square."  # "red" is seen once
    frequent = make_caption_codec(karpathy_config(tmp_path, min_freq=1), train, tmp_path)
    assert frequent.decode(frequent.encode("A Red square.")) == "a red square."
    assert TextCodec.from_dict(frequent.to_dict()).encode("a red square") == frequent.encode("a red square")


def test_sentencepiece_codec_round_trips(tmp_path: Path) -> None:
    config = karpathy_config(tmp_path, tokenizer="sentencepiece", lowercase=False, sentencepiece_vocab_size=30)
    train = load_caption_sets(config)["train"]
    codec = make_caption_codec(config, train, tmp_path / "run")
    assert codec.tokenizer.kind == "sentencepiece"
    assert (tmp_path / "run" / "sentencepiece.model").is_file()
    assert codec.decode(codec.encode("A green square on white.")) == "A green square on white."
    with pytest.raises(ConfigError, match="lowercase"):
        make_caption_codec(karpathy_config(tmp_path, tokenizer="sentencepiece"), train, tmp_path)


# ---- datasets and batches ------------------------------------------------------------------------


def test_captions_over_max_length_are_dropped_for_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = karpathy_config(tmp_path, max_length=4)
    train = load_caption_sets(config)["train"]
    codec = make_caption_codec(config, train, tmp_path)
    with caplog.at_level(logging.INFO, logger="seq2seq.data.captions"):
        pairs = CaptionPairs(train, codec, FIXED, max_length=4)
    all_captions = [caption for image in train for caption in image.captions]
    short = [caption for caption in all_captions if len(codec.encode(caption)) <= 4]
    assert 0 < len(pairs) == len(short) < len(all_captions)
    assert all(len(pairs[i][1]) <= 4 for i in range(len(pairs)))
    assert f"{len(all_captions) - len(short)} with more than 4 tokens" in caplog.text


def test_batches_hold_bos_and_eos_targets(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    (batch,) = caption_batches(pairs, batch_size=len(pairs))
    lengths = [len(pairs[i][1]) for i in batch.indices.tolist()]
    assert batch.images.shape == (len(pairs), 3, 8, 8) and batch.source is batch.images
    assert batch.batch_size == len(pairs) and batch.target_tokens == sum(lengths) + len(pairs)
    assert (batch.target_in[:, 0] == Vocab.bos_id).all()
    for row, length in enumerate(lengths):
        assert batch.target_out[row, length] == Vocab.eos_id
        assert (batch.target_out[row, length + 1 :] == Vocab.pad_id).all()
        assert torch.equal(batch.target_in[row, 1 : length + 1], batch.target_out[row, :length])
    moved = batch.to("cpu")
    assert isinstance(moved, CaptionBatch) and torch.equal(moved.target_out, batch.target_out)


def test_a_corrupt_image_is_skipped_and_counted_without_stopping_the_epoch(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    broken = pairs.store.paths[pairs.pairs[0][0]]
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    bad = [i for i, (image, _) in enumerate(pairs.pairs) if pairs.store.paths[image] == broken]
    for batch_size in (1, 3):
        pairs.skips = SkipCounter()
        rows = [index for batch in caption_batches(pairs, batch_size) for index in batch.indices.tolist()]
        assert sorted(rows) == [i for i in range(len(pairs)) if i not in bad]
        assert pairs.skips.total == len(bad)
    assert collate_pairs([None, None]) is None


def test_worker_processes_report_their_skips(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    (tmp_path / "images" / "sub" / "im2.png").write_bytes(b"not an image at all")
    batches = list(caption_batches(pairs, batch_size=4, num_workers=1))
    bad = len(pairs) - sum(batch.batch_size for batch in batches)
    assert bad == 2 and pairs.skips.total == bad and "unreadable" in pairs.skips.summary()


def test_preloaded_images_give_the_same_items(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    preloaded = training_pairs(tmp_path, preload=True)
    assert len(pairs) == len(preloaded)
    for i in range(len(pairs)):
        (image, ids, index), (image2, ids2, index2) = pairs[i], preloaded[i]
        assert torch.equal(image, image2) and torch.equal(ids, ids2) and index == index2


def test_preloading_finds_bad_images_once_and_drops_their_pairs(tmp_path: Path) -> None:
    config = karpathy_config(tmp_path)
    train = load_caption_sets(config)["train"]
    codec = make_caption_codec(config, train, tmp_path)
    train[1].path.write_bytes(b"\x89PNG garbage")
    preloaded = CaptionPairs(train, codec, FIXED, config.max_length, preload=True)
    assert preloaded.skips.total == 1
    assert len(preloaded) == sum(len(image.captions) for image in train) - len(train[1].captions)
    assert all(preloaded[i] is not None for i in range(len(preloaded)))


def test_evaluation_images_keep_their_order_and_mark_bad_ones(tmp_path: Path) -> None:
    config = karpathy_config(tmp_path)
    images = [image for split in load_caption_sets(config).values() for image in split]
    images[2].path.write_bytes(b"")
    dataset = CaptionImages(images, FIXED)
    assert dataset[2] is None and dataset[0][1] == 0 and dataset[0][0].shape == (3, 8, 8)
    batches = list(caption_batches(dataset, batch_size=2, shuffle=False))
    assert [i for batch in batches for i in batch.indices.tolist()] == [i for i in range(len(images)) if i != 2]
    assert all(batch.target_in is None and batch.target_tokens == 0 for batch in batches)


def test_order_is_fixed_by_seed_and_epoch(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)

    def order(epoch: int, seed: int) -> list[int]:
        return [i for batch in caption_batches(pairs, 2, epoch=epoch, seed=seed) for i in batch.indices.tolist()]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(1, 1) and sorted(order(0, 1)) == sorted(order(1, 1))
    assert len(list(caption_batches(pairs, 2))) == batches_per_epoch(pairs, 2)


def test_resuming_at_start_gives_the_tail_of_the_epoch(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    full = list(caption_batches(pairs, 3, epoch=2, seed=5))
    for start in (1, len(full) - 1):
        tail = list(caption_batches(pairs, 3, epoch=2, start=start, seed=5))
        assert len(tail) == len(full) - start
        for resumed, original in zip(tail, full[start:]):
            assert torch.equal(resumed.indices, original.indices) and torch.equal(resumed.images, original.images)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_every_item_exactly_once(tmp_path: Path, world_size: int) -> None:
    pairs = training_pairs(tmp_path)
    per_rank = [list(caption_batches(pairs, 4, epoch=1, rank=r, world_size=world_size)) for r in range(world_size)]
    assert len({len(batches) for batches in per_rank}) == 1  # every process takes the same number of steps
    assert len(per_rank[0]) == batches_per_epoch(pairs, 4, world_size)
    rows = [i for batches in per_rank for batch in batches for i in batch.indices.tolist()]
    assert sorted(rows) == list(range(len(pairs)))


def test_batch_size_below_the_process_count_is_refused(tmp_path: Path) -> None:
    pairs = training_pairs(tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        next(caption_batches(pairs, 1, world_size=2))
