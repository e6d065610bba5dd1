"""Free text generation (none-to-many): a character- or word-level RNN language model.

  python recipes/textgen.py train --config recipes/configs/shakespeare_char.yaml
  python recipes/textgen.py generate --checkpoint runs/shakespeare_char --prime "ROMEO:" --temperature 0.8
  python recipes/textgen.py evaluate --checkpoint runs/shakespeare_char

Training resumes by itself when run again with the same command; under
``torchrun --nproc_per_node N`` the same command trains on N processes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from seq2seq.cli import (
    add_checkpoint_arguments,
    add_train_arguments,
    check_resumable,
    load_run,
    prepare_run_dir,
    run_main,
    setup_logging,
)
from seq2seq.config import DecodeConfig, ModelConfig, TrainConfig, load_config, to_dict
from seq2seq.data.lm_corpus import encode_tokens, load_lm_corpus, make_tokenizer
from seq2seq.data.lm_stream import LMDataConfig, LMStream
from seq2seq.data.text_files import read_text
from seq2seq.decoding import SpecialIds, generate
from seq2seq.models import Seq2Seq, build_language_model
from seq2seq.models.decoder import count_parameters
from seq2seq.models.encoders import empty_source
from seq2seq.text import Tokenizer, UnknownTokensError, Vocab, tokenizer_from_dict
from seq2seq.training.checkpoint import load_weights
from seq2seq.training.lm_task import LanguageModelTask, score_stream
from seq2seq.training.runtime import resolve_device, seed_everything, start_runtime, stop_runtime
from seq2seq.training.trainer import Trainer

log = logging.getLogger("textgen")
DEFAULT_CONFIG = "recipes/configs/shakespeare_char.yaml"
TASK = "textgen"


@dataclass
class TextGenConfig:
    name: str = "textgen"  # the run directory is runs/<name> unless --run-dir says otherwise
    model: ModelConfig = field(default_factory=ModelConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: DecodeConfig = field(default_factory=DecodeConfig)  # defaults of the generate command


@dataclass
class LoadedModel:
    model: Seq2Seq
    tokenizer: Tokenizer
    vocab: Vocab
    config: TextGenConfig
    checkpoint: Path


# ---- train ------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> None:
    config = load_config(TextGenConfig, args.config, args.overrides)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    runtime = start_runtime(config.train.device, config.train.threads)
    try:
        saved = prepare_run_dir(
            run_dir, args.fresh, runtime.is_main, config.train.best_metric, config.train.best_mode
        )
        setup_logging(run_dir, runtime.is_main)
        if saved is None:
            tokenizer, vocab = make_tokenizer(config.data, run_dir), None
        else:
            check_resumable(saved["config"], to_dict(config), ("model", "data"))
            tokenizer, vocab = tokenizer_from_dict(saved["tokenizer"]), Vocab.from_dict(saved["vocab"])
        corpus = load_lm_corpus(config.data, tokenizer, vocab)
        seed_everything(config.train.seed)
        model = build_language_model(config.model, len(corpus.vocab), corpus.vocab.pad_id).to(runtime.device)
        seed_everything(config.train.seed + runtime.rank)  # same initial weights, own dropout masks
        log.info(
            "%s: %d train / %d validation tokens, vocabulary %d, %.2fM parameters, device %s, %d process(es)",
            config.name,
            len(corpus.train_ids),
            len(corpus.validation_ids),
            len(corpus.vocab),
            count_parameters(model) / 1e6,
            runtime.device,
            runtime.world_size,
        )
        train_stream = LMStream(
            corpus.train_ids,
            config.data.batch_size,
            config.data.window,
            seed=config.train.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
        task = LanguageModelTask(train_stream, validation_stream(corpus.validation_ids, config.data), runtime.device)
        metadata = {
            "task": TASK,
            "config": to_dict(config),
            "vocab": corpus.vocab.to_dict(),
            "tokenizer": corpus.tokenizer.to_dict(),
        }
        trainer = Trainer(model, task, config.train, run_dir, metadata, runtime)
        trainer.resume_if_possible()
        progress = trainer.fit()
        if runtime.is_main:
            best = trainer.checkpoints.best()
            print(
                f"done: step {progress.step}, best {config.train.best_metric} {progress.best_metric:.4f}; "
                f"best checkpoint {best}"
            )
    finally:
        stop_runtime(runtime)


def validation_stream(ids: torch.Tensor, data: LMDataConfig) -> LMStream:
    """Validation reads every token once, in as many rows as the text allows (at most batch_size)."""
    rows = max(1, min(data.batch_size, (len(ids) - 1) // data.window))
    return LMStream(ids, rows, data.window, shift_per_epoch=False)


# ---- loading a trained model --------------------------------------------------------------------


def load_trained(checkpoint: str, device: torch.device) -> LoadedModel:
    directory, metadata, config = load_run(checkpoint, TASK, TextGenConfig)
    vocab = Vocab.from_dict(metadata["vocab"])
    model = build_language_model(config.model, len(vocab), vocab.pad_id)
    load_weights(directory, model, device)
    model.to(device).eval()
    return LoadedModel(model, tokenizer_from_dict(metadata["tokenizer"]), vocab, config, directory)


# ---- generate -----------------------------------------------------------------------------------


def generate_text(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    loaded = load_trained(args.checkpoint, device)
    decode = decode_config(loaded.config.generate, args)
    prime = read_text(args.prime_file, "prime file") if args.prime_file else args.prime
    prime_tokens = loaded.tokenizer.tokenize(prime)
    if not prime_tokens:
        raise ValueError("the prime is empty: give --prime TEXT (for example a newline, --prime $'\\n')")
    try:
        prefix_ids = loaded.vocab.encode(prime_tokens, unknown=args.unknown)
    except UnknownTokensError as error:
        listed = ", ".join(repr(token) for token in error.tokens)
        raise ValueError(
            f"the prime contains {len(error.tokens)} token(s) this model never saw: {listed}. "
            "Remove or replace them, or pass --unknown unk to map them to <unk>."
        ) from None
    prefix = torch.tensor([prefix_ids], device=device)  # (1, P)
    stream = decode.num_samples == 1 and not args.no_stream
    texts = sample_texts(loaded, decode, prefix, prime, stream)
    for index, text in enumerate(texts):
        if not stream:
            if len(texts) > 1:
                print(f"----- sample {index + 1} -----")
            print(prime + text)


def decode_config(defaults: DecodeConfig, args: argparse.Namespace) -> DecodeConfig:
    """The checkpoint's generate defaults with the command line's choices on top."""
    chosen = {
        "max_length": args.length,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
        "num_samples": args.num_samples,
        "seed": args.seed,
        "stop": args.stop or None,
        "method": "greedy" if args.greedy else None,
    }
    return replace(defaults, **{key: value for key, value in chosen.items() if value is not None})


def sample_texts(loaded: LoadedModel, decode: DecodeConfig, prefix: torch.Tensor, prime: str, stream: bool) -> list[str]:
    """Generate ``decode.num_samples`` continuations of ``prefix``; print the first as it grows if ``stream``."""
    vocab, tokenizer = loaded.vocab, loaded.tokenizer
    special = SpecialIds(vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id)
    generated: list[list[int]] = [[] for _ in range(decode.num_samples)]
    printed = 0

    def on_step(tokens: torch.Tensor) -> None:
        nonlocal printed
        for row, token in enumerate(tokens.tolist()):
            if token not in (vocab.pad_id, vocab.eos_id):
                generated[row].append(token)
        if stream:
            text = tokenizer.detokenize(vocab.decode(generated[0]))
            sys.stdout.write(text[printed:])
            sys.stdout.flush()
            printed = len(text)

    def should_stop(_: torch.Tensor) -> torch.Tensor:
        texts = [tokenizer.detokenize(vocab.decode(ids)) for ids in generated]
        return torch.tensor([any(stop in text for stop in decode.stop) for text in texts], device=prefix.device)

    if stream:
        sys.stdout.write(prime)
    generate(loaded.model, empty_source(1, prefix.device), decode, special, prefix, on_step, should_stop if decode.stop else None)
    if stream:
        sys.stdout.write("\n")
    return [cut_at_stop(tokenizer.detokenize(vocab.decode(ids)), decode.stop) for ids in generated]


def cut_at_stop(text: str, stops: list[str]) -> str:
    """The text up to and including the first stop string."""
    ends = [text.index(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    loaded = load_trained(args.checkpoint, device)
    data = loaded.config.data
    if args.text:
        ids = encode_tokens(loaded.tokenizer.tokenize(read_text(args.text)), loaded.vocab)
    else:
        ids = load_lm_corpus(data, loaded.tokenizer, loaded.vocab).validation_ids
    stream = validation_stream(ids, replace(data, window=args.window or data.window))
    score = score_stream(loaded.model, stream, device, carry_state=not args.fresh_windows)
    unit = "char" if loaded.tokenizer.kind == "char" else "token"
    what = args.text or f"{data.path} (last {data.validation_fraction:.0%}, validation)"
    print(f"checkpoint: {loaded.checkpoint}")
    print(f"text: {what}, {score.tokens:,} {unit}s")
    print(f"hidden state: {'fresh each window' if args.fresh_windows else 'carried across windows'} of {stream.window}")
    print(f"loss: {score.nats:.4f} nats/{unit}  {score.bits:.4f} bits/{unit}  perplexity {score.perplexity:.3f}")


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser(
        "train", help="train a language model (resumes when the run directory has a checkpoint)"
    )
    add_train_arguments(train_parser, DEFAULT_CONFIG)
    train_parser.set_defaults(func=train)

    gen = commands.add_parser("generate", help="generate text from a trained model")
    add_checkpoint_arguments(gen)
    prime = gen.add_mutually_exclusive_group()
    prime.add_argument("--prime", default="\n", help="text that starts the generation (default: a newline)")
    prime.add_argument("--prime-file", help="read the prime text from this file")
    gen.add_argument("--length", type=int, help="tokens (characters or words) to generate")
    gen.add_argument("--temperature", type=float, help="< 1 is more conservative, > 1 more random; 0 is greedy")
    gen.add_argument("--top-k", type=int, help="sample only from the k most likely tokens (0: all)")
    gen.add_argument("--top-p", type=float, help="sample from the smallest set holding this probability (1: all)")
    gen.add_argument("--repetition-penalty", type=float, help="> 1 makes tokens already generated less likely")
    gen.add_argument("--num-samples", type=int, help="independent samples, generated together as one batch")
    gen.add_argument("--seed", type=int, help="random seed: the same seed gives the same samples")
    gen.add_argument("--stop", action="append", help="stop a sample once it contains this text (repeatable)")
    gen.add_argument("--greedy", action="store_true", help="always take the most likely token")
    gen.add_argument(
        "--unknown",
        choices=["error", "unk"],
        default="error",
        help="prime characters/words the model never saw: stop with an error naming them (default) "
        "or map them to <unk>",
    )
    gen.add_argument("--no-stream", action="store_true", help="print the text at the end instead of as it is made")
    gen.set_defaults(func=generate_text)

    ev = commands.add_parser("evaluate", help="loss, bits per character/token and perplexity on held-out text")
    add_checkpoint_arguments(ev)
    ev.add_argument("--text", help="score this whole text file instead of the training text's validation part")
    ev.add_argument("--window", type=int, help="tokens per window (default: the training window)")
    ev.add_argument(
        "--fresh-windows",
        action="store_true",
        help="start every window from a zero state instead of carrying the state across windows",
    )
    ev.set_defaults(func=evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
