"""Decoding images into fixed-size uint8 arrays: the work done in the decode processes.

Kept free of torch on purpose: worker processes start with `spawn` and import this module, and not
importing torch saves each of them a second or more of start-up.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from resnet_app.core.data.images import ImageLoadError, load_image


def decode_stored(path: str | Path, stored: int, small: bool, crop: int | None = None) -> np.ndarray:
    """One image as a (3, stored, stored) uint8 array, as the evaluation transform sees it before its
    final crop: squashed to a square (small images), or shorter side resized to `stored` and a
    stored x stored window cut out of the longer side (large ones).

    `crop` is the evaluation crop (the image size) that BatchAugmenter.eval will take from the
    centre of this square; by default the one whose resize size is `stored` (transforms.decode_size_hint).
    The window is placed so that that crop lands on exactly the pixels of torchvision's single
    CenterCrop: see _stored_window_offset.

    Raises ImageLoadError for files that can't be read.
    """
    image = load_image(path, size_hint=stored)  # the size_hint of every other path: same JPEG draft scale
    if small:
        # What v2.Resize((s, s)) does to a PIL image: this very call (no reducing_gap; Pillow returns a
        # copy when the size is already right, as torchvision returns the image).
        image = image.resize((stored, stored), Image.Resampling.BILINEAR)
    else:
        image = _resize_shorter_side(image, stored)
        crop = _eval_crop_for(stored) if crop is None else crop
        left = _stored_window_offset(image.width, stored, crop)
        top = _stored_window_offset(image.height, stored, crop)
        image = image.crop((left, top, left + stored, top + stored))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def centre_crop_offset(length: int, crop: int) -> int:
    """Where torchvision's CenterCrop starts a `crop`-long window in `length` pixels: Python's round(),
    which rounds halves to even (an odd margin of 3 starts at 2, of 5 at 2, of 7 at 4), not down.
    The one definition of the offset used by the fast path (batch_augment.center_crop and here)."""
    return int(round((length - crop) / 2.0))


def _stored_window_offset(length: int, stored: int, crop: int) -> int:
    """Start of the stored square along a side of `length` resized pixels.

    torchvision takes the crop in one step, at centre_crop_offset(length, crop). The fast path takes
    it in two: this window, then centre_crop_offset(stored, crop) inside it. Centring the window too
    would put the crop at round(a / 2) + round(b / 2) instead of round((a + b) / 2), with
    a = length - stored, b = stored - crop; with halves rounded to even these differ by one pixel
    whenever a is odd (a = 1, b = 2: 0 + 1 vs round(1.5) = 2). The window therefore starts where
    the crop must end up, less the offset the second step will add. It always fits in 0..a: rounding
    is monotonic, so it is >= 0 (and 0 when a == 0); each offset is within half a pixel of (a + b) / 2
    and of b / 2, so it is at most a / 2 + 1, which is <= a when a >= 2 and rounds down to 1 when a == 1.
    """
    return centre_crop_offset(length, crop) - centre_crop_offset(stored, crop)


def _eval_crop_for(stored: int) -> int:
    """The image size whose resize size is `stored`: the inverse of transforms.decode_size_hint for
    large images, which is one to one (sizes a pixel apart give stored sizes 8/7 px apart).

    Computed here, with the same float expression, because importing transforms would import torch
    into the decode processes. Falls back to `stored` (plain centring) for a size with no inverse,
    which decode_size_hint never makes; tests/core/data/test_pixels_match.py checks both.
    """
    guess = stored * 224 // 256
    for crop in (guess - 1, guess, guess + 1, guess + 2):
        if round(crop * (256 / 224)) == stored:
            return crop
    return stored


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision's v2.Resize(size) on a PIL image: Pillow's BILINEAR with no reducing_gap, as
    torchvision calls it (Pillow antialiases by itself, widening its filter when it shrinks, so
    antialias=True changes nothing), to the size of resized_shorter_side."""
    return image.resize(resized_shorter_side(image.width, image.height, size), Image.Resampling.BILINEAR)


def resized_shorter_side(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size): the shorter side becomes `size`, the longer
    int(size * long / short), truncated rather than rounded, with the operations in that order: in
    another, the float can fall just below the integer (67 * (116 / 67) is 115.99999999999999)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


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
