"""Tests for seq2seq.config: YAML into dataclasses, dotted overrides, choices and ranges, base
configs, shipped configs, clear errors, diffs; and seq2seq.run_configs: the task configs and
the upgrade of configs stored in the older layout."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from seq2seq.config import (
    ConfigError,
    DecodeConfig,
    DecoderConfig,
    TextEncoderConfig,
    TrainConfig,
    check_config,
    config_differences,
    from_dict,
    load_config,
    read_config_file,
    resolve_config,
    shipped_config_dir,
    shipped_configs,
    to_dict,
)
from seq2seq.models import build_captioning_model, build_language_model, build_translation_model
from seq2seq.run_configs import (
    MODEL_SECTIONS,
    TASK_CONFIGS,
    CaptionConfig,
    TextGenConfig,
    TranslationConfig,
    upgrade_config,
)
from seq2seq.training.caption_task import check_caption_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "seq2seq" / "configs"


@dataclass
class ExampleConfig:
    name: str = "example"
    model: DecoderConfig = field(default_factory=DecoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: DecodeConfig = field(default_factory=DecodeConfig)


def write_yaml(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- loading ----------------------------------------------------------------------------------


def test_yaml_fills_nested_dataclasses_and_keeps_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: run\nmodel:\n  cell: gru\n  hidden_size: 64\ntrain:\n  betas: [0.8, 0.9]\n")
    config = load_config(ExampleConfig, path)
    assert isinstance(config.model, DecoderConfig) and isinstance(config.train, TrainConfig)
    assert config.name == "run"
    assert (config.model.cell, config.model.hidden_size) == ("gru", 64)
    assert config.train.betas == [0.8, 0.9]
    assert config.model.num_layers == DecoderConfig().num_layers
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
        ("name=3", "name", "str"),
        ("train.betas=0.9", "train.betas", "list"),
        ("train.betas=[0.9, x]", r"train.betas\[1\]", "float"),
        ("generate.seed=abc", "generate.seed", "int"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(override: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key} must be (a )?{expected}"):
        load_config(ExampleConfig, overrides=[override])


def test_int_is_accepted_where_a_float_is_expected() -> None:
    config = load_config(ExampleConfig, overrides=["train.lr=1", "train.betas=[0, 0]"])
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


# --- choices and ranges -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.cell=transformer", "model.cell must be one of lstm, gru, rnn; got 'transformer'"),
        ("model.attention=luong", "model.attention must be one of none, bahdanau, dot, general; got 'luong'"),
        ("model.attention_query=next", "model.attention_query must be one of auto, previous, current"),
        ("model.bridge=mlp", "model.bridge must be one of linear, copy, none"),
        ("train.optimizer=sgd", "train.optimizer must be one of adam, adamw; got 'sgd'"),
        ("train.schedule=step", "train.schedule must be one of constant, cosine, linear, plateau"),
        ("train.best_mode=lowest", "train.best_mode must be one of min, max"),
        ("train.precision=fp16", "train.precision must be one of fp32, bf16"),
        ("generate.method=nucleus", "generate.method must be one of greedy, sample, beam"),
        ("generate.length_penalty=wu", "generate.length_penalty must be one of none, gnmt, average"),
        ("model.cell=3", "model.cell must be one of lstm, gru, rnn; got 3"),
    ],
)
def test_a_choice_outside_its_list_names_the_key_and_the_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        load_config(ExampleConfig, overrides=[override])


def test_every_choice_of_a_literal_field_is_accepted() -> None:
    for cell in ("lstm", "gru", "rnn"):
        assert load_config(ExampleConfig, overrides=[f"model.cell={cell}"]).model.cell == cell


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_size=0", r"model.hidden_size must be >= 1, got 0"),
        ("model.num_layers=-1", r"model.num_layers must be >= 1, got -1"),
        ("model.dropout=1.0", r"model.dropout must be in \[0, 1\), got 1.0"),
        ("train.lr=0", r"train.lr must be > 0, got 0.0"),
        ("train.lr=-0.001", r"train.lr must be > 0, got -0.001"),
        ("train.lr=.inf", r"train.lr must be a finite number, got inf"),
        ("train.lr=.nan", r"train.lr must be a finite number, got nan"),
        ("train.betas=[0.9]", r"train.betas must have 2 entries, got 1"),
        ("train.betas=[0.9, 0.9, 0.9]", r"train.betas must have 2 entries, got 3"),
        ("train.betas=[0.9, 1.0]", r"train.betas\[1\] must be in \[0, 1\), got 1.0"),
        ("train.betas=[-0.1, 0.9]", r"train.betas\[0\] must be in \[0, 1\), got -0.1"),
        ("train.max_steps=-1", r"train.max_steps must be >= 0, got -1"),
        ("train.validate_every=0", r"train.validate_every must be >= 1, got 0"),
        ("train.log_every=-5", r"train.log_every must be >= 1, got -5"),
        ("train.accumulate_steps=0", r"train.accumulate_steps must be >= 1, got 0"),
        ("train.early_stopping_patience=-1", r"train.early_stopping_patience must be >= 0, got -1"),
        ("train.plateau_patience=0", r"train.plateau_patience must be >= 1, got 0"),
        ("train.plateau_factor=0", r"train.plateau_factor must be in \(0, 1\], got 0.0"),
        ("train.min_lr_ratio=1.5", r"train.min_lr_ratio must be in \[0, 1\], got 1.5"),
        ("train.label_smoothing=1", r"train.label_smoothing must be in \[0, 1\), got 1.0"),
        ("train.keep_latest=0", r"train.keep_latest must be >= 1, got 0"),
        ("train.max_minutes=-1", r"train.max_minutes must be >= 0, got -1.0"),
        ("generate.top_p=0", r"generate.top_p must be in \(0, 1\], got 0.0"),
        ("generate.beam_size=0", r"generate.beam_size must be >= 1, got 0"),
        ("generate.seed=-3", r"generate.seed must be >= 0, got -3"),
        ("generate.max_length=0", r"generate.max_length must be >= 1, got 0"),
    ],
)
def test_a_number_outside_its_range_names_the_key_and_the_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        load_config(ExampleConfig, overrides=[override])


def test_bounds_are_inclusive_where_they_say_so() -> None:
    config = load_config(
        ExampleConfig,
        overrides=["train.betas=[0, 0.5]", "train.min_lr_ratio=1", "train.plateau_factor=1", "model.dropout=0"],
    )
    assert config.train.betas == [0.0, 0.5] and config.train.min_lr_ratio == 1.0
    assert load_config(ExampleConfig, overrides=["generate.seed=null"]).generate.seed is None


@pytest.mark.parametrize(
    ("cls", "override", "message"),
    [
        (TextGenConfig, "data.window=0", r"data.window must be >= 1, got 0"),
        (TextGenConfig, "data.batch_size=0", r"data.batch_size must be >= 1, got 0"),
        (TextGenConfig, "data.validation_fraction=1", r"data.validation_fraction must be in \(0, 1\)"),
        (TextGenConfig, "data.tokenizer=bytes", r"data.tokenizer must be one of char, word, sentencepiece"),
        (TranslationConfig, "data.tokenizer=bytes", r"data.tokenizer must be one of sentencepiece, word, char"),
        (
            TranslationConfig,
            "data.sentencepiece_model_type=char",
            r"data.sentencepiece_model_type must be one of unigram, bpe",
        ),
        (TranslationConfig, "data.batch_tokens=0", r"data.batch_tokens must be >= 1, got 0"),
        (TranslationConfig, "encoder.cell=transformer", r"encoder.cell must be one of lstm, gru, rnn"),
        (TranslationConfig, "encoder.hidden_size=0", r"encoder.hidden_size must be >= 1, got 0"),
        (TranslationConfig, "encoder.options=[1]", r"encoder.options must be a mapping"),
        (TranslationConfig, "validation.beam_size=0", r"validation.beam_size must be >= 1, got 0"),
        (TranslationConfig, "validation.max_sentences=-1", r"validation.max_sentences must be >= 0, got -1"),
        (TranslationConfig, "decoding.method=nucleus", r"decoding.method must be one of greedy, sample, beam"),
        (CaptionConfig, "data.format=coco", r"data.format must be one of karpathy, table"),
        (CaptionConfig, "data.tokenizer=char", r"data.tokenizer must be one of word, sentencepiece"),
        (CaptionConfig, "data.transform.normalize=zscore", r"data.transform.normalize must be one of imagenet, none"),
        (CaptionConfig, "data.transform.image_size=0", r"data.transform.image_size must be >= 1, got 0"),
        (CaptionConfig, "data.num_workers=-1", r"data.num_workers must be >= 0, got -1"),
        (CaptionConfig, "image_encoder.backbone=vgg16", r"image_encoder.backbone must be one of small, resnet18"),
        (CaptionConfig, "image_encoder.grid_size=0", r"image_encoder.grid_size must be >= 1, got 0"),
        (CaptionConfig, "attention_regularization=-1", r"attention_regularization must be >= 0, got -1.0"),
        (CaptionConfig, "validation.batch_images=0", r"validation.batch_images must be >= 1, got 0"),
    ],
)
def test_task_sections_check_their_choices_and_ranges(cls: type, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        load_config(cls, overrides=[override])


def test_check_config_runs_the_loader_checks_on_a_config_built_in_python() -> None:
    check_config(TrainConfig())
    with pytest.raises(ConfigError, match=r"^train.lr must be > 0"):
        check_config(TrainConfig(lr=0.0), "train")
    with pytest.raises(ConfigError, match=r"^decoder.cell must be one of"):
        check_config(DecoderConfig(cell="transformer"), "decoder")  # type: ignore[arg-type]


def test_encoder_options_keep_any_plain_values() -> None:
    config = load_config(TranslationConfig, overrides=["encoder.kind=mine", "encoder.options={layers: 3, act: relu}"])
    assert config.encoder == TextEncoderConfig(kind="mine", options={"layers": 3, "act": "relu"})


# --- YAML that does not parse ------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: x\ntrain:\n  lr: 0.1\n   max_steps: [1, 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(ExampleConfig, path)
    message = str(error.value)
    assert str(path) in message and "line 4" in message and "not valid YAML" in message


def test_a_python_tag_is_refused_with_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "name: x\ntrain:\n  lr: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError) as error:
        load_config(ExampleConfig, path)
    message = str(error.value)
    assert str(path) in message and "line 3" in message and "!!python" in message


def test_a_set_value_that_is_not_yaml_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"override 'train.betas=\[0.9, 0.8': the value .* is not valid YAML"):
        load_config(ExampleConfig, overrides=["train.betas=[0.9, 0.8"])
    with pytest.raises(ConfigError, match=r"override 'name=!!python/name:os.system'.*!!python"):
        load_config(ExampleConfig, overrides=["name=!!python/name:os.system"])


def test_a_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml"):
        load_config(ExampleConfig, path)


# --- base configs ------------------------------------------------------------------------------


def test_a_base_is_merged_under_the_file_section_by_section(tmp_path: Path) -> None:
    write_yaml(
        tmp_path,
        "name: base\nmodel:\n  cell: gru\n  hidden_size: 64\ntrain:\n  lr: 0.5\n  betas: [0.1, 0.2]\n",
        "base.yaml",
    )
    path = write_yaml(
        tmp_path, "base: base.yaml\nname: child\nmodel:\n  hidden_size: 32\ntrain:\n  betas: [0.3, 0.4]\n"
    )
    config = load_config(ExampleConfig, path)
    assert config.name == "child"
    assert (config.model.cell, config.model.hidden_size) == ("gru", 32)  # cell from the base, size from the file
    assert config.train.lr == 0.5
    assert config.train.betas == [0.3, 0.4]  # lists replace, they do not merge


def test_overrides_apply_after_the_bases(tmp_path: Path) -> None:
    write_yaml(tmp_path, "model:\n  cell: gru\n", "base.yaml")
    path = write_yaml(tmp_path, "base: base.yaml\nmodel:\n  hidden_size: 32\n")
    assert load_config(ExampleConfig, path, ["model.cell=rnn"]).model.cell == "rnn"


def test_an_empty_section_in_the_file_keeps_the_base_section(tmp_path: Path) -> None:
    write_yaml(tmp_path, "model:\n  cell: gru\n", "base.yaml")
    path = write_yaml(tmp_path, "base: base.yaml\nmodel:\n")
    assert load_config(ExampleConfig, path).model.cell == "gru"


def test_bases_nest_and_paths_are_relative_to_each_file(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_yaml(tmp_path, "name: root\nmodel:\n  cell: rnn\n  num_layers: 3\ntrain:\n  lr: 0.25\n", "root.yaml")
    write_yaml(tmp_path / "a", "base: ../root.yaml\nname: middle\nmodel:\n  num_layers: 2\n", "middle.yaml")
    path = write_yaml(tmp_path / "a" / "b", "base: ../middle.yaml\nmodel:\n  hidden_size: 16\n", "leaf.yaml")
    config = load_config(ExampleConfig, path)
    assert config.name == "middle"
    assert (config.model.cell, config.model.num_layers, config.model.hidden_size) == ("rnn", 2, 16)
    assert config.train.lr == 0.25


def test_a_base_cycle_is_refused_naming_the_files(tmp_path: Path) -> None:
    write_yaml(tmp_path, "base: two.yaml\n", "one.yaml")
    write_yaml(tmp_path, "base: one.yaml\n", "two.yaml")
    with pytest.raises(ConfigError, match=r"cycle: .*one.yaml -> .*two.yaml -> .*one.yaml"):
        load_config(ExampleConfig, tmp_path / "one.yaml")
    write_yaml(tmp_path, "base: self.yaml\n", "self.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(ExampleConfig, tmp_path / "self.yaml")


def test_a_missing_base_names_the_file_and_the_base(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "base: nowhere.yaml\nname: x\n")
    with pytest.raises(ConfigError) as error:
        load_config(ExampleConfig, path)
    message = str(error.value)
    assert str(path) in message and "'nowhere.yaml'" in message and "multi30k_de_en" in message


def test_a_base_that_is_not_a_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base must name a config"):
        load_config(ExampleConfig, write_yaml(tmp_path, "base: [a, b]\n"))


def test_base_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match="base can only be given in a config file"):
        load_config(ExampleConfig, overrides=["base=multi30k_de_en"])


def test_a_shipped_config_can_be_the_base_of_a_file_anywhere(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "base: multi30k_de_en\nname: mine\ntrain:\n  max_minutes: 5\n")
    config = load_config(TranslationConfig, path)
    shipped = load_config(TranslationConfig, "multi30k_de_en")
    assert config.name == "mine" and config.train.max_minutes == 5
    assert dataclasses.replace(config, name=shipped.name, train=shipped.train) == shipped


# --- finding configs: paths and shipped names ----------------------------------------------------


def test_shipped_configs_are_listed_by_name() -> None:
    names = shipped_configs()
    assert {"multi30k_de_en", "multi30k_en_de", "shakespeare_char", "emoji_scratch"} <= set(names)
    assert shipped_config_dir() == CONFIG_DIR
    assert names == sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def test_resolve_config_takes_a_name_with_or_without_yaml() -> None:
    assert resolve_config("multi30k_de_en") == CONFIG_DIR / "multi30k_de_en.yaml"
    assert resolve_config("multi30k_de_en.yaml").resolve() == (CONFIG_DIR / "multi30k_de_en.yaml").resolve()


def test_an_existing_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path, "name: local\n", "multi30k_de_en.yaml")
    assert resolve_config("multi30k_de_en.yaml") == Path("multi30k_de_en.yaml")
    assert load_config(ExampleConfig, "multi30k_de_en.yaml").name == "local"
    assert load_config(TranslationConfig, "multi30k_de_en").name == "multi30k_de_en"  # no such file here: shipped


def test_an_unknown_name_lists_the_shipped_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_config("multi30k_fr_en")
    message = str(error.value)
    assert "not found: multi30k_fr_en" in message
    for name in shipped_configs():
        assert name in message
    with pytest.raises(ConfigError, match="not found.*nope.yaml"):
        load_config(ExampleConfig, tmp_path / "nope.yaml")


def test_old_config_paths_still_reach_the_shipped_configs() -> None:
    old = REPO_ROOT / "recipes" / "configs"
    assert old.is_symlink() and os.readlink(old) == "../seq2seq/configs"
    assert load_config(TranslationConfig, old / "multi30k_en_de.yaml") == load_config(
        TranslationConfig, "multi30k_en_de"
    )


def test_a_shipped_name_loads_from_any_directory(tmp_path: Path) -> None:
    program = (
        "from seq2seq.config import load_config; from seq2seq.run_configs import TextGenConfig; "
        "print(load_config(TextGenConfig, 'shakespeare_char_gpu').decoder.hidden_size)"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1024"


def test_the_shipped_configs_are_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "configs/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["seq2seq"]


# --- the task configs and configs stored in the older layout ---------------------------------------

OLD_TRANSLATION_CONFIG = {
    "name": "old",
    "model": {
        "cell": "gru",
        "embedding_size": 32,
        "hidden_size": 64,
        "num_layers": 1,
        "dropout": 0.1,
        "embedding_dropout": 0.0,
        "tie_embeddings": True,
        "attention": "general",
        "attention_query": "auto",
        "input_feeding": False,
        "attention_gate": False,
        "bridge": "linear",
        "source_embedding_size": 24,
        "encoder_cell": "lstm",
        "encoder_hidden_size": 16,
        "encoder_layers": 2,
        "bidirectional": False,
        "encoder_dropout": 0.3,
    },
    "train": {"lr": 0.01},
    "translate": {"method": "greedy", "max_length": 50},
}


def test_upgrade_maps_an_old_translation_config_onto_the_new_sections() -> None:
    raw = {**OLD_TRANSLATION_CONFIG, "model": dict(OLD_TRANSLATION_CONFIG["model"])}
    upgraded = upgrade_config("translate", raw)
    assert raw == OLD_TRANSLATION_CONFIG  # the argument is left as it was
    assert set(upgraded) == {"name", "encoder", "decoder", "train", "decoding"}
    assert upgraded["encoder"] == {
        "kind": "rnn",
        "embedding_size": 24,
        "cell": "lstm",
        "hidden_size": 16,
        "num_layers": 2,
        "bidirectional": False,
        "dropout": 0.3,
    }
    assert upgraded["decoder"] == {
        key: value for key, value in OLD_TRANSLATION_CONFIG["model"].items() if key in upgraded["decoder"]
    }
    assert set(upgraded["decoder"]) == {f.name for f in dataclasses.fields(DecoderConfig)}
    config = from_dict(TranslationConfig, upgraded)
    assert config.decoding.method == "greedy" and config.decoding.max_length == 50
    assert config.encoder.cell == "lstm" and config.decoder.hidden_size == 64


@pytest.mark.parametrize(("task", "old_section"), [("textgen", "generate"), ("caption", "caption")])
def test_upgrade_of_the_other_tasks_drops_the_unused_encoder_keys(task: str, old_section: str) -> None:
    old = {"model": dict(OLD_TRANSLATION_CONFIG["model"], attention="none"), old_section: {"max_length": 7}}
    upgraded = upgrade_config(task, old)
    assert "encoder" not in upgraded and "source_embedding_size" not in upgraded["decoder"]
    config = from_dict(TASK_CONFIGS[task], upgraded)
    assert config.decoding.max_length == 7


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_upgrade_leaves_a_new_config_as_it_is(task: str) -> None:
    current = to_dict(TASK_CONFIGS[task]())
    assert upgrade_config(task, current) == current


def test_upgrade_refuses_an_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown task 'summarize'"):
        upgrade_config("summarize", {})


def test_model_sections_are_sections_of_their_task() -> None:
    for task, sections in MODEL_SECTIONS.items():
        names = {f.name for f in dataclasses.fields(TASK_CONFIGS[task])}
        assert set(sections) <= names and "decoder" in sections and "data" in sections


def test_every_task_names_its_decoding_section_decoding() -> None:
    for cls in TASK_CONFIGS.values():
        names = {f.name for f in dataclasses.fields(cls)}
        assert {"name", "decoder", "data", "train", "decoding"} <= names
        assert not names & {"model", "translate", "generate", "caption"}


# --- shipped configs ---------------------------------------------------------------------------


def shipped_task(path: Path) -> str:
    """The task a shipped config is for, from its sections (with its bases merged)."""
    raw = read_config_file(path)
    return "caption" if "image_encoder" in raw else "translate" if "encoder" in raw else "textgen"


SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_config_loads_and_builds_its_model(path: Path) -> None:
    task = shipped_task(path)
    config = load_config(TASK_CONFIGS[task], path.stem)
    assert config.name == path.stem  # each run writes to runs/<its own name>
    assert (
        f"recipes/{ {'textgen': 'textgen', 'translate': 'translate', 'caption': 'caption'}[task] }.py"
        in path.read_text("utf-8")
    )
    if task == "textgen":
        model = build_language_model(config.decoder, vocab_size=50, pad_id=0)
    elif task == "translate":
        config.validation.check(config.train.best_metric)
        model = build_translation_model(config.encoder, config.decoder, 50, 60, pad_id=0)
    else:
        check_caption_config(config)  # validation, decoding and the self-critical phase
        encoder = dataclasses.replace(config.image_encoder, pretrained=False)  # no download in tests
        model = build_captioning_model(encoder, config.decoder, vocab_size=50, pad_id=0)
        assert model.encoder.frozen == (config.image_encoder.finetune_blocks == 0)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_shipped_configs_cover_every_task() -> None:
    tasks = {path.stem: shipped_task(path) for path in SHIPPED}
    assert {"emoji_scratch", "emoji_scst", "emoji_scst_gpu", "flickr8k_resnet", "flickr8k_scst", "coco_scst"} <= {
        name for name, task in tasks.items() if task == "caption"
    }
    assert {"shakespeare_char", "alice_word"} <= {name for name, task in tasks.items() if task == "textgen"}
    assert {"multi30k_de_en", "multi30k_en_de", "iwslt14_de_en"} <= {
        name for name, task in tasks.items() if task == "translate"
    }


def test_multi30k_en_de_states_only_what_differs_from_its_base() -> None:
    de_en, en_de = load_config(TranslationConfig, "multi30k_de_en"), load_config(TranslationConfig, "multi30k_en_de")
    assert (en_de.data.source_lang, en_de.data.target_lang) == ("en", "de")
    assert config_differences(to_dict(de_en), to_dict(en_de)) == [
        "data.source_lang: 'de' -> 'en'",
        "data.target_lang: 'en' -> 'de'",
        "name: 'multi30k_de_en' -> 'multi30k_en_de'",
    ]
    assert "base: multi30k_de_en" in (CONFIG_DIR / "multi30k_en_de.yaml").read_text("utf-8")


def test_derived_shipped_configs_differ_from_their_base_where_they_say() -> None:
    gpu, iwslt = load_config(TranslationConfig, "multi30k_de_en_gpu"), load_config(TranslationConfig, "iwslt14_de_en")
    assert (gpu.encoder.cell, gpu.decoder.num_layers, gpu.train.precision) == (
        "lstm",
        2,
        "auto",
    )  # bf16 on a GPU that has it
    assert (iwslt.encoder.cell, iwslt.decoder.num_layers, iwslt.data.train_prefix) == ("lstm", 2, "data/iwslt14/train")
    comparison = load_config(TranslationConfig, "multi30k_de_en_comparison")
    assert (comparison.decoder.attention, comparison.decoder.input_feeding) == ("bahdanau", True)
    assert math.isclose(comparison.train.lr, 0.001)
