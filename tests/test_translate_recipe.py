"""CPU runs of `seq2seq translate` (through recipes/translate.py, as a user runs it): train, translate,
evaluate, average, resume; and the command's own functions."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seq2seq.commands import build_parser, main
from seq2seq.commands import translate as command
from seq2seq.config import DecodeConfig
from seq2seq.inference import Hypothesis, Translation, Translator
from seq2seq.inference.options import search_options
from seq2seq.text import Vocab
from tests.conftest import REPO_ROOT, overrides, run_recipe
from tests.test_textgen_recipe import latest_weights, wait_for_checkpoint

# A toy language pair: word-for-word substitution, with the adjective after its noun in the
# source and before it in the target, so that the model has to learn to look around.
DICTIONARY = {
    "ein": "a",
    "der": "the",
    "mann": "man",
    "frau": "woman",
    "hund": "dog",
    "katze": "cat",
    "kind": "child",
    "gross": "big",
    "klein": "small",
    "rot": "red",
    "sieht": "sees",
    "jagt": "chases",
    "mag": "likes",
    "ball": "ball",
    "apfel": "apple",
    "haus": "house",
}
ARTICLES, NOUNS = ["ein", "der"], ["mann", "frau", "hund", "katze", "kind", "ball", "apfel", "haus"]
ADJECTIVES, VERBS = ["gross", "klein", "rot"], ["sieht", "jagt", "mag"]

TINY_TRANSLATE = [
    "data.tokenizer=word",
    "data.batch_sentences=16",
    "decoder.embedding_size=16",
    "decoder.hidden_size=32",
    "encoder.embedding_size=16",
    "encoder.hidden_size=16",
    "decoder.tie_embeddings=false",
    "train.lr=0.01",
    "train.schedule=constant",
    "train.warmup_steps=0",
    "train.max_steps=30",
    "train.max_minutes=0",
    "train.validate_every=15",
    "train.early_stopping_patience=0",  # tiny runs train their whole step count
    "train.log_every=5",
    "train.keep_latest=2",
    "train.threads=1",
    "train.device=cpu",
    "decoding.max_length=20",
]
# The shared trained run: with dropout (from the config), so that resuming must restore the RNG.
TRAINED_RUN = ["train.max_steps=60"]
# Validation by loss alone, for runs that need no BLEU.
LOSS_ONLY = ["validation.bleu=false", "train.best_metric=val_loss", "train.best_mode=min"]


def noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    article, noun = rng.choice(ARTICLES), rng.choice(NOUNS)
    if rng.random() < 0.5:
        return [article, noun], [DICTIONARY[article], DICTIONARY[noun]]
    adjective = rng.choice(ADJECTIVES)
    return [article, noun, adjective], [DICTIONARY[article], DICTIONARY[adjective], DICTIONARY[noun]]


def make_pairs(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` (source, target) sentences of the toy language pair."""
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(count):
        subject, subject_target = noun_phrase(rng)
        verb = rng.choice(VERBS)
        obj, obj_target = noun_phrase(rng)
        sources.append(" ".join([*subject, verb, *obj]) + " .")
        targets.append(" ".join([*subject_target, DICTIONARY[verb], *obj_target]) + " .")
    return sources, targets


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_corpus(folder: Path, seed: int = 0) -> list[str]:
    """train (200 pairs), val and test (20 each) as <folder>/<split>.{de,en}; the data overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, offset in (("train", 200, 0), ("val", 20, 1), ("test", 20, 2)):
        sources, targets = make_pairs(count, seed * 10 + offset)
        write_lines(folder / f"{split}.de", sources)
        write_lines(folder / f"{split}.en", targets)
    prefixes = {"train": "train", "valid": "val", "test": "test"}
    return [f"data.{key}_prefix={folder / split}" for key, split in prefixes.items()]


def train_args(data: list[str], run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--config",
        "recipes/configs/multi30k_de_en.yaml",
        "--run-dir",
        str(run_dir),
        *overrides(*TINY_TRANSLATE, *data, *extra),
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """One tiny trained run shared by the translate, evaluate and average tests."""
    run_dir = tmp_path_factory.mktemp("translate") / "run"
    result = run_recipe("translate.py", *train_args(corpus, run_dir, *TRAINED_RUN))
    assert "best val_bleu" in result.stdout
    return run_dir


def test_train_validates_by_bleu_and_keeps_best_checkpoints(trained_run: Path) -> None:
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    validations = [record for record in records if "val_loss" in record]
    assert validations and all({"val_bleu", "val_chrf", "val_ppl"} <= set(record) for record in validations)
    assert validations[-1]["val_loss"] < validations[0]["val_loss"]
    index = json.loads((trained_run / "checkpoints.json").read_text())
    assert (index["metric"], index["mode"]) == ("val_bleu", "max")
    assert len(index["latest"]) == 2


def test_translate_restores_input_order_from_file_and_stdin(trained_run: Path, tmp_path: Path) -> None:
    sources, _ = make_pairs(12, seed=7)
    lines = [*sources[:5], "", *sources[5:]]  # sentences of several lengths and one empty line
    source_file = tmp_path / "input.de"
    write_lines(source_file, lines)
    output = tmp_path / "output.en"
    run_recipe(
        "translate.py",
        "translate",
        "--checkpoint",
        str(trained_run),
        "--input",
        str(source_file),
        "--output",
        str(output),
        "--batch-size",
        "3",
        "--parallel-batches",
        "2",
    )
    forward = output.read_text(encoding="utf-8").splitlines()
    assert len(forward) == len(lines)
    assert forward[5] == "" and all(forward[i] for i in range(len(lines)) if i != 5)

    reversed_input = "".join(line + "\n" for line in reversed(lines))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "recipes/translate.py"),
            "translate",
            "--checkpoint",
            str(trained_run),
            "--batch-size",
            "4",
        ],
        cwd=REPO_ROOT,
        input=reversed_input,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == list(reversed(forward))


def test_n_best_prints_scored_lines_per_input(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source_file = tmp_path / "input.de"
    write_lines(source_file, ["ein mann sieht der hund .", "", "der ball gross mag ein kind ."])
    status = main(
        [
            "translate",
            "translate",
            "--checkpoint",
            str(trained_run),
            "--input",
            str(source_file),
            "--n-best",
            "3",
            "--beam",
            "4",
        ]
    )
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 3
    fields = [line.split("\t") for line in lines]
    assert all(len(parts) == 2 for parts in fields)
    scores = [float(score) for score, _ in fields]
    assert all(score <= 0 for score in scores[:3] + scores[6:])
    assert fields[3:6] == [["0.0000", ""]] * 3  # the empty line
    assert len({text for _, text in fields[:3]}) == 3  # distinct hypotheses


def test_invalid_utf8_input_is_a_clear_error(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source_file = tmp_path / "latin1.de"
    source_file.write_bytes("ein mann sieht .\nder hund läuft .\n".encode("latin-1"))
    status = main(["translate", "translate", "--checkpoint", str(trained_run), "--input", str(source_file)])
    error = capsys.readouterr().err
    assert status == 2 and "Traceback" not in error
    assert "line 2" in error and "UTF-8" in error and "iconv" in error


def test_evaluate_prints_scores_signatures_settings_and_plots_attention(trained_run: Path, tmp_path: Path) -> None:
    plot = tmp_path / "attention.png"
    result = run_recipe(
        "translate.py",
        "evaluate",
        "--checkpoint",
        str(trained_run),
        "--split",
        "test",
        "--beam",
        "2",
        "--attention-plot",
        str(plot),
        "--sentence",
        "3",
    )
    assert "BLEU = " in result.stdout and "chrF = " in result.stdout
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in result.stdout  # the BLEU signature
    assert "nc:6" in result.stdout  # the chrF signature
    assert "beam search with 2 beams" in result.stdout and "20 sentences" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_average_of_the_last_checkpoints_loads_and_translates(trained_run: Path, tmp_path: Path) -> None:
    output = tmp_path / "averaged"
    run_recipe("translate.py", "average", "--run-dir", str(trained_run), "--last", "2", "--output", str(output))
    index = json.loads((trained_run / "checkpoints.json").read_text())
    sources = [load_file(trained_run / "checkpoints" / name / "model.safetensors") for name in index["latest"]]
    averaged = load_file(output / "model.safetensors")
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, (sources[0][name] + sources[1][name]) / 2)
    translator = Translator.from_checkpoint(output, device="cpu")
    (best,) = translator.translate(["ein hund jagt der katze ."], greedy=True)[0].hypotheses
    assert best.text and best.token_ids[-1] == Vocab.eos_id


def test_mismatched_and_empty_training_files_are_clear_errors(corpus: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    write_corpus(folder)
    prefix = folder / "train"
    lines = Path(f"{prefix}.en").read_text(encoding="utf-8").splitlines()
    write_lines(Path(f"{prefix}.en"), lines[:-3])
    data = [*corpus, f"data.train_prefix={prefix}"]
    result = run_recipe("translate.py", *train_args(data, tmp_path / "run"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{prefix}.de has 200 lines" in result.stderr and f"{prefix}.en has 197" in result.stderr

    Path(f"{prefix}.de").write_text("\n\n", encoding="utf-8")
    result = run_recipe("translate.py", *train_args(data, tmp_path / "run2"), check=False)
    assert result.returncode == 2 and "holds no text" in result.stderr and f"{prefix}.de" in result.stderr


def test_resume_refuses_changed_model_and_changed_vocabulary(
    trained_run: Path, corpus: list[str], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    result = run_recipe("translate.py", *train_args(corpus, copy, "decoder.hidden_size=48"), check=False)
    assert result.returncode == 2 and "decoder.hidden_size: 32 -> 48" in result.stderr

    folder = tmp_path / "data"
    data = write_corpus(folder)
    run_dir = tmp_path / "run"
    run_recipe("translate.py", *train_args(data, run_dir, *LOSS_ONLY, "train.max_steps=2", "train.validate_every=2"))
    _, targets = make_pairs(200, seed=0)
    write_lines(folder / "train.en", [target.replace("dog", "hound") for target in targets])
    result = run_recipe("translate.py", *train_args(data, run_dir, *LOSS_ONLY, "train.max_steps=4"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "en vocabulary" in result.stderr and "'hound'" in result.stderr and "--fresh" in result.stderr


def test_sigkill_and_resume_ends_with_same_weights(trained_run: Path, corpus: list[str], tmp_path: Path) -> None:
    """Killed after a checkpoint and run again, training ends where the uninterrupted run did."""
    killed = tmp_path / "killed"
    arguments = train_args(corpus, killed, *TRAINED_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "recipes/translate.py"), *arguments],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = wait_for_checkpoint(killed, min_step=15, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed_at < 60, "the run finished before it could be killed"

    result = run_recipe("translate.py", *arguments)
    assert "resumed from" in result.stderr
    expected, actual = latest_weights(trained_run), latest_weights(killed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_joint_sentencepiece_trained_into_run_and_carried_by_checkpoint(corpus: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_recipe(
        "translate.py",
        *train_args(
            corpus,
            run_dir,
            "data.tokenizer=sentencepiece",
            "data.sentencepiece_vocab_size=40",
            "train.max_steps=4",
            "train.validate_every=4",
        ),
    )
    assert (run_dir / "sentencepiece.model").is_file()
    (run_dir / "sentencepiece.model").unlink()  # translating needs only the checkpoint
    translator = Translator.from_checkpoint(run_dir, device="cpu")
    assert translator.source.tokenizer.kind == translator.target.tokenizer.kind == "sentencepiece"
    (best,) = translator.translate(["ein mann sieht der hund ."], beam=2)[0].hypotheses
    assert math.isfinite(best.score) and best.token_ids


# ---- the command's own functions, in process ------------------------------------------------------


def test_decoding_flags_make_a_beam_search() -> None:
    defaults = DecodeConfig(method="beam", beam_size=5, n_best=1, max_length_ratio=2.0)
    assert search_options(defaults, greedy=True).beam_size == 1
    chosen = search_options(defaults, beam=3, n_best=2, max_length_ratio=1.5)
    assert (chosen.method, chosen.beam_size, chosen.n_best, chosen.max_length_ratio) == ("beam", 3, 2, 1.5)
    assert search_options(DecodeConfig(method="greedy")).method == "greedy"
    assert search_options(DecodeConfig(method="sample", beam_size=4)).method == "beam"
    with pytest.raises(ValueError, match="n_best=4 needs a beam of at least 4"):
        search_options(defaults, beam=2, n_best=4)
    with pytest.raises(TypeError, match="unknown decoding option"):
        search_options(defaults, beams=3)


def test_input_lines_keep_empty_lines_and_name_bad_bytes() -> None:
    assert command.input_lines("\ufeffa b\r\n\nc\n".encode(), "input") == ["a b", "", "c"]
    assert command.input_lines(b"", "input") == []
    with pytest.raises(ValueError, match="standard input, line 3: not valid UTF-8"):
        command.input_lines(b"ok\nok\n\xff\n", "standard input")


def test_n_best_format_has_one_line_per_hypothesis() -> None:
    best, second, empty = (
        Hypothesis("a b", ("a", "b"), (5, 6, 2), -1.5),
        Hypothesis("a", ("a",), (5, 2), -2.25),
        Hypothesis("", (), (), 0.0),
    )
    results = [Translation("x y", [best, second]), Translation("", [empty, empty])]
    assert command.format_translations(results, scored=False) == "a b\n\n"
    assert command.format_translations(results, scored=True) == "-1.5000\ta b\n-2.2500\ta\n0.0000\t\n0.0000\t\n"


@pytest.mark.parametrize("verb", ["train", "prepare", "translate", "evaluate", "average"])
def test_every_command_has_help(verb: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["translate", verb, "--help"])
    assert exit_info.value.code == 0
