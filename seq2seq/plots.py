"""Pictures of what a model does (PNG): the attention alignment of a translated sentence, and
where a captioning model looked for each word of its caption.

Figures are drawn with matplotlib's Agg canvas directly, so that no display and no global
backend setting is needed. matplotlib is imported only when a figure is made, so that
importing this module (and the recipes that plot) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(
    width: float, height: float, layout: Literal["constrained", "compressed", "tight"] | None = None
) -> Figure:
    """An empty figure of ``width`` x ``height`` inches on its own Agg (non-interactive) canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


# Inches per token along each axis, and the least a figure gets.
_INCHES_PER_TOKEN = 0.35
_MIN_INCHES = 4.0


def plot_attention(
    weights: Tensor, source_tokens: Sequence[str], target_tokens: Sequence[str], path: Path, title: str = ""
) -> None:
    """Save the attention of each target token over the source tokens as a heat map.

    weights: (T, S) attention weights, row t the distribution of target token t over the
    source; source_tokens (S) label the columns, target_tokens (T) the rows.
    """
    if weights.dim() != 2 or tuple(weights.shape) != (len(target_tokens), len(source_tokens)):
        raise ValueError(
            f"attention weights of shape {tuple(weights.shape)} do not fit {len(target_tokens)} target and "
            f"{len(source_tokens)} source tokens: pass a (target tokens, source tokens) matrix"
        )
    width = max(_MIN_INCHES, 1.5 + _INCHES_PER_TOKEN * len(source_tokens))
    height = max(_MIN_INCHES, 1.5 + _INCHES_PER_TOKEN * len(target_tokens))
    figure = new_figure(width, height, layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(weights.detach().float().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(source_tokens)), labels=list(source_tokens), rotation=90)
    axis.set_yticks(range(len(target_tokens)), labels=list(target_tokens))
    axis.set_xlabel("source")
    axis.set_ylabel("target")
    axis.xaxis.tick_top()
    axis.xaxis.set_label_position("top")
    if title:
        figure.suptitle(title)
    figure.colorbar(image, ax=axis, shrink=0.6, label="attention weight")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


# Panels per row of a caption attention map.
_PANELS_PER_ROW = 5


def plot_caption_attention(
    image: np.ndarray, words: Sequence[str], weights: Tensor, grid_size: int, path: Path, title: str = ""
) -> None:
    """Save the image and, for each word of its caption, the attention over the image grid.

    image: (H, W, 3) uint8 RGB, as the model saw it; words: the T generated words (eos
    included, if it was generated); weights: (T, k*k) each word's attention over the k x k
    grid, row by row. Each panel shows the image with the word's weights stretched over it.
    """
    if weights.dim() != 2 or tuple(weights.shape) != (len(words), grid_size * grid_size):
        raise ValueError(
            f"attention weights of shape {tuple(weights.shape)} do not fit {len(words)} words over a "
            f"{grid_size} x {grid_size} grid: pass a (words, grid_size ** 2) matrix"
        )
    panels = 1 + len(words)
    columns = min(panels, _PANELS_PER_ROW)
    rows = math.ceil(panels / columns)
    figure = new_figure(2.4 * columns, 2.6 * rows, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    height, width = image.shape[:2]
    maps = weights.detach().float().cpu().reshape(len(words), grid_size, grid_size).numpy()
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=10)
    for axis, word, heat in zip(axes[1:], words, maps):
        axis.imshow(image)
        axis.imshow(heat, cmap="inferno", alpha=0.6, extent=(0, width, height, 0), interpolation="bilinear")
        axis.set_title(word, fontsize=10)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
