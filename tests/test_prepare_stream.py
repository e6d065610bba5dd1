"""`seq2seq textgen prepare`: the stream of ids equals reading the text, and training reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.data.lm_corpus import load_lm_corpus, make_tokenizer
from seq2seq.data.lm_stream import LMDataConfig
from seq2seq.data.prepare_stream import open_prepared_stream, prepare_stream
from seq2seq.data.text_files import DataError
from seq2seq.training.tasks import train
from tests.conftest import TINY_TEXTGEN


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_prepared_ids_and_vocabulary_are_those_of_reading_the_text(
    tokenizer: str, tiny_text: Path, tmp_path: Path
) -> None:
    config = LMDataConfig(path=str(tiny_text), tokenizer=tokenizer, min_freq=2)  # type: ignore[arg-type]
    manifest = prepare_stream(config, tmp_path / "prepared", workers=2, shard_lines=97)
    assert sorted(path.name for path in (tmp_path / "prepared").iterdir()) == ["manifest.json", "tokens.npy"]
    expected = load_lm_corpus(config, make_tokenizer(config, tmp_path))
    prepared = open_prepared_stream(LMDataConfig(**{**vars(config), "prepared": str(tmp_path / "prepared")}))
    assert prepared.vocab == expected.vocab
    assert prepared.train_ids.tolist() == expected.train_ids.tolist()
    assert prepared.validation_ids.tolist() == expected.validation_ids.tolist()
    assert manifest.counts["tokens"] == len(expected.train_ids) + len(expected.validation_ids)


def test_training_reads_the_prepared_stream_and_refuses_other_settings(tiny_text: Path, tmp_path: Path) -> None:
    folder = tmp_path / "prepared"
    prepare_stream(LMDataConfig(path=str(tiny_text)), folder, workers=1, shard_lines=200)
    settings = [*TINY_TEXTGEN, "train.max_steps=4", "train.validate_every=4", f"data.prepared={folder}"]
    result = train("textgen", "shakespeare_char", [*settings, "data.path=nowhere.txt"], tmp_path / "run")
    assert result.progress.step == 4 and result.best_checkpoint is not None
    with pytest.raises(DataError, match=r"data.lowercase: prepared with False, the config says True"):
        train("textgen", "shakespeare_char", [*settings, "data.lowercase=true"], tmp_path / "other")
