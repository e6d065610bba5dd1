"""Tests for seq2seq.averaging: the mean of checkpoints, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq.averaging import average_checkpoints, latest_checkpoints
from seq2seq.checkpoint import CheckpointError, load_metadata, load_weights, save_checkpoint


class TiedModel(nn.Module):
    """An embedding and an output layer that share their weights, as tied decoders do."""

    def __init__(self, vocab_size: int = 7, size: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size)
        self.output = nn.Linear(size, vocab_size)
        self.output.weight = self.embedding.weight


def metadata(step: int, vocab: list[str] | None = None, hidden_size: int = 4, lr: float = 0.1) -> dict:
    return {
        "task": "textgen",
        "config": {"decoder": {"hidden_size": hidden_size}, "data": {"path": "x"}, "train": {"lr": lr}},
        "vocab": vocab or ["a", "b"],
        "metrics": {"val_loss": 1.0 / step},
        "step": step,
    }


def write_checkpoints(run_dir: Path, steps: list[int], seed: int = 0) -> list[Path]:
    """A TiedModel checkpoint per step, each with its own random weights."""
    torch.manual_seed(seed)
    directories = []
    for step in steps:
        directory = run_dir / "checkpoints" / f"step_{step:06d}"
        save_checkpoint(directory, TiedModel(), metadata(step, lr=0.1 * step))
        directories.append(directory)
    return directories


def test_average_is_the_mean_and_loads_like_any_checkpoint(tmp_path: Path) -> None:
    directories = write_checkpoints(tmp_path / "run", [100, 200, 300])
    models = []
    for directory in directories:
        model = TiedModel()
        load_weights(directory, model)
        models.append(model)
    output = tmp_path / "averaged"
    average_checkpoints(directories, output)

    averaged = TiedModel()
    load_weights(output, averaged)
    for name, tensor in averaged.state_dict().items():
        expected = sum(model.state_dict()[name] for model in models) / 3
        torch.testing.assert_close(tensor, expected)
    assert averaged.output.weight is averaged.embedding.weight

    saved = load_metadata(output)
    assert saved["step"] == 300 and saved["task"] == "textgen" and saved["vocab"] == ["a", "b"]
    assert saved["averaged_from"] == [str(directory) for directory in directories]
    assert "metrics" not in saved and "versions" in saved


def test_latest_checkpoints_are_the_highest_steps(tmp_path: Path) -> None:
    write_checkpoints(tmp_path / "run", [900, 1000, 1100, 200])
    assert [path.name for path in latest_checkpoints(tmp_path / "run", 2)] == ["step_001100", "step_001000"]
    with pytest.raises(CheckpointError, match="holds 4 checkpoint.*fewer than the 5.*train.keep_latest"):
        latest_checkpoints(tmp_path / "run", 5)
    with pytest.raises(CheckpointError, match="no checkpoints/ folder"):
        latest_checkpoints(tmp_path / "elsewhere", 2)


def test_mismatched_tensors_are_refused_by_name(tmp_path: Path) -> None:
    (first,) = write_checkpoints(tmp_path / "a", [100])
    other = tmp_path / "b" / "step_000200"
    save_checkpoint(other, TiedModel(vocab_size=9), metadata(200))
    with pytest.raises(CheckpointError, match=r"embedding\.weight: \(7, 4\) F32 .*\(9, 4\) F32") as error:
        average_checkpoints([first, other], tmp_path / "out")
    assert "output.bias" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_checkpoints_of_another_vocabulary_or_model_config_are_refused(tmp_path: Path) -> None:
    (first,) = write_checkpoints(tmp_path / "a", [100])
    other_vocab = tmp_path / "b" / "step_000200"
    save_checkpoint(other_vocab, TiedModel(), metadata(200, vocab=["a", "c"]))
    with pytest.raises(CheckpointError, match="vocab differs"):
        average_checkpoints([first, other_vocab], tmp_path / "out")
    other_config = tmp_path / "c" / "step_000200"
    save_checkpoint(other_config, TiedModel(), metadata(200, hidden_size=8))
    with pytest.raises(CheckpointError, match="decoder.hidden_size: 4 -> 8"):
        average_checkpoints([first, other_config], tmp_path / "out")


def test_a_checkpoint_in_the_older_config_layout_averages_with_a_new_one(tmp_path: Path) -> None:
    (first,) = write_checkpoints(tmp_path / "a", [100])
    old_layout = metadata(200)
    old_layout["config"] = {"model": {"hidden_size": 4, "encoder_cell": "gru"}, "data": {"path": "x"}, "generate": {}}
    older = tmp_path / "b" / "step_000200"
    save_checkpoint(older, TiedModel(), old_layout)
    average_checkpoints([first, older], tmp_path / "out")
    old_layout["config"]["model"]["hidden_size"] = 8
    save_checkpoint(older, TiedModel(), old_layout)
    with pytest.raises(CheckpointError, match="decoder.hidden_size: 4 -> 8"):
        average_checkpoints([first, older], tmp_path / "out2")


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    directories = write_checkpoints(tmp_path / "run", [100, 200])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(directories[:1], tmp_path / "out")
    with pytest.raises(ValueError, match="listed twice"):
        average_checkpoints([directories[0], directories[0]], tmp_path / "out")
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        average_checkpoints([directories[0], tmp_path / "run"], tmp_path / "out")
    average_checkpoints(directories, tmp_path / "out")
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        average_checkpoints(directories, tmp_path / "out")
    (directories[1] / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        average_checkpoints(directories, tmp_path / "out2")
    assert json.loads((tmp_path / "out" / "model.json").read_text())["step"] == 200
