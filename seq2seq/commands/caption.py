"""`seq2seq caption`: image captioning (one-to-many).

  seq2seq caption train --config emoji_scratch
  seq2seq caption caption --checkpoint runs/emoji_scratch photo1.jpg photo2.png --beam 3 --attention-maps out/
  seq2seq caption evaluate --checkpoint runs/emoji_scratch --split test --beam 3 --baseline pixels
  seq2seq caption evaluate --checkpoint runs/emoji_scratch --int8     # int8 against fp32: scores and speed
  seq2seq caption caption --checkpoint runs/a runs/b -- photo1.jpg    # an ensemble of two ("--" ends the list)

The tokenizer, vocabulary and image settings travel in every checkpoint, so captioning needs
nothing but the checkpoint. With a frozen pretrained backbone (``image_encoder.finetune_blocks:
0``) each image's features are computed once into ``<run dir>/features`` and training reads
them there.

Output of ``caption``: one line per image, ``path<TAB>caption``; with ``--n-best N`` (beam
search) or ``--num-samples N`` (sampling) N lines per image, ``path<TAB>score<TAB>caption``,
where the score is the summed log-probability of the caption's tokens. An image that cannot
be read gets an error line on standard error, and the others are still captioned.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from seq2seq.baselines import feature_vectors, nearest_neighbour_captions, pixel_vectors
from seq2seq.caption_metrics import CaptionScores, caption_scores
from seq2seq.coco_metrics import JRE_INSTALL, coco_scores
from seq2seq.commands.common import (
    add_average_verb,
    add_checkpoint_arguments,
    add_search_arguments,
    add_train_verb,
    describe_checkpoints,
    loading_options,
    positive_int,
)
from seq2seq.config import DecodeConfig
from seq2seq.data.captions import CaptionImages, ImageCaptions, load_caption_sets
from seq2seq.data.images import build_transform
from seq2seq.data.text_files import DataError
from seq2seq.decoding import describe_decoding
from seq2seq.inference.captioner import Captioner, caption_images
from seq2seq.inference.hypothesis import Hypothesis
from seq2seq.models import CNNEncoder
from seq2seq.models.ensemble import first_model
from seq2seq.training.caption_task import score_captions

BASELINES = ("none", "pixels", "features")
METRIC_SETS = ("default", "coco")
SCST_HELP = (
    "Self-critical training (SCST): after cross-entropy, K sampled captions per image are rewarded by their "
    "CIDEr-D against the image's references, above a baseline. --config emoji_scst does both in one run "
    "(train.scst_after_minutes, or train.scst_after_steps); --set train.scst_from=RUN_OR_CHECKPOINT starts a "
    "run in SCST from a cross-entropy run of the same model and data. train.scst_samples, scst_baseline "
    "(others | greedy), scst_bleu4_weight and scst_lr tune it; the log records reward, baseline and "
    "above_baseline."
)


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    add_train_verb(verbs, "caption", "captioning", SCST_HELP)

    cap = verbs.add_parser(
        "caption",
        help="caption image files",
        description="Caption image files: one line 'path<TAB>caption' per image, or N lines "
        "'path<TAB>score<TAB>caption' with --n-best N or --num-samples N.",
    )
    add_checkpoint_arguments(cap)
    cap.add_argument(
        "images",
        nargs="*",
        help="image files (JPEG, PNG, ...); they may follow --checkpoint directly, since checkpoints are folders",
    )
    cap.add_argument("--n-best", type=positive_int, help="print the N best captions of each image with their scores")
    cap.add_argument("--attention-maps", metavar="DIR", help="write one PNG per image: each word with its attention")
    add_decoding_arguments(cap)
    cap.set_defaults(func=caption)

    ev = verbs.add_parser(
        "evaluate",
        help="BLEU-1..4, CIDEr-D and exact matches (--metrics coco: the COCO caption evaluation) on a split",
        description="Caption a split of the training config's data and score the captions against all "
        "references (BLEU-1..4 by sacreBLEU, CIDEr-D by the COCO caption evaluation, exact matches), printing "
        "the decoding settings; --baseline also scores the nearest-neighbour captioner. With --int8 the fp32 model "
        "is scored too, and the change in scores and speed is printed.",
    )
    add_checkpoint_arguments(ev)
    ev.add_argument("--split", choices=["test", "valid"], default="test", help="which split to score (default: test)")
    ev.add_argument(
        "--baseline",
        choices=BASELINES,
        default="pixels",
        help="also score the nearest-neighbour captioner in pixel (32x32 RGB) or the model's feature space "
        "(default: pixels)",
    )
    ev.add_argument(
        "--metrics",
        choices=METRIC_SETS,
        default="default",
        help="default: BLEU-1..4, CIDEr-D and exact matches over caption words, no Java needed; coco: also the "
        "COCO caption evaluation as published tables report it (PTB tokens, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, "
        f"SPICE; the tokenizer, METEOR and SPICE need Java: {JRE_INSTALL})",
    )
    ev.add_argument("--attention-maps", metavar="DIR", help="write attention maps of the first --max-maps images")
    ev.add_argument("--max-maps", type=positive_int, default=10, help="attention maps written (default: 10)")
    ev.set_defaults(func=evaluate, n_best=None)
    add_decoding_arguments(ev)

    add_average_verb(verbs, "caption")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    search = add_search_arguments(parser)
    search.add_argument("--sample", action="store_true", help="sample captions instead of searching")
    parser.add_argument("--temperature", type=float, help="sampling: < 1 is more conservative, > 1 more random")
    parser.add_argument("--top-k", type=int, help="sampling: only from the k most likely words (0: all)")
    parser.add_argument("--top-p", type=float, help="sampling: from the smallest set holding this probability")
    parser.add_argument("--num-samples", type=positive_int, help="sampling: captions per image")
    parser.add_argument("--seed", type=int, help="sampling: the same seed gives the same captions")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images captioned together (default: 32)")


def decode_from_args(captioner: Captioner, args: argparse.Namespace) -> DecodeConfig:
    sampling = {key: getattr(args, key) for key in ("num_samples", "temperature", "top_k", "top_p", "seed")}
    if not args.sample:
        given = [f"--{key.replace('_', '-')}" for key, value in sampling.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --sample")
        return captioner.decode_config(beam=args.beam, greedy=args.greedy, n_best=args.n_best)
    return captioner.decode_config(sample=True, n_best=args.n_best, **sampling)


# ---- caption ------------------------------------------------------------------------------------


def caption(args: argparse.Namespace) -> None:
    args.checkpoint, args.images = checkpoints_and_images(args.checkpoint, args.images)
    captioner = Captioner.from_checkpoint(args.checkpoint, **loading_options(args))
    decode = decode_from_args(captioner, args)
    started = time.perf_counter()
    results = captioner.caption_with(args.images, decode, args.batch_size, attention=bool(args.attention_maps))
    seconds = time.perf_counter() - started
    scored = (decode.method == "sample" and decode.num_samples > 1) or args.n_best is not None
    failed = [result for result in results if result.error is not None]
    for result in results:
        if result.error is not None:
            print(f"error: {result.image}: {result.error}", file=sys.stderr)
            continue
        for found in result.hypotheses:
            print(f"{result.image}\t{found.score:.4f}\t{found.text}" if scored else f"{result.image}\t{found.text}")
    if args.attention_maps:
        write_attention_maps(
            captioner, [(r.image, r.hypotheses[0]) for r in results if r.hypotheses], Path(args.attention_maps)
        )
    print(
        f"captioned {len(results) - len(failed)} image(s) in {seconds:.2f} s ({describe_decoding(decode)})",
        file=sys.stderr,
    )
    if failed:
        raise DataError(f"{len(failed)} of {len(results)} image(s) could not be read")


def checkpoints_and_images(given: list[str], images: list[str]) -> tuple[list[str], list[str]]:
    """Splits what followed --checkpoint: checkpoints are folders, so the files among them (and
    after them) are images, as in ``--checkpoint RUN photo.jpg``."""
    checkpoints = [path for path in given if not Path(path).is_file()]
    images = [path for path in given if Path(path).is_file()] + images
    if not images:
        raise ValueError("no images to caption: give image files after the checkpoint(s)")
    return checkpoints, images


def write_attention_maps(captioner: Captioner, captioned: list[tuple[str, Hypothesis]], directory: Path) -> list[Path]:
    """One PNG per image, each word of its caption with its attention over the image; files are
    numbered in input order, so that images of the same name in different folders never collide."""
    paths = []
    for number, (image, found) in enumerate(captioned, start=1):
        paths.append(captioner.attention_map(image, found, directory / f"{number:04d}_{Path(image).stem}.png"))
    return paths


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    captioner = Captioner.from_checkpoint(args.checkpoint, **loading_options(args))
    decode = decode_from_args(captioner, args)
    data = captioner.config.data
    sets = load_caption_sets(data)
    references = sets[args.split]
    if not references:
        raise ValueError(f"the {args.split} split of {data.annotations} has no images")
    images = CaptionImages(references, captioner.transform, data.max_pixels)
    scored = score_split(captioner, images, decode, args.batch_size, attention=bool(args.attention_maps))
    print(describe_checkpoints(captioner.checkpoints))
    print(f"split: {args.split}, {len(references):,} images ({data.annotations})")
    print(f"decoding: {describe_decoding(decode)}, batches of {args.batch_size} images{', int8' if args.int8 else ''}")
    print(f"captioning time: {scored.seconds:.1f} s, {scored.speed:.1f} images/s")
    if images.skips.total:
        print(f"unreadable images (scored with empty captions): {images.skips.summary()}")
    print(f"model:    {scored.scores}")
    if args.metrics == "coco":
        first = ["" if found is None else found[0].text for found in scored.results]
        print(f"model, COCO caption evaluation: {coco_scores(first, [image.captions for image in references])}")
    if args.int8:
        fp32 = score_split(Captioner.from_checkpoint(args.checkpoint, args.device), images, decode, args.batch_size)
        print(f"fp32:     {fp32.scores}")
        print(f"int8 against fp32: {scored.speed:.1f} vs {fp32.speed:.1f} images/s ({scored.speed / fp32.speed:.2f}x)")
    if args.baseline != "none":
        print(f"baseline: {baseline_scores(captioner, sets, references, args.baseline, args.batch_size)}")
    if args.attention_maps:
        captioned = [
            (str(image.path), found[0]) for image, found in zip(references, scored.results) if found is not None
        ]
        write_attention_maps(captioner, captioned[: args.max_maps], Path(args.attention_maps))
        print(f"attention maps of the first {args.max_maps} images: {args.attention_maps}")


@dataclass(frozen=True)
class SplitScore:
    """A split captioned and scored, and the captioning time."""

    results: list[list[Hypothesis] | None]
    scores: CaptionScores
    seconds: float

    @property
    def speed(self) -> float:
        """Images per second."""
        return len(self.results) / max(self.seconds, 1e-9)


def score_split(
    captioner: Captioner, images: CaptionImages, decode: DecodeConfig, batch_size: int, attention: bool = False
) -> SplitScore:
    """Caption every image of ``images`` and score the captions against its references."""
    started = time.perf_counter()
    results = caption_images(captioner.model, images, captioner.codec, decode, batch_size, attention=attention)
    seconds = time.perf_counter() - started
    return SplitScore(results, score_captions(results, images.images), seconds)


def baseline_scores(
    captioner: Captioner, sets: dict[str, list[ImageCaptions]], references: list[ImageCaptions], space: str, batch: int
) -> str:
    """The nearest-neighbour captioner's scores on ``references``, in pixel or feature space."""
    max_pixels = captioner.config.data.max_pixels
    if space == "pixels":
        train_vectors = pixel_vectors(sets["train"], max_pixels)
        query_vectors = pixel_vectors(references, max_pixels)
    else:
        transform = build_transform(captioner.config.data.transform, train=False)
        encoder = cast(CNNEncoder, first_model(captioner.model).encoder)  # a captioning model's
        train_vectors = feature_vectors(encoder, CaptionImages(sets["train"], transform), batch)
        query_vectors = feature_vectors(encoder, CaptionImages(references, transform), batch)
    captions = nearest_neighbour_captions(train_vectors, sets["train"], query_vectors)
    scores = caption_scores(captions, [image.captions for image in references])
    return f"{scores}  [nearest neighbour in {space} space]"
