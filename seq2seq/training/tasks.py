"""Training any of the three tasks from Python: ``seq2seq.train``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.config import load_config
from seq2seq.run_configs import TASK_CONFIGS
from seq2seq.training.caption_task import CAPTIONING
from seq2seq.training.lm_task import LANGUAGE_MODELLING
from seq2seq.training.run import TaskTraining, TrainingResult, run_training
from seq2seq.training.translation_task import TRANSLATION

#: How each task (by its command-line name) trains.
TASK_TRAINING: dict[str, TaskTraining] = {
    "textgen": LANGUAGE_MODELLING,
    "translate": TRANSLATION,
    "caption": CAPTIONING,
}
#: The shipped config each task trains with when none is given.
DEFAULT_CONFIGS = {"textgen": "shakespeare_char", "translate": "multi30k_de_en", "caption": "emoji_scratch"}


def train(
    task: str,
    config: str | Path | Any | None = None,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    fresh: bool = False,
) -> TrainingResult:
    """Train a model of ``task`` ("textgen", "translate" or "caption"), or resume its run.

    config: a shipped config's name (e.g. "multi30k_de_en"), a YAML file, or a config object
    of the task's class (``seq2seq.run_configs``); default: the task's default config.
    overrides: "section.key=value" strings applied on top of a named or file config.
    run_dir: where checkpoints and logs go (default: runs/<config name>); a run directory that
    holds a checkpoint resumes from its newest checkpoint that verifies, unless ``fresh``, which
    deletes the files a previous run wrote there once the new run's data is ready (other files
    stay). One training at a time may use a run directory (RunDirectoryBusy otherwise).
    """
    if task not in TASK_TRAINING:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_TRAINING)}")
    config_class = TASK_CONFIGS[task]
    loaded: Any  # an instance of config_class
    if isinstance(config, config_class):
        if overrides:
            raise ValueError("overrides apply to a config file or name; change the config object itself instead")
        loaded = config
    else:
        loaded = load_config(config_class, config or DEFAULT_CONFIGS[task], list(overrides))
    directory = Path(run_dir) if run_dir is not None else Path("runs") / loaded.name
    return run_training(task, TASK_TRAINING[task], loaded, directory, fresh)
