"""The CNN encoder of captioning: shapes per backbone family, freezing, cached grids, offline weights."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

import pytest
import torch
import torchvision

from seq2seq.config import ConfigError, DecoderConfig
from seq2seq.models import CNNEncoder, ImageEncoderConfig, build_captioning_model
from seq2seq.models.image_encoder import PretrainedWeightsError

VOCAB = 20


def images(batch: int = 2, size: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize(
    "backbone, channels",
    [("small", 64), ("resnet18", 512), ("resnet50", 2048), ("mobilenet_v3_small", 576), ("mobilenet_v3_large", 960)],
)
def test_grid_and_summary_shapes(backbone: str, channels: int) -> None:
    config = ImageEncoderConfig(backbone=backbone, grid_size=3, small_channels=[16, 64])
    encoder = CNNEncoder(config).eval()
    with torch.no_grad():
        output = encoder(images())
    assert encoder.output_size == channels
    assert output.memory.shape == (2, 9, channels)
    assert output.summary.shape == (2, channels)
    assert output.mask is None
    assert torch.allclose(output.summary, output.memory.mean(dim=1), atol=1e-6)


@pytest.mark.parametrize("backbone", ["resnet34", "resnet101"])
def test_deeper_resnets_build_with_their_widths(backbone: str) -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone=backbone, grid_size=2))
    assert encoder.output_size == {"resnet34": 512, "resnet101": 2048}[backbone]
    assert len(encoder.blocks) == 5  # stem, layer1..layer4


def test_grid_is_the_pooled_feature_map_row_by_row() -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone="small", grid_size=2, small_channels=[8])).eval()
    x = images(1, 8)
    with torch.no_grad():
        features = encoder.backbone(x)  # (1, 8, 4, 4)
        grid = encoder.grid(x)  # (1, 4, 8)
    top_left = features[0, :, :2, :2].mean(dim=(1, 2))
    top_right = features[0, :, :2, 2:].mean(dim=(1, 2))
    assert torch.allclose(grid[0, 0], top_left, atol=1e-6)
    assert torch.allclose(grid[0, 1], top_right, atol=1e-6)


def test_frozen_backbone_has_no_trainable_weights_and_keeps_batch_norm_statistics() -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone="resnet18", finetune_blocks=0, grid_size=2))
    assert encoder.frozen
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    before = encoder.blocks[1][0].bn1.running_mean.clone()
    encoder(images())
    assert torch.equal(before, encoder.blocks[1][0].bn1.running_mean)


def test_finetuning_the_last_blocks_trains_only_those() -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone="resnet18", finetune_blocks=1, grid_size=2))
    trainable = {name.split(".")[1] for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"4"}  # layer4, the top block of backbone.0 .. backbone.4
    encoder.train()
    assert not encoder.blocks[3].training and encoder.blocks[4].training
    everything = CNNEncoder(ImageEncoderConfig(backbone="resnet18", finetune_blocks=-1, grid_size=2))
    assert all(p.requires_grad for p in everything.parameters())


def test_cached_grids_give_the_same_output_as_images() -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone="small", grid_size=2, small_channels=[8, 16])).eval()
    x = images()
    with torch.no_grad():
        live = encoder(x)
        cached = encoder(encoder.grid(x).half())  # the cache stores fp16
    assert torch.allclose(live.memory, cached.memory, atol=1e-2)
    assert torch.allclose(live.summary, cached.summary, atol=1e-2)


def test_cached_grids_of_another_backbone_are_refused() -> None:
    encoder = CNNEncoder(ImageEncoderConfig(backbone="small", grid_size=2, small_channels=[8]))
    with pytest.raises(ValueError, match="rebuild the feature cache"):
        encoder(torch.zeros(2, 4, 32))


def test_offline_pretrained_weights_error_says_where_to_put_the_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    with pytest.raises(PretrainedWeightsError) as error:
        CNNEncoder(ImageEncoderConfig(backbone="resnet18", pretrained=True))
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path) in message
    assert "pretrained=false" in message


@pytest.mark.parametrize(
    "config, key",
    [
        (ImageEncoderConfig(backbone="vgg16"), "image_encoder.backbone must be one of small, resnet18"),
        (ImageEncoderConfig(backbone="small", pretrained=True), "image_encoder.pretrained"),
        (ImageEncoderConfig(backbone="small", finetune_blocks=0), "image_encoder.finetune_blocks"),
        (ImageEncoderConfig(grid_size=0), "image_encoder.grid_size must be >= 1"),
        (ImageEncoderConfig(finetune_blocks=-2), "image_encoder.finetune_blocks must be >= -1"),
        (ImageEncoderConfig(small_channels=[8, 0]), r"image_encoder.small_channels\[1\] must be >= 1"),
        (ImageEncoderConfig(dropout=1.0), r"image_encoder.dropout must be in \[0, 1\)"),
    ],
)
def test_bad_settings_name_the_key(config: ImageEncoderConfig, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        CNNEncoder(config)


def caption_model(**model_options) -> torch.nn.Module:
    config = DecoderConfig(cell="lstm", embedding_size=8, hidden_size=16, **model_options)
    image = ImageEncoderConfig(backbone="small", grid_size=3, small_channels=[8, 12])
    torch.manual_seed(0)
    return build_captioning_model(image, config, VOCAB, pad_id=0).eval()


@pytest.mark.parametrize("gate", [False, True])
def test_attention_over_the_grid_sums_to_one(gate: bool) -> None:
    model = caption_model(attention="bahdanau", attention_gate=gate)
    tokens = torch.randint(1, VOCAB, (2, 5))
    with torch.no_grad():
        logits, _, weights = model(images(), tokens, return_attention=True)
    assert logits.shape == (2, 5, VOCAB)
    assert weights.shape == (2, 5, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 5), atol=1e-5)


def test_show_and_tell_mode_has_no_attention_but_starts_from_the_image() -> None:
    model = caption_model(attention="none")
    tokens = torch.randint(1, VOCAB, (2, 4))
    with torch.no_grad():
        _, _, weights = model(images(), tokens, return_attention=True)
        first, _ = model(images(), tokens)
        other, _ = model(-images(), tokens)
    assert weights is None
    assert not torch.allclose(first, other)


def test_a_closed_gate_cuts_the_image_context() -> None:
    model = caption_model(attention="bahdanau", attention_gate=True)
    tokens = torch.randint(1, VOCAB, (2, 4))
    with torch.no_grad():
        open_a, _ = model(images(), tokens)
        open_b, _ = model(images()[[1, 0]], tokens)
        # The image also reaches the decoder through its starting state: take that away.
        model.decoder.bridge.weight.zero_()
        model.decoder.bridge.bias.zero_()
        model.decoder.gate.weight.zero_()
        model.decoder.gate.bias.fill_(-1e4)  # sigmoid ~ 0: the context is switched off
        closed_a, _ = model(images(), tokens)
        closed_b, _ = model(images()[[1, 0]], tokens)
    assert not torch.allclose(open_a, open_b, atol=1e-5)
    assert torch.allclose(closed_a, closed_b, atol=1e-6)


def test_models_without_images_do_not_import_torchvision() -> None:
    # torchvision costs about 160 MB of memory; translation and text generation never need it.
    program = "import sys, seq2seq.models, seq2seq.training.trainer; print('torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
