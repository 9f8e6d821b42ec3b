"""Preprocessing shared by training, validation and prediction.

Two regimes, chosen by image size:
- small (<= SMALL_IMAGE_MAX px, the article's 32 px CIFAR setting): squash to a square, then for
  training a random crop with padding (1/8 of the side) and a horizontal flip;
- large (ImageNet setting, 224 px): training takes a random-resized crop and a flip; evaluation
  resizes the shorter side to 256/224 of the input size and takes the centre crop.
Prediction always uses the evaluation pipeline, with the normalisation stored in the model file.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

SMALL_IMAGE_MAX = 64
RESIZE_RATIO = 256 / 224  # ImageNet convention: resize to 256 before a 224 centre crop


def is_small(image_size: int) -> bool:
    return image_size <= SMALL_IMAGE_MAX


def crop_padding(image_size: int) -> int:
    """Zero padding around a small image before its random crop: 1/8 of the side (4 px at 32 px)."""
    return max(1, image_size // 8)


def decode_size_hint(image_size: int) -> int:
    """The shorter side the image loader must keep (lets JPEG draft mode skip decoding full size)."""
    return image_size if is_small(image_size) else round(image_size * RESIZE_RATIO)


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float], crop: bool = True,
                    flip: bool = True) -> v2.Compose:
    """Random crops (padded ones for small images, random-resized ones for large) and flips, each
    optional; without either, the evaluation pipeline."""
    if not crop:
        steps = _eval_steps(image_size)
    elif is_small(image_size):
        steps = [v2.Resize((image_size, image_size), antialias=True),
                 v2.RandomCrop(image_size, padding=crop_padding(image_size))]
    else:
        steps = [v2.RandomResizedCrop(image_size, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalized_tensor(mean, std))


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose(_eval_steps(image_size) + _to_normalized_tensor(mean, std))


def _eval_steps(image_size: int) -> list:
    # The decoded (fast) path repeats these steps to the pixel and the bit: decode_worker.decode_stored
    # (resize, a stored square) then batch_augment.BatchAugmenter.eval (centre crop, normalise).
    # Change both together; tests/core/data/test_pixels_match.py compares them across sizes and shapes.
    if is_small(image_size):
        return [v2.Resize((image_size, image_size), antialias=True)]
    return [v2.Resize(decode_size_hint(image_size), antialias=True), v2.CenterCrop(image_size)]
