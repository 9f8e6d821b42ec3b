"""A small synthetic dataset of drawn shapes, so the app can be tried without any data.

Shapes vary in position, size (30-80% of the image), rotation and colour, on a noisy
coloured background. Each class leans to one hue (see _CLASS_HUES), so a ResNet18
trained from scratch on a CPU gets well above chance within a minute, and the shape
is what it must learn to go further.
"""

from __future__ import annotations

import colorsys
import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

# Alphabetical, so the index of a class here matches the one scan_dataset gives it.
SAMPLE_CLASSES = ["circle", "square", "star", "triangle"]

_SUPERSAMPLE = 2           # draw at 2x and shrink: smooth edges at tiny sizes
_NOISE_STRENGTH = 0.12     # share of random noise blended into the background
_MIN_COLOUR_DISTANCE = 120  # keep the shape visible against its background


def generate_sample_dataset(
    directory: str | os.PathLike[str],
    *,
    images_per_class: int = 60,
    image_size: int = 64,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``directory/<class>/<class>_0000.png`` ... and return the directory.

    Deterministic for a given seed (same pixels, same PNG bytes with the same Pillow).
    Refuses a directory that already exists and is not empty, so it never mixes
    with or overwrites the user's files.
    """
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be at least 1, got {images_per_class}.")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}.")
    directory = Path(directory).expanduser()
    _ensure_empty_directory(directory)

    total = images_per_class * len(SAMPLE_CLASSES)
    done = 0
    for name in SAMPLE_CLASSES:
        class_dir = directory / name
        class_dir.mkdir()
        for i in range(images_per_class):
            # A string seed per image: stable across platforms and independent of
            # images_per_class, so image k of a class is the same in every run.
            rng = random.Random(f"{seed}/{name}/{i}")
            image = draw_sample(name, image_size, rng)
            image.save(class_dir / f"{name}_{i:04d}.png", compress_level=1)
            done += 1
            if progress is not None:
                progress(done, total)
    return directory


def ensure_sample_dataset(directory: str | os.PathLike[str], *, images_per_class: int, image_size: int) -> Path:
    """The sample dataset in `directory`, made now unless a complete one is already there.

    A folder half made by an interrupted earlier try is ours to replace; a folder holding anything
    else is the user's, and is refused.
    """
    directory = Path(directory).expanduser()
    complete = directory.is_dir() and all(
        len(list((directory / name).glob("*.png"))) >= images_per_class for name in SAMPLE_CLASSES)
    if complete:
        return directory
    if directory.exists() and any(directory.iterdir()):
        if not {p.name for p in directory.iterdir()} <= set(SAMPLE_CLASSES):
            raise ValueError(f"{directory} holds files that are not sample data; choose another folder")
        shutil.rmtree(directory)
    return generate_sample_dataset(directory, images_per_class=images_per_class, image_size=image_size)


def _ensure_empty_directory(directory: Path) -> None:
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"Cannot create the sample dataset: {directory} is a file, not a folder.")
        if any(directory.iterdir()):
            raise ValueError(
                f"Cannot create the sample dataset in {directory}: the folder is not empty. "
                "Choose a new or empty folder."
            )
    directory.mkdir(parents=True, exist_ok=True)


def draw_sample(shape: str, image_size: int, rng: random.Random) -> Image.Image:
    """One RGB image of ``shape`` drawn with the randomness of ``rng``."""
    canvas = image_size * _SUPERSAMPLE
    background, fill = _contrasting_colours(shape, rng)
    image = _noisy_background(canvas, background, rng)

    extent = rng.uniform(0.3, 0.8) * canvas  # the shape's width/height, about
    radius = extent / 2
    cx = rng.uniform(radius, canvas - radius)
    cy = rng.uniform(radius, canvas - radius)
    angle = rng.uniform(0, 2 * math.pi)

    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    else:
        draw.polygon(_polygon_points(shape, cx, cy, radius, angle), fill=fill)
    return image.resize((image_size, image_size), Image.Resampling.BOX)


def _polygon_points(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        radii = [radius] * 4
    elif shape == "triangle":
        radii = [radius] * 3
    elif shape == "star":
        radii = [radius, radius * 0.4] * 5  # alternating outer and inner points
    else:
        raise ValueError(f"Unknown sample shape {shape!r}; expected one of {SAMPLE_CLASSES}.")
    step = 2 * math.pi / len(radii)
    return [
        (cx + r * math.cos(angle + k * step), cy + r * math.sin(angle + k * step))
        for k, r in enumerate(radii)
    ]


# Each class leans to its own hue: most of its shapes are drawn in it, the rest in any hue. Real
# classes often differ in colour as well as form (roses and daisies), and this cue is what lets a
# first run on a CPU learn well above chance in about a minute; the shape is needed for the rest.
_CLASS_HUES = {"circle": 0.0, "square": 0.33, "star": 0.6, "triangle": 0.83}
_CLASS_HUE_SHARE = 0.75  # share of a class's images whose shape has the class's hue
_HUE_SPREAD = 0.05


def _contrasting_colours(shape: str, rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A light, greyish background and a darker, saturated fill.

    Always dark-on-light, because a small network learns "the outline of the dark blob" much faster
    than a shape whose polarity flips from image to image.
    """
    background = _random_colour(rng, 150, 255)
    if rng.random() < _CLASS_HUE_SHARE:
        hue = (_CLASS_HUES[shape] + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD)) % 1.0
    else:
        hue = rng.random()
    while True:
        red, green, blue = colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.35, 0.75))
        fill = (round(red * 255), round(green * 255), round(blue * 255))
        if math.dist(background, fill) >= _MIN_COLOUR_DISTANCE:
            return background, fill
        background = _random_colour(rng, 150, 255)


def _random_colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _noisy_background(size: int, colour: tuple[int, int, int], rng: random.Random) -> Image.Image:
    # randbytes is deterministic for the seed and fast; numpy's streams may change between versions.
    noise = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    return Image.blend(Image.new("RGB", (size, size), colour), noise, _NOISE_STRENGTH)
