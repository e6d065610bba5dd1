"""The files a training run writes into its run directory, and starting a run directory over.

``--fresh`` must never cost a user anything but the run it replaces: only these files are
removed, anything else in the directory (notes, data, an averaged checkpoint the user wrote
there) stays. They are first moved aside into a hidden folder, so that a new run whose data
turns out to be unusable puts the old run back (``Previous.restore``); once the new run's
data and model are ready they are deleted (``Previous.discard``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("seq2seq.train")

#: What a run writes: the checkpoints and their index, the logs and the plot, the caption
#: feature cache, SentencePiece models trained for the run, TensorBoard event files, and
#: checkpoints a resume set aside.
RUN_FILES = ("checkpoints", "checkpoints.json", "metrics.jsonl", "train.log", "training_curve.png", "features")
RUN_FILE_PATTERNS = (
    "sentencepiece*.model",
    "sentencepiece*.vocab",
    "sentencepiece.captions.txt",
    "events.out.tfevents.*",
)
PREVIOUS_DIR = ".previous-run"  # where --fresh keeps the replaced run until the new one is ready


def run_files(run_dir: Path) -> list[Path]:
    """The files and folders in ``run_dir`` that a run wrote, including the hidden leftovers of a
    killed process (``.<name>.*``: temporary files, a half-built feature cache)."""
    if not run_dir.is_dir():
        return []
    found = {run_dir / name for name in RUN_FILES if (run_dir / name).exists()}
    for pattern in (*RUN_FILE_PATTERNS, *(f".{name}.*" for name in RUN_FILES), f"{PREVIOUS_DIR}*"):
        found.update(run_dir.glob(pattern))
    return sorted(found)


@dataclass
class Previous:
    """A run's files, moved aside into ``folder`` (their names relative to the run directory)."""

    run_dir: Path
    folder: Path
    names: list[str]

    def restore(self) -> None:
        """Put the files back, replacing whatever a new run wrote under the same names."""
        for name in self.names:
            _remove(self.run_dir / name)
            os.rename(self.folder / name, self.run_dir / name)
        shutil.rmtree(self.folder, ignore_errors=True)

    def discard(self) -> None:
        """Delete the files for good, saying which."""
        shutil.rmtree(self.folder)
        log.info("--fresh: removed the previous run's %s from %s", ", ".join(self.names), self.run_dir)


def move_run_files_aside(run_dir: Path) -> Previous | None:
    """Move every file a run wrote (``run_files``) into a hidden folder of ``run_dir``; None when
    there is none. Other files stay where they are."""
    found = run_files(run_dir)
    if not found:
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"{PREVIOUS_DIR}.", dir=run_dir))
    for path in found:
        os.rename(path, folder / path.name)
    return Previous(run_dir, folder, [path.name for path in found])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
