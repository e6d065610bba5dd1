"""The encoder of image captioning: a CNN whose feature map the shared decoder attends over.

As in Show, Attend and Tell, the backbone's last feature map is adaptive-average-pooled to a
k x k grid: its k*k vectors of C channels are the memory that attention reads, and their mean
is the summary that starts the decoder state (through the decoder's bridge).

Backbones: torchvision's ResNets (18/34/50/101) and MobileNetV3 (small/large), with ImageNet
weights through torchvision's weights API when ``pretrained`` is on, and ``small``: a plain
CNN for training from scratch on small images. ``finetune_blocks`` says how many of the
backbone's last blocks train; the others are frozen (their batch-norm statistics too). A fully
frozen backbone's grid can be computed once per image and cached (``seq2seq.data.feature_cache``):
the encoder then reads those cached grids instead of images.
"""

from __future__ import annotations

import typing
import urllib.error
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seq2seq.config import ConfigError, bounded, check_config
from seq2seq.models.encoders import EncoderOutput

Backbone = typing.Literal[
    "small", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small", "mobilenet_v3_large"
]
BACKBONES = typing.get_args(Backbone)
RESNETS = tuple(name for name in BACKBONES if name.startswith("resnet"))
MOBILENETS = tuple(name for name in BACKBONES if name.startswith("mobilenet"))


@dataclass
class ImageEncoderConfig:
    """The CNN that reads the image."""

    # small (from scratch) | resnet18 | resnet34 | resnet50 | resnet101 | mobilenet_v3_small | mobilenet_v3_large
    backbone: Backbone = "small"
    pretrained: bool = False  # start from torchvision's ImageNet weights (not for small)
    # Backbone blocks, counted from the top, whose weights train: 0 freezes the whole backbone
    # (its features can then be cached), -1 trains all of it. ``small`` always trains all.
    finetune_blocks: int = bounded(-1, at_least=-1)
    grid_size: int = bounded(7, at_least=1)  # the feature map is average-pooled to grid_size x grid_size positions
    small_channels: list[int] = bounded([32, 64, 128, 256], at_least=1)  # small: channels per block
    dropout: float = bounded(0.0, at_least=0, below=1)  # on the grid vectors (the memory) during training


class PretrainedWeightsError(ConfigError):
    """ImageNet weights were asked for and could not be had."""


class SmallCNN(nn.Module):
    """Blocks of two 3x3 convolutions (batch norm, ReLU), each block halving the resolution."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("image_encoder.small_channels needs at least one block, e.g. [32, 64, 128, 256]")
        blocks, previous = [], 3
        for width in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = previous

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, H / 2^n, W / 2^n)"""
        return self.blocks(images)


class CNNEncoder(nn.Module):
    """Images (B, 3, H, W), or cached grids (B, k*k, C), -> memory (B, k*k, C) and summary (B, C)."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.blocks, self.output_size = _backbone_blocks(config)
        self.backbone = nn.Sequential(*self.blocks)
        self.grid_size = config.grid_size
        self.memory_dropout = nn.Dropout(config.dropout)
        self.trained_blocks = len(self.blocks) if config.finetune_blocks < 0 else config.finetune_blocks
        for block in self.blocks[: len(self.blocks) - self.trained_blocks]:
            block.requires_grad_(False)

    @property
    def frozen(self) -> bool:
        """Whether no backbone weight trains, so that each image's grid never changes."""
        return self.trained_blocks == 0

    def train(self, mode: bool = True) -> CNNEncoder:
        """Frozen blocks stay in eval mode: their batch-norm statistics do not move either."""
        super().train(mode)
        for block in self.blocks[: len(self.blocks) - self.trained_blocks]:
            block.eval()
        return self

    def grid(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, k*k, C) pooled feature vectors, row by row."""
        features = self.backbone(images)  # (B, C, h, w)
        pooled = F.adaptive_avg_pool2d(features, self.grid_size)  # (B, C, k, k)
        return pooled.flatten(2).transpose(1, 2)  # (B, k*k, C)

    def forward(self, source: Tensor) -> EncoderOutput:
        """source: images (B, 3, H, W), or grids (B, k*k, C) that ``grid`` made earlier."""
        grid = self.grid(source) if source.dim() == 4 else source.float()  # (B, S, C)
        if grid.shape[-1] != self.output_size:
            raise ValueError(
                f"cached features have {grid.shape[-1]} channels, but this {self.config.backbone} "
                f"encoder gives {self.output_size}: rebuild the feature cache"
            )
        memory = self.memory_dropout(grid)
        return EncoderOutput(grid.shape[0], memory=memory, mask=None, summary=grid.mean(dim=1))


def _check_config(config: ImageEncoderConfig) -> None:
    check_config(config, "image_encoder")  # types, choices and ranges, as the config loader checks them
    if config.pretrained and config.backbone == "small":
        raise ConfigError(
            "image_encoder.pretrained needs a torchvision backbone (resnet18 ... mobilenet_v3_large); "
            "the small CNN always trains from scratch"
        )
    if config.backbone == "small" and config.finetune_blocks == 0:
        raise ConfigError(
            "the small CNN trains from scratch, so it cannot be frozen: set image_encoder.finetune_blocks=-1"
        )


def _backbone_blocks(config: ImageEncoderConfig) -> tuple[list[nn.Module], int]:
    """The backbone as a list of blocks, bottom first, and its output channels."""
    if config.backbone == "small":
        small = SmallCNN(config.small_channels)
        return list(small.blocks), small.out_channels
    network: typing.Any = _torchvision_model(config.backbone, config.pretrained)  # its layers' names vary by family
    if config.backbone in RESNETS:
        stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
        blocks = [stem, network.layer1, network.layer2, network.layer3, network.layer4]
        return blocks, network.fc.in_features
    blocks = list(network.features)  # MobileNetV3: the stem, the inverted residual blocks, the last 1x1 conv
    return blocks, blocks[-1].out_channels


def _torchvision_model(name: str, pretrained: bool) -> nn.Module:
    """A torchvision classification network, with its default ImageNet weights if ``pretrained``."""
    # Imported here, not with this module: importing torchvision costs about 160 MB of memory,
    # which the tasks without images (translation, text generation) should not pay.
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        file_name = weights.url.rsplit("/", 1)[-1]
        place = f"{torch.hub.get_dir()}/checkpoints/{file_name}"
        raise PretrainedWeightsError(
            f"could not load the ImageNet weights of {name} ({weights}): {error}. "
            f"Without internet, download {weights.url} on another machine and put it at {place} "
            "(torchvision looks there first; $TORCH_HOME moves that folder), "
            "or set image_encoder.pretrained=false to train the backbone from scratch."
        ) from error
