"""Decoding images into fixed-size uint8 arrays: the work done in the decode processes.

Kept free of torch on purpose: worker processes start with `spawn` and import this module, and not
importing torch saves each of them a second or more of start-up.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from resnet_app.core.images import ImageLoadError, load_image


def decode_stored(path: str | Path, stored: int, small: bool) -> np.ndarray:
    """One image as a (3, stored, stored) uint8 array, exactly as the evaluation transform sees it
    before cropping: squashed to a square (small images), or shorter side resized then centre-cropped.

    Raises ImageLoadError for files that can't be read.
    """
    image = load_image(path, size_hint=stored)
    if small:
        image = image.resize((stored, stored), Image.Resampling.BILINEAR)
    else:
        image = _resize_shorter_side(image, stored)
        # round() as torchvision's CenterCrop does, so the cached pixels match the streaming path.
        left, top = int(round((image.width - stored) / 2.0)), int(round((image.height - stored) / 2.0))
        image = image.crop((left, top, left + stored, top + stored))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    # The same arithmetic as torchvision's Resize(int): the longer side is truncated, not rounded.
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, Image.Resampling.BILINEAR)


def decode_chunk(paths: list[str], stored: int, small: bool) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode a list of files; returns (array of shape (len, 3, s, s), [(index, reason) of failures]).

    Failed slots stay zero; the caller drops them.
    """
    out = np.zeros((len(paths), 3, stored, stored), dtype=np.uint8)
    failures = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_stored(path, stored, small)
        except ImageLoadError as exc:
            failures.append((i, exc.reason))
    return out, failures
