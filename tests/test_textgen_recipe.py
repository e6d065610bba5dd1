"""CPU runs of recipes/textgen.py as a user runs it: train, generate, evaluate, resume, DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import DATA_PARALLEL, REPO_ROOT, TINY_TEXTGEN, overrides, run_recipe


def train_args(text: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--run-dir", str(run_dir), *overrides(*TINY_TEXTGEN, f"data.path={text}", *extra)]


def latest_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    index = json.loads((run_dir / "checkpoints.json").read_text())
    return load_file(run_dir / "checkpoints" / index["latest"][0] / "model.safetensors")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run shared by the generate and evaluate tests."""
    from tests.conftest import make_text

    folder = tmp_path_factory.mktemp("textgen")
    text = folder / "text.txt"
    text.write_text(make_text(12_000), encoding="utf-8")
    run_dir = folder / "run"
    result = run_recipe("textgen.py", *train_args(text, run_dir, "train.max_steps=30"))
    assert "best val_loss" in result.stdout
    return run_dir


def test_train_writes_checkpoint_logs_and_plot(trained_run: Path) -> None:
    index = json.loads((trained_run / "checkpoints.json").read_text())
    assert index["latest"] and index["best"]
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert any("train_loss" in r for r in records) and any("val_loss" in r for r in records)
    assert (trained_run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (trained_run / "train.log").exists()


def test_training_lowers_validation_loss(trained_run: Path) -> None:
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    validation = [r["val_loss"] for r in records if "val_loss" in r]
    assert validation[-1] < validation[0]


def test_generate_streams_prime_and_continuation(trained_run: Path) -> None:
    result = run_recipe(
        "textgen.py", "generate", "--checkpoint", str(trained_run), "--prime", "ROMEO:", "--length", "40", "--seed", "3"
    )
    assert result.stdout.startswith("ROMEO:")
    assert len(result.stdout.strip()) > len("ROMEO:")


def test_generate_seeded_samples_reproducible(trained_run: Path) -> None:
    args = [
        "generate",
        "--checkpoint",
        str(trained_run),
        "--length",
        "60",
        "--num-samples",
        "3",
        "--temperature",
        "1.0",
    ]
    first = run_recipe("textgen.py", *args, "--seed", "1").stdout
    again = run_recipe("textgen.py", *args, "--seed", "1").stdout
    other = run_recipe("textgen.py", *args, "--seed", "2").stdout
    assert first == again
    assert first != other
    assert first.count("----- sample") == 3


def test_generate_stop_string(trained_run: Path) -> None:
    result = run_recipe(
        "textgen.py",
        "generate",
        "--checkpoint",
        str(trained_run),
        "--prime",
        "ROMEO:",
        "--length",
        "200",
        "--stop",
        "\n",
        "--seed",
        "0",
        "--no-stream",
    )
    continuation = result.stdout[len("ROMEO:") :].rstrip("\n")
    assert "\n" not in continuation


def test_generate_unknown_prime_characters_named(trained_run: Path) -> None:
    result = run_recipe(
        "textgen.py", "generate", "--checkpoint", str(trained_run), "--prime", "ROMEO ☃ and Ω", check=False
    )
    assert result.returncode == 2
    assert "'☃'" in result.stderr and "'Ω'" in result.stderr and "Traceback" not in result.stderr
    mapped = run_recipe(
        "textgen.py",
        "generate",
        "--checkpoint",
        str(trained_run),
        "--prime",
        "ROMEO ☃",
        "--unknown",
        "unk",
        "--length",
        "5",
    )
    assert mapped.returncode == 0


def test_evaluate_prints_loss_bits_and_perplexity(trained_run: Path) -> None:
    result = run_recipe("textgen.py", "evaluate", "--checkpoint", str(trained_run))
    assert "nats/char" in result.stdout and "bits/char" in result.stdout and "perplexity" in result.stdout
    fresh = run_recipe("textgen.py", "evaluate", "--checkpoint", str(trained_run), "--fresh-windows")
    assert "fresh each window" in fresh.stdout


def test_missing_and_empty_text_give_clear_errors(tmp_path: Path) -> None:
    missing = run_recipe("textgen.py", *train_args(tmp_path / "nope.txt", tmp_path / "run"), check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = run_recipe("textgen.py", *train_args(empty, tmp_path / "run2"), check=False)
    assert result.returncode == 2 and "empty" in result.stderr


def test_corrupt_checkpoint_gives_clear_error(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    index = json.loads((copy / "checkpoints.json").read_text())
    weights = copy / "checkpoints" / index["best"][0][1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = run_recipe("textgen.py", "generate", "--checkpoint", str(copy), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.safetensors" in result.stderr


def test_resume_refuses_changed_model(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    text = json.loads(
        (
            copy / "checkpoints" / json.loads((copy / "checkpoints.json").read_text())["latest"][0] / "model.json"
        ).read_text()
    )["config"]["data"]["path"]
    result = run_recipe("textgen.py", *train_args(Path(text), copy, "decoder.hidden_size=48"), check=False)
    assert result.returncode == 2
    assert "decoder.hidden_size: 32 -> 48" in result.stderr


def test_sigkill_and_resume_ends_with_same_weights(tiny_text: Path, tmp_path: Path) -> None:
    settings = [
        "decoder.num_layers=2",
        "decoder.hidden_size=48",
        "decoder.dropout=0.2",
        "train.max_steps=120",
        "data.batch_size=8",
    ]
    reference = tmp_path / "reference"
    run_recipe("textgen.py", *train_args(tiny_text, reference, *settings))

    killed = tmp_path / "killed"
    command = [sys.executable, str(REPO_ROOT / "recipes/textgen.py"), *train_args(tiny_text, killed, *settings)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = wait_for_checkpoint(killed, min_step=30, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert killed_at < 120, "the run finished before it could be killed"

    result = run_recipe("textgen.py", *train_args(tiny_text, killed, *settings))
    assert "resumed from" in result.stderr
    expected, actual = latest_weights(reference), latest_weights(killed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def wait_for_checkpoint(run_dir: Path, min_step: int, process: subprocess.Popen, timeout: float = 120) -> int:
    """Poll the checkpoint index until its latest step reaches ``min_step``; return that step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        index_file = run_dir / "checkpoints.json"
        if index_file.exists():
            try:
                latest = json.loads(index_file.read_text())["latest"][0]
            except (json.JSONDecodeError, KeyError, IndexError):
                latest = None
            if latest and int(latest.split("_")[1]) >= min_step:
                return int(latest.split("_")[1])
        assert process.poll() is None, "training ended before reaching the checkpoint"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {min_step} within {timeout}s")


def test_two_process_ddp_matches_single_process(single_process_run: tuple[Path, Path], tmp_path: Path) -> None:
    """gloo DDP over 2 processes, each reading half the streams, equals one process reading all."""
    tiny_text, single = single_process_run
    settings = DATA_PARALLEL
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29561",
            str(REPO_ROOT / "recipes/textgen.py"),
            *train_args(tiny_text, ddp, *settings),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    expected, actual = latest_weights(single), latest_weights(ddp)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tokenizer", ["word", "sentencepiece"])
def test_word_and_sentencepiece_levels_train_and_generate(tokenizer: str, tiny_text: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / tokenizer
    run_recipe(
        "textgen.py",
        "train",
        "--config",
        "recipes/configs/alice_word.yaml",
        "--run-dir",
        str(run_dir),
        *overrides(
            *TINY_TEXTGEN,
            f"data.path={tiny_text}",
            f"data.tokenizer={tokenizer}",
            "data.sentencepiece_vocab_size=60",
            "data.window=8",
            "train.max_steps=10",
        ),
    )
    result = run_recipe(
        "textgen.py", "generate", "--checkpoint", str(run_dir), "--prime", "romeo", "--length", "12", "--seed", "0"
    )
    assert result.stdout.startswith("romeo")
    assert len(result.stdout.split()) > 1
