"""What importing the package loads: the command line and the API keep the heavy libraries
that only some tasks need (torchvision for images, matplotlib for plots) out until used."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def loaded_after(code: str) -> set[str]:
    """The top-level modules loaded in a fresh interpreter after running ``code``."""
    program = f"{code}\nimport sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_command_line_and_the_api_load_neither_torchvision_nor_matplotlib() -> None:
    loaded = loaded_after("import seq2seq.commands, seq2seq.training.tasks, seq2seq.inference; import seq2seq")
    assert "torch" in loaded and not {"torchvision", "matplotlib"} & loaded


def test_transforming_an_image_loads_torchvision() -> None:
    code = (
        "from PIL import Image; from seq2seq.data.caption_settings import ImageTransformConfig; "
        "from seq2seq.data.images import build_transform; "
        "build_transform(ImageTransformConfig(image_size=8), train=False)(Image.new('RGB', (10, 12)))"
    )
    assert "torchvision" in loaded_after(code)
