"""Near-duplicate images: the same picture resized, re-encoded or slightly brightened, found by a
perceptual hash, so that the dataset report can list them across classes and across the split.

The byte-identical files that scan.scan_dataset finds are only the easy case: a photo saved twice
at another size or JPEG quality has other bytes but is the same picture. In two classes it is a
labelling mistake; on both sides of the training/validation split it leaks the answer into
validation and overstates accuracy.

The hash is the difference hash ("dHash", Neal Krawetz, 2013): the image in grey shrunk to 9x8
pixels, one bit per pair of horizontal neighbours (is the left one brighter?), 64 bits. Resizing,
re-encoding and a brightness change keep which neighbour is brighter, so the bits barely change;
different pictures differ in about half of them. Two images are near-duplicates when their hashes
differ in at most `max_distance` bits and their mean colours are close (a flat red and a flat blue
image have the same hash: every neighbour pair is equal). Pure Pillow and numpy, no model: JPEGs are
decoded at 1/8 scale, so hashing costs a fraction of a full decode.

Pairs are found without comparing every image with every other: split the 64 bits into
max_distance + 1 blocks; two hashes that differ in at most max_distance bits agree exactly on at
least one block (pigeonhole), so only images sharing a block's value are compared (Manku et al.,
"Detecting near-duplicates for web crawling", 2007).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_app.core.data.images import ImageLoadError, load_image

HASH_BITS = 64
# At most this many of the 64 bits may differ. A resize, a JPEG re-encode at quality 60, a 15 %
# brightness change or a slight blur flip 0-4 bits of a photo-like image, while unrelated ones differ
# in 32 on average and 11 at the least (200 generated photo-like images). Flat, noisy images (the
# sample shapes on their grainy backgrounds) are harder: their bits follow the grain, so their
# near-duplicates can go unfound, and unrelated ones come as close as 5 bits -- the colour check below
# keeps those apart (no pair among the 240 sample images at this setting).
DEFAULT_MAX_DISTANCE = 6
# ...and their mean colours may differ by at most this much on each channel (0-255): a brightness
# change of 20 % moves a mid-grey by ~25.
MAX_MEAN_COLOUR_DIFFERENCE = 40.0
_DECODE_SIZE_HINT = 32  # the shorter side the loader must keep: JPEG decodes at the smallest DCT scale above it


@dataclass(frozen=True)
class ImageHash:
    dhash: int  # 64 bits
    mean_colour: tuple[float, float, float]  # RGB, 0-255


@dataclass(frozen=True)
class NearDuplicate:
    """Two images that show the same picture (as far as the hash can tell)."""

    first: Path
    second: Path
    distance: int  # how many of the 64 hash bits differ (0: the same hash)
    first_label: int | None = None
    second_label: int | None = None
    across_classes: bool = False  # labelled as two different classes: one label is wrong
    across_split: bool = False  # one trains, the other validates: validation sees a training image

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        def label(index: int | None) -> int | str | None:
            return class_names[index] if class_names is not None and index is not None else index

        return {"first": str(self.first), "second": str(self.second), "distance": self.distance,
                "first_class": label(self.first_label), "second_class": label(self.second_label),
                "across_classes": self.across_classes, "across_split": self.across_split}


# --- the hash ------------------------------------------------------------------------------------

def difference_hash(image: Image.Image) -> int:
    """The 64-bit difference hash of an image: bit i is set when pixel i of the 9x8 grey thumbnail is
    brighter than its right-hand neighbour (row by row)."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def image_hash(image: Image.Image) -> ImageHash:
    """The hash and mean colour of a decoded image (for a caller that has decoded it anyway)."""
    rgb = image.convert("RGB")
    mean = np.asarray(rgb.resize((8, 8), Image.Resampling.BOX), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return ImageHash(difference_hash(rgb), (float(mean[0]), float(mean[1]), float(mean[2])))


# A 9x8 grey thumbnail whose brightest and darkest pixels differ by less than this (of 255) shows no
# picture to compare: every such image has the hash 0, and only its colour would be left to judge by.
FEATURELESS_RANGE = 8


def featureless(image: Image.Image) -> bool:
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return int(grey.max()) - int(grey.min()) < FEATURELESS_RANGE


def check_and_hash_image(path: str | os.PathLike[str]) -> tuple[str | None, ImageHash | None]:
    """(why the file can't be read, or None; its hash, or None): one decode for the dataset check and
    the near-duplicate hash. No hash for an image that shows nothing to compare (a flat colour: flat
    images of close colours would all pair up, telling the user nothing)."""
    try:
        image = load_image(path, _DECODE_SIZE_HINT)
    except ImageLoadError as exc:
        return exc.reason, None
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}", None
    return None, (None if featureless(image) else image_hash(image))


def hash_image(path: str | os.PathLike[str]) -> ImageHash | None:
    """The hash of the image file (see check_and_hash_image), or None."""
    return check_and_hash_image(path)[1]


def hash_images(paths: Sequence[Path], progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, workers: int | None = None
                ) -> list[ImageHash | None] | None:
    """The hash of each path (None for a file that can't be read), in order; None if stopped.
    Threads decode in parallel (Pillow releases the GIL while decoding)."""
    total = len(paths)
    hashes: list[ImageHash | None] = []
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    chunk = 64
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="near-dup-hash") as pool:
        for start in range(0, total, chunk):
            if should_stop is not None and should_stop():
                return None
            hashes.extend(pool.map(hash_image, paths[start:start + chunk]))
            if progress is not None:
                progress(len(hashes), total)
    return hashes


# --- the pairs -----------------------------------------------------------------------------------

def find_near_duplicates(samples: Sequence[tuple[Path, int]] | Sequence[Path], *,
                         val_paths: Iterable[Path] | None = None, max_distance: int = DEFAULT_MAX_DISTANCE,
                         max_colour_difference: float = MAX_MEAN_COLOUR_DIFFERENCE,
                         hashes: Sequence[ImageHash | None] | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         should_stop: Callable[[], bool] | None = None) -> list[NearDuplicate] | None:
    """Every pair of near-duplicate images among `samples` ((path, label) pairs, or plain paths),
    sorted by path; None if stopped.

    Each pair says whether it crosses classes (different labels) and, given `val_paths` (the
    validation side of the split), whether it crosses the split. Pairs within one class on one side
    are returned too (`across_classes` and `across_split` false): harmless to train on, but worth
    keeping together when splitting. Unreadable files are left out. `hashes` (from hash_images, in
    the same order) saves hashing again.
    """
    if max_distance < 0 or max_distance >= HASH_BITS:
        raise ValueError(f"max_distance must be from 0 to {HASH_BITS - 1}, got {max_distance}")
    paths = [Path(item[0]) if isinstance(item, tuple) else Path(item) for item in samples]
    labels = [int(item[1]) if isinstance(item, tuple) else None for item in samples]
    if hashes is None:
        hashes = hash_images(paths, progress, should_stop)
        if hashes is None:
            return None
    readable = [i for i, h in enumerate(hashes) if h is not None]
    values = np.array([hashes[i].dhash for i in readable], dtype=np.uint64)
    colours = np.array([hashes[i].mean_colour for i in readable], dtype=np.float64).reshape(-1, 3)
    validation = {Path(p) for p in val_paths} if val_paths is not None else None
    pairs = []
    for a, b, distance in _close_pairs(values, max_distance):
        if np.abs(colours[a] - colours[b]).max() > max_colour_difference:
            continue
        i, j = readable[a], readable[b]
        if str(paths[j]) < str(paths[i]):
            i, j = j, i
        pairs.append(NearDuplicate(
            paths[i], paths[j], distance, labels[i], labels[j],
            across_classes=labels[i] is not None and labels[j] is not None and labels[i] != labels[j],
            across_split=validation is not None and ((paths[i] in validation) != (paths[j] in validation))))
    return sorted(pairs, key=lambda pair: (str(pair.first), str(pair.second)))


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values) if hasattr(np, "bitwise_count") else \
        np.unpackbits(values.view(np.uint8).reshape(*values.shape, 8), axis=-1).sum(axis=-1)


def _close_pairs(values: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(a, b, distance) with a < b for every pair of `values` (uint64) differing in <= max_distance bits."""
    found: dict[tuple[int, int], int] = {}
    blocks = max_distance + 1
    edges = [round(k * HASH_BITS / blocks) for k in range(blocks + 1)]
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        mask = np.uint64((1 << (high - low)) - 1)
        keys = (values >> np.uint64(low)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            if end - start >= 2:
                _compare_group(values, order[start:end], max_distance, found)
    return [(a, b, distance) for (a, b), distance in sorted(found.items())]


def _compare_group(values: np.ndarray, members: np.ndarray, max_distance: int, found: dict) -> None:
    """All pairs within a group sharing a block, a slab of rows at a time (bounded memory)."""
    members = np.sort(members)
    group = values[members]
    rows = max(1, 4_000_000 // len(members))
    for start in range(0, len(members), rows):
        distances = _popcount(group[start:start + rows, None] ^ group[None, :])
        for r, c in zip(*np.nonzero(distances <= max_distance), strict=True):
            a, b = int(members[start + r]), int(members[c])
            if a < b:
                found[(a, b)] = int(distances[r, c])


# --- for the dataset report and the split ------------------------------------------------------

def without_identical(pairs: Sequence[NearDuplicate],
                      identical_groups: Iterable[Sequence[Path]]) -> list[NearDuplicate]:
    """`pairs` less those whose two files are byte-identical (scan.scan_dataset's `duplicates` and
    `copies` groups), which the report already lists."""
    group_of = {Path(path): number for number, group in enumerate(identical_groups) for path in group}
    return [pair for pair in pairs
            if group_of.get(pair.first) is None or group_of.get(pair.first) != group_of.get(pair.second)]


def near_duplicate_groups(pairs: Sequence[NearDuplicate]) -> list[list[Path]]:
    """The pairs joined into groups (a ~ b and b ~ c: one group of three), each sorted: the form of
    scan_dataset's `copies`, so splits.stratified_split can keep each group on one side of the split."""
    parent: dict[Path, Path] = {}

    def root(path: Path) -> Path:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for pair in pairs:
        parent[root(pair.first)] = root(pair.second)
    groups: dict[Path, list[Path]] = {}
    for path in parent:
        groups.setdefault(root(path), []).append(path)
    return sorted(sorted(group) for group in groups.values())
