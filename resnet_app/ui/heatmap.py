"""Heat maps as colours: a jet-like colour map in numpy, blended over a QImage (no matplotlib).

Safe off the GUI thread (QImage and numpy only), so the Grad-CAM worker returns a finished image.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

OPACITY = 0.55  # of the colours over the hottest parts; cooler parts show more of the photo


def jet(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 (any shape) -> uint8 RGB (shape + (3,)): dark blue, blue, cyan, yellow, red, dark red."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    channels = [np.clip(1.5 - np.abs(4.0 * v - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]  # R, G, B
    return (np.concatenate(channels, axis=-1) * 255 + 0.5).astype(np.uint8)


def image_to_array(image: QImage) -> np.ndarray:
    """An HxWx3 uint8 copy of a QImage's RGB pixels."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    raw = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=stride * height).reshape(height, stride)
    return raw[:, :width * 3].reshape(height, width, 3).copy()


def array_to_image(pixels: np.ndarray) -> QImage:
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()  # owns its bytes


def blend_heatmap(image: QImage, heatmap: np.ndarray, opacity: float = OPACITY) -> QImage:
    """`heatmap` (HxW, 0..1, the image's size) coloured with `jet` and laid over `image`.

    The colour's weight grows with the heat (a third of `opacity` at 0), so where the model did not
    look the photo stays readable under a blue tint.
    """
    pixels = image_to_array(image).astype(np.float32)
    if heatmap.shape != pixels.shape[:2]:
        raise ValueError(f"heat map {heatmap.shape} does not fit image {pixels.shape[:2]}")
    weight = (opacity * (0.35 + 0.65 * np.clip(heatmap, 0.0, 1.0)))[..., None]
    blended = pixels * (1.0 - weight) + jet(heatmap).astype(np.float32) * weight
    return array_to_image(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def legend_image(width: int = 120, height: int = 10) -> QImage:
    """The colour map as a horizontal bar, low (left) to high (right)."""
    row = jet(np.linspace(0.0, 1.0, width, dtype=np.float32))
    return array_to_image(np.repeat(row[None, :, :], height, axis=0))
