"""Shared fixtures: tiny texts, tiny model settings, running the recipes as users do, and the
devices that device-parametrized tests run on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

# The CPU, and CUDA where there is a device: for tests of code whose results must not depend on it.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]

# Overrides that make the text-generation recipe train a tiny model in seconds.
TINY_TEXTGEN = [
    "decoder.hidden_size=32",
    "decoder.embedding_size=16",
    "decoder.num_layers=1",
    "data.batch_size=4",
    "data.window=16",
    "train.max_steps=20",
    "train.max_minutes=0",
    "train.validate_every=10",
    "train.early_stopping_patience=0",  # tiny runs train their whole step count
    "train.log_every=5",
    "train.threads=1",
    "train.device=cpu",
]


def make_text(characters: int, seed: int = 0) -> str:
    """Play-like text from a small grammar: enough structure for a model to learn."""
    rng = random.Random(seed)
    names = ["ROMEO", "JULIET", "NURSE", "FRIAR"]
    words = "the love night day sweet fair my thy good lord lady come go now here there is are".split()
    lines = []
    while sum(len(line) + 1 for line in lines) < characters:
        lines.append(f"{rng.choice(names)}:")
        for _ in range(rng.randint(1, 3)):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
            lines.append(sentence.capitalize() + rng.choice([".", ",", "!", "?"]))
        lines.append("")
    return "\n".join(lines)[:characters]


@pytest.fixture
def tiny_text(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(make_text(12_000), encoding="utf-8")
    return path


def run_recipe(script: str, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python recipes/<script> args`` from the repository root, as a user would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "recipes" / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def overrides(*items: str) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2']"""
    return [part for item in items for part in ("--set", item)]


# Settings of the data-parallel tests (two processes on one machine, two torchrun nodes): no
# dropout, so that every process's result can be held to one process's.
DATA_PARALLEL = ["data.batch_size=8", "train.max_steps=12", "train.validate_every=6", "decoder.dropout=0"]


@pytest.fixture(scope="session")
def single_process_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(text, run directory) of one process trained with DATA_PARALLEL, which the data-parallel
    runs must match."""
    folder = tmp_path_factory.mktemp("single_process")
    text = folder / "tiny.txt"
    text.write_text(make_text(12_000), encoding="utf-8")
    run_dir = folder / "run"
    run_recipe(
        "textgen.py", "train", "--run-dir", str(run_dir), *overrides(*TINY_TEXTGEN, f"data.path={text}", *DATA_PARALLEL)
    )
    return text, run_dir
