"""Tests for seq2seq.config: YAML into dataclasses, dotted overrides, clear errors, diffs."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from seq2seq.config import (
    ConfigError,
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    config_differences,
    from_dict,
    load_config,
    to_dict,
)
from seq2seq.models import build_captioning_model

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "recipes" / "configs"


@dataclass
class ExampleConfig:
    name: str = "example"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: DecodeConfig = field(default_factory=DecodeConfig)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/<name>.py`` by path (recipes is not a package)."""
    module_name = f"recipe_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "recipes" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# --- loading ----------------------------------------------------------------------------------


def test_yaml_fills_nested_dataclasses_and_keeps_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: run\nmodel:\n  cell: gru\n  hidden_size: 64\ntrain:\n  betas: [0.8, 0.9]\n")
    config = load_config(ExampleConfig, path)
    assert isinstance(config.model, ModelConfig) and isinstance(config.train, TrainConfig)
    assert config.name == "run"
    assert (config.model.cell, config.model.hidden_size) == ("gru", 64)
    assert config.train.betas == [0.8, 0.9]
    assert config.model.num_layers == ModelConfig().num_layers
    assert config.generate == DecodeConfig()


def test_no_file_and_no_overrides_gives_defaults() -> None:
    assert load_config(ExampleConfig) == ExampleConfig()


def test_empty_file_and_empty_sections_give_defaults(tmp_path: Path) -> None:
    assert load_config(ExampleConfig, write_yaml(tmp_path, "")) == ExampleConfig()
    assert load_config(ExampleConfig, write_yaml(tmp_path, "model:\ntrain:\n")) == ExampleConfig()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found.*nope.yaml"):
        load_config(ExampleConfig, missing)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(ExampleConfig, write_yaml(tmp_path, "- a\n- b\n"))


def test_a_section_given_as_a_scalar_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model must be a mapping"):
        load_config(ExampleConfig, write_yaml(tmp_path, "model: 3\n"))


# --- overrides --------------------------------------------------------------------------------


def test_dotted_overrides_take_precedence_over_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train:\n  lr: 0.5\n  max_steps: 10\n")
    config = load_config(ExampleConfig, path, ["train.lr=0.001", "model.cell=rnn", "name=other"])
    assert config.train.lr == pytest.approx(0.001)
    assert config.train.max_steps == 10
    assert config.model.cell == "rnn"
    assert config.name == "other"


def test_overrides_parse_lists_null_and_booleans() -> None:
    config = load_config(
        ExampleConfig,
        overrides=[
            "train.betas=[0.5, 0.6]",
            "generate.seed=null",
            "generate.stop=['x', 'y']",
            "model.tie_embeddings=true",
        ],
    )
    assert config.train.betas == [0.5, 0.6]
    assert config.generate.seed is None
    assert config.generate.stop == ["x", "y"]
    assert config.model.tie_embeddings is True
    assert load_config(ExampleConfig, overrides=["generate.seed=7"]).generate.seed == 7


def test_override_keeps_text_after_the_first_equals_sign() -> None:
    assert load_config(ExampleConfig, overrides=["name=a=b"]).name == "a=b"


def test_override_into_an_empty_yaml_section(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "model:\n")
    assert load_config(ExampleConfig, path, ["model.cell=gru"]).model.cell == "gru"


def test_override_without_equals_sign_is_explained() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(ExampleConfig, overrides=["train.lr"])


def test_override_below_a_plain_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'name' is not a section"):
        load_config(ExampleConfig, write_yaml(tmp_path, "name: x\n"), ["name.first=y"])


# --- errors -----------------------------------------------------------------------------------


def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ExampleConfig, overrides=["train.lrate=0.1"])
    message = str(error.value)
    assert "train.lrate" in message
    for valid in ("lr", "max_steps", "warmup_steps"):
        assert valid in message


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown key.*optim.*valid keys here: generate, model, name, train"):
        load_config(ExampleConfig, overrides=["optim.lr=0.1"])


def test_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.hiden_size"):
        load_config(ExampleConfig, write_yaml(tmp_path, "model:\n  hiden_size: 3\n"))


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("model.hidden_size=abc", "model.hidden_size", "int"),
        ("model.hidden_size=1.5", "model.hidden_size", "int"),
        ("model.hidden_size=true", "model.hidden_size", "int"),
        ("train.lr=fast", "train.lr", "float"),
        ("train.lr=true", "train.lr", "float"),
        ("model.tie_embeddings=1", "model.tie_embeddings", "bool"),
        ("model.cell=3", "model.cell", "str"),
        ("train.betas=0.9", "train.betas", "list"),
        ("train.betas=[0.9, x]", r"train.betas\[1\]", "float"),
        ("generate.seed=abc", "generate.seed", "int"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(override: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key} must be (a )?{expected}"):
        load_config(ExampleConfig, overrides=[override])


def test_int_is_accepted_where_a_float_is_expected() -> None:
    config = load_config(ExampleConfig, overrides=["train.lr=1", "train.betas=[1, 0]"])
    assert isinstance(config.train.lr, float) and config.train.lr == 1.0
    assert all(isinstance(beta, float) for beta in config.train.betas)


# --- round trip and differences ---------------------------------------------------------------


def test_to_dict_round_trips_through_from_dict() -> None:
    config = load_config(ExampleConfig, overrides=["model.cell=gru", "train.betas=[0.1, 0.2]", "generate.seed=3"])
    assert from_dict(ExampleConfig, to_dict(config)) == config


def test_config_differences_lists_changed_nested_keys_only() -> None:
    old = to_dict(ExampleConfig())
    new = to_dict(load_config(ExampleConfig, overrides=["train.lr=0.5", "model.cell=gru"]))
    lines = config_differences(old, new)
    assert len(lines) == 2
    assert any(line.startswith("train.lr:") and "0.5" in line and repr(TrainConfig().lr) in line for line in lines)
    assert any(line.startswith("model.cell:") and "'lstm'" in line and "'gru'" in line for line in lines)
    assert config_differences(old, old) == []


def test_config_differences_reports_keys_present_on_one_side() -> None:
    lines = config_differences({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}, "b": 3})
    assert sorted(lines) == ["a.y: None -> 2", "b: None -> 3"]


# --- shipped configs --------------------------------------------------------------------------


def textgen_config_paths() -> list[Path]:
    """Shipped configs meant for the text generation recipe (their header names it)."""
    return [path for path in sorted(CONFIG_DIR.glob("*.yaml")) if "recipes/textgen.py" in path.read_text("utf-8")]


def test_some_shipped_config_is_a_textgen_config() -> None:
    assert textgen_config_paths(), f"no config in {CONFIG_DIR} names recipes/textgen.py"


@pytest.mark.parametrize("path", textgen_config_paths(), ids=lambda path: path.name)
def test_shipped_textgen_configs_load(path: Path) -> None:
    textgen = load_recipe("textgen")
    config = load_config(textgen.TextGenConfig, path)
    assert dataclasses.is_dataclass(config)
    assert config.model.cell in ("lstm", "gru", "rnn")
    assert config.data.window > 0 and config.data.batch_size > 0


def caption_config_paths() -> list[Path]:
    """Shipped configs meant for the captioning recipe (their header names it)."""
    return [path for path in sorted(CONFIG_DIR.glob("*.yaml")) if "recipes/caption.py" in path.read_text("utf-8")]


@pytest.mark.parametrize("path", caption_config_paths(), ids=lambda path: path.name)
def test_shipped_caption_configs_load_and_build(path: Path) -> None:
    caption = load_recipe("caption")
    config = load_config(caption.CaptionConfig, path)
    config.validation.check(config.train.best_metric)
    encoder = dataclasses.replace(config.image_encoder, pretrained=False)  # no download in tests
    model = build_captioning_model(config.model, encoder, vocab_size=50, pad_id=0)
    assert model.encoder.frozen == (config.image_encoder.finetune_blocks == 0)


def test_every_caption_config_is_shipped() -> None:
    names = {path.name for path in caption_config_paths()}
    assert {"emoji_scratch.yaml", "flickr8k_resnet.yaml", "coco_resnet.yaml"} <= names
