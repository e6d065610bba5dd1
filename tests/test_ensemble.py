"""Ensembles: several models decoding as one inside the greedy, sampled and beam searches,
loaded from several checkpoints through the API and the command line."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from sentencepiece import sentencepiece_model_pb2

from seq2seq import TextGenerator, Translator, train
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import DecodeConfig, DecoderConfig, TextEncoderConfig
from seq2seq.decoding import SpecialIds, generate
from seq2seq.models import Seq2Seq, build_translation_model
from seq2seq.models.ensemble import Ensemble
from tests.conftest import TINY_TEXTGEN, make_text, run_recipe
from tests.test_translate_recipe import TINY_TRANSLATE, make_pairs, write_corpus

SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
VOCAB = 13
PIECES = 40  # each tiny run's SentencePiece vocabulary


def tiny_translation_model(seed: int, input_feeding: bool = False, cell: str = "gru") -> Seq2Seq:
    torch.manual_seed(seed)
    decoder = DecoderConfig(
        cell=cell, embedding_size=8, hidden_size=12, attention="bahdanau", input_feeding=input_feeding
    )
    encoder = TextEncoderConfig(cell=cell, embedding_size=8, hidden_size=6)
    return build_translation_model(encoder, decoder, VOCAB, VOCAB, SPECIAL.pad).eval()


def sources() -> torch.Tensor:
    """(3, 5) source ids, the last row padded."""
    return torch.tensor([[4, 5, 6, 7, 8], [9, 10, 11, 4, 5], [6, 7, 8, 0, 0]])


BEAM = DecodeConfig(method="beam", beam_size=4, n_best=4, max_length=9)
GREEDY = DecodeConfig(method="greedy", max_length=9)
SAMPLE = DecodeConfig(method="sample", num_samples=3, seed=5, max_length=9)


@pytest.mark.parametrize("config", [BEAM, GREEDY, SAMPLE], ids=["beam", "greedy", "sample"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_an_ensemble_of_one_model_twice_decodes_as_the_model(config: DecodeConfig, input_feeding: bool) -> None:
    model = tiny_translation_model(0, input_feeding)
    alone = generate(model, sources(), config, SPECIAL)
    twice = generate(Ensemble([model, copy.deepcopy(model)]), sources(), config, SPECIAL)
    assert torch.equal(alone.tokens, twice.tokens)
    torch.testing.assert_close(alone.scores, twice.scores)
    assert alone.attention is not None and twice.attention is not None
    torch.testing.assert_close(alone.attention, twice.attention)


def test_each_step_is_the_normalised_geometric_mean_of_the_members_distributions() -> None:
    first, second = tiny_translation_model(0), tiny_translation_model(1, input_feeding=True)
    ensemble = Ensemble([first, second])
    source = sources()
    encoded = ensemble.encode(source)
    state = ensemble.decoder.init_state(encoded)
    previous = torch.full((3,), SPECIAL.bos)
    combined, _, _ = ensemble.decoder.step(previous, state, encoded)
    expected = []
    for member in (first, second):
        member_encoded = member.encode(source)
        logits, _, _ = member.decoder.step(previous, member.decoder.init_state(member_encoded), member_encoded)
        expected.append(logits.log_softmax(-1))
    geometric_mean = ((expected[0] + expected[1]) / 2).log_softmax(-1)  # (3, V) log-probabilities
    torch.testing.assert_close(combined.log_softmax(-1), geometric_mean)
    assert not torch.allclose(geometric_mean, expected[0], atol=1e-3)  # the members differ


@pytest.mark.parametrize("config", [BEAM, GREEDY], ids=["beam", "greedy"])
def test_ensemble_scores_are_the_ensembles_forced_scores_of_its_hypotheses(config: DecodeConfig) -> None:
    """Beam search reorders every member's state: if one member's state went astray, the
    search's scores would differ from those of teacher forcing the same tokens."""
    ensemble = Ensemble([tiny_translation_model(0), tiny_translation_model(1, True), tiny_translation_model(2)])
    found = generate(ensemble, sources(), config, SPECIAL)
    for row in range(3):
        for rank in range(found.tokens.shape[1]):
            length = int(found.lengths[row, rank])
            if length == 0:
                continue
            tokens = found.tokens[row, rank, :length]
            target_in = torch.cat([torch.tensor([SPECIAL.bos]), tokens[:-1]]).unsqueeze(0)  # (1, T)
            with torch.no_grad():
                mean_logits, _ = ensemble(sources()[row : row + 1], target_in)  # (1, T, V)
            forced = mean_logits.log_softmax(-1)[0].gather(-1, tokens.unsqueeze(-1)).sum()
            assert float(found.scores[row, rank]) == pytest.approx(float(forced), abs=1e-4)


def members_mean_logits(members: list[Seq2Seq], previous: torch.Tensor) -> torch.Tensor:
    """(3, V) the mean of the members' first-step logits, each member stepped on its own."""
    logits = []
    for member in members:
        encoded = member.encode(sources())
        logits.append(member.decoder.step(previous, member.decoder.init_state(encoded), encoded)[0])
    return torch.stack(logits).mean(dim=0)


def ensemble_first_step(ensemble: Ensemble, previous: torch.Tensor) -> torch.Tensor:
    encoded = ensemble.encode(sources())
    return ensemble.decoder.step(previous, ensemble.decoder.init_state(encoded), encoded)[0]


def test_each_search_joins_the_members_output_layers_as_they_are() -> None:
    """The members' output layers run as one product whose weights are joined when a search
    starts; a weight written in place before the next search (a checkpoint loaded into a
    member) must reach it, as must a change of dtype."""
    members = [tiny_translation_model(0), tiny_translation_model(1, input_feeding=True)]
    ensemble, previous = Ensemble(members), torch.full((3,), SPECIAL.bos)
    with torch.inference_mode():
        torch.testing.assert_close(ensemble_first_step(ensemble, previous), members_mean_logits(members, previous))
    with torch.no_grad():
        members[1].decoder.output.weight.mul_(-3.0)
        members[1].decoder.output.bias.add_(1.0)
    with torch.inference_mode():
        changed = ensemble_first_step(ensemble, previous)
        torch.testing.assert_close(changed, members_mean_logits(members, previous))
    ensemble.double()
    with torch.inference_mode():
        torch.testing.assert_close(ensemble_first_step(ensemble, previous), changed)  # logits come as fp32


def test_quantized_members_average_their_own_output_layers() -> None:
    pytest.importorskip("torch.ao.quantization")
    from seq2seq.quantization import quantize_int8

    members = [quantize_int8(tiny_translation_model(seed)) for seed in (0, 1)]
    ensemble, previous = Ensemble(members), torch.full((3,), SPECIAL.bos)
    with torch.inference_mode():
        torch.testing.assert_close(ensemble_first_step(ensemble, previous), members_mean_logits(members, previous))


def test_an_ensemble_needs_two_models() -> None:
    with pytest.raises(ValueError, match="at least 2 models"):
        Ensemble([tiny_translation_model(0)])


# ---- loading several checkpoints -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two translation runs on the same data with different seeds, the same two with
    SentencePiece (each run trains its own model into its own directory), one on other data
    (another vocabulary), and a text generation run."""
    folder = tmp_path_factory.mktemp("ensemble")
    data = write_corpus(folder / "data")
    other_data = write_corpus(folder / "other", seed=4)
    tiny = [*TINY_TRANSLATE, "train.max_steps=20"]
    pieces = ["data.tokenizer=sentencepiece", f"data.sentencepiece_vocab_size={PIECES}"]
    found = {}
    choices = (("a", 1, data, []), ("b", 2, data, []), ("pieces_a", 1, data, pieces), ("pieces_b", 2, data, pieces))
    for name, seed, corpus, tokenizer in (*choices, ("other", 1, other_data, [])):
        train("translate", "multi30k_de_en", [*tiny, *corpus, *tokenizer, f"train.seed={seed}"], folder / name)
        found[name] = folder / name
    text = folder / "text.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    train("textgen", "shakespeare_char", [*TINY_TEXTGEN, f"data.path={text}", "train.max_steps=5"], folder / "lm")
    found["lm"] = folder / "lm"
    return found


def test_translator_loads_several_checkpoints_as_an_ensemble(runs: dict[str, Path]) -> None:
    ensemble = Translator.from_checkpoint([runs["a"], runs["b"]], device="cpu")
    assert isinstance(ensemble.model, Ensemble) and ensemble.checkpoints[1].parent.parent == runs["b"]
    lines, _ = make_pairs(6, seed=9)
    results = ensemble.translate(lines, beam=3, n_best=2)
    assert [result.source for result in results] == lines and all(len(r.hypotheses) == 2 for r in results)
    single = Translator.from_checkpoint(runs["a"], device="cpu")
    forced = ensemble.score(lines[:2], [results[0].text, results[1].text])
    assert forced[0].log_probability == pytest.approx(results[0].score, abs=1e-3)
    assert single.score(lines[:1], [results[0].text])[0].log_probability != pytest.approx(results[0].score, abs=1e-3)


def test_checkpoints_with_other_vocabularies_or_tasks_are_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match="different 'source' entries.*one vocabulary"):
        Translator.from_checkpoint([runs["a"], runs["other"]], device="cpu")
    with pytest.raises(CheckpointError, match="holds a 'textgen' model, not a 'translate' model"):
        Translator.from_checkpoint([runs["a"], runs["lm"]], device="cpu")


def test_checkpoints_that_carry_their_sentencepiece_training_path_still_ensemble(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Checkpoints written before the tokenizer dropped it hold the path that SentencePiece
    was trained into (a different one for every run); it plays no part in tokenizing."""
    older = tmp_path / "older_b"
    shutil.copytree(runs["pieces_b"], older)
    for model_json in older.glob("checkpoints/*/model.json"):
        metadata = json.loads(model_json.read_text(encoding="utf-8"))
        for side in ("source", "target"):
            tokenizer = metadata[side]["tokenizer"]
            model = sentencepiece_model_pb2.ModelProto.FromString(base64.b64decode(tokenizer["model_proto"]))
            model.trainer_spec.model_prefix = str(older / "sentencepiece")
            tokenizer["model_proto"] = base64.b64encode(model.SerializeToString()).decode("ascii")
        model_json.write_text(json.dumps(metadata), encoding="utf-8")
    lines, _ = make_pairs(3, seed=9)
    expected = Translator.from_checkpoint([runs["pieces_a"], runs["pieces_b"]], device="cpu").translate(
        lines, greedy=True
    )
    found = Translator.from_checkpoint([runs["pieces_a"], older], device="cpu").translate(lines, greedy=True)
    assert [result.text for result in found] == [result.text for result in expected]


def test_the_command_line_translates_with_an_ensemble(runs: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "input.de"
    lines, _ = make_pairs(4, seed=9)
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["translate", "--checkpoint", str(runs["a"]), str(runs["b"]), "--input", str(source), "--greedy"]
    result = run_recipe("translate.py", *args)
    expected = Translator.from_checkpoint([runs["a"], runs["b"]], device="cpu").translate(lines, greedy=True)
    assert result.stdout.splitlines() == [found.text for found in expected]
    evaluated = run_recipe("translate.py", "evaluate", "--checkpoint", str(runs["a"]), str(runs["b"]), "--greedy")
    assert "ensemble of 2 checkpoints" in evaluated.stdout and "BLEU" in evaluated.stdout


def test_a_text_generator_samples_and_streams_from_an_ensemble(runs: dict[str, Path]) -> None:
    single = TextGenerator.from_checkpoint(runs["lm"], device="cpu")
    twice = TextGenerator.from_checkpoint([runs["lm"], runs["lm"]], device="cpu")
    assert isinstance(twice.model, Ensemble) and len(twice.checkpoints) == 2
    expected = single.generate("\n", length=30, temperature=0.9, seed=4)[0].text
    assert twice.generate("\n", length=30, temperature=0.9, seed=4)[0].text == expected
    assert "".join(twice.stream("\n", length=30, temperature=0.9, seed=4)) == expected
