"""Captioning benchmark: the emoji set, trained from scratch on 2 CPU threads.

  python data_scripts/emoji.py                    # once: needs fonts-noto-color-emoji and unicode-data
  python -m benchmarks.caption                    # train for the config's budget (28 min), then measure
  python -m benchmarks.caption --reuse            # measure the model already trained in --run-dir
  python -m benchmarks.caption --minutes 1        # a quick check

Two runs from scratch with the same seed and the same budget: cross-entropy only (``--config``,
default ``emoji_scratch``), and cross-entropy then self-critical training (``--scst-config``,
default ``emoji_scst``, whose switch to SCST keeps its share of the budget when ``--minutes``
changes it). Parts:

1. training: ``python -m seq2seq caption train`` with the shipped config ``emoji_scratch`` in a child
   process for ``--minutes`` of training; its peak resident memory, and training images/s read
   from the trainer's metrics log (the logged target tokens/s over the windows without a
   validation in them, divided by the mean tokens per training caption, eos included);
2. quality on the test split (emoji never seen in training): BLEU-1..4, CIDEr-D and exact-name
   accuracy with beam 3 and with greedy search, beside the nearest-neighbour captioner in pixel
   space (32 x 32 RGB, L2) and in the model's feature space; and the exact names (beam 3) split
   between the test emoji that are skin-tone variants of a training emoji and the others, with
   how many of the others got the name of a training emoji (``benchmarks/emoji_names.py``);
3. captioning speed: test images/s with greedy search and beam 3 at 32 images per batch (image
   files read and transformed included, model loaded first through ``seq2seq.Captioner``), and
   the time to caption one 640 x 480 JPEG with beam 3 (the median of 5, after a warm-up).

4. the SCST run: its peak resident memory and images/s in the SCST phase (images per step times
   steps per second between its logged steps, over the windows without a validation), and its
   BLEU-4, CIDEr-D and exact names with beam 3 and greedy search, beside the cross-entropy run's,
   checked against the targets: CIDEr-D >= 1.05 times the cross-entropy run's and BLEU-4 not lower
   (beam 3), at least 60% exact names, peak RSS <= 1.5 GiB and >= 40 images/s.

The last line printed holds every figure (``RESULT caption: key=value ...``); the same figures go
to ``<run-dir>/benchmark.json``. Run it from the project root, with the package installed, on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the project root as a module: python -m benchmarks.caption")

# Imported before torch: it pins the thread pools to THREADS.
from benchmarks.common import THREADS, Figures, has_checkpoint, result_line, say, seq2seq_command
from benchmarks.emoji_names import NamesByKind, names_by_kind
from benchmarks.peak_memory import run_measured

# isort: split
import torch
from PIL import Image

from seq2seq import Captioner, Hypothesis
from seq2seq.baselines import feature_vectors, nearest_neighbour_captions, pixel_vectors
from seq2seq.caption_metrics import CaptionScores, caption_scores
from seq2seq.config import DecodeConfig, load_config
from seq2seq.data.captions import CaptionImages, ImageCaptions, load_caption_sets
from seq2seq.inference.captioner import caption_images
from seq2seq.models import CNNEncoder
from seq2seq.run_configs import CaptionConfig
from seq2seq.training.caption_task import score_captions

TASK = "caption"  # the seq2seq command line's name of the task
DEFAULT_CONFIG = "emoji_scratch"  # a shipped config, by name
DEFAULT_RUN_DIR = "runs/bench_emoji"
DEFAULT_SCST_CONFIG = "emoji_scst"
SCST_RUN_SUFFIX = "_scst"  # the SCST run's directory: --run-dir with this suffix
# Targets of the SCST run.
SCST_CIDER_RATIO = 1.05  # CIDEr-D (beam 3) at least this times the cross-entropy run's
SCST_EXACT = 60.0  # % exact names (beam 3)
SCST_PEAK_RSS_GIB = 1.5
SCST_IMAGES_S = 40.0
SPEED_BATCH = 32  # images per batch of the captioning speed
BEAM = 3
SINGLE_IMAGE_RUNS = 5
GIB = 2**30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.caption",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"captioning config: a shipped config's name or a YAML file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help=f"the benchmark's run (default: {DEFAULT_RUN_DIR})")
    parser.add_argument("--minutes", type=float, help="training budget (default: the config's train.max_minutes)")
    parser.add_argument(
        "--scst-config",
        default=DEFAULT_SCST_CONFIG,
        help=f"the cross-entropy then SCST config (default: {DEFAULT_SCST_CONFIG}); its run goes to "
        f"<--run-dir>{SCST_RUN_SUFFIX}",
    )
    parser.add_argument("--no-scst", action="store_true", help="only the cross-entropy run")
    parser.add_argument("--reuse", action="store_true", help="do not train: measure the models in the run dirs")
    return parser.parse_args(argv)


# ---- 1. training --------------------------------------------------------------------------------


def train(config_path: str, run_dir: Path, minutes: float | None, *extra: str) -> tuple[float, float]:
    """Train from scratch in a child process; its wall seconds and peak RSS (bytes)."""
    settings = ["train.device=cpu", f"train.threads={THREADS}", *extra]
    if minutes is not None:
        settings.append(f"train.max_minutes={minutes}")
    arguments = ["--config", config_path, "--run-dir", str(run_dir), "--fresh"]
    for setting in settings:
        arguments += ["--set", setting]
    command = seq2seq_command(TASK, "train", arguments)
    say(f"training: {' '.join(command[1:])}")
    run = run_measured(command)
    if run.exit_code:
        raise RuntimeError(f"training failed with exit status {run.exit_code}")
    return run.seconds, run.peak_rss_bytes


def training_images_per_second(run_dir: Path, captioner: Captioner, train_sets: list[ImageCaptions]) -> float | None:
    """Logged tokens/s over windows without a validation, over mean tokens per training caption;
    None when the run logged no such window (a run of a minute or two)."""
    config = captioner.config
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [record for record in records if "tokens_per_s" in record]
    every, validate = config.train.log_every, config.train.validate_every
    clean = [r["tokens_per_s"] for r in steps if (r["step"] - every) % validate != 0 and r["step"] > every]
    if not clean:
        return None
    lengths = [len(captioner.codec.encode(c)) + 1 for image in train_sets for c in image.captions]
    return statistics.median(clean) / statistics.mean(lengths)


def scst_images_per_second(run_dir: Path, batch_images: int, validate_every: int) -> float | None:
    """Images/s of the SCST phase: steps per second between its consecutive logged steps (those
    with a reward), over windows without a validation, times images per step; None without two."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [record for record in records if "reward" in record]
    # A step that validates does so after its record: a window from step a to step b holds the
    # validations of steps a .. b - 1.
    rates = [
        (later["step"] - earlier["step"]) * batch_images / (later["elapsed_s"] - earlier["elapsed_s"])
        for earlier, later in itertools.pairwise(logged)
        if not any(step % validate_every == 0 for step in range(earlier["step"], later["step"]))
        and later["elapsed_s"] > earlier["elapsed_s"]
    ]
    return statistics.median(rates) if rates else None


# ---- 2. quality ---------------------------------------------------------------------------------


def search(captioner: Captioner, beam: int) -> DecodeConfig:
    """The model's decoding settings as a search with a beam of ``beam`` (1: greedy), one caption per image."""
    return captioner.decode_config(beam=beam, n_best=1)


def caption_files(
    captioner: Captioner, images: CaptionImages, decode: DecodeConfig, batch_size: int
) -> list[list[Hypothesis] | None]:
    """The captions of a data set of image files: reading, transforming, batching and the search."""
    return caption_images(captioner.model, images, captioner.codec, decode, batch_size, attention=False)


@dataclass
class TestCaptions:
    """The test split captioned by one search."""

    scores: CaptionScores
    texts: list[str]  # the caption of each test image, in order ("" for an image that could not be read)
    images_per_second: float


def caption_test(captioner: Captioner, test: list[ImageCaptions], beam: int) -> TestCaptions:
    """The test split captioned with a beam of ``beam`` (1: greedy): scores, captions and images/s."""
    decode = search(captioner, beam)
    images = CaptionImages(test, captioner.transform)
    started = time.perf_counter()
    captions = caption_files(captioner, images, decode, SPEED_BATCH)
    seconds = time.perf_counter() - started
    texts = ["" if found is None else found[0].text for found in captions]
    return TestCaptions(score_captions(captions, test), texts, len(test) / seconds)


def names_figures(prefix: str, names: NamesByKind) -> Figures:
    """The exact names by kind of test emoji (beam 3) as figures whose keys start with ``prefix``."""
    return {
        f"{prefix}beam{BEAM}_variants": names.variants,
        f"{prefix}beam{BEAM}_variants_exact": names.variants_exact,
        f"{prefix}beam{BEAM}_others": names.others,
        f"{prefix}beam{BEAM}_others_exact": names.others_exact,
        f"{prefix}beam{BEAM}_others_named_as_training": names.others_named_as_training,
    }


def baselines(captioner: Captioner, sets: dict[str, list[ImageCaptions]]) -> dict[str, CaptionScores]:
    """The nearest-neighbour captioner in pixel space and in the model's feature space."""
    train_sets, test = sets["train"], sets["test"]
    references = [image.captions for image in test]
    pixels = nearest_neighbour_captions(pixel_vectors(train_sets), train_sets, pixel_vectors(test))
    transform = captioner.transform
    encoder = cast(CNNEncoder, captioner.model.encoder)  # a captioning model's
    features = nearest_neighbour_captions(
        feature_vectors(encoder, CaptionImages(train_sets, transform)),
        train_sets,
        feature_vectors(encoder, CaptionImages(test, transform)),
    )
    return {"nn_pixels": caption_scores(pixels, references), "nn_features": caption_scores(features, references)}


# ---- 3. one image -------------------------------------------------------------------------------


def single_image_seconds(captioner: Captioner, image: ImageCaptions, work_dir: Path) -> float:
    """Median time to caption one 640 x 480 JPEG with beam 3, file reading included."""
    photo = work_dir / "photo_640x480.jpg"
    Image.open(image.path).convert("RGB").resize((640, 480)).save(photo, quality=90)
    decode = search(captioner, BEAM)
    one = [ImageCaptions(photo.name, photo, [], "test")]
    times = []
    for _ in range(SINGLE_IMAGE_RUNS + 1):  # the first is the warm-up
        started = time.perf_counter()
        caption_files(captioner, CaptionImages(one, captioner.transform), decode, 1)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


# ---- the run ------------------------------------------------------------------------------------


# ---- 4. the SCST run ----------------------------------------------------------------------------


def scst_run(args: argparse.Namespace, run_dir: Path, sets: dict[str, list[ImageCaptions]]) -> Figures:
    """Cross-entropy then SCST in the same budget: its training figures and test scores."""
    config = load_config(CaptionConfig, args.scst_config)
    wall, peak = None, None
    if not args.reuse:
        budget = config.train.max_minutes if args.minutes is None else args.minutes
        switch = config.train.scst_after_minutes * budget / config.train.max_minutes
        wall, peak = train(args.scst_config, run_dir, budget, f"train.scst_after_minutes={switch}")
    if not has_checkpoint(run_dir):
        raise SystemExit(f"{run_dir} has no checkpoint to measure: run without --reuse")
    rate = scst_images_per_second(run_dir, config.data.batch_size, config.train.validate_every)
    captioner = Captioner.from_checkpoint(run_dir, torch.device("cpu"))
    beam_run = caption_test(captioner, sets["test"], BEAM)
    beam, greedy = beam_run.scores, caption_test(captioner, sets["test"], 1).scores
    names = names_by_kind(beam_run.texts, sets["test"], sets["train"])
    say(f"SCST run, test, beam {BEAM}: {beam}")
    say(f"SCST run, test, beam {BEAM}, exact names by kind: {names}")
    say(f"SCST run, test, greedy: {greedy}")
    return {
        **names_figures("scst_", names),
        "scst_train_images_s": rate,
        "scst_peak_rss_gib": None if peak is None else peak / GIB,
        "scst_train_wall_min": None if wall is None else wall / 60,
        f"scst_beam{BEAM}_bleu4": beam.bleu[3],
        f"scst_beam{BEAM}_cider_d": beam.cider_d,
        f"scst_beam{BEAM}_exact": beam.exact,
        "scst_greedy_bleu4": greedy.bleu[3],
        "scst_greedy_cider_d": greedy.cider_d,
        "scst_greedy_exact": greedy.exact,
    }


def compare_runs(figures: Figures) -> None:
    """The two runs side by side, and the SCST run against its targets."""
    rows = [
        ("CIDEr-D, beam 3", f"beam{BEAM}_cider_d", "{:.3f}"),
        ("BLEU-4, beam 3", f"beam{BEAM}_bleu4", "{:.2f}"),
        ("exact names, beam 3 (%)", f"beam{BEAM}_exact", "{:.1f}"),
        ("  exact: skin-tone variants", f"beam{BEAM}_variants_exact", "{:.0f}"),
        ("  exact: other emoji", f"beam{BEAM}_others_exact", "{:.0f}"),
        ("  other emoji given a training name", f"beam{BEAM}_others_named_as_training", "{:.0f}"),
        ("CIDEr-D, greedy", "greedy_cider_d", "{:.3f}"),
        ("BLEU-4, greedy", "greedy_bleu4", "{:.2f}"),
        ("exact names, greedy (%)", "greedy_exact", "{:.1f}"),
        ("training peak RSS (GiB)", "peak_rss_gib", "{:.2f}"),
        ("training images/s (SCST: its SCST phase)", "train_images_s", "{:.1f}"),
    ]
    say(f"{'':42s} {'cross-entropy':>14s} {'+ SCST':>10s}")
    for label, key, form in rows:
        shown = [form.format(value) if value is not None else "n/a" for value in (figures[key], figures[f"scst_{key}"])]
        say(f"{label:42s} {shown[0]:>14s} {shown[1]:>10s}")
    for name, met in scst_targets(figures):
        say(f"target {name}: {'not measured' if met is None else 'met' if met else 'MISSED'}")


def scst_targets(figures: Figures) -> list[tuple[str, bool | None]]:
    """Each target of the SCST run and whether it was met (None: a figure is missing)."""
    cider = figures[f"beam{BEAM}_cider_d"]
    return [
        (
            f"CIDEr-D (beam {BEAM}) >= {SCST_CIDER_RATIO} x cross-entropy",
            at_least(figures[f"scst_beam{BEAM}_cider_d"], None if cider is None else SCST_CIDER_RATIO * cider),
        ),
        (f"BLEU-4 (beam {BEAM}) not lower", at_least(figures[f"scst_beam{BEAM}_bleu4"], figures[f"beam{BEAM}_bleu4"])),
        (f"exact names (beam {BEAM}) >= {SCST_EXACT:.0f}%", at_least(figures[f"scst_beam{BEAM}_exact"], SCST_EXACT)),
        (f"training peak RSS <= {SCST_PEAK_RSS_GIB} GiB", at_least(SCST_PEAK_RSS_GIB, figures["scst_peak_rss_gib"])),
        (f"SCST images/s >= {SCST_IMAGES_S:.0f}", at_least(figures["scst_train_images_s"], SCST_IMAGES_S)),
    ]


def at_least(value: float | None, bound: float | None) -> bool | None:
    return None if value is None or bound is None else value >= bound


def run_benchmark(args: argparse.Namespace) -> Figures:
    torch.set_num_threads(THREADS)
    run_dir = Path(args.run_dir)
    config = load_config(CaptionConfig, args.config)
    sets = load_caption_sets(config.data)
    wall, peak = None, None
    if not args.reuse:
        wall, peak = train(args.config, run_dir, args.minutes)
    if not has_checkpoint(run_dir):
        raise SystemExit(f"{run_dir} has no checkpoint to measure: run without --reuse")
    captioner = Captioner.from_checkpoint(run_dir, torch.device("cpu"))
    train_rate = training_images_per_second(run_dir, captioner, sets["train"])
    rate = "n/a" if train_rate is None else f"{train_rate:.1f}"
    say(f"training: {rate} images/s" + (f", peak RSS {peak / GIB:.2f} GiB" if peak else ""))
    beam_run, greedy_run = caption_test(captioner, sets["test"], BEAM), caption_test(captioner, sets["test"], 1)
    beam, beam_rate = beam_run.scores, beam_run.images_per_second
    greedy, greedy_rate = greedy_run.scores, greedy_run.images_per_second
    names = names_by_kind(beam_run.texts, sets["test"], sets["train"])
    say(f"test, beam {BEAM}: {beam}  ({beam_rate:.1f} images/s)")
    say(f"test, beam {BEAM}, exact names by kind: {names}")
    say(f"test, greedy: {greedy}  ({greedy_rate:.1f} images/s)")
    nearest = baselines(captioner, sets)
    for name, scores in nearest.items():
        say(f"test, {name}: {scores}")
    single = single_image_seconds(captioner, sets["test"][0], run_dir)
    say(f"one 640x480 JPEG, beam {BEAM}: {single:.3f} s")
    figures: Figures = {
        "train_images_s": train_rate,
        "peak_rss_gib": None if peak is None else peak / GIB,
        "train_wall_min": None if wall is None else wall / 60,
        f"beam{BEAM}_bleu4": beam.bleu[3],
        f"beam{BEAM}_cider_d": beam.cider_d,
        f"beam{BEAM}_exact": beam.exact,
        "greedy_bleu4": greedy.bleu[3],
        "greedy_cider_d": greedy.cider_d,
        "greedy_exact": greedy.exact,
        "nn_pixels_bleu4": nearest["nn_pixels"].bleu[3],
        "nn_pixels_cider_d": nearest["nn_pixels"].cider_d,
        "nn_pixels_exact": nearest["nn_pixels"].exact,
        "nn_features_bleu4": nearest["nn_features"].bleu[3],
        "nn_features_cider_d": nearest["nn_features"].cider_d,
        f"caption_images_s_beam{BEAM}": beam_rate,
        "caption_images_s_greedy": greedy_rate,
        f"single_640x480_beam{BEAM}_s": single,
        **names_figures("", names),
    }
    if not args.no_scst:
        figures.update(scst_run(args, Path(f"{run_dir}{SCST_RUN_SUFFIX}"), sets))
        compare_runs(figures)
    (run_dir / "benchmark.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def main(argv: list[str] | None = None) -> int:
    figures = run_benchmark(parse_args(argv))
    say(result_line("caption", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
