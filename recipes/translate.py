"""Machine translation (many-to-many): an RNN encoder, the shared attentional decoder, beam search.

  python data_scripts/multi30k.py
  python recipes/translate.py train --config recipes/configs/multi30k_de_en.yaml
  echo "Ein Mann fährt Fahrrad." | python recipes/translate.py translate --checkpoint runs/multi30k_de_en --beam 5
  python recipes/translate.py translate --checkpoint runs/multi30k_de_en --input test.de --output test.hyp --n-best 3
  python recipes/translate.py evaluate --checkpoint runs/multi30k_de_en --split test
  python recipes/translate.py average --run-dir runs/multi30k_de_en --last 5 --output runs/multi30k_de_en/averaged

Training resumes by itself when run again with the same command; under
``torchrun --nproc_per_node N`` the same command trains on N processes. The tokenizers and
vocabularies travel in every checkpoint, so translating needs nothing but the checkpoint.

Input and output of ``translate``: raw UTF-8 text, one sentence per line; line i of the
output translates line i of the input, and an empty input line gives an empty output line.
With ``--n-best N`` each input line gives exactly N lines, best first, each
``score<TAB>translation``: the score is the summed log-probability of the translation's
tokens (eos included) under the model, before any length penalty (``-inf`` marks a place the
search could not fill); an empty input line gives N lines ``0.0000<TAB>``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

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
from seq2seq.data.parallel import (
    ParallelCorpus,
    ParallelData,
    ParallelDataConfig,
    TextCodec,
    TokenBudgetBatcher,
    encode_sources,
    load_parallel_corpus,
    load_split,
    make_tokenizers,
    split_files,
)
from seq2seq.data.text_files import DataError, decode_utf8, split_lines
from seq2seq.decoding import describe_decoding, generate
from seq2seq.decoding.beam import check_beam_config, search_config
from seq2seq.metrics import corpus_bleu, corpus_chrf
from seq2seq.models import Seq2Seq, build_translation_model
from seq2seq.models.decoder import count_parameters
from seq2seq.plots import plot_attention
from seq2seq.text import Tokenizer, Vocab, tokenizer_from_dict
from seq2seq.training.averaging import average_checkpoints, latest_checkpoints
from seq2seq.training.checkpoint import CheckpointError, load_weights
from seq2seq.training.runtime import (
    Runtime,
    gather_objects,
    resolve_device,
    seed_everything,
    start_runtime,
    stop_runtime,
)
from seq2seq.training.trainer import Trainer
from seq2seq.training.translation_task import (
    SPECIAL_IDS,
    Translation,
    TranslationTask,
    ValidationConfig,
    translate_data,
)

log = logging.getLogger("translate")
DEFAULT_CONFIG = "recipes/configs/multi30k_de_en.yaml"
TASK = "translate"


@dataclass
class TranslationConfig:
    name: str = "translate"  # the run directory is runs/<name> unless --run-dir says otherwise
    model: ModelConfig = field(default_factory=ModelConfig)
    data: ParallelDataConfig = field(default_factory=ParallelDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # Defaults of the translate and evaluate commands (their flags override them).
    translate: DecodeConfig = field(default_factory=lambda: DecodeConfig(method="beam", max_length=200))


@dataclass
class LoadedTranslator:
    model: Seq2Seq
    source: TextCodec
    target: TextCodec
    config: TranslationConfig
    checkpoint: Path


# ---- train ------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> None:
    config = load_config(TranslationConfig, args.config, args.overrides)
    config.validation.check(config.train.best_metric)
    check_beam_config(translation_decode(config.translate))
    check_beam_config(config.validation.decode_config(config.translate))
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    runtime = start_runtime(config.train.device, config.train.threads)
    try:
        saved = prepare_run_dir(run_dir, args.fresh, runtime.is_main, config.train.best_metric, config.train.best_mode)
        setup_logging(run_dir, runtime.is_main)
        corpus = training_corpus(config, run_dir, runtime, saved)
        seed_everything(config.train.seed)
        model = build_translation_model(config.model, len(corpus.source.vocab), len(corpus.target.vocab), Vocab.pad_id)
        model.to(runtime.device)
        seed_everything(config.train.seed + runtime.rank)  # same initial weights, own dropout masks
        log.info(
            "%s: %d training / %d validation pairs, vocabularies %d (%s) and %d (%s), %.2fM parameters, "
            "device %s, %d process(es)",
            config.name,
            len(corpus.train),
            len(corpus.valid),
            len(corpus.source.vocab),
            config.data.source_lang,
            len(corpus.target.vocab),
            config.data.target_lang,
            count_parameters(model) / 1e6,
            runtime.device,
            runtime.world_size,
        )
        metadata = {
            "task": TASK,
            "config": to_dict(config),
            "source": corpus.source.to_dict(),
            "target": corpus.target.to_dict(),
        }
        trainer = Trainer(model, translation_task(config, corpus, runtime), config.train, run_dir, metadata, runtime)
        trainer.resume_if_possible()
        progress = trainer.fit()
        if runtime.is_main:
            print(
                f"done: step {progress.step}, best {config.train.best_metric} {progress.best_metric:.4f}; "
                f"best checkpoint {trainer.checkpoints.best()}"
            )
    finally:
        stop_runtime(runtime)


def training_corpus(config: TranslationConfig, run_dir: Path, runtime: Runtime, saved: dict | None) -> ParallelCorpus:
    """A fresh run's corpus, its tokenizers made now; or a resumed run's, read with the run's own
    tokenizers and vocabularies after checking that the model and data config did not change."""
    if saved is None:
        return load_parallel_corpus(config.data, shared_tokenizers(config.data, run_dir, runtime))
    if saved.get("task") != TASK:
        raise CheckpointError(
            f"{run_dir} holds a {saved.get('task')!r} run, not a translation run; "
            "pick another --run-dir, or pass --fresh to start over."
        )
    check_resumable(saved["config"], to_dict(config), ("model", "data"))
    return resumed_corpus(config.data, saved)


def translation_task(config: TranslationConfig, corpus: ParallelCorpus, runtime: Runtime) -> TranslationTask:
    """The training batches of this process and the validation, as the config says."""
    data = config.data
    batches = TokenBudgetBatcher(
        corpus.train,
        data.batch_tokens,
        data.batch_sentences,
        data.pool_size,
        shuffle=True,
        seed=config.train.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    return TranslationTask(
        batches,
        corpus.valid,
        corpus.target,
        runtime.device,
        config.validation,
        translation_decode(config.translate),
        label_smoothing=config.train.label_smoothing,
        validation_batch_tokens=data.batch_tokens,
    )


def shared_tokenizers(data: ParallelDataConfig, run_dir: Path, runtime: Runtime) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers: the main process makes them (training SentencePiece into
    the run directory when the config asks for it) and the other processes receive them."""
    made = make_tokenizers(data, run_dir) if runtime.is_main else None
    described = None if made is None else [tokenizer.to_dict() for tokenizer in made]
    source, target = gather_objects(described, runtime)[0]
    return tokenizer_from_dict(source), tokenizer_from_dict(target)


def resumed_corpus(data: ParallelDataConfig, saved: dict) -> ParallelCorpus:
    """The corpus read with the run's own tokenizers; refuses training data whose vocabularies
    are no longer those of the run (the files changed since it started)."""
    source, target = TextCodec.from_dict(saved["source"]), TextCodec.from_dict(saved["target"])
    corpus = load_parallel_corpus(data, (source.tokenizer, target.tokenizer))
    sides = (
        (data.source_lang, source.vocab, corpus.source.vocab),
        (data.target_lang, target.vocab, corpus.target.vocab),
    )
    for lang, kept, built in sides:
        if built != kept:
            raise CheckpointError(
                f"the run's {lang} vocabulary ({len(kept)} tokens) is not the one its training data gives now "
                f"({len(built)} tokens; {vocabulary_change(kept, built)}): the files at data.train_prefix "
                f"({data.train_prefix}) changed since the run started. Restore them, choose another --run-dir, "
                "or pass --fresh to start over."
            )
    return corpus


def vocabulary_change(old: Vocab, new: Vocab) -> str:
    """A short account of how two vocabularies differ."""
    old_tokens, new_tokens = old.to_dict()["tokens"], new.to_dict()["tokens"]
    old_set, new_set = set(old_tokens), set(new_tokens)
    added = [token for token in new_tokens if token not in old_set]
    gone = [token for token in old_tokens if token not in new_set]
    if not added and not gone:
        return "the same tokens in another order, as their frequencies changed"
    return f"{len(added)} new, e.g. {added[:5]}; {len(gone)} gone, e.g. {gone[:5]}"


# ---- loading a trained model --------------------------------------------------------------------


def load_trained(checkpoint: str, device: torch.device) -> LoadedTranslator:
    directory, metadata, config = load_run(checkpoint, TASK, TranslationConfig)
    source, target = TextCodec.from_dict(metadata["source"]), TextCodec.from_dict(metadata["target"])
    model = build_translation_model(config.model, len(source.vocab), len(target.vocab), Vocab.pad_id)
    load_weights(directory, model, device)
    model.to(device).eval()
    return LoadedTranslator(model, source, target, config, directory)


def translation_decode(
    defaults: DecodeConfig,
    beam: int | None = None,
    greedy: bool = False,
    n_best: int | None = None,
    max_length_ratio: float | None = None,
) -> DecodeConfig:
    """The translate settings with the command line's choices on top: a beam search, or greedy
    search for a beam of 1."""
    if defaults.method not in ("beam", "greedy"):
        raise ConfigError(f"translate.method must be beam or greedy, got {defaults.method!r}")
    if greedy or (beam is None and defaults.method == "greedy"):
        beam = 1
    beam_size = beam or defaults.beam_size
    if n_best is not None and n_best > beam_size:
        raise ValueError(f"--n-best {n_best} needs a beam of at least {n_best}: pass --beam {n_best} or more")
    if max_length_ratio is not None:
        defaults = replace(defaults, max_length_ratio=max_length_ratio)
    return search_config(defaults, beam_size, n_best or min(defaults.n_best, beam_size))


def decode_from_args(loaded: LoadedTranslator, args: argparse.Namespace) -> DecodeConfig:
    decode = translation_decode(loaded.config.translate, args.beam, args.greedy, args.n_best, args.max_length_ratio)
    check_beam_config(decode)
    return decode


# ---- translate ----------------------------------------------------------------------------------


def translate(args: argparse.Namespace) -> None:
    loaded = load_trained(args.checkpoint, resolve_device(args.device))
    decode = decode_from_args(loaded, args)
    scored = args.n_best is not None
    if args.input is None and sys.stdin.isatty():
        translate_interactively(loaded, decode, scored)
        return
    if args.input is None:
        lines = input_lines(sys.stdin.buffer.read(), "standard input")
    else:
        path = Path(args.input)
        if not path.is_file():
            raise DataError(f"input file not found: {path}")
        lines = input_lines(path.read_bytes(), f"input file {path}")
    started = time.perf_counter()
    text = format_translations(translate_lines(loaded, lines, decode, args.batch_size), scored)
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


def input_lines(raw: bytes, where: str) -> list[str]:
    """The lines of UTF-8 input, without line endings (``\\n`` or ``\\r\\n``) or a byte-order mark."""
    return split_lines(decode_utf8(raw, where))


def translate_lines(
    loaded: LoadedTranslator, lines: list[str], decode: DecodeConfig, batch_size: int
) -> list[list[Translation]]:
    """The translations of raw lines, in their order; blank lines translate to the empty string."""
    sources = encode_sources([line if line.strip() else "" for line in lines], loaded.source)
    return translate_data(loaded.model, sources, loaded.target, decode, batch_size)


def format_translations(results: list[list[Translation]], scored: bool) -> str:
    """One line per input, or with ``scored`` each hypothesis as ``score<TAB>text``."""
    if not scored:
        return "".join(best.text + "\n" for best, *_ in results)
    return "".join(f"{h.score:.4f}\t{h.text}\n" for hypotheses in results for h in hypotheses)


def translate_interactively(loaded: LoadedTranslator, decode: DecodeConfig, scored: bool) -> None:
    """A prompt: each line typed is translated at once; Ctrl-D (end of input) quits."""
    print("Type a sentence and press Enter to translate it; Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return
        print(format_translations(translate_lines(loaded, [line], decode, 1), scored), end="", flush=True)


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> None:
    loaded = load_trained(args.checkpoint, resolve_device(args.device))
    decode = decode_from_args(loaded, args)
    data_config = loaded.config.data
    source_file, target_file = split_files(data_config, args.split)
    data = load_split(data_config, args.split, loaded.source, loaded.target)
    started = time.perf_counter()
    results = translate_data(loaded.model, data, loaded.target, decode, args.batch_size)
    seconds = time.perf_counter() - started
    hypotheses = [best.text for best, *_ in results]
    print(f"checkpoint: {loaded.checkpoint}")
    print(f"split: {args.split}, {source_file} -> {target_file}, {len(data):,} sentences")
    print(f"decoding: {describe_decoding(decode)}, batches of {args.batch_size} sentences")
    print(f"translation time: {seconds:.1f} s, {len(data) / max(seconds, 1e-9):.1f} sentences/s")
    print(corpus_bleu(hypotheses, data.target_lines))
    print(corpus_chrf(hypotheses, data.target_lines))
    if args.attention_plot:
        plot_sentence_attention(loaded, data, decode, args.sentence, Path(args.attention_plot))
        print(f"attention plot of sentence {args.sentence}: {args.attention_plot}")


def plot_sentence_attention(
    loaded: LoadedTranslator, data: ParallelData, decode: DecodeConfig, number: int, path: Path
) -> None:
    """Translate sentence ``number`` (1-based) of ``data`` and plot its attention to ``path``."""
    if loaded.model.decoder.attention is None:
        raise ValueError("this model has no attention (model.attention is none), so there is no alignment to plot")
    if not 1 <= number <= len(data):
        raise ValueError(f"--sentence must be a line number from 1 to {len(data)}, got {number}")
    source_ids = data.sources[number - 1]  # (S,)
    if len(source_ids) == 0:
        raise ValueError(f"sentence {number} is empty, so there is nothing to align: pick another --sentence")
    device = next(loaded.model.parameters()).device
    hypotheses = generate(loaded.model, source_ids.unsqueeze(0).to(device), replace(decode, n_best=1), SPECIAL_IDS)
    length = int(hypotheses.lengths[0, 0])
    weights = hypotheses.attention[0, 0, :length]  # (T, S)
    target_tokens = [loaded.target.vocab.id_to_token(i) for i in hypotheses.tokens[0, 0, :length].tolist()]
    source_tokens = loaded.source.tokenizer.tokenize(data.source_lines[number - 1])
    title = f"sentence {number}: {loaded.target.decode(hypotheses.tokens[0, 0])}"
    plot_attention(weights, source_tokens, target_tokens, path, title)


# ---- average ------------------------------------------------------------------------------------


def average(args: argparse.Namespace) -> None:
    if args.checkpoints:
        directories = [Path(directory) for directory in args.checkpoints]
    else:
        directories = latest_checkpoints(Path(args.run_dir), args.last)
    average_checkpoints(directories, Path(args.output))
    print(f"averaged {len(directories)} checkpoints:")
    for directory in directories:
        print(f"  {directory}")
    print(f"into {args.output}; use it with --checkpoint {args.output}")


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser(
        "train",
        help="train a translation model (resumes when the run directory has a checkpoint)",
        description="Train a translation model. A fresh run trains the SentencePiece model(s) the config asks "
        "for into the run directory; running the same command again resumes from the latest checkpoint.",
    )
    add_train_arguments(train_parser, DEFAULT_CONFIG)
    train_parser.set_defaults(func=train)

    tr = commands.add_parser(
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
    add_decoding_arguments(tr)
    tr.set_defaults(func=translate)

    ev = commands.add_parser(
        "evaluate",
        help="sacreBLEU BLEU and chrF on the test or validation split",
        description="Translate a split of the training config's data and score it with sacreBLEU (BLEU and chrF, "
        "detokenised, against the raw references), printing each score's signature and the decoding settings.",
    )
    add_checkpoint_arguments(ev)
    ev.add_argument("--split", choices=["test", "valid"], default="test", help="which split to score (default: test)")
    ev.add_argument(
        "--attention-plot", metavar="PNG", help="also plot the attention alignment of --sentence to this PNG file"
    )
    ev.add_argument("--sentence", type=positive_int, default=1, help="line number (from 1) of the sentence to plot")
    ev.set_defaults(func=evaluate, n_best=None)
    add_decoding_arguments(ev)

    av = commands.add_parser(
        "average",
        help="average the weights of checkpoints of one model into a new checkpoint",
        description="Average the weights of several checkpoints of the same model (e.g. the last few of a run) "
        "into a new checkpoint directory, which translate and evaluate load like any other.",
    )
    sources = av.add_mutually_exclusive_group(required=True)
    sources.add_argument("--checkpoints", nargs="+", metavar="DIR", help="step checkpoint directories to average")
    sources.add_argument("--run-dir", help="average the latest --last checkpoints of this run directory")
    av.add_argument("--last", type=positive_int, default=5, help="with --run-dir: how many checkpoints (default: 5)")
    av.add_argument("--output", required=True, help="the new checkpoint directory")
    av.set_defaults(func=average)
    return parser


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--beam", type=positive_int, help="beam size (default: the config's translate.beam_size)")
    search.add_argument("--greedy", action="store_true", help="greedy search (a beam of 1)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="sentences translated together (default: 64)"
    )
    parser.add_argument(
        "--max-length-ratio",
        type=float,
        help="at most this many target tokens per source token (default: the config's translate.max_length_ratio)",
    )


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
