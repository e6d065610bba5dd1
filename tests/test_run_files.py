"""What --fresh removes from a run directory, and putting it back when the new run cannot start."""

from __future__ import annotations

from pathlib import Path

from seq2seq.training.run_files import move_run_files_aside, run_files

WRITTEN = [
    "checkpoints/step_000100/model.json",
    "checkpoints/step_000200.corrupt/model.json",
    "checkpoints.json",
    ".checkpoints.json.0123abcd.tmp",
    "metrics.jsonl",
    "train.log",
    "training_curve.png",
    "sentencepiece.model",
    "sentencepiece.de.vocab",
    "features/index.json",
    ".features.building-x1/shard_00000.safetensors",
    ".previous-run.abc/train.log",
]
FOREIGN = ["notes.txt", "averaged/model.json", "sentencepiece_mine.txt", ".train.lock", "data/train.de"]


def make(run_dir: Path, names: list[str]) -> None:
    for name in names:
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name, encoding="utf-8")


def files(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): p.read_text(encoding="utf-8") for p in run_dir.rglob("*") if p.is_file()}


def test_run_files_are_what_a_run_writes_and_nothing_else(tmp_path: Path) -> None:
    make(tmp_path, WRITTEN + FOREIGN)
    top = sorted({name.split("/")[0] for name in WRITTEN})
    assert [path.name for path in run_files(tmp_path)] == top
    assert run_files(tmp_path / "missing") == []


def test_moved_aside_then_discarded_leaves_only_the_foreign_files(tmp_path: Path) -> None:
    make(tmp_path, WRITTEN + FOREIGN)
    previous = move_run_files_aside(tmp_path)
    assert previous is not None
    assert sorted(files(tmp_path)) == sorted(FOREIGN + [f"{previous.folder.name}/{name}" for name in WRITTEN])
    previous.discard()
    assert sorted(files(tmp_path)) == sorted(FOREIGN)


def test_restore_puts_the_previous_run_back_over_what_a_new_run_wrote(tmp_path: Path) -> None:
    make(tmp_path, WRITTEN + FOREIGN)
    before = files(tmp_path)
    previous = move_run_files_aside(tmp_path)
    assert previous is not None
    (tmp_path / "train.log").write_text("the new run's log", encoding="utf-8")
    make(tmp_path, ["checkpoints/step_000001/model.json"])
    previous.restore()
    assert files(tmp_path) == before


def test_nothing_to_move_aside_in_a_directory_without_a_run(tmp_path: Path) -> None:
    make(tmp_path, FOREIGN)
    assert move_run_files_aside(tmp_path) is None
    assert sorted(files(tmp_path)) == sorted(FOREIGN)
