"""`seq2seq caption` (through recipes/caption.py) as users run it: train, caption, evaluate, on tiny
images made here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from seq2seq import coco_metrics
from seq2seq.commands import main
from tests.conftest import overrides, run_recipe

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
SHAPES = ("square", "circle", "bar")

# A tiny model that trains in seconds on 16-pixel images.
TINY_CAPTION = [
    "image_encoder.small_channels=[4, 8]",
    "image_encoder.grid_size=2",
    "decoder.embedding_size=8",
    "decoder.hidden_size=16",
    "data.transform.image_size=16",
    "data.batch_size=8",
    "data.preload=false",
    "train.max_steps=6",
    "train.max_minutes=0",
    "train.warmup_steps=0",
    "train.validate_every=3",
    "train.early_stopping_patience=0",  # tiny runs train their whole step count
    "train.log_every=2",
    "train.threads=1",
    "train.device=cpu",
    "decoding.max_length=6",
]


def draw(colour: str, shape: str, size: int = 20) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    pixels = image.load()
    for y in range(size):
        for x in range(size):
            inside = {
                "square": 4 <= x < 16 and 4 <= y < 16,
                "circle": (x - 10) ** 2 + (y - 10) ** 2 < 36,
                "bar": 8 <= x < 12,
            }[shape]
            if inside:
                pixels[x, y] = COLOURS[colour]
    return image


def write_dataset(folder: Path) -> list[str]:
    """Every colour x shape twice (train), plus validation and test images, as a Karpathy JSON."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    rng = random.Random(0)
    entries = []
    kinds = [(colour, shape) for colour in COLOURS for shape in SHAPES]
    for number, (colour, shape) in enumerate(kinds * 2 + rng.sample(kinds, 4) + rng.sample(kinds, 4)):
        split = "train" if number < 2 * len(kinds) else ("val" if number < 2 * len(kinds) + 4 else "test")
        name = f"{number:03d}_{colour}_{shape}.png"
        draw(colour, shape).save(images_dir / name)
        captions = [f"a {colour} {shape}", f"one {colour} {shape} on white"]
        entries.append({"filename": name, "split": split, "sentences": [{"raw": c} for c in captions]})
    annotations = folder / "dataset_shapes.json"
    annotations.write_text(json.dumps({"dataset": "shapes", "images": entries}), encoding="utf-8")
    return [f"data.annotations={annotations}", f"data.images={images_dir}"]


def train_args(data: list[str], run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--config",
        "recipes/configs/emoji_scratch.yaml",
        "--run-dir",
        str(run_dir),
        *overrides(*TINY_CAPTION, *data, *extra),
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("shapes")
    return folder, write_dataset(folder)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, dataset: tuple[Path, list[str]]) -> Path:
    run_dir = tmp_path_factory.mktemp("caption") / "run"
    result = run_recipe("caption.py", *train_args(dataset[1], run_dir))
    assert "best val_cider_d" in result.stdout
    return run_dir


def test_train_validates_with_caption_metrics(trained_run: Path) -> None:
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    validations = [record for record in records if "val_loss" in record]
    assert len(validations) == 2
    assert all({"val_bleu4", "val_cider_d", "val_exact", "val_ppl"} <= set(record) for record in validations)
    assert (trained_run / "training_curve.png").is_file()


def test_caption_prints_one_line_per_image_and_writes_attention_maps(
    trained_run: Path, dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    images = sorted((dataset[0] / "images").glob("*.png"))[:2]
    maps = tmp_path / "maps"
    result = run_recipe(
        "caption.py",
        "caption",
        "--checkpoint",
        str(trained_run),
        *map(str, images),
        "--beam",
        "3",
        "--attention-maps",
        str(maps),
    )
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(image) for image in images]
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert sorted(path.name for path in maps.glob("*.png")) == [
        f"{n:04d}_{image.stem}.png" for n, image in enumerate(images, 1)
    ]
    assert "beam search with 3 beams" in result.stderr


def test_a_large_jpeg_is_captioned(trained_run: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    draw("red", "circle", size=64).resize((640, 480)).save(photo, quality=90)
    result = run_recipe("caption.py", "caption", "--checkpoint", str(trained_run), str(photo), "--greedy")
    assert result.stdout.startswith(f"{photo}\t")


def test_n_best_and_samples_print_scored_lines(trained_run: Path, dataset: tuple[Path, list[str]]) -> None:
    image = str(sorted((dataset[0] / "images").glob("*.png"))[0])
    beam = run_recipe("caption.py", "caption", "--checkpoint", str(trained_run), image, "--beam", "3", "--n-best", "3")
    assert len(beam.stdout.splitlines()) == 3
    scores = [float(line.split("\t")[1]) for line in beam.stdout.splitlines()]
    assert all(score <= 0 for score in scores)
    args = ["caption", "--checkpoint", str(trained_run), image, "--sample", "--num-samples", "4", "--seed", "3"]
    first, again = run_recipe("caption.py", *args), run_recipe("caption.py", *args)
    assert len(first.stdout.splitlines()) == 4
    assert first.stdout == again.stdout


def test_a_corrupt_image_does_not_stop_the_others(
    trained_run: Path, dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = str(sorted((dataset[0] / "images").glob("*.png"))[0])
    result = run_recipe("caption.py", "caption", "--checkpoint", str(trained_run), str(broken), good, check=False)
    assert result.returncode == 2
    assert result.stdout.startswith(f"{good}\t")
    assert "broken.jpg" in result.stderr and "1 of 2 image(s) could not be read" in result.stderr


def test_evaluate_prints_metrics_settings_and_baselines(trained_run: Path, tmp_path: Path) -> None:
    result = run_recipe("caption.py", "evaluate", "--checkpoint", str(trained_run), "--greedy", "--baseline", "pixels")
    assert "decoding: greedy search" in result.stdout
    model_line = next(line for line in result.stdout.splitlines() if line.startswith("model:"))
    baseline_line = next(line for line in result.stdout.splitlines() if line.startswith("baseline:"))
    for line in (model_line, baseline_line):
        assert "BLEU-4" in line and "CIDEr-D" in line and "exact" in line
    assert "pixels space" in baseline_line
    features = run_recipe(
        "caption.py",
        "evaluate",
        "--checkpoint",
        str(trained_run),
        "--split",
        "valid",
        "--baseline",
        "features",
        "--attention-maps",
        str(tmp_path / "maps"),
        "--max-maps",
        "2",
    )
    assert "features space" in features.stdout
    assert len(list((tmp_path / "maps").glob("*.png"))) == 2


def test_evaluate_with_coco_metrics_without_java_prints_the_others_and_the_install_line(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(coco_metrics, "java_available", lambda: False)
    arguments = ["--checkpoint", str(trained_run), "--device", "cpu", "--greedy", "--baseline", "none"]
    assert main(["caption", "evaluate", *arguments, "--metrics", "coco"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("model:") and "exact" in line for line in lines)  # the default metrics stay
    coco = next(line for line in lines if line.startswith("model, COCO caption evaluation:"))
    assert "ROUGE-L" in coco and "CIDEr-D" in coco and "METEOR" not in coco
    assert any("METEOR unavailable" in line and coco_metrics.JRE_INSTALL in line for line in lines)


def test_training_resumes_from_its_checkpoint(dataset: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_recipe("caption.py", *train_args(dataset[1], run_dir, "train.max_steps=3"))
    resumed = run_recipe("caption.py", *train_args(dataset[1], run_dir, "train.max_steps=6"))
    assert "resumed from" in resumed.stderr and "at step 3" in resumed.stderr
    assert "done: step 6" in resumed.stdout


def test_frozen_backbone_trains_from_the_feature_cache(dataset: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    frozen = ["image_encoder.backbone=resnet18", "image_encoder.finetune_blocks=0", "train.max_steps=3"]
    result = run_recipe("caption.py", *train_args(dataset[1], run_dir, *frozen))
    assert "features cached" in result.stderr
    index_file = run_dir / "features" / "index.json"
    assert len(json.loads(index_file.read_text())["keys"]) == 24 + 4  # training and validation images
    built = index_file.stat().st_mtime_ns
    again = run_recipe("caption.py", *train_args(dataset[1], run_dir, *frozen[:2], "train.max_steps=4"))
    assert "resumed from" in again.stderr
    assert index_file.stat().st_mtime_ns == built  # the resumed run reads the cache it built


def test_missing_images_and_bad_settings_are_clear_errors(dataset: tuple[Path, list[str]], tmp_path: Path) -> None:
    wrong_folder = run_recipe(
        "caption.py", *train_args(dataset[1], tmp_path / "a", f"data.images={tmp_path}"), check=False
    )
    assert wrong_folder.returncode == 2 and "do not exist" in wrong_folder.stderr
    bad_metric = run_recipe(
        "caption.py", *train_args(dataset[1], tmp_path / "b", "train.best_metric=val_bleu"), check=False
    )
    assert bad_metric.returncode == 2 and "val_cider_d" in bad_metric.stderr


def test_a_checkpoint_of_another_task_is_refused_by_name(trained_run: Path) -> None:
    result = run_recipe("translate.py", "translate", "--checkpoint", str(trained_run), check=False)
    assert result.returncode == 2
    assert "'caption' model, not a 'translate' model" in result.stderr and "seq2seq caption" in result.stderr


@pytest.mark.parametrize("command", ["train", "caption", "evaluate"])
def test_every_command_has_help(command: str) -> None:
    result = run_recipe("caption.py", command, "--help")
    assert "usage" in result.stdout
