"""The package as a user installs it: a wheel built from this checkout, installed into a fresh
virtual environment, used from a folder outside the repository through the ``seq2seq`` command
and the Python API, with the shipped configs found by name."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY_TEXTGEN, make_text, overrides
from tests.test_caption_recipe import TINY_CAPTION, write_dataset
from tests.test_translate_recipe import LOSS_ONLY, TINY_TRANSLATE, write_corpus


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; its dependencies come from this environment's
    site-packages (a .pth line), so that nothing is downloaded."""
    work = tmp_path_factory.mktemp("wheel")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work / "dist"),
            str(REPO_ROOT),
        ],
        work,
    )
    (wheel,) = (work / "dist").glob("seq2seq-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    (fresh_site,) = json.loads(
        run([str(python), "-c", "import json, site; print(json.dumps(site.getsitepackages()))"], work).stdout
    )
    (Path(fresh_site) / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n", encoding="utf-8")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)], work)
    return venv


def test_the_wheel_holds_the_package_and_its_configs(installed: Path, tmp_path: Path) -> None:
    code = "import seq2seq, seq2seq.config as c; print(seq2seq.__file__); print(c.resolve_config('multi30k_de_en'))"
    printed = run([str(installed / "bin" / "python"), "-c", code], tmp_path).stdout.splitlines()
    assert all(str(installed) in line for line in printed), printed  # not this checkout
    assert printed[1].endswith("multi30k_de_en.yaml")
    help_text = run([str(installed / "bin" / "seq2seq"), "--help"], tmp_path).stdout
    assert "translate" in help_text and "caption" in help_text and "textgen" in help_text


def test_train_with_the_command_and_use_through_the_api_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    command, python = str(installed / "bin" / "seq2seq"), str(installed / "bin" / "python")
    (tmp_path / "tiny.txt").write_text(make_text(8_000), encoding="utf-8")
    run([command, "textgen", "train", "--config", "shakespeare_char", "--run-dir", "textgen",
         *overrides(*TINY_TEXTGEN, "data.path=tiny.txt", "train.max_steps=10")], tmp_path)  # fmt: skip
    translate_data = write_corpus(tmp_path / "pairs")
    run([command, "translate", "train", "--config", "multi30k_de_en", "--run-dir", "translate",
         *overrides(*TINY_TRANSLATE, *translate_data, *LOSS_ONLY, "train.max_steps=10")], tmp_path)  # fmt: skip
    caption_data = write_dataset(tmp_path / "shapes")
    run([python, "-m", "seq2seq", "caption", "train", "--config", "emoji_scratch", "--run-dir", "caption",
         *overrides(*TINY_CAPTION, *caption_data)], tmp_path)  # fmt: skip
    program = textwrap.dedent(
        """
        from pathlib import Path
        from seq2seq import Captioner, TextGenerator, Translator

        generator = TextGenerator.from_checkpoint("textgen", device="cpu")
        print("text:", len(generator.generate("ROMEO:", length=20, seed=1)[0].text))
        translator = Translator.from_checkpoint("translate", device="cpu")
        print("translation:", len(translator.translate(["ein mann sieht der hund ."], beam=2, n_best=2)[0].hypotheses))
        image = sorted(Path("shapes/images").glob("*.png"))[0]
        print("caption error:", Captioner.from_checkpoint("caption", device="cpu").caption([image])[0].error)
        """
    )
    printed = run([python, "-c", program], tmp_path).stdout.splitlines()
    assert printed[0].startswith("text: ") and int(printed[0].split()[1]) > 0
    assert printed[1:] == ["translation: 2", "caption error: None"]
