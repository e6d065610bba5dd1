"""Tests for seq2seq.data.parallel: reading aligned files, the dropping policy, ids, batches."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import pytest
import torch

from seq2seq.config import ConfigError
from seq2seq.data.parallel import (
    ParallelData,
    ParallelDataConfig,
    TextCodec,
    TokenBudgetBatcher,
    collate,
    encode_sources,
    kept_for_training,
    language_file,
    load_parallel_corpus,
    load_split,
    make_tokenizers,
    read_lines,
    read_parallel,
    tokenize_lines,
)
from seq2seq.data.ragged import RaggedIds
from seq2seq.data.text_files import DataError
from seq2seq.text import Vocab, WordTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]

GERMAN = [
    "Ein Mann fährt Fahrrad.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau liest ein Buch.",
    "Kinder spielen im Park.",
    "Ein Hund läuft.",
    "Ein Mann und eine Frau gehen spazieren.",
]
ENGLISH = [
    "A man rides a bike.",
    "Two dogs play in the snow.",
    "A woman reads a book.",
    "Children play in the park.",
    "A dog runs.",
    "A man and a woman go for a walk.",
]


def write_lines(path: Path, lines: list[str], gzipped: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def write_split(folder: Path, name: str, sources: list[str], targets: list[str]) -> str:
    """Write ``<folder>/<name>.de`` and ``.en``; return the prefix."""
    write_lines(folder / f"{name}.de", sources)
    write_lines(folder / f"{name}.en", targets)
    return str(folder / name)


def word_config(tmp_path: Path, **fields: object) -> ParallelDataConfig:
    """A config over the tiny German-English files, word-tokenised."""
    train = write_split(tmp_path, "train", GERMAN, ENGLISH)
    valid = write_split(tmp_path, "valid", [*GERMAN[:2], "Ein Zebra."], [*ENGLISH[:2], "A zebra."])
    return ParallelDataConfig(train_prefix=train, valid_prefix=valid, test_prefix=valid, tokenizer="word", **fields)


def word_codecs(config: ParallelDataConfig, tmp_path: Path) -> tuple[TextCodec, TextCodec]:
    corpus = load_parallel_corpus(config, make_tokenizers(config, tmp_path))
    return corpus.source, corpus.target


def synthetic_data(lengths: list[tuple[int, int]]) -> ParallelData:
    """Pairs of the given (source, target) token counts; token ids encode the pair's index."""
    sources = RaggedIds.from_sequences([4 + i] * s for i, (s, _) in enumerate(lengths))
    targets = RaggedIds.from_sequences([4 + i] * t for i, (_, t) in enumerate(lengths))
    lines = [str(i) for i in range(len(lengths))]
    return ParallelData(lines, lines, sources, targets)


def random_lengths(count: int, seed: int = 0) -> list[tuple[int, int]]:
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randint(1, 40, (count,), generator=generator)
    targets = (sources + torch.randint(-3, 4, (count,), generator=generator)).clamp(min=1)
    return list(zip(sources.tolist(), targets.tolist()))


# --- reading files ------------------------------------------------------------------------------


def test_plain_and_gzipped_files_read_the_same(tmp_path: Path) -> None:
    lines = ["Ein Hund.", "", "Zwei\u2028Katzen."]  # a Unicode line separator does not split a line
    plain = write_lines(tmp_path / "a.de", lines)
    gzipped = write_lines(tmp_path / "b.de.gz", lines, gzipped=True)
    assert read_lines(plain) == read_lines(gzipped) == lines


def test_line_endings_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "crlf.en"
    path.write_bytes(b"\xef\xbb\xbfA dog.\r\nA cat.\r\nNo newline")
    assert read_lines(path) == ["A dog.", "A cat.", "No newline"]


def test_gz_is_found_when_the_plain_file_is_absent(tmp_path: Path) -> None:
    write_lines(tmp_path / "train.de.gz", GERMAN, gzipped=True)
    assert language_file(tmp_path / "train", "de") == tmp_path / "train.de.gz"
    write_lines(tmp_path / "train.de", GERMAN)
    assert language_file(tmp_path / "train", "de") == tmp_path / "train.de"


def test_missing_files_name_both_candidates(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        language_file(tmp_path / "train", "fr")
    assert str(tmp_path / "train.fr") in str(error.value) and "train.fr.gz" in str(error.value)


def test_line_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "train.de", GERMAN)
    target = write_lines(tmp_path / "train.en", ENGLISH[:-1])
    with pytest.raises(DataError) as error:
        read_parallel(source, target)
    message = str(error.value)
    assert str(source) in message and str(target) in message
    assert str(len(GERMAN)) in message and str(len(GERMAN) - 1) in message


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.de"
    path.write_bytes(b"Ein Hund.\nZwei Hunde.\n" + "Gr\xfc\xdfe.\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 3") as error:
        read_lines(path)
    assert str(path) in str(error.value) and "UTF-8" in str(error.value)


def test_invalid_utf8_in_gzip_names_the_line_too(tmp_path: Path) -> None:
    path = tmp_path / "bad.de.gz"
    path.write_bytes(gzip.compress(b"ok\n\xff\n"))
    with pytest.raises(DataError, match="line 2"):
        read_lines(path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.en"
    path.write_bytes(content)
    with pytest.raises(DataError, match="no text"):
        read_lines(path)


def test_broken_gzip_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.de.gz"
    path.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match="gzip") as error:
        read_lines(path)
    assert str(path) in str(error.value)


# --- policy and ids -------------------------------------------------------------------------------


def test_training_drops_empty_and_long_pairs_and_logs_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sources = ["Ein Hund.", "", "Eine Katze.", "eins zwei drei vier fünf sechs", "Ein Haus."]
    targets = ["A dog.", "Nothing.", "   ", "one two", "A house."]
    prefix = write_split(tmp_path, "train", sources, targets)
    config = ParallelDataConfig(train_prefix=prefix, valid_prefix=prefix, tokenizer="word", max_length=4)
    with caplog.at_level(logging.INFO):
        corpus = load_parallel_corpus(config, make_tokenizers(config, tmp_path))
    assert corpus.train.source_lines == ["Ein Hund.", "Ein Haus."]
    assert corpus.train.target_lines == ["A dog.", "A house."]
    assert "dropped 2 training pair(s) with an empty side and 1 with more than 4 tokens" in caplog.text
    assert len(corpus.valid) == len(sources)  # evaluation keeps every pair, aligned with the files
    assert corpus.valid.target_lines == targets


def test_no_pair_left_is_a_clear_error(tmp_path: Path) -> None:
    prefix = write_split(tmp_path, "train", ["eins zwei drei"], ["one two three"])
    config = ParallelDataConfig(train_prefix=prefix, valid_prefix=prefix, tokenizer="word", max_length=1)
    with pytest.raises(DataError, match="max_length"):
        load_parallel_corpus(config, make_tokenizers(config, tmp_path))


def test_vocabularies_come_from_each_side_of_the_training_data(tmp_path: Path) -> None:
    config = word_config(tmp_path)
    corpus = load_parallel_corpus(config, make_tokenizers(config, tmp_path))
    assert "Hund" in corpus.source.vocab and "Hund" not in corpus.target.vocab
    assert "dog" in corpus.target.vocab and "dog" not in corpus.source.vocab
    assert "Zebra" not in corpus.source.vocab  # seen only in validation
    zebra = corpus.valid.sources[2]
    assert Vocab.unk_id in zebra.tolist()


def test_vocabularies_and_ids_match_tokenising_each_kept_line(tmp_path: Path) -> None:
    long = "eins zwei drei vier fünf sechs sieben acht neun zehn elf"
    sources = [*GERMAN, "", long]  # one empty and one over-long pair are dropped
    targets = [*ENGLISH, "Nothing.", "one two"]
    config = ParallelDataConfig(
        train_prefix=write_split(tmp_path, "train", sources, targets),
        valid_prefix=write_split(tmp_path, "valid", GERMAN[:2], ENGLISH[:2]),
        tokenizer="word",
        max_length=10,
        min_freq=2,
    )
    corpus = load_parallel_corpus(config, make_tokenizers(config, tmp_path))
    assert corpus.train.source_lines == GERMAN
    tokenizer = WordTokenizer()
    for codec, lines, ids in [
        (corpus.source, corpus.train.source_lines, corpus.train.sources),
        (corpus.target, corpus.train.target_lines, corpus.train.targets),
    ]:
        token_lists = [tokenizer.tokenize(line) for line in lines]
        assert codec.vocab == Vocab.build(token_lists, min_freq=2)
        assert [sentence.tolist() for sentence in ids] == [codec.vocab.encode(tokens) for tokens in token_lists]
    assert Vocab.unk_id in corpus.train.sources.ids.tolist()  # min_freq 2 leaves some tokens out


def test_tokenized_lines_keep_each_token_string_once() -> None:
    lines = ["a dog and a cat", "", "a dog"]
    tokenized = tokenize_lines(lines, WordTokenizer())
    assert tokenized.types == ["a", "dog", "and", "cat"]
    assert list(tokenized.token_lists()) == [WordTokenizer().tokenize(line) for line in lines]
    assert tokenized.sentences.lengths.tolist() == [5, 0, 2]
    assert [tokens for tokens in tokenized.take([2, 0]).token_lists()] == [["a", "dog"], lines[0].split()]


def test_kept_for_training_reads_token_counts() -> None:
    lines = ["x", "x", " ", "x", "x"]
    keep = kept_for_training(lines, lines, [1, 0, 1, 4, 3], [1, 1, 1, 1, 3], max_length=3)
    assert keep == [0, 4]  # 1: no source tokens, 2: blank line, 3: over max_length


def test_codec_round_trip_and_serialisation(tmp_path: Path) -> None:
    _, target = word_codecs(word_config(tmp_path), tmp_path)
    ids = target.encode("A dog runs.")
    assert target.decode([Vocab.bos_id, *ids, Vocab.eos_id, *ids]) == "A dog runs."  # stops at eos
    rebuilt = TextCodec.from_dict(target.to_dict())
    assert rebuilt.vocab == target.vocab and rebuilt.encode("A dog runs.") == ids
    with pytest.raises(ValueError, match="tokenizer"):
        TextCodec.from_dict({"vocab": target.vocab.to_dict()})


def test_collate_pads_shifts_and_counts(tmp_path: Path) -> None:
    config = word_config(tmp_path)
    source, target = word_codecs(config, tmp_path)
    data = load_split(config, "train", source, target)
    batch = collate(data, [4, 1, 5], index=7)
    assert batch.index == 7 and batch.indices.tolist() == [4, 1, 5]
    assert batch.source.shape == (3, int(batch.source_lengths.max()))
    for row, i in enumerate([4, 1, 5]):
        length = len(data.sources[i])
        assert batch.source_lengths[row] == length
        assert batch.source[row, :length].tolist() == data.sources[i].tolist()
        assert (batch.source[row, length:] == Vocab.pad_id).all()
        n = len(data.targets[i])
        assert batch.target_in[row, : n + 1].tolist() == [Vocab.bos_id, *data.targets[i].tolist()]
        assert batch.target_out[row, : n + 1].tolist() == [*data.targets[i].tolist(), Vocab.eos_id]
        assert (batch.target_out[row, n + 1 :] == Vocab.pad_id).all()
    assert batch.target_in.shape == batch.target_out.shape
    assert batch.target_tokens == int((batch.target_out != Vocab.pad_id).sum())
    assert target.decode(batch.target_out[0]) == data.target_lines[4]


def test_collate_of_ragged_ids_equals_padding_each_sentence() -> None:
    source_ids = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]
    target_ids = [[4, 5], [6, 7, 8], [9], [10, 11]]
    data = ParallelData(
        ["s"] * 4, ["t"] * 4, RaggedIds.from_sequences(source_ids), RaggedIds.from_sequences(target_ids)
    )
    rows = [3, 0, 2]
    batch = collate(data, rows)

    def padded(sequences: list[list[int]]) -> list[list[int]]:
        width = max(map(len, sequences))
        return [ids + [Vocab.pad_id] * (width - len(ids)) for ids in sequences]

    assert batch.source.tolist() == padded([source_ids[i] for i in rows])
    assert batch.source_lengths.tolist() == [len(source_ids[i]) for i in rows]
    assert batch.target_in.tolist() == padded([[Vocab.bos_id, *target_ids[i]] for i in rows])
    assert batch.target_out.tolist() == padded([[*target_ids[i], Vocab.eos_id] for i in rows])
    assert batch.target_tokens == sum(len(target_ids[i]) + 1 for i in rows)


def test_batch_to_keeps_lengths_on_cpu(tmp_path: Path) -> None:
    batch = collate(synthetic_data([(3, 2), (1, 4)]), [0, 1]).to("meta")
    assert batch.source.device.type == batch.target_in.device.type == "meta"
    assert batch.source_lengths.device.type == "cpu"


def test_sources_without_references_skip_empty_lines(tmp_path: Path) -> None:
    source, _ = word_codecs(word_config(tmp_path), tmp_path)
    data = encode_sources(["Ein Hund.", "", "Ein Mann fährt."], source)
    batches = list(TokenBudgetBatcher(data, batch_sentences=8, shuffle=False).batches())
    assert [batch.indices.tolist() for batch in batches] == [[2, 0]]  # longest first; the empty line is left out
    assert batches[0].target_in is None and batches[0].target_tokens == 0


# --- tokenizers -----------------------------------------------------------------------------------


def sentencepiece_config(tmp_path: Path, joint: bool) -> ParallelDataConfig:
    sources = [f"{a} {b.lower()} Nummer {n}" for n in range(0, 3000, 41) for a in GERMAN for b in GERMAN[:2]]
    targets = [f"{a} {b.lower()} Number {n}" for n in range(0, 3000, 41) for a in ENGLISH for b in ENGLISH[:2]]
    prefix = write_split(tmp_path / "data", "train", sources, targets)
    return ParallelDataConfig(
        train_prefix=prefix, valid_prefix=prefix, sentencepiece_vocab_size=100, joint_sentencepiece=joint
    )


def test_joint_sentencepiece_is_trained_once_for_both_sides(tmp_path: Path) -> None:
    config = sentencepiece_config(tmp_path, joint=True)
    source, target = make_tokenizers(config, tmp_path / "run")
    assert source is target and (tmp_path / "run" / "sentencepiece.model").is_file()
    corpus = load_parallel_corpus(config, (source, target))
    assert len(corpus.source.vocab) != len(corpus.target.vocab)  # one model, a vocabulary per side
    assert corpus.target.decode(corpus.target.encode("A dog runs.")) == "A dog runs."


def test_separate_sentencepiece_models_and_reuse(tmp_path: Path) -> None:
    config = sentencepiece_config(tmp_path, joint=False)
    source, target = make_tokenizers(config, tmp_path / "run")
    assert source is not target
    models = [tmp_path / "run" / f"sentencepiece.{lang}.model" for lang in ("de", "en")]
    assert all(model.is_file() for model in models)
    config.source_sentencepiece_model, config.target_sentencepiece_model = map(str, models)
    again = make_tokenizers(config, tmp_path / "unused")
    assert again[0].tokenize("Ein Hund.") == source.tokenize("Ein Hund.")
    assert not (tmp_path / "unused").exists()


def test_sentencepiece_asking_too_much_names_the_setting(tmp_path: Path) -> None:
    config = sentencepiece_config(tmp_path, joint=True)
    config.sentencepiece_vocab_size = 50_000
    with pytest.raises(DataError, match="data.sentencepiece_vocab_size"):
        make_tokenizers(config, tmp_path / "run")


def test_bad_tokenizer_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.tokenizer"):
        make_tokenizers(ParallelDataConfig(tokenizer="bytes"), tmp_path)
    with pytest.raises(ConfigError, match="data.lowercase"):
        make_tokenizers(ParallelDataConfig(lowercase=True), tmp_path)


def test_word_tokenizer_shared_and_lowercased(tmp_path: Path) -> None:
    source, _ = make_tokenizers(ParallelDataConfig(tokenizer="word", lowercase=True), tmp_path)
    assert isinstance(source, WordTokenizer) and source.tokenize("Ein Hund.") == ["ein", "hund", "."]


# --- batching -------------------------------------------------------------------------------------


def flatten(plan: list[list[int]]) -> list[int]:
    return [i for batch in plan for i in batch]


def test_token_budget_holds_and_every_pair_appears_once() -> None:
    lengths = random_lengths(500)
    batcher = TokenBudgetBatcher(synthetic_data(lengths), batch_tokens=200, pool_size=100, seed=1)
    plan = batcher.plan(epoch=0)
    assert sorted(flatten(plan)) == list(range(500))
    for batch in plan:
        assert len(batch) * max(batcher.cost(i) for i in batch) <= 200
    for batch in batcher.batches():
        assert batch.source.numel() <= 200 and batch.target_out.numel() <= 200


def test_a_pair_over_the_budget_gets_a_batch_of_its_own() -> None:
    batcher = TokenBudgetBatcher(synthetic_data([(2, 2), (50, 3), (2, 2)]), batch_tokens=10, shuffle=False)
    assert batcher.plan() == [[1], [0, 2]]  # longest first; ties keep file order


def test_order_is_fixed_by_seed_and_epoch_and_changes_between_epochs() -> None:
    data = synthetic_data(random_lengths(300))

    def make(seed: int) -> TokenBudgetBatcher:
        return TokenBudgetBatcher(data, batch_tokens=150, pool_size=100, seed=seed)

    assert make(3).plan(0) == make(3).plan(0)
    assert make(3).plan(0) != make(3).plan(1)
    assert make(3).plan(0) != make(4).plan(0)


def test_resuming_mid_epoch_continues_the_same_batches() -> None:
    batcher = TokenBudgetBatcher(synthetic_data(random_lengths(200)), batch_tokens=120, pool_size=50, seed=2)
    full = list(batcher.batches(epoch=5))
    resumed = list(TokenBudgetBatcher(batcher.data, batch_tokens=120, pool_size=50, seed=2).batches(epoch=5, start=4))
    assert [b.index for b in resumed] == list(range(4, len(full)))
    assert all(torch.equal(a.source, b.source) for a, b in zip(full[4:], resumed))


def padding_fraction(batcher: TokenBudgetBatcher) -> float:
    batches = list(batcher.batches())
    padded = sum(batch.target_out.numel() for batch in batches)
    return 1 - sum(batch.target_tokens for batch in batches) / padded


def test_bucketing_keeps_padding_small() -> None:
    data = synthetic_data(random_lengths(1000))
    bucketed = padding_fraction(TokenBudgetBatcher(data, batch_sentences=32, pool_size=1000))
    unsorted = padding_fraction(TokenBudgetBatcher(data, batch_sentences=32, pool_size=2))
    assert bucketed < 0.05 < unsorted


def test_fixed_size_batches() -> None:
    batcher = TokenBudgetBatcher(synthetic_data(random_lengths(200)), batch_sentences=64, pool_size=200)
    sizes = sorted(len(batch) for batch in batcher.plan())
    assert sizes == [8, 64, 64, 64]


@pytest.mark.parametrize("mode", [{"batch_tokens": 100}, {"batch_sentences": 16}])
def test_processes_share_each_batch(mode: dict[str, int]) -> None:
    data = synthetic_data(random_lengths(301))
    world = 3
    ranks = [
        list(TokenBudgetBatcher(data, pool_size=100, seed=7, rank=r, world_size=world, **mode).batches())
        for r in range(world)
    ]
    assert len({len(batches) for batches in ranks}) == 1  # every process runs the same number of steps
    plan = TokenBudgetBatcher(data, pool_size=100, seed=7, world_size=world, **mode).plan()
    for step, rows in enumerate(plan):
        parts = [ranks[r][step].indices.tolist() for r in range(world)]
        assert all(parts) and sorted(flatten(parts)) == sorted(rows)


def test_evaluation_order_is_longest_first_and_complete() -> None:
    lengths = random_lengths(100)
    batcher = TokenBudgetBatcher(synthetic_data(lengths), batch_sentences=10, shuffle=False)
    order = flatten(batcher.plan())
    assert sorted(order) == list(range(100))
    assert [lengths[i][0] for i in order] == sorted((s for s, _ in lengths), reverse=True)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"batch_tokens": 0}, "batch_tokens"),
        ({"batch_sentences": 2, "world_size": 4}, "batch_sentences"),
        ({"pool_size": 3, "world_size": 2}, "pool_size"),
    ],
)
def test_bad_batching_settings_name_the_key(settings: dict[str, int], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        TokenBudgetBatcher(synthetic_data([(1, 1)] * 10), **settings)


# --- the real Multi30k ----------------------------------------------------------------------------


def multi30k_dir() -> Path | None:
    mirror = os.environ.get("SEQ2SEQ_DATA_MIRROR")
    folder = Path(mirror) / "multi30k" if mirror else REPO_ROOT.parent / "shared" / "data" / "multi30k"
    return folder if (folder / "val.de.gz").is_file() else None


@pytest.mark.skipif(multi30k_dir() is None, reason="no local copy of Multi30k")
def test_real_multi30k_validation_split(tmp_path: Path) -> None:
    folder = multi30k_dir()
    config = ParallelDataConfig(train_prefix=str(folder / "val"), valid_prefix=str(folder / "val"), tokenizer="word")
    corpus = load_parallel_corpus(config, make_tokenizers(config, tmp_path))
    assert len(corpus.train) == len(corpus.valid) == 1014
    assert corpus.valid.source_lines[0] and corpus.valid.target_lines[0]
    batcher = TokenBudgetBatcher(corpus.train, batch_tokens=1000, pool_size=1014)
    assert padding_fraction(batcher) < 0.1
