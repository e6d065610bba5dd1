"""Checkpoint format: round trips, tied weights, the run-directory manager, corrupt input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import seq2seq
from seq2seq.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_write_bytes,
    atomic_write_text,
    find_resume_point,
    load_metadata,
    load_training_state,
    load_weights,
    resolve_checkpoint,
    save_checkpoint,
    versions,
)
from seq2seq.config import DecoderConfig
from seq2seq.models import build_language_model

VOCAB_SIZE = 11


def tiny_model(tie: bool = True, vocab_size: int = VOCAB_SIZE, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = DecoderConfig(tie_embeddings=tie, embedding_size=16, hidden_size=16)
    return build_language_model(config, vocab_size, pad_id=0)


def save_steps(manager: CheckpointManager, metrics: dict[int, float | None]) -> None:
    model = tiny_model()
    for step, metric in metrics.items():
        manager.save(step, model, {"note": "test"}, {"step": step}, metric)


def step_dirs(run_dir: Path) -> set[str]:
    return {path.name for path in (run_dir / "checkpoints").iterdir()}


# --- atomic writes --------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [path.name for path in target.parent.iterdir()] == ["file.txt"]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")

    def failing_replace(source: Path, destination: Path) -> None:
        assert Path(source).read_bytes() == b"new"  # the temporary file was fully written
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["file.txt"]


# --- one checkpoint -------------------------------------------------------------------------


def test_weights_round_trip_keeps_tied_weights_tied(tmp_path: Path) -> None:
    saved = tiny_model(seed=1)
    save_checkpoint(tmp_path, saved, {})
    loaded = tiny_model(seed=2)
    load_weights(tmp_path, loaded)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    decoder = loaded.decoder
    with torch.no_grad():
        decoder.embedding.weight[3].fill_(7.0)
    assert torch.equal(decoder.output.weight[3], decoder.embedding.weight[3])


def test_untied_model_round_trip(tmp_path: Path) -> None:
    saved = tiny_model(tie=False, seed=1)
    save_checkpoint(tmp_path, saved, {})
    loaded = tiny_model(tie=False, seed=2)
    load_weights(tmp_path, loaded)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weights_load_onto_gpu_and_training_state_onto_cpu(tmp_path: Path) -> None:
    saved = tiny_model(seed=1)
    save_checkpoint(tmp_path, saved.cuda(), {}, {"rng": torch.cuda.get_rng_state()})
    loaded = tiny_model(seed=2).cuda()
    load_weights(tmp_path, loaded, device="cuda")
    assert torch.equal(loaded.decoder.embedding.weight, saved.decoder.embedding.weight)
    assert loaded.decoder.output.weight is loaded.decoder.embedding.weight
    assert load_training_state(tmp_path)["rng"].device.type == "cpu"
    on_cpu = tiny_model(seed=3)
    load_weights(tmp_path, on_cpu, device="cuda")
    assert torch.equal(on_cpu.decoder.embedding.weight, saved.decoder.embedding.weight.cpu())


def test_metadata_round_trip_adds_versions(tmp_path: Path) -> None:
    metadata = {"config": {"model": {"hidden_size": 16}}, "vocab": ["<pad>", "a"], "step": 3}
    save_checkpoint(tmp_path, tiny_model(), metadata)
    loaded = load_metadata(tmp_path)
    assert {key: loaded[key] for key in metadata} == metadata
    assert loaded["versions"] == versions()
    assert loaded["versions"]["seq2seq"] == seq2seq.__version__
    assert set(loaded["versions"]) == {"python", "torch", "seq2seq", "safetensors"}


def test_metadata_that_is_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not plain JSON"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), {"config": object()})
    assert not (tmp_path / "ckpt").exists()


def test_training_state_round_trip_with_optimizer_and_rng(tmp_path: Path) -> None:
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sum(parameter.square().sum() for parameter in model.parameters()).backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "position": [4, 2]}
    save_checkpoint(tmp_path, model, {}, state)

    loaded = load_training_state(tmp_path)
    assert torch.equal(loaded["rng"], state["rng"])
    assert loaded["position"] == [4, 2]
    restored = torch.optim.AdamW(tiny_model().parameters(), lr=1.0)
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["lr"] == pytest.approx(1e-2)
    for before, after in zip(optimizer.state.values(), restored.state.values()):
        assert torch.equal(before["exp_avg"], after["exp_avg"])


def test_checkpoint_without_training_state_cannot_resume(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(), {})
    with pytest.raises(CheckpointError, match="start a fresh run"):
        load_training_state(tmp_path)


def test_mismatched_vocabulary_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(vocab_size=VOCAB_SIZE), {})
    with pytest.raises(CheckpointError) as caught:
        load_weights(tmp_path, tiny_model(vocab_size=VOCAB_SIZE + 3))
    message = str(caught.value)
    expected = f"checkpoint ({VOCAB_SIZE}, 16) vs model ({VOCAB_SIZE + 3}, 16)"
    assert f"decoder.embedding.weight: {expected}" in message
    assert "vocabulary or model config" in message


def test_tied_checkpoint_into_untied_model_reports_missing_tensor(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(tie=True), {})
    with pytest.raises(CheckpointError, match="decoder.output.weight: missing from checkpoint"):
        load_weights(tmp_path, tiny_model(tie=False))


def test_untied_checkpoint_into_tied_model_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(tie=False), {})
    with pytest.raises(CheckpointError, match="tied in model"):
        load_weights(tmp_path, tiny_model(tie=True))


@pytest.mark.parametrize("cut", [0, 5, "half"])
def test_truncated_weights_raise_checkpoint_error(tmp_path: Path, cut: int | str) -> None:
    save_checkpoint(tmp_path, tiny_model(), {})
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if cut == "half" else cut])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_weights(tmp_path, tiny_model())


def test_garbage_json_and_pt_raise_checkpoint_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(), {}, {"step": 1})
    (tmp_path / "model.json").write_text("{not json")
    (tmp_path / "training_state.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.json"):
        load_metadata(tmp_path)
    with pytest.raises(CheckpointError, match="training_state.pt"):
        load_training_state(tmp_path)


def test_training_state_with_arbitrary_objects_is_refused_on_load(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, tiny_model(), {}, {"model": nn.Linear(2, 2)})
    with pytest.raises(CheckpointError, match="training_state.pt") as refused:
        load_training_state(tmp_path)
    assert "not a training state this toolkit wrote" in str(refused.value)
    assert "weights_only" not in str(refused.value)  # never advise loading an untrusted pickle


def test_missing_weights_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no weights"):
        load_weights(tmp_path, tiny_model())


# --- the manager ----------------------------------------------------------------------------


def test_manager_keeps_latest_and_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=2, keep_best=1, mode="min")
    save_steps(manager, {100: 0.5, 200: 0.9, 300: 0.8, 400: 0.7})
    assert step_dirs(tmp_path) == {"step_000100", "step_000300", "step_000400"}
    assert manager.latest() == tmp_path / "checkpoints" / "step_000400"
    assert manager.best() == tmp_path / "checkpoints" / "step_000100"
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert index["latest"] == ["step_000400", "step_000300"]
    assert index["best"] == [[0.5, "step_000100"]]
    assert (index["metric"], index["mode"]) == ("val_loss", "min")
    assert load_metadata(manager.latest())["step"] == 400


@pytest.mark.parametrize("mode, best_step", [("min", 200), ("max", 300)])
def test_best_follows_mode(tmp_path: Path, mode: str, best_step: int) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=1, keep_best=2, mode=mode, metric="score")
    save_steps(manager, {100: 2.0, 200: 1.0, 300: 3.0, 400: None})
    assert manager.best() == tmp_path / "checkpoints" / f"step_{best_step:06d}"
    assert len(step_dirs(tmp_path)) == 3  # newest (unranked) + two best


def test_manager_resumes_from_existing_index(tmp_path: Path) -> None:
    save_steps(CheckpointManager(tmp_path, keep_latest=1, keep_best=1), {100: 0.5, 200: 0.9})
    resumed = CheckpointManager(tmp_path, keep_latest=1, keep_best=1)
    assert resumed.latest() == tmp_path / "checkpoints" / "step_000200"
    save_steps(resumed, {300: 0.4})
    assert step_dirs(tmp_path) == {"step_000300"}


def test_manager_refuses_index_ranked_by_another_metric(tmp_path: Path) -> None:
    save_steps(CheckpointManager(tmp_path), {100: 0.5})
    with pytest.raises(CheckpointError, match="val_loss"):
        CheckpointManager(tmp_path, mode="max", metric="bleu")


def test_saving_the_same_step_again_replaces_it(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=2, keep_best=1)
    save_steps(manager, {100: 0.5, 200: 0.9})
    manager.save(200, tiny_model(), {"note": "again"}, {"step": 200}, 0.1)
    assert load_metadata(manager.latest())["note"] == "again"
    assert manager.best() == manager.latest()
    assert step_dirs(tmp_path) == {"step_000100", "step_000200"}


def test_interrupted_save_is_ignored_then_cleaned_up(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=1, keep_best=1)
    save_steps(manager, {100: 0.5})
    leftover = tmp_path / "checkpoints" / ".step_000200.tmp"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half written")
    assert resolve_checkpoint(tmp_path, prefer="latest") == tmp_path / "checkpoints" / "step_000100"
    resumed = CheckpointManager(tmp_path, keep_latest=1, keep_best=1)
    assert resumed.latest() == tmp_path / "checkpoints" / "step_000100"
    leftover.mkdir()
    save_steps(resumed, {200: 0.9})
    assert step_dirs(tmp_path) == {"step_000100", "step_000200"}


def test_kill_while_replacing_a_step_restores_the_previous_copy(tmp_path: Path) -> None:
    save_steps(CheckpointManager(tmp_path), {100: 0.5})
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step_000100").rename(checkpoints / ".step_000100.old")
    CheckpointManager(tmp_path)
    assert step_dirs(tmp_path) == {"step_000100"}
    assert resolve_checkpoint(tmp_path) == checkpoints / "step_000100"


def test_manager_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        CheckpointManager(tmp_path, mode="lowest")
    with pytest.raises(ValueError, match="keep_latest"):
        CheckpointManager(tmp_path, keep_latest=0)


# --- resolving a path -----------------------------------------------------------------------


def test_resolve_run_dir_prefers_best_and_step_dir_is_itself(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=1, keep_best=1)
    save_steps(manager, {100: 0.5, 200: 0.9})
    best, latest = manager.best(), manager.latest()
    assert best != latest
    assert resolve_checkpoint(tmp_path) == best
    assert resolve_checkpoint(tmp_path, prefer="latest") == latest
    assert resolve_checkpoint(latest) == latest
    assert resolve_checkpoint(latest / "model.safetensors") == latest


def test_resolve_falls_back_to_latest_without_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=0)
    save_steps(manager, {100: 0.5})
    assert resolve_checkpoint(tmp_path) == manager.latest()


def test_resolve_reports_missing_empty_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "checkpoints.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="checkpoints.json"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "checkpoints.json").write_text('{"latest": "oops"}')
    with pytest.raises(CheckpointError, match="not a valid checkpoint index"):
        resolve_checkpoint(tmp_path)


# --- where a run resumes --------------------------------------------------------------------


def test_resume_point_is_the_newest_checkpoint_that_verifies(tmp_path: Path) -> None:
    save_steps(CheckpointManager(tmp_path, keep_latest=3), {100: 0.5, 200: 0.9, 300: 0.8})
    checkpoints = tmp_path / "checkpoints"
    weights = checkpoints / "step_000300" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    (checkpoints / "step_000200" / "model.json").write_text(json.dumps({"step": 200}))
    point = find_resume_point(tmp_path, entries=("note",))
    assert point is not None and point.directory == checkpoints / "step_000100"
    assert point.metadata["step"] == 100
    reasons = dict(point.skipped)
    assert list(reasons) == [checkpoints / "step_000300", checkpoints / "step_000200"]
    assert "model.safetensors" in reasons[checkpoints / "step_000300"]
    assert "no 'note' entry" in reasons[checkpoints / "step_000200"]


def test_no_resume_point_before_the_first_checkpoint_and_an_error_when_none_verifies(tmp_path: Path) -> None:
    assert find_resume_point(tmp_path) is None
    save_steps(CheckpointManager(tmp_path), {100: 0.5})
    (tmp_path / "checkpoints" / "step_000100" / "training_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="none of the checkpoints .* step_000100: .*training_state.pt"):
        find_resume_point(tmp_path)


def test_a_checkpoint_set_aside_leaves_the_index_and_keeps_its_files(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_latest=2)
    save_steps(manager, {100: 0.5, 200: 0.4})
    kept = manager.set_aside(tmp_path / "checkpoints" / "step_000200")
    assert kept == tmp_path / "checkpoints" / "step_000200.corrupt" and (kept / "model.safetensors").is_file()
    assert manager.latest() == tmp_path / "checkpoints" / "step_000100" and manager.best() is None
    assert json.loads((tmp_path / "checkpoints.json").read_text())["latest"] == ["step_000100"]
    save_steps(manager, {300: 0.6})  # pruning leaves it alone
    assert step_dirs(tmp_path) == {"step_000100", "step_000200.corrupt", "step_000300"}


def test_a_listed_checkpoint_that_is_gone_is_left_out(tmp_path: Path) -> None:
    save_steps(CheckpointManager(tmp_path, keep_latest=2), {100: 0.5, 200: 0.4})
    shutil.rmtree(tmp_path / "checkpoints" / "step_000200")  # the best and the latest
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_000100"
    point = find_resume_point(tmp_path)
    assert point is not None and point.directory == tmp_path / "checkpoints" / "step_000100" and not point.skipped
    resumed = CheckpointManager(tmp_path, keep_latest=2)
    assert resumed.latest() == tmp_path / "checkpoints" / "step_000100"
    save_steps(resumed, {300: 0.6})
    assert json.loads((tmp_path / "checkpoints.json").read_text())["latest"] == ["step_000300", "step_000100"]
