"""Datasets for benchmarks/learning_quality.py: image folders with a TRAIN folder and a held-out TEST folder.

Each kind is written as `<root>/<tag>/train/<class>/*.png` and `<root>/<tag>/test/<class>/*.png`, the
same pixels for the same seed, and kept: a later run with the same tag reuses it. The kinds:

- digits:  scikit-learn's load_digits, 1,797 real handwritten scans (8x8, 17 grey levels), upscaled;
           a fixed stratified 20 % is the test set (DataScale.digits_test_fraction).
- letters: a b d e n p q u rendered from the machine's TrueType fonts; the test set uses fonts that no
           training image uses. b/d and p/q are mirror images, so a horizontal flip turns one class
           into another: this is the set that shows what flipping costs.
- shapes:  the app's own generator (resnet_app.core.data.sample_data), test images from another seed.
- photos:  square patches of scikit-image's sample photos (class = the photo they come from); the test
           patches come from regions of each photo that no training patch overlaps.

Only digits and photos need a package beyond the app's own (scikit-learn, scikit-image); without it
that kind raises MissingDependency with the pip command to run.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from resnet_app.core.data.sample_data import generate_sample_dataset


class MissingDependency(RuntimeError):
    """A dataset needs a package that is not installed; the message says which and how to get it."""


@dataclass(frozen=True)
class DataScale:
    """How much data to write: images per class in TRAIN (before the app's own validation split) and
    in TEST. digits has what it has (about 144 train / 36 test per class) unless capped lower."""

    name: str  # "default" or "quick": recorded with each result, so the two never mix in a table
    train_per_class: int
    test_per_class: int
    # digits only: the share of the 1,797 scans held out as TEST (before the cap). calibration_size.py
    # holds out half, for a held-out pool of ~900 scans.
    digits_test_fraction: float = 0.2


DEFAULT_SCALE = DataScale("default", train_per_class=150, test_per_class=50)
QUICK_SCALE = DataScale("quick", train_per_class=24, test_per_class=12)


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    tag: str  # names the parameters the files were made with: results are only compared within one tag
    train_dir: Path
    test_dir: Path


def stored_size(image_size: int) -> int:
    """Side of the PNGs written: at least 32 px (the article's size), so that a 16 px smoke run reads
    the same kind of files, downscaled by the app like any user's folder."""
    return max(32, image_size)


def prepare_dataset(name: str, root: Path, scale: DataScale, image_size: int, seed: int = 0) -> PreparedDataset:
    """The dataset's folders under `root`, written now unless an earlier call left them complete."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(BUILDERS)}")
    size = stored_size(image_size)
    tag = f"{name}-train{scale.train_per_class}-test{scale.test_per_class}-px{size}-seed{seed}"
    if name == "digits" and scale.digits_test_fraction != DEFAULT_SCALE.digits_test_fraction:
        tag += f"-testshare{scale.digits_test_fraction:g}"  # the usual share keeps the tags made before
    final = root / tag
    if not (final / "manifest.json").exists():
        # Written under a temporary name and renamed when complete: an interrupted write is never reused.
        partial = root / f"{tag}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "train").mkdir(parents=True)
        (partial / "test").mkdir()
        details = BUILDERS[name](partial / "train", partial / "test", scale, size, seed)
        manifest = {"dataset": name, "scale": scale.name, "train_per_class": scale.train_per_class,
                    "test_per_class": scale.test_per_class, "image_size": size, "seed": seed, **details}
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    return PreparedDataset(name, tag, final / "train", final / "test")


def _save_png(image: Image.Image, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(folder / name, compress_level=1)


def _image_rng(*parts: object) -> random.Random:
    # A string seed per image, as sample_data does: stable across platforms and Python versions.
    return random.Random("/".join(str(p) for p in parts))


# --- digits: real handwritten scans -----------------------------------------------------------------

def build_digits(train_dir: Path, test_dir: Path, scale: DataScale, size: int, seed: int) -> dict:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingDependency("the digits dataset needs scikit-learn: .venv/bin/pip install scikit-learn") from exc
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(indices, test_size=scale.digits_test_fraction, stratify=digits.target,
                                           random_state=seed)
    for folder, chosen, cap in ((train_dir, train_idx, scale.train_per_class),
                                (test_dir, test_idx, scale.test_per_class)):
        kept: dict[int, int] = {}
        for index in sorted(chosen):
            label = int(digits.target[index])
            if kept.get(label, 0) >= cap:
                continue
            kept[label] = kept.get(label, 0) + 1
            _save_png(_digit_image(digits.images[index], size), folder / str(label), f"scan_{index:04d}.png")
    return {"source": "sklearn.datasets.load_digits", "test_fraction": scale.digits_test_fraction}


def _digit_image(scan: np.ndarray, size: int) -> Image.Image:
    # load_digits holds ink as 0..16; drawn dark on light like a scanned page, then upscaled smoothly.
    pixels = (255 - scan * (255 / 16)).round().astype(np.uint8)
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)


# --- letters: glyphs from fonts, tested on unseen fonts ------------------------------------------------

LETTERS = "abdenpqu"  # b/d and p/q are mirror pairs; a e n u are the other lowercase letters without ascenders
# Held-out fonts, one from each family, so every family (Sans, Condensed, Mono, Serif) is seen in training
# in other weights/styles; used when the machine has DejaVu, else every 4th font found is held out.
TEST_FONT_STEMS = ("DejaVuSans-ExtraLight", "DejaVuSansCondensed-Oblique", "DejaVuSansMono-Bold",
                   "DejaVuSerif-Italic", "DejaVuSerifCondensed")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
SUPERSAMPLE = 4  # glyphs are drawn at 4x and shrunk: smooth edges at 32 px


def find_fonts() -> list[Path]:
    """TrueType fonts that cover English text (fontconfig's view), or DejaVu's folder without fc-list."""
    try:
        listed = subprocess.run(["fc-list", "--format", "%{file}\n", ":lang=en"], capture_output=True,
                                text=True, check=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        listed = [str(p) for p in DEJAVU_DIR.glob("*.ttf")]
    # Math and symbol fonts claim English coverage but draw letters in odd styles or not at all.
    fonts = {Path(f) for f in listed if f.lower().endswith((".ttf", ".otf"))
             and not any(word in Path(f).stem.lower() for word in ("math", "symbol", "emoji"))}
    return sorted(fonts, key=lambda p: p.stem)


def split_fonts(fonts: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training fonts, test fonts): disjoint, so the test measures generalisation to new typefaces."""
    preferred = [f for f in fonts if f.stem in TEST_FONT_STEMS]
    test = preferred if len(preferred) >= 2 else fonts[2::4]
    train = [f for f in fonts if f not in test]
    if len(train) < 2 or not test:
        raise MissingDependency(f"the letters dataset needs at least 3 TrueType fonts; found {len(fonts)} "
                                "(apt-get install fonts-dejavu-core)")
    return train, test


def build_letters(train_dir: Path, test_dir: Path, scale: DataScale, size: int, seed: int) -> dict:
    train_fonts, test_fonts = split_fonts(find_fonts())
    for folder, fonts, count in ((train_dir, train_fonts, scale.train_per_class),
                                 (test_dir, test_fonts, scale.test_per_class)):
        for letter in LETTERS:
            for i in range(count):
                font = fonts[i % len(fonts)]  # round robin: every font gets an equal share of each class
                image = render_glyph(letter, font, size, _image_rng(seed, folder.name, letter, i))
                _save_png(image, folder / letter, f"{letter}_{font.stem}_{i:04d}.png")
    return {"train_fonts": [f.stem for f in train_fonts], "test_fonts": [f.stem for f in test_fonts]}


@lru_cache(maxsize=512)
def _font(path: Path, points: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), points)


def render_glyph(letter: str, font_path: Path, size: int, rng: random.Random) -> Image.Image:
    """A dark glyph on a light grey ground, randomly scaled (glyph ~35-60 % of the side), shifted
    (up to 10 %), rotated (up to 10 degrees: less than would make p look like a rotated d) and noisy."""
    canvas = size * SUPERSAMPLE
    background, ink = rng.randint(170, 255), rng.randint(0, 90)
    image = Image.new("L", (canvas, canvas), background)
    draw = ImageDraw.Draw(image)
    font = _font(font_path, round(canvas * rng.uniform(0.5, 0.8)))
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    centre_x = canvas / 2 + rng.uniform(-0.1, 0.1) * canvas
    centre_y = canvas / 2 + rng.uniform(-0.1, 0.1) * canvas
    draw.text((centre_x - (left + right) / 2, centre_y - (top + bottom) / 2), letter, font=font, fill=ink)
    image = image.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC, fillcolor=background)
    image = image.resize((size, size), Image.Resampling.BOX)
    return _add_noise(image, sigma=rng.uniform(3, 15), rng=rng)


def _add_noise(image: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, sigma, (image.height, image.width))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


# --- shapes: the app's own generator ------------------------------------------------------------------

TEST_SEED_OFFSET = 10_000  # the generator's images depend on (seed, class, index): another seed, new images


def build_shapes(train_dir: Path, test_dir: Path, scale: DataScale, size: int, seed: int) -> dict:
    # generate_sample_dataset refuses a folder that is not empty; prepare_dataset made them empty.
    generate_sample_dataset(train_dir, images_per_class=scale.train_per_class, image_size=size, seed=seed)
    generate_sample_dataset(test_dir, images_per_class=scale.test_per_class, image_size=size,
                            seed=seed + TEST_SEED_OFFSET)
    return {"source": "resnet_app.core.data.sample_data.generate_sample_dataset", "test_seed": seed + TEST_SEED_OFFSET}


# --- photos: patches of real photographs --------------------------------------------------------------

PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "rocket")  # skimage.data
GRID = 4  # each photo is cut into 4x4 cells; a patch lies inside one cell
# One test cell in each row and each column: the test patches come from all over the photo, and no
# training patch overlaps them.
TEST_CELLS = ((0, 1), (1, 3), (2, 0), (3, 2))
MIN_PATCH_STD = 8.0  # grey levels: patches flatter than this (clear sky, black background) are drawn again


def build_photos(train_dir: Path, test_dir: Path, scale: DataScale, size: int, seed: int) -> dict:
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingDependency("the photos dataset needs scikit-image: .venv/bin/pip install scikit-image") from exc
    train_cells = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in TEST_CELLS]
    for name in PHOTOS:
        photo = np.asarray(getattr(skimage.data, name)())
        for folder, cells, count in ((train_dir, train_cells, scale.train_per_class),
                                     (test_dir, list(TEST_CELLS), scale.test_per_class)):
            rng = _image_rng(seed, folder.name, name)
            for i, patch in enumerate(_patches(photo, cells, count, rng)):
                _save_png(patch.resize((size, size), Image.Resampling.BOX), folder / name, f"{name}_{i:04d}.png")
    return {"source": "skimage.data", "photos": list(PHOTOS), "grid": GRID, "test_cells": [list(c) for c in TEST_CELLS]}


def _patches(photo: np.ndarray, cells: list[tuple[int, int]], count: int, rng: random.Random) -> Iterator[Image.Image]:
    """`count` square patches, 60-100 % of a cell's shorter side, taking the cells in turn."""
    cell_h, cell_w = photo.shape[0] // GRID, photo.shape[1] // GRID
    for i in range(count):
        row, col = cells[i % len(cells)]
        for _ in range(20):
            side = math.floor(rng.uniform(0.6, 1.0) * min(cell_h, cell_w))
            top = row * cell_h + rng.randint(0, cell_h - side)
            left = col * cell_w + rng.randint(0, cell_w - side)
            patch = photo[top:top + side, left:left + side]
            if patch.std() >= MIN_PATCH_STD:
                break
        yield Image.fromarray(patch)


BUILDERS: dict[str, Callable[[Path, Path, DataScale, int, int], dict]] = {
    "digits": build_digits,
    "letters": build_letters,
    "shapes": build_shapes,
    "photos": build_photos,
}
