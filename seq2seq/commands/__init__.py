"""The `seq2seq` command line: ``seq2seq TASK VERB [options]``.

  seq2seq textgen   {train,prepare,generate,evaluate,average}
  seq2seq translate {train,prepare,translate,evaluate,average}
  seq2seq caption   {train,caption,evaluate,average}
  seq2seq serve     --translate NAME=RUN_DIR --caption ... --textgen ...   (HTTP API and web page)

Each verb is a thin layer over the Python API (``seq2seq.Translator``, ``Captioner``,
``TextGenerator``, ``seq2seq.train``); ``seq2seq TASK VERB --help`` explains its options.
"""

from __future__ import annotations

import argparse
import sys

from seq2seq import __version__
from seq2seq.commands import caption, textgen, translate
from seq2seq.commands.common import run_command
from seq2seq.commands.serve import add_serve_command

TASKS = {
    "textgen": (textgen, "free text generation with a character- or word-level language model"),
    "translate": (translate, "machine translation with an RNN encoder and attention"),
    "caption": (caption, "image captioning with a CNN encoder and attention"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"seq2seq {__version__}")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK|serve")
    for name, (module, summary) in TASKS.items():
        task_parser = tasks.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_verbs(task_parser.add_subparsers(dest="verb", required=True, metavar="VERB"))
    add_serve_command(tasks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``seq2seq`` with ``argv`` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


def task_main(task: str) -> int:
    """A task's own script (``recipes/<task>.py VERB ...``): ``seq2seq <task> VERB ...``."""
    return main([task, *sys.argv[1:]])
