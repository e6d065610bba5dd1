"""`seq2seq translate`: machine translation (many-to-many).

  seq2seq translate train --config multi30k_de_en
  seq2seq translate prepare --config multi30k_de_en --output data/prepared/multi30k   # then --set data.prepared=...
  echo "Ein Mann fährt Fahrrad." | seq2seq translate translate --checkpoint runs/multi30k_de_en --beam 5
  seq2seq translate translate --checkpoint runs/multi30k_de_en --input test.de --output test.hyp --n-best 3
  seq2seq translate evaluate --checkpoint runs/multi30k_de_en --split test
  seq2seq translate evaluate --checkpoint runs/multi30k_de_en --int8     # int8 against fp32: BLEU and speed
  seq2seq translate translate --checkpoint runs/a runs/b runs/c --input test.de   # an ensemble of three
  seq2seq translate average --run-dir runs/multi30k_de_en --last 5 --output runs/multi30k_de_en/averaged

The tokenizers and vocabularies travel in every checkpoint, so translating needs nothing but
the checkpoint. Input and output of ``translate``: raw UTF-8 text, one sentence per line; line i
of the output translates line i of the input, and an empty input line gives an empty output
line. With ``--n-best N`` each input line gives exactly N lines, best first, each
``score<TAB>translation``: the score is the summed log-probability of the translation's tokens
(eos included) under the model, before any length penalty (``-inf`` marks a place the search
could not fill); an empty input line gives N lines ``0.0000<TAB>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from seq2seq.commands.common import (
    add_average_verb,
    add_checkpoint_arguments,
    add_prepare_arguments,
    add_search_arguments,
    add_train_verb,
    describe_checkpoints,
    loading_options,
    non_negative_int,
    positive_int,
    run_prepare,
)
from seq2seq.config import DecodeConfig
from seq2seq.data.parallel import ParallelData, load_split, split_files
from seq2seq.data.prepare_parallel import KIND, TASK, prepare_parallel
from seq2seq.data.prepared_format import Manifest
from seq2seq.data.text_files import DataError, decode_utf8, split_lines
from seq2seq.decoding import describe_decoding
from seq2seq.inference.parallel_batches import CPU_PARALLEL_BATCHES
from seq2seq.inference.translator import DEFAULT_BATCH_TOKENS, DecodeBatching, Translation, Translator
from seq2seq.metrics import Score, corpus_bleu, corpus_chrf
from seq2seq.plots import plot_attention
from seq2seq.run_configs import TranslationConfig


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    add_train_verb(verbs, "translate", "translation")

    prep = verbs.add_parser(
        "prepare",
        help="tokenise the training corpus once into memory-mapped shards (for corpora larger than memory)",
        description="Tokenise the training split of a config (data.train_prefix) with the run's tokenizers "
        "(training SentencePiece into --output when the config asks for it, on data.sentencepiece_sample_size "
        "sentences), in worker processes, into shards of token ids with a manifest of counts and checksums. "
        "Train from it with --set data.prepared=FOLDER. Running the same command again continues an "
        "interrupted preparation; a finished one is verified and kept.",
    )
    add_prepare_arguments(prep, "translate")
    prep.add_argument("--shard-size", type=positive_int, default=100_000, help="line pairs per shard (default: 100000)")
    prep.set_defaults(func=prepare)

    tr = verbs.add_parser(
        "translate",
        help="translate raw text: a file, standard input, or an interactive prompt",
        description="Translate raw text, one sentence per line, from --input, standard input, or (when standard "
        "input is a terminal) an interactive prompt. With --n-best N each input line gives N lines "
        "'score<TAB>translation', best first; the score is the summed log-probability of the translation.",
    )
    add_checkpoint_arguments(tr)
    tr.add_argument("--input", help="UTF-8 text file to translate, one sentence per line (default: standard input)")
    tr.add_argument("--output", help="write the translations here (default: standard output)")
    tr.add_argument("--n-best", type=positive_int, help="print the N best translations of each line with their scores")
    tr.add_argument(
        "--max-source-tokens",
        type=non_negative_int,
        help="refuse input lines with more source tokens than this (default: 4 x the training data.max_length; "
        "0: no limit)",
    )
    add_decoding_arguments(tr)
    tr.set_defaults(func=translate)

    ev = verbs.add_parser(
        "evaluate",
        help="sacreBLEU BLEU and chrF on the test or validation split",
        description="Translate a split of the training config's data and score it with sacreBLEU (BLEU and chrF, "
        "detokenised, against the raw references), printing each score's signature and the decoding settings. "
        "With --int8 the fp32 model is scored too, and the change in BLEU, chrF and speed is printed.",
    )
    add_checkpoint_arguments(ev)
    ev.add_argument("--split", choices=["test", "valid"], default="test", help="which split to score (default: test)")
    ev.add_argument(
        "--attention-plot", metavar="PNG", help="also plot the attention alignment of --sentence to this PNG file"
    )
    ev.add_argument("--sentence", type=positive_int, default=1, help="line number (from 1) of the sentence to plot")
    ev.set_defaults(func=evaluate, n_best=None)
    add_decoding_arguments(ev)

    add_average_verb(verbs, "translate")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser)
    parser.add_argument(
        "--batch-tokens",
        type=non_negative_int,
        help=f"padded source tokens translated together, sentences grouped by length (default: "
        f"{DEFAULT_BATCH_TOKENS:,}; 0: --batch-size sentences instead)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="sentences translated together, instead of a token budget"
    )
    parser.add_argument(
        "--parallel-batches",
        type=positive_int,
        help=f"batches translated at once, each on its share of the CPU threads (default: "
        f"{CPU_PARALLEL_BATCHES} on a CPU with {CPU_PARALLEL_BATCHES} or more threads, else 1; 1 on a GPU)",
    )
    parser.add_argument(
        "--max-length-ratio",
        type=float,
        help="at most this many target tokens per source token (default: the config's decoding.max_length_ratio)",
    )


def batching_from_args(args: argparse.Namespace) -> DecodeBatching:
    return DecodeBatching.choose(args.batch_size, args.batch_tokens, args.parallel_batches)


def decode_from_args(translator: Translator, args: argparse.Namespace) -> DecodeConfig:
    return translator.decode_config(
        beam=args.beam, greedy=args.greedy, n_best=args.n_best, max_length_ratio=args.max_length_ratio
    )


# ---- prepare ------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> None:
    run_prepare(args, TASK, KIND, TranslationConfig, prepare_parallel, describe_shards)


def describe_shards(manifest: Manifest) -> str:
    counts = manifest.counts
    return (
        f"{counts['pairs']:,} of {counts['lines']:,} pairs ({counts['source_tokens']:,} source and "
        f"{counts['target_tokens']:,} target tokens) in {len(manifest.shards)} shards"
    )


# ---- translate ----------------------------------------------------------------------------------


def translate(args: argparse.Namespace) -> None:
    translator = Translator.from_checkpoint(args.checkpoint, **loading_options(args))
    decode = decode_from_args(translator, args)
    scored = args.n_best is not None
    limit = translator.source_limit(args.max_source_tokens)
    if args.input is None and sys.stdin.isatty():
        translate_interactively(translator, decode, scored, limit)
        return
    if args.input is None:
        lines = input_lines(sys.stdin.buffer.read(), "standard input")
    else:
        path = Path(args.input)
        if not path.is_file():
            raise DataError(f"input file not found: {path}")
        lines = input_lines(path.read_bytes(), f"input file {path}", path)
    started = time.perf_counter()
    found = translator.translate_data(translator.encode(lines, limit), decode, batching_from_args(args))
    text = format_translations([Translation(line, hypotheses) for line, hypotheses in zip(lines, found)], scored)
    seconds = time.perf_counter() - started
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    print(
        f"translated {len(lines)} line(s) in {seconds:.2f} s ({len(lines) / max(seconds, 1e-9):.1f} lines/s)",
        file=sys.stderr,
    )


def input_lines(raw: bytes, where: str, path: Path | None = None) -> list[str]:
    """The lines of UTF-8 input, without line endings (``\\n`` or ``\\r\\n``) or a byte-order mark."""
    return split_lines(decode_utf8(raw, where, path))


def format_translations(results: list[Translation], scored: bool) -> str:
    """One line per input, or with ``scored`` each hypothesis as ``score<TAB>text``."""
    if not scored:
        return "".join(result.text + "\n" for result in results)
    return "".join(f"{h.score:.4f}\t{h.text}\n" for result in results for h in result.hypotheses)


def translate_interactively(translator: Translator, decode: DecodeConfig, scored: bool, limit: int) -> None:
    """A prompt: each line typed is translated at once; Ctrl-D (end of input) quits. A line that
    cannot be translated (bytes that are not UTF-8, too many tokens) gets an error, and the
    prompt goes on."""
    print("Type a sentence and press Enter to translate it; Ctrl-D quits.", file=sys.stderr)
    while True:
        sys.stdout.write("> ")
        sys.stdout.flush()
        raw = sys.stdin.buffer.readline()
        if not raw:
            print(file=sys.stderr)
            return
        try:
            line = typed_line(raw)
            found = translator.translate_data(translator.encode([line], limit), decode, DecodeBatching(1))
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            continue
        print(format_translations([Translation(line, found[0])], scored), end="", flush=True)


def typed_line(raw: bytes) -> str:
    """A line typed at the prompt, without its line ending; DataError when it is not UTF-8."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(
            f"that line is not valid UTF-8 (byte {error.start}: {raw[error.start : error.start + 4]!r}); set the "
            "terminal to UTF-8 and type it again"
        ) from None


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    translator = Translator.from_checkpoint(args.checkpoint, **loading_options(args))
    decode = decode_from_args(translator, args)
    batching = batching_from_args(args)
    data_config = translator.config.data
    source_file, target_file = split_files(data_config, args.split)
    data = load_split(data_config, args.split, translator.source, translator.target)
    scored = score_split(translator, data, decode, batching)
    print(describe_checkpoints(translator.checkpoints))
    print(f"split: {args.split}, {source_file} -> {target_file}, {len(data):,} sentences")
    batches = batching.describe(translator.device)
    print(f"decoding: {describe_decoding(decode)}, {batches}{', int8' if args.int8 else ''}")
    print(f"translation time: {scored.seconds:.1f} s, {scored.speed:.1f} sentences/s")
    print(scored.bleu)
    print(scored.chrf)
    if args.int8:
        reference = Translator.from_checkpoint(args.checkpoint, args.device)
        fp32 = score_split(reference, data, decode, batching)
        print(
            f"int8 against fp32: BLEU {scored.bleu.score:.2f} vs {fp32.bleu.score:.2f} "
            f"({scored.bleu.score - fp32.bleu.score:+.2f}), chrF {scored.chrf.score:.2f} vs {fp32.chrf.score:.2f} "
            f"({scored.chrf.score - fp32.chrf.score:+.2f}), {scored.speed:.1f} vs {fp32.speed:.1f} sentences/s "
            f"({scored.speed / fp32.speed:.2f}x)"
        )
    if args.attention_plot:
        plot_sentence_attention(translator, data.source_lines, decode, args.sentence, Path(args.attention_plot))
        print(f"attention plot of sentence {args.sentence}: {args.attention_plot}")


@dataclass(frozen=True)
class SplitScore:
    """A split translated and scored: sacreBLEU's BLEU and chrF, and the decoding time."""

    bleu: Score
    chrf: Score
    seconds: float
    sentences: int

    @property
    def speed(self) -> float:
        """Sentences per second."""
        return self.sentences / max(self.seconds, 1e-9)


def score_split(
    translator: Translator, data: ParallelData, decode: DecodeConfig, batching: DecodeBatching
) -> SplitScore:
    """Translate ``data`` (a split with references) and score the best translations."""
    started = time.perf_counter()
    results = translator.translate_data(data, decode, batching)
    seconds = time.perf_counter() - started
    hypotheses = [best.text for best, *_ in results]
    references = data.target_lines
    assert references is not None  # load_split reads both sides
    return SplitScore(corpus_bleu(hypotheses, references), corpus_chrf(hypotheses, references), seconds, len(data))


def plot_sentence_attention(
    translator: Translator, lines: list[str], decode: DecodeConfig, number: int, path: Path
) -> None:
    """Translate line ``number`` (1-based) of ``lines`` and plot its attention to ``path``."""
    if translator.model.decoder.attention is None:
        raise ValueError(
            "this model has no attention (its decoder.attention is none), so there is no alignment to plot"
        )
    if not 1 <= number <= len(lines):
        raise ValueError(f"--sentence must be a line number from 1 to {len(lines)}, got {number}")
    line = lines[number - 1]
    if not translator.encode([line]).sources[0].numel():
        raise ValueError(f"sentence {number} is empty, so there is nothing to align: pick another --sentence")
    one = DecodeBatching(1)
    best = translator.translate_data(translator.encode([line]), replace(decode, n_best=1), one, attention=True)[0][0]
    if best.attention is None:
        raise ValueError(f"sentence {number} has an empty translation, so there is nothing to align")
    target_tokens = [translator.target.vocab.id_to_token(i) for i in best.token_ids]
    title = f"sentence {number}: {best.text}"
    plot_attention(best.attention, translator.source_tokens(line), target_tokens, path, title)
