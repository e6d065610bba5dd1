"""Bad input never costs a user their run: every command meets it with exit status 2 and one line
``error: ...`` that names what was wrong (no traceback), and nothing on disk is lost.

The cases are grouped by class (settings, run directories, checkpoints, training data, inputs
to decoding, wording) and parametrized over the tasks and over every verb that loads a
checkpoint, as the command line's own parser lists them: a verb added later fails
``test_every_checkpoint_verb_is_covered`` until its arguments are added to ``VERB_ARGUMENTS``,
and from then on it meets every check here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from seq2seq.commands import TASKS as COMMAND_TASKS
from seq2seq.commands import build_parser, main
from seq2seq.data.text_files import DataError
from seq2seq.inference import Translator
from seq2seq.run_configs import METADATA_ENTRIES
from seq2seq.training.run_lock import LOCK_FILE
from tests.conftest import REPO_ROOT, TINY_TEXTGEN, make_text, overrides, run_recipe
from tests.test_caption_recipe import TINY_CAPTION, write_dataset
from tests.test_translate_recipe import LOSS_ONLY, TINY_TRANSLATE, write_corpus

TASKS = tuple(COMMAND_TASKS)  # a new task fails below until its tiny settings and data are given
CONFIGS = {"textgen": "shakespeare_char", "translate": "multi30k_de_en", "caption": "emoji_scratch"}
TINY = {"textgen": TINY_TEXTGEN, "translate": [*TINY_TRANSLATE, *LOSS_ONLY], "caption": TINY_CAPTION}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


# ---- running commands ---------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    """``seq2seq ARGS`` in this process, as the console script runs it."""
    for handler in logging.root.handlers[:]:  # a previous command's handlers write to its own capture
        logging.root.removeHandler(handler)
        handler.close()
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse refuses an argument
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_user_error(outcome: Outcome, *facts: str) -> str:
    """Exit status 2, no traceback, and a last line ``error: ...`` holding every fact; returns it."""
    assert outcome.code == 2, outcome.err[-3000:]
    assert "Traceback" not in outcome.err
    message = outcome.err[outcome.err.rindex("error: ") :]
    assert message.rstrip("\n").count("\n") == 0, f"the error is not one line: {message!r}"
    for fact in facts:
        assert fact in message, f"{fact!r} not in {message!r}"
    return message


def assert_ok(outcome: Outcome) -> None:
    assert outcome.code == 0, outcome.err[-3000:]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock file, which a run may create) and its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def assert_kept(before: dict[str, bytes], folder: Path) -> None:
    """Every file of ``before`` is still in ``folder``, unchanged (a log may have grown)."""
    after = snapshot(folder)

    def kept(name: str) -> bool:
        now = after.get(name)
        return now == before[name] or (name.endswith(".log") and now is not None and now.startswith(before[name]))

    lost = sorted(name for name in before if not kept(name))
    assert not lost, f"lost or changed: {lost}"


# ---- data and trained runs ------------------------------------------------------------------------


@dataclass
class Data:
    folder: Path
    text: Path  # a tiny play for textgen
    corpus: list[str]  # translation data overrides
    images: list[str]  # captioning data overrides

    def settings(self, task: str) -> list[str]:
        return {"textgen": [f"data.path={self.text}"], "translate": self.corpus, "caption": self.images}[task]

    def image(self) -> Path:
        return sorted((self.folder / "shapes" / "images").glob("*.png"))[0]


def train_args(task: str, data: Data, run_dir: Path, *extra: str, config: str | None = None) -> list[str]:
    settings = overrides(*TINY[task], *data.settings(task), *extra)
    return [task, "train", "--config", config or CONFIGS[task], "--run-dir", str(run_dir), *settings]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    folder = tmp_path_factory.mktemp("data")
    text = folder / "text.txt"
    text.write_text(make_text(12_000), encoding="utf-8")
    return Data(folder, text, write_corpus(folder / "corpus"), write_dataset(folder / "shapes"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: Data) -> dict[str, Path]:
    """A tiny trained run of each task; textgen keeps two checkpoints (steps 10 and 20)."""
    folder = tmp_path_factory.mktemp("runs")
    trained = {}
    for task in TASKS:
        extra = ["train.keep_latest=2"] if task == "textgen" else []
        assert main(train_args(task, data, folder / task, *extra)) == 0
        trained[task] = folder / task
    return trained


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def edit_model_json(run_dir: Path, edit: object) -> None:
    """Apply ``edit(metadata)`` to every checkpoint's model.json."""
    for path in (run_dir / "checkpoints").glob("*/model.json"):
        metadata = json.loads(path.read_text(encoding="utf-8"))
        edit(metadata)  # type: ignore[operator]
        path.write_text(json.dumps(metadata), encoding="utf-8")


# ---- settings: YAML, ranges, devices (nothing is written) -----------------------------------------

SETTING_CASES = {
    "override is not YAML": (["decoder.hidden_size=[1,2"], ("decoder.hidden_size=[1,2", "not valid YAML")),
    "validate_every 0": (["train.validate_every=0"], ("train.validate_every must be >= 1",)),
    "log_every 0": (["train.log_every=0"], ("train.log_every must be >= 1",)),
    "accumulate_steps 0": (["train.accumulate_steps=0"], ("train.accumulate_steps must be >= 1",)),
    "one beta": (["train.betas=[0.9]"], ("train.betas must have 2 entries",)),
    "max_steps -1": (["train.max_steps=-1"], ("train.max_steps must be >= 0",)),
    "patience -1": (["train.early_stopping_patience=-1"], ("train.early_stopping_patience must be >= 0",)),
    "infinite lr": (["train.lr=.inf"], ("train.lr",)),
    "unknown device": (["train.device=banana"], ("banana", "cpu")),
    "cuda without cuda": (["train.device=cuda"], ("CUDA is not available",)),
}
DATA_SETTING_CASES = {
    "textgen": {
        "window 0": (["data.window=0"], ("data.window must be >= 1",)),
        "window -1": (["data.window=-1"], ("data.window must be >= 1",)),
        "batch_size 0": (["data.batch_size=0"], ("data.batch_size must be >= 1",)),
    },
    "translate": {"batch_tokens 0": (["data.batch_tokens=0"], ("data.batch_tokens",))},
    "caption": {"batch_size 0": (["data.batch_size=0"], ("data.batch_size must be >= 1",))},
}
CONFIG_FILES = {
    "YAML syntax error": ("name: x\ndecoder: [1, 2\n", ("bad.yaml, line 3", "not valid YAML")),
    "python tag": ("name: !!python/object/apply:os.system ['echo hi']\n", ("!!python",)),
}


def setting_cases() -> list[pytest.param]:
    shared = [(task, name, *case) for task in TASKS for name, case in SETTING_CASES.items()]
    own = [(task, name, *case) for task, cases in DATA_SETTING_CASES.items() for name, case in cases.items()]
    return [
        pytest.param(task, settings, facts, id=f"{task}-{name}", marks=[NO_CUDA] if "cuda" in name else [])
        for task, name, settings, facts in shared + own
    ]


@pytest.mark.parametrize(("task", "settings", "facts"), setting_cases())
def test_a_setting_that_cannot_work_is_refused_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path, task: str, settings: list[str], facts: tuple
) -> None:
    run_dir = tmp_path / "run"
    assert_user_error(run(capsys, *train_args(task, data, run_dir, *settings)), *facts)
    assert not run_dir.exists()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("case", CONFIG_FILES)
def test_a_config_file_that_is_not_plain_yaml_is_refused(
    capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path, task: str, case: str
) -> None:
    text, facts = CONFIG_FILES[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert_user_error(run(capsys, *train_args(task, data, run_dir, config=str(config))), *facts)
    assert not run_dir.exists()


# ---- run directories: --fresh, the lock -------------------------------------------------------------

TYPOS = {"textgen": "data.path={}", "translate": "data.train_prefix={}", "caption": "data.annotations={}"}


def previous_run(run_dir: Path) -> None:
    """A run directory as a trained run leaves it, plus the user's own notes."""
    step = run_dir / "checkpoints" / "step_000010"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"weights")
    (step / "model.json").write_text("{}", encoding="utf-8")
    (run_dir / "checkpoints.json").write_text('{"latest": ["step_000010"]}', encoding="utf-8")
    for name in ("metrics.jsonl", "train.log", "training_curve.png", "sentencepiece.model"):
        (run_dir / name).write_text(name, encoding="utf-8")
    (run_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    (run_dir / "my_data").mkdir()
    (run_dir / "my_data" / "corpus.txt").write_text("mine", encoding="utf-8")


@pytest.mark.parametrize("task", TASKS)
def test_fresh_with_data_that_cannot_be_read_keeps_the_previous_run(
    capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path, task: str
) -> None:
    run_dir = tmp_path / "precious"
    previous_run(run_dir)
    before = snapshot(run_dir)
    typo = str(tmp_path / "typo")
    outcome = run(capsys, *train_args(task, data, run_dir, TYPOS[task].format(typo)), "--fresh")
    assert_user_error(outcome, typo)
    assert_kept(before, run_dir)
    assert snapshot(run_dir).keys() == before.keys()  # no half-made run left behind


def test_fresh_replaces_only_what_a_run_wrote(capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path) -> None:
    run_dir = tmp_path / "precious"
    previous_run(run_dir)
    outcome = run(capsys, *train_args("textgen", data, run_dir, "train.max_steps=10"), "--fresh")
    assert_ok(outcome)
    assert "removed the previous run's checkpoints, checkpoints.json, metrics.jsonl" in outcome.err
    assert (run_dir / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (run_dir / "my_data" / "corpus.txt").read_text(encoding="utf-8") == "mine"
    assert not (run_dir / "sentencepiece.model").exists()  # the old run's, not this char-level run's
    assert json.loads((run_dir / "checkpoints.json").read_text())["latest"] == ["step_000010"]
    assert not list(run_dir.glob(".previous-run*"))


def lock_holder(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``process`` holds the run directory's lock (its PID is in the lock file)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = run_dir / LOCK_FILE
        if path.exists() and path.read_text().startswith(f"{process.pid} "):
            return
        assert process.poll() is None, "the first training ended before it took the lock"
        time.sleep(0.05)
    raise AssertionError("the first training never took the lock")


def test_a_second_training_on_the_same_run_directory_is_refused(
    capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    long_run = train_args("textgen", data, run_dir, "train.max_steps=100000", "train.validate_every=20")[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "recipes/textgen.py"), *long_run],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock_holder(run_dir, first)
        for extra in ([], ["--fresh"]):
            outcome = run(capsys, *train_args("textgen", data, run_dir), *extra)
            assert_user_error(outcome, str(run_dir), f"PID {first.pid}", "--run-dir")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run_dir / "notes.txt").exists() and (run_dir / "train.log").exists()  # the refused --fresh removed nothing
    # The operating system released the lock of the killed process: the next run goes ahead.
    assert_ok(run(capsys, *train_args("textgen", data, run_dir, "train.max_steps=1")))


# ---- checkpoints: corrupt, incomplete, gone -----------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


CORRUPTIONS = {
    "truncated weights": (lambda step: truncate(step / "model.safetensors"), "model.safetensors"),
    "truncated training state": (lambda step: truncate(step / "training_state.pt"), "training_state.pt"),
    "model.json not JSON": (lambda step: (step / "model.json").write_text("{", encoding="utf-8"), "model.json"),
    "model.json without config": (
        lambda step: (step / "model.json").write_text(json.dumps({"task": "textgen"}), encoding="utf-8"),
        "'config'",
    ),
    "deleted": (shutil.rmtree, "no longer exist"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_resume_skips_a_latest_checkpoint_that_does_not_verify(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], tmp_path: Path, case: str
) -> None:
    run_dir = copy_run(runs["textgen"], tmp_path)
    spoil, reason = CORRUPTIONS[case]
    spoil(run_dir / "checkpoints" / "step_000020")
    outcome = run(capsys, *train_args("textgen", data, run_dir, "train.keep_latest=2", "train.max_steps=30"))
    assert_ok(outcome)
    assert reason in outcome.err and "step_000020" in outcome.err
    assert "resumed from" in outcome.err and "step_000010 at step 10" in outcome.err
    index = json.loads((run_dir / "checkpoints.json").read_text())
    assert index["latest"][0] == "step_000030"
    if case != "deleted":  # the skipped checkpoint is kept for inspection, out of the index
        assert (run_dir / "checkpoints" / "step_000020.corrupt").is_dir()
        assert "step_000020.corrupt" in outcome.err


def test_resume_with_no_checkpoint_that_verifies_is_refused_and_keeps_them(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(runs["textgen"], tmp_path)
    for step in (run_dir / "checkpoints").iterdir():
        torch.save({"x": argparse.Namespace(a=1)}, step / "training_state.pt")  # not a state this toolkit writes
    before = snapshot(run_dir)
    outcome = run(capsys, *train_args("textgen", data, run_dir, "train.keep_latest=2", "train.max_steps=30"))
    message = assert_user_error(outcome, "none of the checkpoints", "step_000020", "step_000010", "--fresh")
    assert "not a training state this toolkit wrote" in message
    assert "weights_only" not in outcome.err  # torch's advice to load untrusted pickles is never ours
    assert_kept(before, run_dir)


# ---- training data that gives nothing to train on; divergence ----------------------------------------


@pytest.mark.parametrize(("split", "fact"), [("train", "epoch 0: not one training image"), ("val", "validation")])
def test_caption_training_without_one_readable_image_stops_with_the_reason(
    tmp_path: Path, split: str, fact: str
) -> None:
    shapes = tmp_path / "shapes"
    images = write_dataset(shapes)
    entries = json.loads((shapes / "dataset_shapes.json").read_text())["images"]
    for entry in entries:
        if entry["split"] == split:
            (shapes / "images" / entry["filename"]).write_bytes(b"not an image")
    args = ["train", "--run-dir", str(tmp_path / "run"), *overrides(*TINY_CAPTION, *images, "data.preload=false")]
    result = run_recipe("caption.py", *args, timeout=300, check=False)  # a real process: it must not hang
    outcome = Outcome(result.returncode, result.stdout, result.stderr)
    assert_user_error(outcome, fact, "could be read", "unreadable", "the first: ")


@pytest.mark.parametrize(
    ("lr", "fact"),
    # 1e38: the fused Adam update overflows the weights, and the next loss is nan
    [("1.0e+36", "the training loss became inf"), ("1.0e+38", "the training loss became nan")],
    ids=["inf", "overflow"],
)
def test_a_diverged_run_is_one_line(
    capsys: pytest.CaptureFixture[str], data: Data, tmp_path: Path, lr: str, fact: str
) -> None:
    settings = [f"train.lr={lr}", "train.clip_grad_norm=0", "train.warmup_steps=0"]
    outcome = run(capsys, *train_args("textgen", data, tmp_path / "run", *settings))
    assert_user_error(outcome, "training diverged", fact, "train.lr")


# ---- every verb that loads a checkpoint ------------------------------------------------------------


def checkpoint_verbs() -> list[tuple[str, str]]:
    """(task, verb) of every command that takes --checkpoint, as the parser lists them."""

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        return dict(actions[0].choices) if actions else {}

    return [
        (task, verb)
        for task, task_parser in subcommands(build_parser()).items()
        for verb, verb_parser in subcommands(task_parser).items()
        if "--checkpoint" in verb_parser._option_string_actions
    ]


def translate_input(data: Data) -> list[str]:
    source = data.folder / "input.de"
    source.write_text("ein mann sieht der hund .\n", encoding="utf-8")
    return ["--input", str(source)]


#: What each verb needs besides --checkpoint and --device to get past its start.
VERB_ARGUMENTS = {
    ("textgen", "generate"): lambda data: ["--length", "5", "--no-stream"],
    ("textgen", "evaluate"): lambda data: [],
    ("translate", "translate"): translate_input,
    ("translate", "evaluate"): lambda data: [],
    ("caption", "caption"): lambda data: [str(data.image())],
    ("caption", "evaluate"): lambda data: ["--baseline", "none"],
}
VERBS = checkpoint_verbs()


def test_every_checkpoint_verb_is_covered() -> None:
    assert set(VERBS) == set(VERB_ARGUMENTS), "give each verb's arguments in VERB_ARGUMENTS"


def verb_args(task: str, verb: str, data: Data, checkpoint: Path, *extra: str) -> list[str]:
    return [task, verb, "--checkpoint", str(checkpoint), *VERB_ARGUMENTS[(task, verb)](data), *extra]


@pytest.mark.parametrize(("task", "verb"), VERBS)
def test_every_verb_runs_on_a_good_checkpoint(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], task: str, verb: str
) -> None:
    assert_ok(run(capsys, *verb_args(task, verb, data, runs[task], "--device", "cpu")))


@pytest.mark.parametrize(
    ("task", "verb", "entry"),
    [(task, verb, entry) for task, verb in VERBS for entry in ("task", "config", *METADATA_ENTRIES[task])],
)
def test_a_checkpoint_without_an_entry_is_named(
    capsys: pytest.CaptureFixture[str],
    data: Data,
    runs: dict[str, Path],
    tmp_path: Path,
    task: str,
    verb: str,
    entry: str,
) -> None:
    checkpoint = copy_run(runs[task], tmp_path)
    edit_model_json(checkpoint, lambda metadata: metadata.pop(entry))
    outcome = run(capsys, *verb_args(task, verb, data, checkpoint, "--device", "cpu"))
    assert_user_error(outcome, "model.json", f"no '{entry}' entry")


@pytest.mark.parametrize(("task", "verb"), VERBS)
@pytest.mark.parametrize(
    ("device", "fact"), [("banana", "unknown device 'banana'"), pytest.param("cuda", "CUDA", marks=NO_CUDA)]
)
def test_a_device_that_is_not_here_is_named(
    capsys: pytest.CaptureFixture[str],
    data: Data,
    runs: dict[str, Path],
    task: str,
    verb: str,
    device: str,
    fact: str,
) -> None:
    assert_user_error(run(capsys, *verb_args(task, verb, data, runs[task], "--device", device)), fact)


# ---- inputs to decoding -----------------------------------------------------------------------------


def test_a_source_line_over_the_limit_is_named_and_the_limit_can_be_raised(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "input.de"
    source.write_text("ein mann .\n" + "ein mann sieht der hund . " * 100 + "\nder hund .\n", encoding="utf-8")
    translate = ["translate", "translate", "--checkpoint", str(runs["translate"]), "--input", str(source)]
    # Trained with data.max_length 100: the default limit is 400 tokens, and line 2 has 600.
    assert_user_error(run(capsys, *translate), "line 2: 600", "400", "--max-source-tokens")
    outcome = run(capsys, *translate, "--max-source-tokens", "0")
    assert_ok(outcome)
    assert len(outcome.out.splitlines()) == 3
    assert_user_error(run(capsys, *translate, "--max-source-tokens", "-1"), "--max-source-tokens", ">= 0")


def test_translate_takes_the_source_limit_as_a_keyword(runs: dict[str, Path]) -> None:
    translator = Translator.from_checkpoint(runs["translate"], device="cpu")
    assert translator.source_limit() == 400  # 4 x the training data.max_length
    with pytest.raises(DataError, match="line 1: 6"):
        translator.translate("ein mann sieht der hund .", max_source_tokens=5)
    assert translator.translate("ein mann sieht der hund .", max_source_tokens=6)[0].text


def test_a_prime_longer_than_the_priming_window_is_consumed(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path], tmp_path: Path
) -> None:
    prime = tmp_path / "prime.txt"
    prime.write_text(make_text(30_000), encoding="utf-8")  # windows of PRIME_WINDOW tokens
    generate = ["textgen", "generate", "--checkpoint", str(runs["textgen"]), "--prime-file", str(prime)]
    outcome = run(capsys, *generate, "--length", "5", "--no-stream", "--seed", "1")
    assert_ok(outcome)
    assert outcome.out.startswith(make_text(30_000))


def test_the_translation_prompt_survives_a_line_that_is_not_utf8(runs: dict[str, Path]) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "seq2seq", "translate", "translate", "--checkpoint", str(runs["translate"])]
    process = subprocess.Popen(command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    os.close(terminal)
    try:
        os.write(controller, b"ein \xff\xfe mann .\n")
        os.write(controller, b"ein mann .\n")
        os.write(controller, b"\x04")  # Ctrl-D: end of input
        out, err = process.communicate(timeout=120)
    finally:
        os.close(controller)
    assert process.returncode == 0, err
    assert "Traceback" not in err.decode()
    assert "that line is not valid UTF-8" in err.decode()
    assert out.decode().count("> ") == 3 and len(out.decode().split("> ")[2].strip()) > 0  # the next line translated


def test_evaluate_names_the_characters_the_model_never_saw(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path], tmp_path: Path
) -> None:
    text = tmp_path / "other.txt"
    text.write_bytes(b"ROMEO:\x00\r\nThe night\x00 is fair.\r\n" + make_text(2_000).encode())
    outcome = run(capsys, "textgen", "evaluate", "--checkpoint", str(runs["textgen"]), "--text", str(text))
    assert_ok(outcome)
    line = next(line for line in outcome.out.splitlines() if line.startswith("unknown chars:"))
    assert "4 of" in line and "'\\x00' (2)" in line and "'\\r' (2)" in line and "<unk>" in line


def test_attention_maps_of_images_with_the_same_name_do_not_overwrite_each_other(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], tmp_path: Path
) -> None:
    for folder, suffix in (("a", ".jpg"), ("b", ".png")):
        (tmp_path / folder).mkdir()
        Image.open(data.image()).convert("RGB").save(tmp_path / folder / f"good{suffix}")
    maps = tmp_path / "maps"
    images = [str(tmp_path / "a" / "good.jpg"), str(tmp_path / "b" / "good.png")]
    outcome = run(
        capsys, "caption", "caption", "--checkpoint", str(runs["caption"]), *images, "--attention-maps", str(maps)
    )
    assert_ok(outcome)
    assert sorted(path.name for path in maps.iterdir()) == ["0001_good.png", "0002_good.png"]


@pytest.mark.parametrize(
    ("args", "fact"),
    [
        (["textgen", "evaluate", "--window", "0"], "--window"),
        (["textgen", "generate", "--num-samples", "0"], "--num-samples"),
        (["translate", "translate", "--beam", "0"], "--beam"),
        (["translate", "translate", "--n-best", "0"], "--n-best"),
    ],
    ids=["window", "num-samples", "beam", "n-best"],
)
def test_a_count_of_zero_is_refused_not_replaced_by_the_default(
    capsys: pytest.CaptureFixture[str], args: list[str], fact: str
) -> None:
    assert_user_error(run(capsys, *args, "--checkpoint", "unused"), fact, ">= 1")


def test_an_output_path_that_is_a_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], tmp_path: Path
) -> None:
    args = verb_args("translate", "translate", data, runs["translate"], "--output", str(tmp_path))
    assert_user_error(run(capsys, *args), "Is a directory", str(tmp_path))


# ---- wording ------------------------------------------------------------------------------------------


def utf16_file(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-16"))  # with its byte-order mark, as editors save it
    return path


UTF16_READERS = {
    "translate input": lambda data, runs, tmp: ["translate", "translate", "--checkpoint", str(runs["translate"]),
                                                "--input", str(utf16_file(tmp / "in.de", "ein mann .\n"))],
    "prime file": lambda data, runs, tmp: ["textgen", "generate", "--checkpoint", str(runs["textgen"]),
                                           "--prime-file", str(utf16_file(tmp / "in.txt", "ROMEO:"))],
    "text to evaluate": lambda data, runs, tmp: ["textgen", "evaluate", "--checkpoint", str(runs["textgen"]),
                                                 "--text", str(utf16_file(tmp / "in.txt", make_text(500)))],
    "training text": lambda data, runs, tmp: train_args(
        "textgen", data, tmp / "run", f"data.path={utf16_file(tmp / 'in.txt', make_text(5000))}"),
}  # fmt: skip


@pytest.mark.parametrize("reader", UTF16_READERS)
def test_a_utf16_file_is_named_as_such_with_the_command_that_converts_it(
    capsys: pytest.CaptureFixture[str], data: Data, runs: dict[str, Path], tmp_path: Path, reader: str
) -> None:
    outcome = run(capsys, *UTF16_READERS[reader](data, runs, tmp_path))
    message = assert_user_error(outcome, "UTF-16", "iconv -f UTF-16 -t UTF-8", "in.")
    assert "latin1" not in message


def test_an_empty_prime_file_is_called_an_empty_prime_file(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path], tmp_path: Path
) -> None:
    prime = tmp_path / "prime.txt"
    prime.write_bytes(b"")
    outcome = run(capsys, "textgen", "generate", "--checkpoint", str(runs["textgen"]), "--prime-file", str(prime))
    message = assert_user_error(outcome, "prime file", "is empty")
    assert "train" not in message
