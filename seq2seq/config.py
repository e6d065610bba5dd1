"""Typed configuration: dataclasses filled from YAML, with dotted command-line overrides.

Each task has one top-level dataclass (``seq2seq.run_configs``) whose fields are the shared
sections below plus its own. ``load_config`` reads a YAML file into it, applies overrides such
as ``train.lr=0.001`` and refuses, with a message that names the key:

- unknown keys and values of the wrong type;
- a value outside a choice field's choices (fields typed ``Literal[...]``);
- a number outside its field's range (the field's ``bounded(...)`` metadata), and any
  infinite or NaN float;
- YAML that does not parse (the message names the file and the line).

A config file may start from another with ``base: NAME`` (a shipped config, see
``shipped_configs``) or ``base: other.yaml`` (a path relative to the file's folder): the base
is read first (its own ``base`` too) and the file's sections are merged over it, key by key.
``resolve_config`` turns a ``--config`` argument into a file: an existing path, else the name
of a shipped config, with or without ``.yaml``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used as it is."""


# ---- choices and ranges ----------------------------------------------------------------------

Cell = Literal["lstm", "gru", "rnn"]
AttentionKind = Literal["none", "bahdanau", "dot", "general"]
AttentionQuery = Literal["auto", "previous", "current"]
Bridge = Literal["linear", "copy", "none"]
Optimizer = Literal["adam", "adamw"]
Schedule = Literal["constant", "cosine", "linear", "plateau"]
BestMode = Literal["min", "max"]
Precision = Literal["fp32", "bf16", "auto"]
DecodeMethod = Literal["greedy", "sample", "beam"]
LengthPenalty = Literal["none", "gnmt", "average"]

#: The keys of a field's metadata that bound its value (or, for a list, each item).
RANGE_KEYS = ("at_least", "above", "at_most", "below")


def bounded(
    default: Any,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    length: int | None = None,
) -> Any:
    """A dataclass field whose value the loader keeps within a range.

    at_least / at_most: inclusive bounds; above / below: exclusive bounds. For a list they
    bound each item, and ``length`` fixes how many items it has. Example:
    ``window: int = bounded(128, at_least=1)``.
    """
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below, "length": length}
    metadata = {key: value for key, value in bounds.items() if value is not None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def describe_range(metadata: typing.Mapping[str, Any]) -> str:
    """``">= 1"``, ``"in [0, 1)"``... for a field's bounds; empty when it has none."""
    low = (
        ("[", metadata["at_least"])
        if "at_least" in metadata
        else ("(", metadata["above"])
        if "above" in metadata
        else None
    )
    high = (
        ("]", metadata["at_most"])
        if "at_most" in metadata
        else (")", metadata["below"])
        if "below" in metadata
        else None
    )
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def _in_range(value: float, metadata: typing.Mapping[str, Any]) -> bool:
    return (
        ("at_least" not in metadata or value >= metadata["at_least"])
        and ("above" not in metadata or value > metadata["above"])
        and ("at_most" not in metadata or value <= metadata["at_most"])
        and ("below" not in metadata or value < metadata["below"])
    )


def _check_range(value: Any, metadata: typing.Mapping[str, Any], where: str) -> None:
    """Refuses a converted value outside the bounds of its field's metadata."""
    if isinstance(value, list):
        if "length" in metadata and len(value) != metadata["length"]:
            raise ConfigError(f"{where} must have {metadata['length']} entries, got {len(value)}: {value!r}")
        for i, item in enumerate(value):
            _check_range(item, metadata, f"{where}[{i}]")
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(value, metadata):
        raise ConfigError(f"{where} must be {describe_range(metadata)}, got {value!r}")


# ---- the shared sections ---------------------------------------------------------------------


@dataclass
class DecoderConfig:
    """The shared recurrent decoder (section ``decoder``; the same for every task)."""

    cell: Cell = "lstm"  # lstm | gru | rnn
    embedding_size: int = bounded(256, at_least=1)  # target token vectors
    hidden_size: int = bounded(512, at_least=1)  # units per RNN layer
    num_layers: int = bounded(1, at_least=1)  # stacked RNN layers
    dropout: float = bounded(0.0, at_least=0, below=1)  # between RNN layers and on the RNN output
    embedding_dropout: float = bounded(0.0, at_least=0, below=1)  # on the input embeddings
    tie_embeddings: bool = False  # share input embedding and output projection weights
    # Attention over the encoder memory (translation, captioning); text generation has none.
    attention: AttentionKind = "none"  # none | bahdanau (additive) | dot | general (Luong multiplicative)
    # Which decoder state queries the memory: previous (the top hidden state before the step,
    # as in Bahdanau et al.) | current (the top RNN output of the step, as in Luong et al.) |
    # auto (previous for bahdanau, current for dot and general).
    attention_query: AttentionQuery = "auto"
    input_feeding: bool = False  # feed the previous attentional vector to the RNN with the next token
    # Scale the context by a learned gate sigmoid(w . query + b) in [0, 1] at each step, so the
    # decoder can lean on the memory more for some words than others (Show, Attend and Tell).
    attention_gate: bool = False
    # How an encoder summary starts the decoder: linear (tanh of a linear map, the same for
    # every layer) | copy (the summary as it is; its size must equal hidden_size) | none (zeros).
    bridge: Bridge = "linear"


@dataclass
class TextEncoderConfig:
    """The encoder of translation's source text (section ``encoder``).

    ``kind`` names a registered encoder (``seq2seq.models.register_encoder``); the package
    registers ``rnn``, which reads the fields below. An encoder registered elsewhere reads what
    it needs from them and from ``options``, its own settings.
    """

    kind: str = "rnn"  # a registered encoder: rnn, or one a module of your own registers
    cell: Cell = "gru"  # gru | lstm | rnn
    embedding_size: int = bounded(256, at_least=1)  # source token vectors
    hidden_size: int = bounded(256, at_least=1)  # units per direction
    num_layers: int = bounded(1, at_least=1)  # stacked encoder layers
    bidirectional: bool = True  # read the source both ways; the memory has 2 * hidden_size
    dropout: float = bounded(0.0, at_least=0, below=1)  # on the source embeddings and between layers
    options: dict[str, Any] = field(default_factory=dict)  # a registered encoder's own settings


@dataclass
class TrainConfig:
    """The shared training loop."""

    optimizer: Optimizer = "adamw"  # adam | adamw
    lr: float = bounded(2e-3, above=0)
    weight_decay: float = bounded(0.0, at_least=0)
    betas: list[float] = bounded([0.9, 0.999], at_least=0, below=1, length=2)  # Adam's moment decay rates
    schedule: Schedule = "cosine"  # constant | cosine | linear (decay after warm-up) | plateau
    warmup_steps: int = bounded(0, at_least=0)
    min_lr_ratio: float = bounded(0.1, at_least=0, at_most=1)  # final lr as a fraction of lr (cosine and linear)
    clip_grad_norm: float = bounded(1.0, at_least=0)  # 0 disables clipping
    accumulate_steps: int = bounded(1, at_least=1)  # batches whose gradients are summed before one update
    max_steps: int = bounded(10_000, at_least=0)  # 0: set up, then stop before the first step
    max_minutes: float = bounded(0.0, at_least=0)  # wall-clock budget; 0 means none. Schedules follow it too.
    validate_every: int = bounded(500, at_least=1)  # steps between validations and checkpoints
    log_every: int = bounded(50, at_least=1)  # steps between metric log lines
    early_stopping_patience: int = bounded(0, at_least=0)  # validations without improvement; 0 disables
    best_metric: str = "val_loss"  # the validation metric that picks the best checkpoints
    best_mode: BestMode = "min"  # min | max: whether a lower or a higher best_metric is better
    plateau_factor: float = bounded(0.5, above=0, at_most=1)  # plateau schedule: multiply the lr by this ...
    plateau_patience: int = bounded(2, at_least=1)  # ... after this many validations without improvement
    label_smoothing: float = bounded(
        0.0, at_least=0, below=1
    )  # spread this much target probability over the vocabulary
    keep_latest: int = bounded(1, at_least=1)  # most recent checkpoints kept
    keep_best: int = bounded(1, at_least=0)  # best checkpoints (by best_metric) kept
    seed: int = bounded(1234, at_least=0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Precision = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 where the CPU or GPU has bf16 units)
    threads: int = bounded(0, at_least=0)  # CPU threads for torch; 0 keeps torch's default
    tensorboard: bool = False  # also write TensorBoard event files into the run directory (pip extra: tensorboard)
    collective_timeout_s: int = bounded(
        900, at_least=1
    )  # torchrun: seconds a process waits for the others at a collective before stopping with an error


@dataclass
class DecodeConfig:
    """The shared decoding: greedy search, sampling and beam search (section ``decoding``)."""

    method: DecodeMethod = "sample"  # greedy | sample | beam
    max_length: int = bounded(500, at_least=1)  # new tokens to generate
    temperature: float = bounded(1.0, at_least=0)  # 0 means greedy
    top_k: int = bounded(0, at_least=0)  # keep the k most likely tokens; 0 disables
    top_p: float = bounded(1.0, above=0, at_most=1)  # keep the smallest set with this much probability; 1 disables
    repetition_penalty: float = bounded(1.0, above=0)  # > 1 discourages tokens already generated
    num_samples: int = bounded(1, at_least=1)  # samples generated together as one batch
    seed: int | None = bounded(None, at_least=0)  # makes sampling reproducible
    stop: list[str] = field(default_factory=list)  # stop once the text contains one of these
    # Beam search (method "beam"; beam_size 1 finds what greedy search finds).
    beam_size: int = bounded(5, at_least=1)  # hypotheses kept alive per input
    n_best: int = bounded(1, at_least=1)  # finished hypotheses returned per input, best first; at most beam_size
    length_penalty: LengthPenalty = "gnmt"  # none (summed log-probability) | gnmt | average (per token)
    alpha: float = bounded(0.6, at_least=0)  # strength of gnmt: score / ((5 + length) / 6) ** alpha; 0 is none
    # Every method.
    min_length: int = bounded(0, at_least=0)  # fewest tokens before eos
    min_length_ratio: float = bounded(0.0, at_least=0)  # fewest tokens before eos, times the source length; 0 disables
    max_length_ratio: float = bounded(
        0.0, at_least=0
    )  # most new tokens, times the source length, within max_length; 0 disables
    ban_unk: bool = True  # never generate unk
    no_repeat_ngram: int = bounded(
        0, at_least=0
    )  # never generate an n-gram of this size twice (the prefix counts); 0 disables


def check_best_metric(
    best_metric: str, task: str, metrics: tuple[str, ...], decoded: tuple[str, ...], decoding_switch: str | None
) -> None:
    """Refuse a train.best_metric that the task's validation does not report.

    metrics: every metric the validation can report; decoded: those that need decoded output,
    reported only while ``decoding_switch`` (the key that turns decoding on) is set, or None
    when it is set.
    """
    if best_metric not in metrics:
        raise ConfigError(f"train.best_metric must be one of {', '.join(metrics)} for {task}, got {best_metric!r}")
    if best_metric in decoded and decoding_switch is not None:
        raise ConfigError(
            f"train.best_metric={best_metric} needs decoded output at each validation: "
            f"set {decoding_switch}=true, or pick train.best_metric=val_loss"
        )


# ---- finding and reading config files --------------------------------------------------------


def shipped_config_dir() -> Path:
    """The folder of the configs shipped with the package (``seq2seq/configs``)."""
    return Path(str(importlib.resources.files("seq2seq").joinpath("configs")))


def shipped_configs() -> list[str]:
    """The names of the shipped configs (``multi30k_de_en``, ...), sorted."""
    folder = shipped_config_dir()
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_config(name_or_path: str | Path) -> Path:
    """The config file that ``--config`` names.

    An existing file wins; otherwise the name of a shipped config, with or without ``.yaml``
    (``multi30k_de_en``); otherwise a ConfigError listing the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = _shipped_config(str(name_or_path))
    if shipped is not None:
        return shipped
    raise ConfigError(
        f"config file not found: {name_or_path} (neither a file nor a shipped config; "
        f"shipped configs: {', '.join(shipped_configs()) or 'none'})"
    )


def _shipped_config(name: str) -> Path | None:
    """The shipped config called ``name`` (with or without .yaml), or None."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    candidate = shipped_config_dir() / f"{stem}.yaml"
    return candidate if candidate.is_file() else None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a plain mapping, its ``base`` (recursively) merged under it."""
    return _read_with_bases(resolve_config(path), ())


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(real) :], real))
        raise ConfigError(f"config files name each other as base in a cycle: {cycle}")
    raw = _read_yaml_file(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(
            f"{path}: base must name a config (a shipped name or a path relative to {path.parent}), got {base!r}"
        )
    base_path = _resolve_base(base, path)
    return merge_configs(_read_with_bases(base_path, (*chain, real)), raw)


def _resolve_base(base: str, path: Path) -> Path:
    """``base`` of the file ``path``: a file relative to its folder (or absolute), else a shipped name."""
    candidate = path.parent / base  # an absolute base stays as it is
    if candidate.is_file():
        return candidate
    shipped = _shipped_config(base)
    if shipped is not None:
        return shipped
    raise ConfigError(
        f"{path}: base {base!r} is neither a file (looked for {candidate}) nor a shipped config "
        f"(shipped configs: {', '.join(shipped_configs()) or 'none'})"
    )


def _read_yaml_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line, column, what = _yaml_problem(error)
        place = f", line {line}, column {column}" if line is not None else ""
        raise ConfigError(f"{path}{place}: not valid YAML: {what}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def _yaml_problem(error: yaml.YAMLError) -> tuple[int | None, int | None, str]:
    """The line and column (counted from 1, None if unknown) and what is wrong."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    what = f"{context}, {problem}" if context else problem
    if "python/" in what or "could not determine a constructor" in what:
        what += " (tags such as !!python/... are not allowed in configs: write plain values)"
    if mark is None:
        return None, None, what
    return mark.line + 1, mark.column + 1, what


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: sections key by key, any other value replaced.

    An empty section in ``override`` (``decoder:`` with nothing under it) changes nothing.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, dict) and (isinstance(value, dict) or value is None):
            merged[key] = merge_configs(old, value or {})
        else:
            merged[key] = value
    return merged


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> T:
    """Build ``cls`` from a YAML file and ``key.sub=value`` overrides (values parsed as YAML).

    path: a file, or the name of a shipped config (see ``resolve_config``); None starts from
    the defaults.
    """
    raw = read_config_file(path) if path is not None else {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(cls, raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, value = item.split("=", 1)
    keys = dotted.strip().split(".")
    if keys[0] == "base":
        raise ConfigError(f"override {item!r}: base can only be given in a config file")
    node = raw
    for key in keys[:-1]:
        if node.get(key) is None:  # absent, or an empty section in the YAML file
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {key!r} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as error:
        _, column, what = _yaml_problem(error)
        place = f" (at column {column})" if column is not None else ""
        raise ConfigError(f"override {item!r}: the value {value!r} is not valid YAML{place}: {what}") from None


# ---- from plain data to dataclasses ----------------------------------------------------------


def from_dict(cls: type[T], raw: dict[str, Any], where: str = "") -> T:
    """Recursively build dataclass ``cls`` from a mapping, checking keys, types, choices and ranges."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls))}  # cls is a dataclass; T cannot say so
    unknown = sorted(str(key) for key in set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; valid keys here: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, f"{where}{name}")
        _check_range(values[name], fields[name].metadata, f"{where}{name}")
    return cls(**values)


def check_config(config: Any, section: str = "") -> None:
    """Runs the loader's checks on a config built in Python: ConfigError naming ``section.key``."""
    from_dict(type(config), to_dict(config), f"{section}." if section else "")


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):  # a hint is a class, never an instance
        return from_dict(typing.cast(type, hint), value or {}, where + ".")
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not any(value == choice and type(value) is type(choice) for choice in choices):
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_convert(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint)
        return {
            _convert(key_hint, key, f"{where} key {key!r}"): _convert(value_hint, item, f"{where}.{key}")
            for key, item in value.items()
        }
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config, as stored in checkpoints."""
    return dataclasses.asdict(config)


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable lines for each key whose value differs between two config dicts."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines
