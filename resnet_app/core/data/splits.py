"""Splitting a dataset into training and validation images: by the folders it comes in, or by a
stratified share per class that keeps byte-identical copies on one side.
"""
from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from pathlib import Path

# The defaults of the settings table (train/settings.py) and of the split the dataset check assumes.
DEFAULT_VAL_FRACTION = 0.2  # share of each class held out for validation
DEFAULT_SEED = 0

TRAIN_FOLDER_NAMES = ("train", "training")
VALIDATION_FOLDER_NAMES = ("val", "valid", "validation")


def split_layout(root: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """(train folder, validation folder) when `root` holds just those two, each with class folders in
    it (the layout many datasets come in: train/cat, train/dog, val/cat, val/dog); else None."""
    root = Path(root)
    try:
        folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    except OSError:
        return None
    train = [folders[n] for n in TRAIN_FOLDER_NAMES if n in folders]
    val = [folders[n] for n in VALIDATION_FOLDER_NAMES if n in folders]
    if len(folders) != 2 or len(train) != 1 or len(val) != 1:
        return None
    has_classes = all(any(c.is_dir() for c in side.iterdir()) for side in (train[0], val[0]))
    return (train[0], val[0]) if has_classes else None



def stratified_split(
    samples: list[tuple[Path, int]], val_fraction: float, seed: int,
    copies: list[list[Path]] | None = None,
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Split into (train, val) keeping each class's share of validation images.

    Reproducible across platforms: uses ``random.Random`` with a per-class string
    seed (stable hashing), never torch. Each class is shuffled with its own seed so
    adding or removing a class does not reshuffle the others. A class with >= 2 images
    gives at least 1 to validation (when val_fraction > 0) and keeps at least 1 for
    training. Both outputs keep the input order, which scan_dataset makes deterministic.
    """
    if not isinstance(val_fraction, (int, float)) or not (0.0 <= val_fraction < 1.0):
        raise ValueError(
            f"val_fraction must be at least 0 and less than 1 (e.g. 0.2 for 20%), got {val_fraction!r}."
        )
    indices_by_label: dict[int, list[int]] = defaultdict(list)
    for index, (_, label) in enumerate(samples):
        indices_by_label[label].append(index)

    group_of = _copy_groups(samples, copies or [])
    val_indices: set[int] = set()
    for label in sorted(indices_by_label):
        indices = indices_by_label[label]
        n_val = _validation_count(len(indices), val_fraction)
        rng = random.Random(f"{seed}/{label}")
        if not any(i in group_of for i in indices):
            val_indices.update(rng.sample(indices, n_val))  # (as before copies were kept together)
        else:
            val_indices.update(_sample_keeping_copies_together(indices, n_val, group_of, rng))

    train = [s for i, s in enumerate(samples) if i not in val_indices]
    val = [s for i, s in enumerate(samples) if i in val_indices]
    return train, val


def _copy_groups(samples: list[tuple[Path, int]], copies: list[list[Path]]) -> dict[int, int]:
    """sample index -> copy group number, for samples that have byte-identical copies."""
    index_of = {Path(path): i for i, (path, _) in enumerate(samples)}
    group_of = {}
    for number, group in enumerate(copies):
        for path in group:
            if Path(path) in index_of:
                group_of[index_of[Path(path)]] = number
    return group_of


def _sample_keeping_copies_together(indices: list[int], n_val: int, group_of: dict[int, int],
                                    rng: random.Random) -> list[int]:
    """About n_val of `indices` for validation, taking each group of copies whole or not at all."""
    units: dict[object, list[int]] = {}
    for i in indices:
        units.setdefault(("copies", group_of[i]) if i in group_of else i, []).append(i)
    order = list(units.values())
    rng.shuffle(order)
    chosen: list[int] = []
    for unit in order:
        if len(chosen) + len(unit) <= n_val:
            chosen += unit
        if len(chosen) == n_val:
            break
    return chosen


def _validation_count(class_size: int, val_fraction: float) -> int:
    if val_fraction == 0 or class_size < 2:
        return 0
    rounded = math.floor(class_size * val_fraction + 0.5)
    return min(max(rounded, 1), class_size - 1)
