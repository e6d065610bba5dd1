"""Tests for seq2seq.plots: attention pictures as PNG files, with matplotlib imported only to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.plots import plot_attention, plot_caption_attention

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_attention_plot_writes_a_png(tmp_path: Path) -> None:
    weights = torch.softmax(torch.randn(3, 4), dim=-1)  # (T, S)
    path = tmp_path / "plots" / "attention.png"
    plot_attention(weights, ["ein", "hund", "läuft", "."], ["a", "dog", "runs"], path, title="sentence 1")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_attention_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target tokens, source tokens"):
        plot_attention(torch.ones(4, 3), ["a", "b", "c", "d"], ["x", "y", "z"], tmp_path / "a.png")


def test_caption_attention_plot_writes_a_png(tmp_path: Path) -> None:
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    weights = torch.softmax(torch.randn(2, 4), dim=-1)  # (T, 2 * 2)
    path = tmp_path / "caption.png"
    plot_caption_attention(image, ["cat", "</s>"], weights, grid_size=2, path=path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
