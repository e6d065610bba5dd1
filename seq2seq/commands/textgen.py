"""`seq2seq textgen`: free text generation (none-to-many) with a character- or word-level RNN
language model.

  seq2seq textgen train --config shakespeare_char
  seq2seq textgen prepare --config shakespeare_char --output data/prepared/shakespeare   # then --set data.prepared=...
  seq2seq textgen generate --checkpoint runs/shakespeare_char --prime "ROMEO:" --temperature 0.8
  seq2seq textgen evaluate --checkpoint runs/shakespeare_char
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from seq2seq.commands.common import (
    add_average_verb,
    add_checkpoint_arguments,
    add_prepare_arguments,
    add_train_verb,
    loading_options,
    positive_int,
    run_prepare,
)
from seq2seq.data.lm_corpus import encode_tokens, load_lm_corpus, unknown_tokens
from seq2seq.data.prepare_stream import KIND, TASK, open_prepared_stream, prepare_stream
from seq2seq.data.prepared_format import Manifest
from seq2seq.data.text_files import DataError, decode_utf8, read_bytes, read_text
from seq2seq.inference.text_generator import TextGenerator
from seq2seq.run_configs import TextGenConfig
from seq2seq.training.lm_task import score_stream, validation_stream


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    add_train_verb(verbs, "textgen", "language")

    prep = verbs.add_parser(
        "prepare",
        help="tokenise the text once into a memory-mapped stream of ids (for texts larger than memory)",
        description="Tokenise the text of a config (data.path) with the run's tokenizer (training SentencePiece "
        "into --output when the config asks for it), in worker processes, into one stream of token ids with a "
        "manifest of counts and checksums. Train from it with --set data.prepared=FOLDER. Running the same "
        "command again continues an interrupted preparation; a finished one is verified and kept.",
    )
    add_prepare_arguments(prep, "textgen")
    prep.add_argument(
        "--shard-size", type=positive_int, default=100_000, help="lines per worker task (default: 100000)"
    )
    prep.set_defaults(func=prepare)

    gen = verbs.add_parser(
        "generate",
        help="generate text from a trained model",
        description="Generate text that continues a prime. One sample streams to the terminal as it is made.",
    )
    add_checkpoint_arguments(gen)
    prime = gen.add_mutually_exclusive_group()
    prime.add_argument("--prime", default="\n", help="text that starts the generation (default: a newline)")
    prime.add_argument("--prime-file", help="read the prime text from this file")
    gen.add_argument("--length", type=int, help="tokens (characters or words) to generate")
    gen.add_argument("--temperature", type=float, help="< 1 is more conservative, > 1 more random; 0 is greedy")
    gen.add_argument("--top-k", type=int, help="sample only from the k most likely tokens (0: all)")
    gen.add_argument("--top-p", type=float, help="sample from the smallest set holding this probability (1: all)")
    gen.add_argument("--repetition-penalty", type=float, help="> 1 makes tokens already generated less likely")
    gen.add_argument("--num-samples", type=positive_int, help="independent samples, generated together as one batch")
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
    gen.set_defaults(func=generate)

    ev = verbs.add_parser("evaluate", help="loss, bits per character/token and perplexity on held-out text")
    add_checkpoint_arguments(ev, decoding=False)
    ev.add_argument("--text", help="score this whole text file instead of the training text's validation part")
    ev.add_argument("--window", type=positive_int, help="tokens per window (default: the training window)")
    ev.add_argument(
        "--fresh-windows",
        action="store_true",
        help="start every window from a zero state instead of carrying the state across windows",
    )
    ev.set_defaults(func=evaluate)

    add_average_verb(verbs, "textgen")


# ---- prepare ------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> None:
    run_prepare(args, TASK, KIND, TextGenConfig, prepare_stream, describe_stream)


def describe_stream(manifest: Manifest) -> str:
    counts = manifest.counts
    return f"{counts['tokens']:,} tokens ({counts['train_tokens']:,} for training) of {counts['lines']:,} lines"


# ---- generate -----------------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> None:
    generator = TextGenerator.from_checkpoint(args.checkpoint, **loading_options(args))
    prime = read_prime(Path(args.prime_file)) if args.prime_file else args.prime
    options = dict(
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=args.stop,
        greedy=args.greedy,
        unknown=args.unknown,
    )
    samples = generator.decode_config(num_samples=args.num_samples).num_samples
    if samples == 1 and not args.no_stream:
        sys.stdout.write(prime)
        for piece in generator.stream(prime, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    texts = generator.generate(prime, num_samples=args.num_samples, **options)
    for index, found in enumerate(texts):
        if len(texts) > 1:
            print(f"----- sample {index + 1} -----")
        print(prime + found.text)


def read_prime(path: Path) -> str:
    """A prime file's text: any UTF-8 text of at least one character (a newline will do)."""
    prime = decode_utf8(read_bytes(path, "prime file"), f"prime file {path}", path)
    if not prime:
        raise DataError(f"prime file {path} is empty: write the text to continue into it (a newline will do)")
    return prime


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    generator = TextGenerator.from_checkpoint(args.checkpoint, args.device)
    data = generator.config.data
    unknown = None
    if args.text:
        tokens = generator.tokenizer.tokenize(read_text(args.text, empty="there is nothing to score"))
        ids, unknown = encode_tokens(tokens, generator.vocab), unknown_tokens(tokens, generator.vocab)
    elif data.prepared is not None:
        ids = open_prepared_stream(data).validation_ids
    else:
        ids = load_lm_corpus(data, generator.tokenizer, generator.vocab).validation_ids
    stream = validation_stream(ids, replace(data, window=args.window or data.window))
    score = score_stream(generator.model, stream, generator.device, carry_state=not args.fresh_windows)
    unit = "char" if generator.tokenizer.kind == "char" else "token"
    what = args.text or f"{data.path} (last {data.validation_fraction:.0%}, validation)"
    print(f"checkpoint: {generator.checkpoint}")
    print(f"text: {what}, {score.tokens:,} {unit}s")
    if unknown is not None:
        print(f"unknown {unit}s: {unknown}")
    print(f"hidden state: {'fresh each window' if args.fresh_windows else 'carried across windows'} of {stream.window}")
    print(f"loss: {score.nats:.4f} nats/{unit}  {score.bits:.4f} bits/{unit}  perplexity {score.perplexity:.3f}")
