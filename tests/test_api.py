"""The Python API as a user's program meets it: train with ``seq2seq.train``, then translate,
score, caption and generate through ``Translator``, ``Captioner`` and ``TextGenerator``; an
encoder defined here, registered, trained and decoded through the same public names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import seq2seq
from seq2seq import Captioner, TextGenerator, Translator, register_encoder, train
from seq2seq.config import TextEncoderConfig
from seq2seq.inference.translator import DEFAULT_BATCH_SENTENCES, DEFAULT_BATCH_TOKENS, DecodeBatching
from seq2seq.models import EncoderOutput
from seq2seq.text import UnknownTokensError, Vocab
from tests.conftest import TINY_TEXTGEN, make_text
from tests.test_caption_recipe import TINY_CAPTION, draw, write_dataset
from tests.test_translate_recipe import LOSS_ONLY, TINY_TRANSLATE, make_pairs, write_corpus


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> Translator:
    folder = tmp_path_factory.mktemp("api_translate")
    data = write_corpus(folder / "data")
    result = train("translate", "multi30k_de_en", [*TINY_TRANSLATE, *data, "train.max_steps=40"], folder / "run")
    assert result.progress.step == 40 and result.best_checkpoint is not None
    return Translator.from_checkpoint(folder / "run", device="cpu")


def test_translate_gives_n_best_dataclasses_with_scores_and_attention(translator: Translator) -> None:
    (result,) = translator.translate(["ein mann sieht der hund ."], beam=3, n_best=2, attention=True)
    assert result.source == "ein mann sieht der hund ." and len(result.hypotheses) == 2
    best, second = result.hypotheses
    assert result.text == best.text and best.score >= second.score and best.text != second.text
    assert best.token_ids[-1] == Vocab.eos_id and len(best.tokens) == len(best.token_ids) - 1
    assert best.attention is not None and best.attention.shape == (len(best.token_ids), 6)  # 6 source tokens
    torch.testing.assert_close(best.attention.sum(-1), torch.ones(len(best.token_ids)))


def test_translate_uses_the_checkpoint_defaults_and_checks_options(translator: Translator) -> None:
    default = translator.decode_config()
    assert (default.method, default.beam_size) == ("beam", translator.config.decoding.beam_size)
    assert translator.decode_config(greedy=True).method == "greedy"
    with pytest.raises(ValueError, match="n_best=3 needs a beam of at least 3"):
        translator.translate(["ein hund ."], beam=2, n_best=3)
    with pytest.raises(ValueError, match="decoding.length_penalty"):
        translator.translate(["ein hund ."], length_penalty="loud")


def test_ten_thousand_lines_come_back_in_input_order(translator: Translator) -> None:
    sources, _ = make_pairs(40, seed=3)
    lines = [sources[i % 40] if i % 97 else "" for i in range(10_000)]  # lengths vary; some lines empty
    results = translator.translate(lines, greedy=True, batch_size=500)
    assert [result.source for result in results] == lines
    alone = {line: translator.translate([line], greedy=True)[0].text for line in sources}
    assert all(result.text == ("" if not line else alone[line]) for line, result in zip(lines, results))


def test_batches_by_token_budget_give_what_batches_by_sentences_give(translator: Translator) -> None:
    sources, _ = make_pairs(60, seed=4)
    by_sentences = translator.translate(sources, beam=3, batch_size=7)
    by_tokens = translator.translate(sources, beam=3, batch_tokens=20)
    assert [r.text for r in by_tokens] == [r.text for r in by_sentences]
    assert [r.score for r in by_tokens] == pytest.approx([r.score for r in by_sentences], abs=1e-4)
    data = translator.encode(sources)
    planned = DecodeBatching(batch_tokens=20).batcher(data).plan()
    lengths = [len(ids) for ids in data.sources]
    assert len(planned) > 1 and all(max(lengths[i] for i in batch) * len(batch) <= 20 for batch in planned)
    assert DecodeBatching.choose() == DecodeBatching(DEFAULT_BATCH_SENTENCES, DEFAULT_BATCH_TOKENS)
    assert DecodeBatching.choose(batch_size=16) == DecodeBatching(16, 0)
    assert DecodeBatching.choose(batch_size=16, batch_tokens=900) == DecodeBatching(16, 900)
    with pytest.raises(ValueError, match="batch_tokens must be >= 0"):
        translator.translate(sources, batch_tokens=-1)


def test_score_is_the_log_probability_of_the_given_translation(translator: Translator) -> None:
    (best,) = translator.translate(["der hund jagt ein ball ."], greedy=True)[0].hypotheses
    forced, other = translator.score(
        ["der hund jagt ein ball .", "der hund jagt ein ball ."], [best.text, "the the the"]
    )
    assert forced.log_probability == pytest.approx(best.score, abs=1e-4)
    assert len(forced.token_log_probabilities) == len(best.token_ids)
    assert other.log_probability < forced.log_probability
    with pytest.raises(ValueError, match="one target per source"):
        translator.score(["a"], [])


@pytest.fixture(scope="module")
def captioning(tmp_path_factory: pytest.TempPathFactory) -> tuple[Captioner, Path]:
    folder = tmp_path_factory.mktemp("api_caption")
    data = write_dataset(folder)
    train("caption", "emoji_scratch", [*TINY_CAPTION, *data, "train.keep_latest=2"], folder / "run")
    return Captioner.from_checkpoint(folder / "run", device="cpu"), folder / "images"


def test_caption_takes_paths_and_pil_images_and_reports_bad_ones(
    captioning: tuple[Captioner, Path], tmp_path: Path
) -> None:
    captioner, images = captioning
    path = sorted(images.glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    picture = draw("red", "circle").convert("P")  # a palette image: converted to RGB
    results = captioner.caption([path, picture, broken], beam=2, n_best=2, attention=True)
    assert [result.error is None for result in results] == [True, True, False]
    assert results[0].image == str(path) and "broken.png" in results[2].image and results[2].error
    assert results[2].hypotheses == [] and results[2].text == ""
    assert len(results[0].hypotheses) == 2 and results[0].text == results[0].hypotheses[0].text
    grid = captioner.config.image_encoder.grid_size
    first = results[0].hypotheses[0]
    assert first.attention is not None and first.attention.shape == (len(first.token_ids), grid * grid)
    again = captioner.caption(Image.open(path), beam=2, n_best=2)[0]
    assert again.text == results[0].text
    sampled = captioner.caption([path], sample=True, num_samples=3, seed=1)[0]
    assert len(sampled.hypotheses) == 3
    with pytest.raises(ValueError, match="only apply with sample=True"):
        captioner.caption([path], temperature=0.5)
    drawn = captioner.attention_map(path, first, tmp_path / "map.png")
    assert drawn.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> TextGenerator:
    folder = tmp_path_factory.mktemp("api_textgen")
    (folder / "tiny.txt").write_text(make_text(12_000), encoding="utf-8")
    train(
        "textgen",
        "shakespeare_char",
        [*TINY_TEXTGEN, f"data.path={folder / 'tiny.txt'}", "train.keep_latest=2"],
        folder / "run",
    )
    return TextGenerator.from_checkpoint(folder / "run", device="cpu")


def test_generate_is_seeded_and_stream_gives_the_same_text(generator: TextGenerator) -> None:
    first = generator.generate("ROMEO:", length=40, temperature=0.8, top_k=10, seed=1)
    assert first == generator.generate("ROMEO:", length=40, temperature=0.8, top_k=10, seed=1)
    assert len(first) == 1 and first[0].prime == "ROMEO:" and 0 < len(first[0].text) <= 40
    pieces = list(generator.stream("ROMEO:", length=40, temperature=0.8, top_k=10, seed=1))
    assert len(pieces) > 1 and "".join(pieces) == first[0].text
    several = generator.generate("ROMEO:", length=20, num_samples=3, seed=2)
    assert len(several) == 3 and len({sample.text for sample in several}) > 1


def test_stream_can_be_left_early(generator: TextGenerator) -> None:
    stream = generator.stream("ROMEO:", length=400, seed=1)
    assert next(stream)
    stream.close()  # stops the generation; nothing hangs


def test_stop_strings_unknown_characters_and_user_processors(generator: TextGenerator) -> None:
    (stopped,) = generator.generate("ROMEO:", length=200, seed=3, stop=["e"])
    assert stopped.text.endswith("e") and stopped.text.count("e") == 1
    with pytest.raises(UnknownTokensError, match="'§'"):
        generator.generate("§ROMEO", length=5)
    assert generator.generate("§ROMEO", length=5, unknown="unk", seed=1)[0].text
    only_e = generator.vocab.token_to_id("e")

    def force_e(prefix_ids: Tensor, logits: Tensor) -> Tensor:  # (B, t), (B, V) -> (B, V)
        forced = torch.full_like(logits, float("-inf"))
        forced[:, only_e] = 0.0
        return forced

    (forced,) = generator.generate("ROMEO:", length=10, seed=1, processors=[force_e])
    assert forced.text == "e" * 10


# ---- an encoder of the user's own -----------------------------------------------------------------


class BagOfWordsEncoder(nn.Module):
    """Embeddings as the memory and their mean over the real positions as the summary."""

    def __init__(self, config: TextEncoderConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.output_size = int(config.options.get("size", 24))
        self.embedding = nn.Embedding(vocab_size, self.output_size, padding_idx=pad_id)

    def forward(self, source: Tensor) -> EncoderOutput:  # source: (B, S)
        mask = source != self.pad_id  # (B, S)
        memory = self.embedding(source)  # (B, S, H)
        summary = (memory * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, H)
        return EncoderOutput(len(source), memory, mask, summary)


def test_a_registered_encoder_trains_and_decodes_through_the_public_api(tmp_path: Path) -> None:
    register_encoder("bag_of_words", BagOfWordsEncoder)
    data = write_corpus(tmp_path / "data")
    settings = [*TINY_TRANSLATE, *data, *LOSS_ONLY, "encoder.kind=bag_of_words", "encoder.options={size: 20}"]
    result = train("translate", "multi30k_de_en", [*settings, "train.max_steps=10"], tmp_path / "run")
    assert result.best_checkpoint is not None
    translator = Translator.from_checkpoint(tmp_path / "run", device="cpu")
    assert isinstance(translator.model.encoder, BagOfWordsEncoder) and translator.model.encoder.output_size == 20
    (found,) = translator.translate(["ein hund sieht der ball ."], beam=2)
    assert math.isfinite(found.score) and found.hypotheses[0].token_ids


def test_the_public_names_are_documented_and_importable() -> None:
    for name in seq2seq.__all__:
        assert getattr(seq2seq, name).__doc__, name
    with pytest.raises(AttributeError):
        seq2seq.Missing  # noqa: B018


def test_average_works_for_every_task(
    translator: Translator, captioning: tuple[Captioner, Path], generator: TextGenerator, tmp_path: Path
) -> None:
    from seq2seq.commands import main

    loaders = {"translate": Translator, "caption": Captioner, "textgen": TextGenerator}
    for task, model in (("translate", translator), ("caption", captioning[0]), ("textgen", generator)):
        run_dir, output = model.checkpoint.parent.parent, tmp_path / task
        assert main([task, "average", "--run-dir", str(run_dir), "--last", "2", "--output", str(output)]) == 0
        averaged = loaders[task].from_checkpoint(output, device="cpu")
        assert type(averaged.model.encoder) is type(model.model.encoder)
