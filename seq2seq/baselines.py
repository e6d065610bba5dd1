"""The nearest-neighbour captioner: the baseline every captioning report is measured against.

An image gets the first reference caption of the training image closest to it (L2 distance),
either in pixel space (the image shrunk to 32 x 32 RGB, values in [0, 1]) or in the feature
space of a trained model's CNN encoder (its pooled image vector). It never composes a new
caption: it can only copy one it has seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from seq2seq.data.captions import CaptionImages, ImageCaptions, caption_batches
from seq2seq.data.images import BadImageError, load_rgb, pixels_of
from seq2seq.models.image_encoder import CNNEncoder

PIXEL_SIZE = 32  # the side of the shrunk images compared in pixel space
_QUERY_CHUNK = 1024  # query images compared with every training image at once


def pixel_vectors(images: Sequence[ImageCaptions], max_pixels: int = 50_000_000) -> Tensor:
    """(N, 3 * 32 * 32) each image shrunk to 32 x 32 RGB in [0, 1]; NaN rows for unreadable images."""
    vectors = torch.full((len(images), 3 * PIXEL_SIZE * PIXEL_SIZE), float("nan"))
    for row, image in enumerate(images):
        try:
            small = load_rgb(image.path, max_pixels).resize((PIXEL_SIZE, PIXEL_SIZE), Image.Resampling.BILINEAR)
        except BadImageError:
            continue
        vectors[row] = pixels_of(small).flatten().float() / 255.0
    return vectors


@torch.inference_mode()
def feature_vectors(encoder: CNNEncoder, images: CaptionImages, batch_images: int = 64) -> Tensor:
    """(N, C) the encoder's pooled vector of each image; NaN rows for unreadable images."""
    encoder.eval()
    device = next(encoder.parameters()).device
    vectors = torch.full((len(images), encoder.output_size), float("nan"))
    for batch in caption_batches(images, batch_images, shuffle=False):
        vectors[batch.indices] = encoder(batch.images.to(device)).summary.float().cpu()  # (B, C)
    return vectors


def nearest_neighbour_captions(
    train_vectors: Tensor, train_sets: Sequence[ImageCaptions], query_vectors: Tensor
) -> list[str]:
    """The first caption of each query's closest training image (L2); "" for an unreadable query.

    train_vectors: (N, D) with NaN rows for unreadable training images, which are never chosen;
    query_vectors: (M, D).
    """
    usable = ~train_vectors.isnan().any(dim=1)  # (N,)
    if not bool(usable.any()):
        raise ValueError("no training image could be read, so there is no neighbour to copy a caption from")
    candidates = train_vectors[usable]  # (N', D)
    candidate_rows = usable.nonzero().squeeze(1)  # (N',)
    captions = []
    for chunk in query_vectors.split(_QUERY_CHUNK):
        nearest = torch.cdist(chunk.nan_to_num(0.0), candidates).argmin(dim=1)  # (m,)
        for query, index in zip(chunk, nearest.tolist()):
            readable = not bool(query.isnan().any())
            captions.append(train_sets[int(candidate_rows[index])].captions[0] if readable else "")
    return captions
