"""`seq2seq serve`: trained models over HTTP (JSON API, streaming, a web page).

  seq2seq serve --translate de_en=runs/multi30k_de_en --caption emoji=runs/emoji_scratch \\
      --textgen shakespeare=runs/shakespeare_char --port 8000

Then open http://127.0.0.1:8000/ (the web page) or http://127.0.0.1:8000/docs (the API).
It binds to 127.0.0.1 unless --host says otherwise. Needs the serving extra:
pip install 'seq2seq[serve]'.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from seq2seq.commands.common import add_number_format_arguments, loading_options, positive_int

TASK_FLAGS = {"translate": "translation", "caption": "captioning", "textgen": "text generation"}


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve trained models over HTTP: a JSON API with batching, and a web page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for task, what in TASK_FLAGS.items():
        parser.add_argument(
            f"--{task}",
            action="append",
            default=[],
            metavar="NAME=RUN_DIR",
            help=f"serve this {what} checkpoint under NAME (repeatable; NAME defaults to the folder's name)",
        )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    add_number_format_arguments(parser)
    limits = parser.add_argument_group("limits (each request beyond one is refused with a 4xx)")
    from seq2seq.serving.limits import ServeLimits  # dataclass only: no web framework needed for --help

    defaults = ServeLimits()
    for name, kind, help_text in (
        ("max_body_bytes", positive_int, "bytes of a request body"),
        ("max_lines", positive_int, "lines per translation request"),
        ("max_line_chars", positive_int, "characters per line or prime"),
        ("max_images", positive_int, "images per captioning request"),
        ("max_image_bytes", positive_int, "bytes per uploaded image"),
        ("max_image_pixels", positive_int, "pixels per image, checked before decoding"),
        ("max_length", positive_int, "new tokens a request may ask for"),
        ("max_beam", positive_int, "beams, n-best or samples a request may ask for"),
        ("timeout_s", float, "seconds before a request is answered with 503"),
        ("batch_quiet_ms", float, "a batch closes once no request has joined it for this long"),
        ("batch_wait_ms", float, "... or once its first request has waited this long"),
        ("max_batch", positive_int, "lines or images decoded together"),
    ):
        limits.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, name),
            help=f"{help_text} (default: %(default)s)",
        )
    limits.add_argument("--no-batching", action="store_true", help="decode every request alone")
    parser.set_defaults(func=serve, verb="serve")


def serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from seq2seq.serving.app import create_app
        from seq2seq.serving.limits import ServeLimits
        from seq2seq.serving.models import ServedModel
    except ImportError as error:
        raise ValueError(f"serving needs FastAPI and uvicorn ({error}): pip install 'seq2seq[serve]'") from None
    limits = ServeLimits(
        **{name: getattr(args, name) for name in ServeLimits.__dataclass_fields__},
    )
    if args.no_batching:
        limits = dataclasses.replace(limits, max_batch=1, batch_quiet_ms=0.0, batch_wait_ms=0.0)
    models = []
    for task in TASK_FLAGS:
        for spec in getattr(args, task):
            name, checkpoint = model_spec(spec)
            loaded = ServedModel.load(name, task, checkpoint, limits, **loading_options(args))  # type: ignore[arg-type]
            models.append(loaded)
    if not models:
        raise ValueError("nothing to serve: give at least one --translate, --caption or --textgen NAME=RUN_DIR")
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"model names must be unique, got {', '.join(duplicates)} twice")
    logging.getLogger().setLevel(logging.INFO)
    print(f"serving {', '.join(f'{m.name} ({m.task})' for m in models)} on http://{args.host}:{args.port}/")
    uvicorn.run(create_app(models, limits), host=args.host, port=args.port, log_level="info")


def model_spec(spec: str) -> tuple[str, str]:
    """'NAME=RUN_DIR' -> (NAME, RUN_DIR); a bare RUN_DIR is named after its folder."""
    name, separator, checkpoint = spec.partition("=")
    if not separator:
        name, checkpoint = Path(spec).name, spec
    if not name or not checkpoint:
        raise ValueError(f"expected NAME=RUN_DIR, got {spec!r}")
    return name, checkpoint
