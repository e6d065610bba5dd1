"""Decoding in other number formats: int8 dynamic quantization and bf16, through the model,
the API and the command line; and the decoder's step weights as separate linear layers."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq import Captioner, TextGenerator, Translator, devices, train
from seq2seq.config import ConfigError
from seq2seq.decoding import generate
from seq2seq.devices import resolve_precision
from seq2seq.inference.numerics import decoding_dtype, with_numerics
from seq2seq.models.decoder import RNNDecoder
from seq2seq.quantization import QuantizationUnavailable, choose_engine, quantize_int8
from tests.conftest import TINY_TEXTGEN, make_text, run_recipe
from tests.test_caption_recipe import TINY_CAPTION, write_dataset
from tests.test_ensemble import BEAM, GREEDY, SPECIAL, sources, tiny_translation_model
from tests.test_translate_recipe import TINY_TRANSLATE, make_pairs, write_corpus


def quantized_layer_names(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if type(module).__module__.startswith("torch.ao.nn")}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_separate_step_weights_compute_what_the_fused_weights_do(cell: str, input_feeding: bool) -> None:
    model = tiny_translation_model(0, input_feeding, cell)
    fused = generate(model, sources(), BEAM, SPECIAL)
    model.decoder.separate_step_weights()
    assert (model.decoder.step_linears is not None) == input_feeding
    separate = generate(model, sources(), BEAM, SPECIAL)
    assert torch.equal(fused.tokens, separate.tokens)
    torch.testing.assert_close(fused.scores, separate.scores)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_int8_quantizes_every_linear_and_recurrent_layer_and_stays_close(cell: str, input_feeding: bool) -> None:
    model = tiny_translation_model(0, input_feeding, cell)
    source = sources()
    with torch.no_grad():
        fp32_logits, _ = model(source, source)  # teacher forcing over any ids: (B, T, V)
    quantize_int8(model)
    names = quantized_layer_names(model)
    expected = {"encoder.rnn", "decoder.combine", "decoder.output", "decoder.attention.query_projection"}
    if input_feeding:
        expected |= {"decoder.step_linears.embedding", "decoder.step_linears.feed", "decoder.step_linears.recurrent.0"}
    else:
        expected |= {"decoder.rnn"}
    assert expected <= names
    with torch.no_grad():
        int8_logits, _ = model(source, source)
    assert (int8_logits - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
    found = generate(model, source, GREEDY, SPECIAL)
    assert found.tokens.shape[0] == 3 and torch.isfinite(found.scores).all()


@pytest.mark.parametrize("input_feeding", [False, True])
def test_int8_steps_a_folded_decoder_through_quantized_copies_of_its_rnn(input_feeding: bool) -> None:
    model = tiny_translation_model(0, input_feeding)
    model.decoder.fold_embedding_gates()
    source = sources()
    previous = torch.full((source.shape[0],), SPECIAL.bos)

    def first_step_logits() -> torch.Tensor:
        with torch.inference_mode():
            encoded = model.encode(source)
            return model.decoder.step(previous, model.decoder.init_state(encoded), encoded)[0]

    fp32_logits = first_step_logits()
    quantize_int8(model)
    assert model.decoder.embedding_gate_table is not None and model.decoder.step_linears is not None
    names = quantized_layer_names(model)
    assert {"decoder.rnn", "decoder.step_linears.recurrent.0"} <= names
    assert "decoder.step_linears.embedding" not in names  # the table replaces it
    rnn_calls = [0]
    model.decoder.rnn.register_forward_hook(lambda *_: rnn_calls.__setitem__(0, rnn_calls[0] + 1))
    int8_logits = first_step_logits()
    assert rnn_calls == [0]  # the step runs the quantized copies, not the fused module
    assert (int8_logits - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
    found = generate(model, source, BEAM, SPECIAL)
    assert torch.isfinite(found.scores[:, 0]).all()
    with torch.inference_mode():  # teacher forcing (scoring, priming) reads the table too
        forced, _ = model(source, source)
    assert torch.isfinite(forced).all()


def test_int8_says_why_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_engine(["none", "onednn", "fbgemm", "x86"]) == "x86" and choose_engine(["qnnpack"]) == "qnnpack"
    with pytest.raises(QuantizationUnavailable, match="no int8 CPU engine.*drop --int8"):
        choose_engine(["none"])
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # as in a PyTorch without it
    with pytest.raises(QuantizationUnavailable, match="no longer has torch.ao.quantization.quantize_dynamic"):
        quantize_int8(tiny_translation_model(0))


def test_number_formats_are_checked() -> None:
    assert decoding_dtype("bf16") == torch.bfloat16 and decoding_dtype(torch.float32) == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        decoding_dtype("float16")
    with pytest.raises(ValueError, match="choose one of bf16"):
        with_numerics(tiny_translation_model(0), "bfloat16", "int8")
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        with_numerics(tiny_translation_model(0), quantize="int4")


def test_bf16_decoding_keeps_scores_in_fp32() -> None:
    model = with_numerics(tiny_translation_model(0, input_feeding=True), "bfloat16")
    assert isinstance(model.decoder, RNNDecoder) and model.decoder.output.weight.dtype == torch.bfloat16
    found = generate(model, sources(), BEAM, SPECIAL)
    assert found.scores.dtype == torch.float32 and torch.isfinite(found.scores[:, 0]).all()


# ---- through the API and the command line ------------------------------------------------------


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("numerics_translate")
    data = write_corpus(folder / "data")
    # The comparison model feeds its attentional vector back, so its decoder folds its embedding gates.
    train("translate", "multi30k_de_en_comparison", [*TINY_TRANSLATE, *data, "train.max_steps=30"], folder / "run")
    return folder / "run"


def gate_table_dtype(translator: Translator) -> torch.dtype | None:
    decoder = translator.model.decoder
    assert isinstance(decoder, RNNDecoder)
    return None if decoder.embedding_gate_table is None else decoder.embedding_gate_table.dtype


def test_translator_decodes_in_int8_and_bf16(translation_run: Path) -> None:
    lines, _ = make_pairs(8, seed=5)
    fp32_translator = Translator.from_checkpoint(translation_run, device="cpu")
    assert gate_table_dtype(fp32_translator) == torch.float32
    fp32 = fp32_translator.translate(lines, beam=3)
    int8 = Translator.from_checkpoint(translation_run, device="cpu", quantize="int8")
    assert quantized_layer_names(int8.model) and gate_table_dtype(int8) == torch.float32
    int8_results = int8.translate(lines, beam=3)
    assert [result.source for result in int8_results] == lines
    forced = int8.score(lines[:2], [int8_results[0].text, int8_results[1].text])
    assert forced[0].log_probability == pytest.approx(int8_results[0].score, abs=0.05)
    bf16 = Translator.from_checkpoint(translation_run, device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and gate_table_dtype(bf16) == torch.bfloat16
    assert len(bf16.translate(lines, beam=3)) == len(fp32)


def test_evaluate_int8_prints_the_change_against_fp32(translation_run: Path) -> None:
    result = run_recipe("translate.py", "evaluate", "--checkpoint", str(translation_run), "--int8", "--greedy")
    assert "int8 against fp32: BLEU" in result.stdout and "sentences/s" in result.stdout
    both = run_recipe("translate.py", "evaluate", "--checkpoint", str(translation_run), "--int8", "--bf16", check=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_text_generation_in_int8(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(make_text(3000), encoding="utf-8")
    train("textgen", "shakespeare_char", [*TINY_TEXTGEN, f"data.path={tmp_path / 'tiny.txt'}"], tmp_path / "run")
    generator = TextGenerator.from_checkpoint(tmp_path / "run", device="cpu", quantize="int8")
    assert "decoder.output" in quantized_layer_names(generator.model)
    (sample,) = generator.generate("\n", length=20, seed=1)
    assert 0 < len(sample.text) <= 20
    result = run_recipe("textgen.py", "generate", "--checkpoint", str(tmp_path / "run"), "--int8", "--length", "10")
    assert result.returncode == 0


def test_captioning_in_int8_bf16_and_as_an_ensemble(tmp_path: Path) -> None:
    data = write_dataset(tmp_path)
    train("caption", "emoji_scratch", [*TINY_CAPTION, *data], tmp_path / "run")
    images = [str(path) for path in sorted((tmp_path / "images").glob("*.png"))[:3]]
    fp32 = Captioner.from_checkpoint(tmp_path / "run", device="cpu").caption(images, beam=2)
    int8 = Captioner.from_checkpoint(tmp_path / "run", device="cpu", quantize="int8").caption(images, beam=2)
    bf16 = Captioner.from_checkpoint(tmp_path / "run", device="cpu", dtype="bfloat16").caption(images, beam=2)
    assert all(result.error is None for result in [*fp32, *int8, *bf16])
    run = str(tmp_path / "run")
    twice = run_recipe("caption.py", "caption", "--checkpoint", run, run, *images, "--beam", "2")
    assert twice.stdout.splitlines() == [f"{image}\t{result.text}" for image, result in zip(images, fp32)]
    evaluated = run_recipe("caption.py", "evaluate", "--checkpoint", run, "--int8", "--greedy", "--baseline", "none")
    assert "int8 against fp32" in evaluated.stdout and "fp32:" in evaluated.stdout


# ---- training precision ----------------------------------------------------------------------------


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="needs a CPU with bf16 matrix units.*train.precision=auto"):
        resolve_precision("bf16", cpu)
    for units in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(devices, "cpu_flags", lambda units=units: frozenset({"avx2", units}))
        assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_bf16_training_on_the_cpu_keeps_fp32_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast on the CPU, as on a CPU with AMX (the flag is pretended: oneDNN's bf16 kernels
    for GRUs and linear layers also run, emulated, without the units)."""
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    (tmp_path / "tiny.txt").write_text(make_text(3000), encoding="utf-8")
    overrides = [*TINY_TEXTGEN, f"data.path={tmp_path / 'tiny.txt'}", "train.precision=auto", "decoder.cell=gru"]
    result = train("textgen", "shakespeare_char", overrides, tmp_path / "run")
    assert result.progress.step == 20 and result.best_checkpoint is not None
    log = (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    assert "device cpu, bf16" in log
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["val_loss"]) for row in metrics if "val_loss" in row)
    generator = TextGenerator.from_checkpoint(tmp_path / "run", device="cpu")
    assert all(parameter.dtype == torch.float32 for parameter in generator.model.parameters())
