"""`seq2seq translate prepare`: shards equal to reading the text, worker counts, resuming, verifying, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.checkpoint import CheckpointError
from seq2seq.data import prepare_parallel as preparing
from seq2seq.data.parallel import ParallelDataConfig, TextCodec, load_parallel_corpus, make_tokenizers
from seq2seq.data.prepared_parallel import MappedShard, open_prepared_parallel
from seq2seq.data.text_files import DataError
from seq2seq.text import SentencePieceTokenizer, Vocab
from seq2seq.training.translation_task import check_prepared_codecs
from tests.conftest import REPO_ROOT
from tests.test_translate_recipe import make_pairs, write_lines


def write_awkward_corpus(folder: Path) -> ParallelDataConfig:
    """230 pairs of the toy language, some with an empty side and some too long, gzipped target."""
    sources, targets = make_pairs(230, seed=3)
    sources[5], targets[17] = "", "   "
    sources[40] = " ".join(["ein mann sieht der hund ."] * 3)  # 18 tokens
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / "train.de", sources)
    write_lines(folder / "train.en", targets)
    for split in ("val", "test"):
        write_lines(folder / f"{split}.de", sources[:10])
        write_lines(folder / f"{split}.en", targets[:10])
    return ParallelDataConfig(
        train_prefix=str(folder / "train"),
        valid_prefix=str(folder / "val"),
        test_prefix=str(folder / "test"),
        tokenizer="word",
        min_freq=2,
        max_length=12,
    )


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> ParallelDataConfig:
    return write_awkward_corpus(tmp_path_factory.mktemp("awkward"))


def every_pair(config: ParallelDataConfig) -> list[tuple[list[int], list[int]]]:
    """Each prepared pair's source and target ids, shard by shard, in file order."""
    prepared = open_prepared_parallel(config)
    pairs = []
    for name in prepared.shard_names:
        shard = MappedShard(prepared.folder, name, "")
        for i in range(len(shard.lengths())):
            source, target = shard.pair(i)
            pairs.append((source.tolist(), target.tolist()))
    return pairs


def test_prepared_ids_and_vocabularies_are_those_of_reading_the_text(
    awkward: ParallelDataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "prepared"
    manifest = preparing.prepare_parallel(awkward, folder, workers=2, shard_pairs=37)
    assert len(manifest.shards) == 7  # 230 lines in shards of 37
    assert manifest.counts == {
        "lines": 230,
        "pairs": 227,
        "dropped_empty": 2,
        "dropped_long": 1,
        "source_tokens": manifest.counts["source_tokens"],
        "target_tokens": manifest.counts["target_tokens"],
    }
    corpus = load_parallel_corpus(awkward, make_tokenizers(awkward, tmp_path))
    config = ParallelDataConfig(**{**vars(awkward), "prepared": str(folder)})
    prepared = open_prepared_parallel(config)
    assert prepared.source.vocab == corpus.source.vocab and prepared.target.vocab == corpus.target.vocab
    assert corpus.train.targets is not None
    expected = [(s.tolist(), t.tolist()) for s, t in zip(corpus.train.sources, corpus.train.targets)]
    assert every_pair(config) == expected
    assert manifest.counts["source_tokens"] == len(corpus.train.sources.ids)


def test_one_worker_and_two_write_the_same_shards(awkward: ParallelDataConfig, tmp_path: Path) -> None:
    one = preparing.prepare_parallel(awkward, tmp_path / "one", workers=1, shard_pairs=50)
    two = preparing.prepare_parallel(awkward, tmp_path / "two", workers=2, shard_pairs=50)
    assert one.shards == two.shards and one.codecs == two.codecs


def test_an_interrupted_preparation_continues_with_the_shards_it_finished(
    awkward: ParallelDataConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prepared"

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(preparing, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            preparing.prepare_parallel(awkward, folder, workers=2, shard_pairs=50)
    assert not (folder / "manifest.json").exists() and (folder / "progress.json").exists()
    (folder / "shard_00002.json").unlink()  # killed before shard 2 was recorded
    kept = {path.name: path.stat().st_mtime_ns for path in folder.glob("shard_0000[0134].*.npy")}
    resumed = preparing.prepare_parallel(awkward, folder, workers=2, shard_pairs=50)
    assert kept == {name: (folder / name).stat().st_mtime_ns for name in kept}  # not written again
    assert not (folder / "progress.json").exists()
    in_one_go = preparing.prepare_parallel(awkward, tmp_path / "in_one_go", workers=2, shard_pairs=50)
    assert resumed.shards == in_one_go.shards and resumed.counts == in_one_go.counts


def test_a_finished_preparation_is_kept_and_other_settings_prepare_again(
    awkward: ParallelDataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "prepared"
    first = preparing.prepare_parallel(awkward, folder, workers=1, shard_pairs=100)
    written = (folder / "manifest.json").stat().st_mtime_ns
    assert preparing.prepare_parallel(awkward, folder, workers=1, shard_pairs=100) == first
    assert (folder / "manifest.json").stat().st_mtime_ns == written
    longer = ParallelDataConfig(**{**vars(awkward), "max_length": 0})
    assert preparing.prepare_parallel(longer, folder, workers=1, shard_pairs=100).counts["dropped_long"] == 0


def prepare_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", "prepare", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_corrupt_shard_is_named_with_what_to_do(awkward: ParallelDataConfig, tmp_path: Path) -> None:
    folder = tmp_path / "prepared"
    preparing.prepare_parallel(awkward, folder, workers=1, shard_pairs=100)
    config = ParallelDataConfig(**{**vars(awkward), "prepared": str(folder)})
    shard = folder / "shard_00001.source.npy"
    content = bytearray(shard.read_bytes())
    content[-1] ^= 0xFF  # same size, other content: only the checksum sees it
    shard.write_bytes(bytes(content))
    verified = prepare_command("--output", str(folder), "--verify")
    assert verified.returncode == 2 and "Traceback" not in verified.stderr
    assert f"{shard} is corrupt" in verified.stderr and "seq2seq translate prepare" in verified.stderr
    shard.write_bytes(bytes(content[:-8]))
    with pytest.raises(DataError, match=rf"{shard} has .* bytes, but the manifest says .*Prepare the data again"):
        open_prepared_parallel(config)
    (folder / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"unfinished \(no manifest.json\): run `seq2seq translate prepare"):
        open_prepared_parallel(config)


def test_a_set_prepared_with_other_settings_is_refused_by_name(awkward: ParallelDataConfig, tmp_path: Path) -> None:
    folder = tmp_path / "prepared"
    preparing.prepare_parallel(awkward, folder, workers=1, shard_pairs=100)
    other = ParallelDataConfig(**{**vars(awkward), "prepared": str(folder), "max_length": 50, "lowercase": True})
    with pytest.raises(DataError) as error:
        open_prepared_parallel(other)
    message = str(error.value)
    assert "data.max_length: prepared with 12, the config says 50" in message
    assert "data.lowercase: prepared with False, the config says True" in message
    assert "seq2seq translate prepare" in message


def test_files_of_different_lengths_and_bad_bytes_are_named(awkward: ParallelDataConfig, tmp_path: Path) -> None:
    folder = Path(awkward.train_prefix).parent
    short = tmp_path / "short"
    write_lines(short.with_suffix(".de"), (folder / "train.de").read_text().splitlines())
    write_lines(short.with_suffix(".en"), (folder / "train.en").read_text().splitlines()[:-3])
    config = ParallelDataConfig(**{**vars(awkward), "train_prefix": str(short)})
    with pytest.raises(DataError, match=r"short.de has 230 lines but .*short.en has 227"):
        preparing.prepare_parallel(config, tmp_path / "out", workers=1, shard_pairs=100)
    lines = (folder / "train.en").read_bytes().split(b"\n")
    lines[150] = b"caf\xe9"
    short.with_suffix(".en").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"short.en \(the part from line 101\), line 51: not valid UTF-8"):
        preparing.prepare_parallel(config, tmp_path / "out", workers=1, shard_pairs=100)


def test_sentencepiece_learns_from_a_fixed_sample_of_a_large_text(tmp_path: Path) -> None:
    sources, targets = make_pairs(3000, seed=5)
    text = tmp_path / "text.txt"
    write_lines(text, [f"{s} {t}" for s, t in zip(sources, targets)])

    def trained(name: str, sample: int | None) -> str:
        """The pieces and scores of the model learnt (its .vocab file)."""
        SentencePieceTokenizer.train([text], 40, model_prefix=tmp_path / name, sample_sentences=sample)
        return (tmp_path / f"{name}.vocab").read_text(encoding="utf-8")

    assert trained("first", 200) == trained("again", 200)  # the same sample every time
    assert trained("first", 200) != trained("all", None)


def test_resuming_on_a_set_prepared_again_with_another_vocabulary_is_refused(
    awkward: ParallelDataConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "prepared"
    manifest = preparing.prepare_parallel(awkward, folder, workers=1, shard_pairs=100)
    prepared = open_prepared_parallel(ParallelDataConfig(**{**vars(awkward), "prepared": str(folder)}))
    check_prepared_codecs(prepared, manifest.codecs)  # the run's own codecs: resumes
    vocab = Vocab.from_dict(manifest.codecs["target"]["vocab"])
    older = {
        **manifest.codecs,
        "target": TextCodec(prepared.target.tokenizer, Vocab(vocab.decode(range(5, len(vocab))))).to_dict(),
    }
    with pytest.raises(CheckpointError, match=rf"{folder} has another target vocabulary than the run .*--fresh"):
        check_prepared_codecs(prepared, older)
