"""Self-critical training: the reward, the baselines, the policy-gradient loss, and SCST runs of
`seq2seq caption train` (a phase after cross-entropy steps, a start from another run's weights,
exact resume after a kill, the refusals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from seq2seq.caption_metrics import caption_words
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, load_config
from seq2seq.data.captions import CaptionImages, ImageCaptions, caption_batches, load_caption_sets
from seq2seq.data.images import build_transform
from seq2seq.run_configs import CaptionConfig
from seq2seq.training.caption_task import CaptionBatching, check_caption_config
from seq2seq.training.scst import (
    CaptionReward,
    ScstSettings,
    SelfCriticalTask,
    distinct_moving_samples,
    sampled_log_probs,
    scst_start,
)
from tests.conftest import REPO_ROOT, run_recipe
from tests.test_caption_recipe import TINY_CAPTION, train_args, write_dataset
from tests.test_caption_task import CAPTIONS, TRANSFORM, codec, model
from tests.test_textgen_recipe import wait_for_checkpoint

REFERENCES = [[caption_words(caption)] for caption in CAPTIONS]


@pytest.fixture
def images(tmp_path: Path) -> list[ImageCaptions]:
    """One plain image per caption of CAPTIONS."""
    sets = []
    for number, caption in enumerate(CAPTIONS):
        path = tmp_path / f"{number}.png"
        Image.new("RGB", (20, 18), (40 * number, 200 - 30 * number, 90)).save(path)
        sets.append(ImageCaptions(path.name, path, [caption], "train"))
    return sets


def scst_task(images: list[ImageCaptions], baseline: str = "others", samples: int = 4) -> SelfCriticalTask:
    return SelfCriticalTask(
        CaptionImages(images, build_transform(TRANSFORM, train=False)),
        REFERENCES,
        CaptionReward(REFERENCES),
        codec(),
        ScstSettings(samples=samples, baseline=baseline, max_length=6, ban_unk=True),
        CaptionBatching(batch_size=4, seed=0),
        validation=None,  # type: ignore[arg-type]  (these tests do not validate)
        device=torch.device("cpu"),
    )


def test_the_reward_is_highest_for_the_reference_and_mixes_in_bleu4() -> None:
    reward = CaptionReward(REFERENCES)
    candidates = [caption_words("a red square"), caption_words("a red circle"), caption_words("blue bar"), []]
    (scores,) = reward.rewards([candidates], [REFERENCES[0]]).tolist()
    assert scores[0] > scores[1] > scores[2] >= scores[3] == 0
    mixed = CaptionReward(REFERENCES, bleu4_weight=0.5).rewards([candidates[:1]], [REFERENCES[0]])
    assert mixed.item() == pytest.approx(0.5 * scores[0] + 0.5 * 1.0)


def test_each_sample_is_judged_against_the_mean_of_the_others_or_the_greedy_caption(
    images: list[ImageCaptions],
) -> None:
    torch.manual_seed(0)
    task = scst_task(images)
    batch = next(task.batches(0, 0))
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0]] * 4)
    others = task._baseline(model(), batch, rewards, REFERENCES)
    assert others[0].tolist() == pytest.approx([11 / 3, 10 / 3, 3.0, 2.0])
    assert (rewards - others).sum(dim=1).abs().max() < 1e-6  # the advantages of an image sum to zero
    greedy_task = scst_task(images, baseline="greedy")
    greedy = greedy_task._baseline(model(), batch, rewards, REFERENCES)
    assert greedy.shape == rewards.shape and bool((greedy == greedy[:, :1]).all())  # one value per image


def test_a_step_down_the_loss_makes_samples_above_the_baseline_likelier(images: list[ImageCaptions]) -> None:
    """The loss is -sum (reward - baseline) log p: a small gradient step raises that sum for the same samples."""
    torch.manual_seed(0)
    captioner, task = model(), scst_task(images)
    batch = next(task.batches(0, 0))
    result = task.batch_loss(captioner, batch)
    assert result.tokens > 0 and set(result.stats) == {"reward", "baseline", "above_baseline"}
    assert 0 <= result.stats["above_baseline"] <= 1

    fixed = torch.tensor([[4, 5, 2], [6, 2, 0]] * 4)  # (B * K, T): two captions per image, eos 2, pad 0
    advantage = torch.tensor([1.0, -1.0]).repeat(4)  # the first caption above its baseline, the second below
    optimizer = torch.optim.SGD(captioner.parameters(), lr=0.05)

    def objective() -> torch.Tensor:
        log_probs, real = sampled_log_probs(captioner, batch.images, fixed, torch.arange(4).repeat_interleave(2))
        return (advantage.view(-1, 1) * log_probs * real).sum()

    before = objective()
    (-before).backward()
    optimizer.step()
    with torch.no_grad():
        after = objective()
    assert after > before


def test_sampled_log_probs_are_those_of_the_search_and_masked_after_eos(images: list[ImageCaptions]) -> None:
    from seq2seq.config import DecodeConfig
    from seq2seq.decoding import generate
    from seq2seq.inference.hypothesis import SPECIAL_IDS

    captioner = model()
    batch = next(caption_batches(CaptionImages(images, build_transform(TRANSFORM, train=False)), 4, shuffle=False))
    found = generate(
        captioner, batch.images, DecodeConfig(method="sample", num_samples=3, max_length=6, seed=1), SPECIAL_IDS
    )
    with torch.no_grad():
        image_rows = torch.arange(4).repeat_interleave(3)
        log_probs, real = sampled_log_probs(captioner, batch.images, found.tokens.flatten(0, 1), image_rows)
    assert real.sum(dim=1).tolist() == found.lengths.flatten().tolist()
    assert (log_probs * real).sum(dim=1).tolist() == pytest.approx(found.scores.flatten().tolist(), abs=1e-4)


def test_identical_samples_count_once_with_their_summed_advantage_and_unmoved_ones_not_at_all() -> None:
    tokens = torch.tensor(
        [
            [[4, 2, 0], [4, 2, 0], [5, 6, 2], [4, 2, 0]],  # image 0: one caption three times, another once
            [[7, 2, 0], [7, 2, 0], [7, 2, 0], [7, 2, 0]],  # image 1: four times the same, no advantage
            [[4, 2, 0], [6, 2, 0], [5, 6, 2], [5, 6, 2]],  # image 2: the caption of image 0 is another sample here
        ]
    )  # (B, K, T)
    advantage = torch.tensor([[-1.0, -1.0, 3.0, -1.0], [1e-7, -1e-7, 0.0, 0.0], [2.0, -4.0, 1.0, 1.0]])
    rows, weights = distinct_moving_samples(tokens, advantage)
    assert rows.tolist() == [0, 2, 8, 9, 10]  # the first of each caption of an image; image 1 left out
    assert weights.tolist() == pytest.approx([-3.0, 3.0, 2.0, -4.0, 2.0])
    alone, no_weight = distinct_moving_samples(tokens[1:2], advantage[1:2])
    assert alone.tolist() == [0] and no_weight.tolist() == [0.0]  # one row stays: every process runs a pass


def test_the_loss_of_distinct_samples_is_the_loss_of_every_sample(images: list[ImageCaptions]) -> None:
    torch.manual_seed(0)
    captioner = model().eval()  # no dropout: every pass over a caption gives the same log-probabilities
    batch = next(caption_batches(CaptionImages(images, build_transform(TRANSFORM, train=False)), 4, shuffle=False))
    tokens = torch.tensor([[[4, 5, 2], [4, 5, 2], [6, 2, 0]], [[6, 2, 0]] * 3, [[5, 2, 0]] * 3, [[4, 2, 0]] * 3])
    advantage = torch.tensor([[0.5, 0.5, -1.0], [0.0] * 3, [0.0] * 3, [0.0] * 3])  # (B, K)

    def loss_and_gradients(rows: torch.Tensor, weights: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        image_rows = rows // tokens.shape[1]
        log_probs, real = sampled_log_probs(captioner, batch.images, tokens.flatten(0, 1)[rows], image_rows)
        loss = -(weights.view(-1, 1) * log_probs * real).sum()
        parameters = [p for p in captioner.parameters() if p.requires_grad]
        return loss.item(), list(torch.autograd.grad(loss, parameters, allow_unused=True))

    every_loss, every_gradient = loss_and_gradients(torch.arange(12), advantage.flatten())
    rows, weights = distinct_moving_samples(tokens, advantage)
    assert rows.tolist() == [0, 2]  # images 1 to 3 are not even encoded
    distinct_loss, distinct_gradient = loss_and_gradients(rows, weights)
    assert distinct_loss == pytest.approx(every_loss, abs=1e-5)
    for every, distinct in zip(every_gradient, distinct_gradient):
        if every is None:
            assert distinct is None
        else:
            torch.testing.assert_close(distinct, every, atol=1e-5, rtol=1e-4)


# ---- runs of `seq2seq caption train` ------------------------------------------------------------

SCST_RUN = ["train.max_steps=8", "train.validate_every=2", "train.scst_samples=3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_dataset(tmp_path_factory.mktemp("shapes"))


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def latest_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    index = json.loads((run_dir / "checkpoints.json").read_text())
    return load_file(run_dir / "checkpoints" / index["latest"][0] / "model.safetensors")


@pytest.fixture(scope="module")
def phased_run(dataset: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run of 3 cross-entropy steps, then 5 of SCST; its directory and standard error."""
    run_dir = tmp_path_factory.mktemp("scst") / "whole"
    result = run_recipe("caption.py", *train_args(dataset, run_dir, *SCST_RUN, "train.scst_after_steps=3"))
    return run_dir, result.stderr


def test_scst_after_cross_entropy_steps_logs_rewards_and_resumes_exactly_after_a_kill(
    dataset: list[str], phased_run: tuple[Path, str], tmp_path: Path
) -> None:
    whole, stderr = phased_run
    assert "step 3: self-critical training begins" in stderr
    logged = records(whole)
    assert any(r["step"] == 3 and "val_cider_d" in r for r in logged)  # the cross-entropy phase's end is kept
    scst = [r for r in logged if "train_loss" in r and r["step"] > 4]
    assert scst and all({"reward", "baseline", "above_baseline"} <= set(r) for r in scst)
    assert all(r["lr"] == pytest.approx(5e-5) for r in scst)
    assert not any("reward" in r for r in logged if "train_loss" in r and r["step"] <= 3)

    killed = tmp_path / "killed"
    arguments = train_args(dataset, killed, *SCST_RUN, "train.scst_after_steps=3")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "recipes/caption.py"), *arguments],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = wait_for_checkpoint(killed, min_step=4, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed_at < 8, "the run finished before it could be killed"
    resumed = run_recipe("caption.py", *arguments)
    assert "resumed from" in resumed.stderr
    expected, actual = latest_weights(whole), latest_weights(killed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_scst_from_a_captioning_run_starts_from_its_weights_and_refuses_what_does_not_fit(
    dataset: list[str], phased_run: tuple[Path, str], tmp_path: Path
) -> None:
    cross_entropy = phased_run[0]  # any captioning run of the same model and data will do
    scst = tmp_path / "scst"
    started = run_recipe(
        "caption.py", *train_args(dataset, scst, *SCST_RUN, "train.max_steps=2", f"train.scst_from={cross_entropy}")
    )
    assert f"from the weights of {cross_entropy}" in started.stderr
    assert "step 0: self-critical training begins" in started.stderr
    assert any("reward" in r for r in records(scst))

    def start(*settings: str, data: list[str] = dataset) -> None:
        config = load_config(CaptionConfig, "emoji_scratch", [*TINY_CAPTION, *data, *settings])
        check_caption_config(config)
        scst_start(config, load_caption_sets(config.data)["train"])

    with pytest.raises(ConfigError, match=r"(?s)decoder.hidden_size: 16 -> 24.*train.scst_from"):
        start(f"train.scst_from={cross_entropy}", "decoder.hidden_size=24")
    annotations = Path(dataset[0].split("=", 1)[1])
    renamed = tmp_path / "renamed.json"
    renamed.write_text(annotations.read_text().replace(" square", " box"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vocabulary.*'box'"):
        start(f"train.scst_from={cross_entropy}", data=[f"data.annotations={renamed}", dataset[1]])
    translation = tmp_path / "translation"
    shutil.copytree(cross_entropy, translation)
    for model_json in translation.glob("checkpoints/*/model.json"):
        model_json.write_text(model_json.read_text().replace('"task": "caption"', '"task": "translate"'))
    with pytest.raises(CheckpointError, match="'translate' model, not a 'caption' model"):
        start(f"train.scst_from={translation}")
    with pytest.raises(ConfigError, match="set one of them"):
        start(f"train.scst_from={cross_entropy}", "train.scst_after_steps=2")
    with pytest.raises(ConfigError, match="scst_samples to 2 or more"):
        start("train.scst_after_steps=2", "train.scst_samples=1")
