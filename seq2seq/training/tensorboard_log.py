"""TensorBoard event files of a run, beside its ``metrics.jsonl`` (``train.tensorboard: true``).

The main process writes every training and validation record's numbers as scalars with
``torch.utils.tensorboard.SummaryWriter``; ``tensorboard --logdir runs/`` shows them. A resumed
run purges what the killed one wrote after its checkpoint, as ``metrics.jsonl`` does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from seq2seq.config import ConfigError

MISSING = (
    "train.tensorboard is true but the tensorboard package is not installed: pip install 'seq2seq[tensorboard]' "
    "(or pip install tensorboard), or set train.tensorboard=false"
)


def check_tensorboard_installed() -> None:
    """Raise a ConfigError naming the pip extra when ``tensorboard`` cannot be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(MISSING)


class TensorBoardLog:
    """Scalars of the run's records, written into ``run_dir``; records at steps after
    ``resumed_step`` that an earlier, killed process wrote are dropped by TensorBoard."""

    def __init__(self, run_dir: Path, resumed_step: int = 0) -> None:
        check_tensorboard_installed()
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=resumed_step + 1 if resumed_step else None)

    def write(self, record: dict[str, Any]) -> None:
        """Every number of ``record`` but its step and epoch, as ``train/<key>`` or ``valid/<key>``."""
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, int | float):
                continue
            group = "valid" if key.startswith("val_") else "train"
            self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
