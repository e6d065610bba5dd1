"""Image captioning (one-to-many): a CNN encoder, the shared attentional decoder, beam search.

  python data_scripts/emoji.py
  python recipes/caption.py train --config recipes/configs/emoji_scratch.yaml
  python recipes/caption.py caption --checkpoint runs/emoji_scratch photo1.jpg photo2.png --beam 3 --attention-maps out/
  python recipes/caption.py evaluate --checkpoint runs/emoji_scratch --split test --beam 3 --baseline pixels

Training resumes by itself when run again with the same command; under
``torchrun --nproc_per_node N`` the same command trains on N processes. The tokenizer,
vocabulary and image settings travel in every checkpoint, so captioning needs nothing but the
checkpoint. With a frozen pretrained backbone (``image_encoder.finetune_blocks: 0``) each
image's features are computed once into ``<run dir>/features`` and training reads them there.

Output of ``caption``: one line per image, ``path<TAB>caption``; with ``--n-best N`` (beam
search) or ``--num-samples N`` (sampling) N lines per image, ``path<TAB>score<TAB>caption``,
where the score is the summed log-probability of the caption's tokens. An image that cannot
be read gets an error line on standard error, and the others are still captioned.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from seq2seq.baselines import feature_vectors, nearest_neighbour_captions, pixel_vectors
from seq2seq.caption_metrics import caption_scores
from seq2seq.cli import (
    add_checkpoint_arguments,
    add_train_arguments,
    check_resumable,
    positive_int,
    load_run,
    prepare_run_dir,
    run_main,
    setup_logging,
)
from seq2seq.config import ConfigError, DecodeConfig, ModelConfig, TrainConfig, load_config, to_dict
from seq2seq.data.captions import (
    CaptionDataConfig,
    CaptionImages,
    CaptionPairs,
    ImageCaptions,
    load_caption_sets,
    make_caption_codec,
)
from seq2seq.data.feature_cache import FeatureCache
from seq2seq.data.images import BadImageError, build_transform, load_rgb
from seq2seq.data.parallel import TextCodec
from seq2seq.data.text_files import DataError
from seq2seq.decoding import describe_decoding
from seq2seq.decoding.beam import check_beam_config, search_config
from seq2seq.models import Seq2Seq, build_captioning_model
from seq2seq.models.decoder import count_parameters
from seq2seq.models.image_encoder import ImageEncoderConfig
from seq2seq.plots import plot_caption_attention
from seq2seq.text import Vocab
from seq2seq.training.caption_task import (
    Caption,
    CaptionBatching,
    CaptionTask,
    CaptionValidationConfig,
    caption_images,
    score_captions,
)
from seq2seq.training.checkpoint import CheckpointError, load_weights
from seq2seq.training.runtime import Runtime, gather_objects, resolve_device, seed_everything, start_runtime, stop_runtime
from seq2seq.training.trainer import Trainer

log = logging.getLogger("caption")
DEFAULT_CONFIG = "recipes/configs/emoji_scratch.yaml"
TASK = "caption"
BASELINES = ("none", "pixels", "features")


@dataclass
class CaptionConfig:
    name: str = "caption"  # the run directory is runs/<name> unless --run-dir says otherwise
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(attention="bahdanau"))
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Weight of the doubly stochastic attention regularisation (Show, Attend and Tell); 0 turns it off.
    attention_regularization: float = 0.0
    # With a frozen backbone: compute each image's features once into <run dir>/features and train from them.
    feature_cache: bool = True
    validation: CaptionValidationConfig = field(default_factory=CaptionValidationConfig)
    # Defaults of the caption and evaluate commands (their flags override them).
    caption: DecodeConfig = field(default_factory=lambda: DecodeConfig(method="beam", beam_size=3, max_length=30))


@dataclass
class LoadedCaptioner:
    model: Seq2Seq
    codec: TextCodec
    config: CaptionConfig
    checkpoint: Path


# ---- train ------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> None:
    config = load_config(CaptionConfig, args.config, args.overrides)
    config.validation.check(config.train.best_metric)
    check_beam_config(config.validation.decode_config(config.caption))
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    runtime = start_runtime(config.train.device, config.train.threads)
    try:
        saved = prepare_run_dir(run_dir, args.fresh, runtime.is_main, config.train.best_metric, config.train.best_mode)
        setup_logging(run_dir, runtime.is_main)
        sets = load_caption_sets(config.data)
        codec = training_codec(config, sets["train"], run_dir, runtime, saved)
        seed_everything(config.train.seed)
        model = build_captioning_model(config.model, config.image_encoder, len(codec.vocab), Vocab.pad_id)
        model.to(runtime.device)
        seed_everything(config.train.seed + runtime.rank)  # same initial weights, own dropout masks
        features = cached_features(config, model, sets, run_dir, runtime)
        task = caption_task(config, sets, codec, runtime, features)
        log.info(
            "%s: %d training pairs of %d images, %d validation images, vocabulary %d, %.2fM trainable parameters "
            "(%s backbone%s), device %s, %d process(es)",
            config.name,
            len(task.train),
            len(sets["train"]),
            len(sets["valid"]),
            len(codec.vocab),
            count_parameters(model) / 1e6,
            config.image_encoder.backbone,
            ", features cached" if features is not None else "",
            runtime.device,
            runtime.world_size,
        )
        metadata = {"task": TASK, "config": to_dict(config), "codec": codec.to_dict()}
        trainer = Trainer(model, task, config.train, run_dir, metadata, runtime)
        trainer.resume_if_possible()
        progress = trainer.fit()
        if runtime.is_main:
            print(
                f"done: step {progress.step}, best {config.train.best_metric} {progress.best_metric:.4f}; "
                f"best checkpoint {trainer.checkpoints.best()}"
            )
    finally:
        stop_runtime(runtime)


def training_codec(
    config: CaptionConfig, train_sets: list[ImageCaptions], run_dir: Path, runtime: Runtime, saved: dict | None
) -> TextCodec:
    """A fresh run's caption tokenizer and vocabulary (made by the main process), or a resumed
    run's own, after checking that the model and data config did not change."""
    if saved is None:
        made = make_caption_codec(config.data, train_sets, run_dir).to_dict() if runtime.is_main else None
        return TextCodec.from_dict(gather_objects(made, runtime)[0])
    if saved.get("task") != TASK:
        raise CheckpointError(
            f"{run_dir} holds a {saved.get('task')!r} run, not a captioning run; "
            "pick another --run-dir, or pass --fresh to start over."
        )
    check_resumable(saved["config"], to_dict(config), ("image_encoder", "model", "data"))
    return TextCodec.from_dict(saved["codec"])


def cached_features(
    config: CaptionConfig, model: Seq2Seq, sets: dict[str, list[ImageCaptions]], run_dir: Path, runtime: Runtime
) -> FeatureCache | None:
    """With a frozen backbone and ``feature_cache`` on: every training and validation image's
    grid, computed once (by the main process) into ``run_dir/features``; else None."""
    if not (config.feature_cache and model.encoder.frozen):
        return None
    images = sets["train"] + sets["valid"]
    fingerprint = feature_fingerprint(config, images)
    if runtime.is_main:
        transform = build_transform(config.data.transform, train=False)
        by_key = {image.image_id: image for image in images}

        @torch.inference_mode()
        def compute(keys: list[str]) -> tuple[torch.Tensor, list[str]]:
            loaded, skipped = [], []
            for key in keys:
                try:
                    loaded.append(transform(load_rgb(by_key[key].path, config.data.max_pixels)))
                except BadImageError:
                    skipped.append(key)
            if not loaded:
                return torch.empty(0, 0, 0), skipped
            return model.encoder.grid(torch.stack(loaded).to(runtime.device)).float().cpu(), skipped

        model.encoder.eval()
        FeatureCache.open_or_build(run_dir / "features", list(by_key), compute, fingerprint)
    gather_objects(None, runtime)  # the other processes wait for the cache
    return FeatureCache.open(run_dir / "features", fingerprint)


def feature_fingerprint(config: CaptionConfig, images: list[ImageCaptions]) -> dict:
    """What the cached features depend on: the backbone, its weights, the image settings and the files."""
    files = hashlib.sha256()
    for image in images:
        stat = image.path.stat()
        files.update(f"{image.image_id}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    encoder = config.image_encoder
    return {
        "backbone": encoder.backbone,
        "pretrained": encoder.pretrained,
        "grid_size": encoder.grid_size,
        "transform": to_dict(replace(config.data.transform, augment=False)),
        "files": files.hexdigest(),
    }


def caption_task(
    config: CaptionConfig,
    sets: dict[str, list[ImageCaptions]],
    codec: TextCodec,
    runtime: Runtime,
    features: FeatureCache | None,
) -> CaptionTask:
    """The training pairs of this process and the validation, as the config says."""
    data = config.data
    if not sets["valid"]:
        raise ConfigError(f"{data.annotations} has no validation images, which training needs to pick checkpoints")
    train_transform = build_transform(data.transform, train=True)
    eval_transform = build_transform(data.transform, train=False)
    train_pairs = CaptionPairs(
        sets["train"], codec, train_transform, data.max_length, data.max_pixels, data.preload, features
    )
    valid_pairs = CaptionPairs(sets["valid"], codec, eval_transform, 0, data.max_pixels, data.preload, features)
    shown = sets["valid"][: config.validation.max_images or None]
    valid_images = CaptionImages(shown, eval_transform, data.max_pixels, data.preload, features)
    batching = CaptionBatching(data.batch_size, config.train.seed, runtime.rank, runtime.world_size, data.num_workers)
    return CaptionTask(
        train_pairs,
        valid_pairs,
        valid_images,
        shown,
        codec,
        runtime.device,
        config.validation,
        config.caption,
        batching,
        label_smoothing=config.train.label_smoothing,
        attention_regularization=config.attention_regularization,
    )


# ---- loading a trained model --------------------------------------------------------------------


def load_trained(checkpoint: str, device: torch.device) -> LoadedCaptioner:
    directory, metadata, config = load_run(checkpoint, TASK, CaptionConfig)
    codec = TextCodec.from_dict(metadata["codec"])
    # The weights come from the checkpoint: no ImageNet download, even for a pretrained backbone.
    model = build_captioning_model(
        config.model, replace(config.image_encoder, pretrained=False), len(codec.vocab), Vocab.pad_id
    )
    load_weights(directory, model, device)
    model.to(device).eval()
    return LoadedCaptioner(model, codec, config, directory)


def caption_decode(defaults: DecodeConfig, args: argparse.Namespace) -> DecodeConfig:
    """The caption settings with the command line's choices on top."""
    if args.sample:
        decode = replace(defaults, method="sample", num_samples=args.num_samples or 1)
        for key in ("temperature", "top_k", "top_p", "seed"):
            if getattr(args, key) is not None:
                decode = replace(decode, **{key: getattr(args, key)})
        return decode
    beam = 1 if args.greedy else (args.beam or defaults.beam_size)
    if args.n_best is not None and args.n_best > beam:
        raise ValueError(f"--n-best {args.n_best} needs a beam of at least {args.n_best}: pass --beam {args.n_best} or more")
    decode = search_config(defaults, beam, args.n_best or 1)
    check_beam_config(decode)
    return decode


# ---- caption ------------------------------------------------------------------------------------


def caption(args: argparse.Namespace) -> None:
    loaded = load_trained(args.checkpoint, resolve_device(args.device))
    decode = caption_decode(loaded.config.caption, args)
    sets = [ImageCaptions(str(path), Path(path), [], "test") for path in args.images]
    data = loaded.config.data
    images = CaptionImages(sets, build_transform(data.transform, train=False), data.max_pixels)
    started = time.perf_counter()
    results = caption_images(loaded.model, images, loaded.codec, decode, args.batch_size)
    seconds = time.perf_counter() - started
    scored = (decode.method == "sample" and decode.num_samples > 1) or args.n_best is not None
    failed = 0
    for image, captions in zip(sets, results):
        if captions is None:
            failed += 1
            continue
        for found in captions:
            print(f"{image.image_id}\t{found.score:.4f}\t{found.text}" if scored else f"{image.image_id}\t{found.text}")
        if args.attention_maps:
            write_attention_map(loaded, image, captions[0], Path(args.attention_maps))
    print(
        f"captioned {len(sets) - failed} image(s) in {seconds:.2f} s ({describe_decoding(decode)})"
        + (f"; {failed} could not be read: {images.skips.summary()}" if failed else ""),
        file=sys.stderr,
    )
    if failed:
        raise DataError(f"{failed} of {len(sets)} image(s) could not be read: {images.skips.summary()}")


def write_attention_map(loaded: LoadedCaptioner, image: ImageCaptions, found: Caption, directory: Path) -> Path:
    """One PNG per image: each word of its caption with its attention over the image."""
    if found.attention is None:
        raise ValueError("this model has no attention (model.attention is none), so there are no attention maps")
    shown = replace(loaded.config.data.transform, normalize="none")
    pixels = build_transform(shown, train=False)(load_rgb(image.path, loaded.config.data.max_pixels))  # (3, S, S)
    picture = (pixels.permute(1, 2, 0) * 255).round().byte().numpy()  # (S, S, 3)
    words = [loaded.codec.vocab.id_to_token(i) for i in found.token_ids]
    path = directory / f"{Path(image.image_id).stem}.png"
    plot_caption_attention(picture, words, found.attention, loaded.config.image_encoder.grid_size, path, found.text)
    return path


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    loaded = load_trained(args.checkpoint, resolve_device(args.device))
    decode = caption_decode(loaded.config.caption, args)
    data = loaded.config.data
    sets = load_caption_sets(data)
    references = sets[args.split]
    if not references:
        raise ValueError(f"the {args.split} split of {data.annotations} has no images")
    images = CaptionImages(references, build_transform(data.transform, train=False), data.max_pixels)
    started = time.perf_counter()
    results = caption_images(loaded.model, images, loaded.codec, decode, args.batch_size)
    seconds = time.perf_counter() - started
    print(f"checkpoint: {loaded.checkpoint}")
    print(f"split: {args.split}, {len(references):,} images ({data.annotations})")
    print(f"decoding: {describe_decoding(decode)}, batches of {args.batch_size} images")
    print(f"captioning time: {seconds:.1f} s, {len(references) / max(seconds, 1e-9):.1f} images/s")
    if images.skips.total:
        print(f"unreadable images (scored with empty captions): {images.skips.summary()}")
    print(f"model:    {score_captions(results, references)}")
    if args.baseline != "none":
        print(f"baseline: {baseline_scores(loaded, sets, references, args.baseline, args.batch_size)}")
    if args.attention_maps:
        for image, captions in list(zip(references, results))[: args.max_maps]:
            if captions is not None:
                write_attention_map(loaded, image, captions[0], Path(args.attention_maps))
        print(f"attention maps of the first {args.max_maps} images: {args.attention_maps}")


def baseline_scores(
    loaded: LoadedCaptioner, sets: dict[str, list[ImageCaptions]], references: list[ImageCaptions], space: str, batch: int
) -> str:
    """The nearest-neighbour captioner's scores on ``references``, in pixel or feature space."""
    if space == "pixels":
        train_vectors = pixel_vectors(sets["train"], loaded.config.data.max_pixels)
        query_vectors = pixel_vectors(references, loaded.config.data.max_pixels)
    else:
        transform = build_transform(loaded.config.data.transform, train=False)
        encoder = loaded.model.encoder
        train_vectors = feature_vectors(encoder, CaptionImages(sets["train"], transform), batch)
        query_vectors = feature_vectors(encoder, CaptionImages(references, transform), batch)
    captions = nearest_neighbour_captions(train_vectors, sets["train"], query_vectors)
    scores = caption_scores(captions, [image.captions for image in references])
    return f"{scores}  [nearest neighbour in {space} space]"


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser(
        "train",
        help="train a captioning model (resumes when the run directory has a checkpoint)",
        description="Train a captioning model on the config's image-caption set. Running the same command again "
        "resumes from the latest checkpoint.",
    )
    add_train_arguments(train_parser, DEFAULT_CONFIG)
    train_parser.set_defaults(func=train)

    cap = commands.add_parser(
        "caption",
        help="caption image files",
        description="Caption image files: one line 'path<TAB>caption' per image, or N lines "
        "'path<TAB>score<TAB>caption' with --n-best N or --num-samples N.",
    )
    add_checkpoint_arguments(cap)
    cap.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    cap.add_argument("--n-best", type=positive_int, help="print the N best captions of each image with their scores")
    cap.add_argument("--attention-maps", metavar="DIR", help="write one PNG per image: each word with its attention")
    add_decoding_arguments(cap)
    cap.set_defaults(func=caption)

    ev = commands.add_parser(
        "evaluate",
        help="BLEU-1..4, CIDEr-D and exact matches on the test or validation split",
        description="Caption a split of the training config's data and score the captions against all "
        "references (BLEU-1..4 by sacreBLEU, CIDEr-D by the COCO caption evaluation, exact matches), printing "
        "the decoding settings; --baseline also scores the nearest-neighbour captioner.",
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
    ev.add_argument("--attention-maps", metavar="DIR", help="write attention maps of the first --max-maps images")
    ev.add_argument("--max-maps", type=positive_int, default=10, help="attention maps written (default: 10)")
    ev.set_defaults(func=evaluate, n_best=None)
    add_decoding_arguments(ev)
    return parser


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--beam", type=positive_int, help="beam size (default: the config's caption.beam_size)")
    search.add_argument("--greedy", action="store_true", help="greedy search (a beam of 1)")
    search.add_argument("--sample", action="store_true", help="sample captions instead of searching")
    parser.add_argument("--temperature", type=float, help="sampling: < 1 is more conservative, > 1 more random")
    parser.add_argument("--top-k", type=int, help="sampling: only from the k most likely words (0: all)")
    parser.add_argument("--top-p", type=float, help="sampling: from the smallest set holding this probability")
    parser.add_argument("--num-samples", type=positive_int, help="sampling: captions per image")
    parser.add_argument("--seed", type=int, help="sampling: the same seed gives the same captions")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images captioned together (default: 32)")


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
