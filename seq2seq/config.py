"""Typed configuration: dataclasses filled from YAML, with dotted command-line overrides.

A recipe defines one top-level dataclass (for example ``TextGenConfig``) whose fields are
the shared sections below plus its own data section. ``load_config`` reads a YAML file into
it, applies overrides such as ``train.lr=0.001`` and refuses unknown keys or wrong types
with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used as it is."""


@dataclass
class ModelConfig:
    """The shared recurrent decoder (and, for tasks with input, its encoder)."""

    cell: str = "lstm"  # lstm | gru | rnn
    embedding_size: int = 256
    hidden_size: int = 512
    num_layers: int = 1
    dropout: float = 0.0  # between RNN layers and on the RNN output
    embedding_dropout: float = 0.0  # on the input embeddings
    tie_embeddings: bool = False  # share input embedding and output projection weights
    # Attention over the encoder memory (translation, captioning); text generation has none.
    attention: str = "none"  # none | bahdanau (additive) | dot | general (Luong multiplicative)
    # Which decoder state queries the memory: previous (the top hidden state before the step,
    # as in Bahdanau et al.) | current (the top RNN output of the step, as in Luong et al.) |
    # auto (previous for bahdanau, current for dot and general).
    attention_query: str = "auto"
    input_feeding: bool = False  # feed the previous attentional vector to the RNN with the next token
    # Scale the context by a learned gate sigmoid(w . query + b) in [0, 1] at each step, so the
    # decoder can lean on the memory more for some words than others (Show, Attend and Tell).
    attention_gate: bool = False
    # How an encoder summary starts the decoder: linear (tanh of a linear map, the same for
    # every layer) | copy (the summary as it is; its size must equal hidden_size) | none (zeros).
    bridge: str = "linear"
    # The RNN encoder of translation (unused by the other tasks).
    source_embedding_size: int = 256  # source token vectors
    encoder_cell: str = "gru"  # gru | lstm | rnn
    encoder_hidden_size: int = 256  # units per direction
    encoder_layers: int = 1  # stacked encoder layers
    bidirectional: bool = True  # read the source both ways; the memory has 2 * encoder_hidden_size
    encoder_dropout: float = 0.0  # on the source embeddings and between encoder layers


@dataclass
class TrainConfig:
    """The shared training loop."""

    optimizer: str = "adamw"  # adam | adamw
    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # constant | cosine | linear (decay after warm-up) | plateau
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr (cosine and linear)
    clip_grad_norm: float = 1.0  # 0 disables clipping
    accumulate_steps: int = 1  # batches whose gradients are summed before one update
    max_steps: int = 10_000
    max_minutes: float = 0.0  # wall-clock budget; 0 means none. Schedules follow it too.
    validate_every: int = 500  # steps between validations and checkpoints
    log_every: int = 50  # steps between metric log lines
    early_stopping_patience: int = 0  # validations without improvement; 0 disables
    best_metric: str = "val_loss"  # the validation metric that picks the best checkpoints
    best_mode: str = "min"  # min | max: whether a lower or a higher best_metric is better
    plateau_factor: float = 0.5  # plateau schedule: multiply the lr by this ...
    plateau_patience: int = 2  # ... after this many validations without improvement
    label_smoothing: float = 0.0  # spread this much target probability over the vocabulary
    keep_latest: int = 1  # most recent checkpoints kept
    keep_best: int = 1  # best checkpoints (by validation loss) kept
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA only)
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default


@dataclass
class DecodeConfig:
    """The shared decoding: greedy search, sampling and beam search."""

    method: str = "sample"  # greedy | sample | beam
    max_length: int = 500  # new tokens to generate
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # keep the k most likely tokens; 0 disables
    top_p: float = 1.0  # keep the smallest set with this much probability; 1 disables
    repetition_penalty: float = 1.0  # > 1 discourages tokens already generated
    num_samples: int = 1  # samples generated together as one batch
    seed: int | None = None  # makes sampling reproducible
    stop: list[str] = field(default_factory=list)  # stop once the text contains one of these
    # Beam search (method "beam"; beam_size 1 finds what greedy search finds).
    beam_size: int = 5  # hypotheses kept alive per input
    n_best: int = 1  # finished hypotheses returned per input, best first; at most beam_size
    length_penalty: str = "gnmt"  # none (summed log-probability) | gnmt | average (per token)
    alpha: float = 0.6  # strength of gnmt: score / ((5 + length) / 6) ** alpha; 0 is none
    # Every method.
    min_length: int = 0  # fewest tokens before eos
    min_length_ratio: float = 0.0  # fewest tokens before eos, times the source length; 0 disables
    max_length_ratio: float = 0.0  # most new tokens, times the source length, within max_length; 0 disables
    ban_unk: bool = True  # never generate unk
    no_repeat_ngram: int = 0  # never generate an n-gram of this size twice (the prefix counts); 0 disables


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


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Build ``cls`` from a YAML file and ``key.sub=value`` overrides (values parsed as YAML)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded or {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(cls, raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, value = item.split("=", 1)
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        if node.get(key) is None:  # absent, or an empty section in the YAML file
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(value)


def from_dict(cls: type[T], raw: dict[str, Any], where: str = "") -> T:
    """Recursively build dataclass ``cls`` from a mapping, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"valid keys here: {', '.join(sorted(fields))}"
        )
    values = {name: _convert(hints[name], value, f"{where}{name}") for name, value in raw.items()}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, where + ".")
    origin = typing.get_origin(hint)
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
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
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
