"""Splitting a dataset into training and validation images: by the folders it comes in, or by a
stratified share per class that keeps byte-identical copies on one side ("random"), and also each group
of near-duplicates, such as the frames of one clip ("grouped", the default).
"""
from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The defaults of the settings table (train/settings.py) and of the split the dataset check assumes.
DEFAULT_VAL_FRACTION = 0.2  # share of each class held out for validation
DEFAULT_SEED = 0
SPLITS = ("grouped", "random")
DEFAULT_SPLIT = "grouped"
# A class whose largest group holds more than this share of its images can't be validated honestly:
# validation would hold that one picture (or clip) or none of it.
LOPSIDED_SHARE = 0.5

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
    _check_fraction(val_fraction)
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


def _check_fraction(val_fraction: float) -> None:
    if not isinstance(val_fraction, (int, float)) or not (0.0 <= val_fraction < 1.0):
        raise ValueError(
            f"val_fraction must be at least 0 and less than 1 (e.g. 0.2 for 20%), got {val_fraction!r}."
        )


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


# --- keeping groups whole --------------------------------------------------------------------------

@dataclass
class GroupedSplit:
    """What a grouped split did: how many groups it kept whole, and the classes it can't split honestly."""

    groups: int = 0  # groups of two or more images, each kept on one side
    images: int = 0  # images in them
    lopsided: list[tuple[int, int, int]] = field(default_factory=list)  # (label, largest group, class size)

    def summary(self) -> dict:
        return {"split": "grouped", "groups_kept_together": self.groups, "images_in_groups": self.images}


def grouped_split(samples: list[tuple[Path, int]], val_fraction: float, seed: int,
                  groups: Sequence[Sequence[Path]]) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]],
                                                             GroupedSplit]:
    """Split into (train, val, what was done), each group of `groups` (byte-identical copies,
    near-duplicates: lists of paths, which may overlap) going whole to one side, stratified by class.

    A group is filed under the class most of its images have (a group across classes holds a labelling
    mistake). Each class's units (its groups and its other images, one unit each) are shuffled with the
    class's own seed, as stratified_split does, and taken in that order while a unit brings the class's
    validation count closer to its share (a unit bigger than what is left may be taken when it overshoots
    by less than it would fall short), always keeping one unit for training. A class without any group
    is split exactly as stratified_split splits it. Linear in the number of images; the same seed and
    files give the same split.
    """
    _check_fraction(val_fraction)
    unit_of = _join(samples, groups)
    units: dict[int, list[int]] = {}
    for index, unit in enumerate(unit_of):
        units.setdefault(unit, []).append(index)
    by_label: dict[int, list[list[int]]] = defaultdict(list)
    for members in units.values():  # in order of their first image: deterministic
        labels = Counter(samples[i][1] for i in members)
        home = min(labels, key=lambda label: (-labels[label], label))
        by_label[home].append(members)
    done = GroupedSplit(groups=sum(len(m) >= 2 for m in units.values()),
                        images=sum(len(m) for m in units.values() if len(m) >= 2))
    val_indices: set[int] = set()
    for label in sorted(by_label):
        class_units = by_label[label]
        size = sum(len(unit) for unit in class_units)
        largest = max(len(unit) for unit in class_units)
        if largest >= 2 and largest > LOPSIDED_SHARE * size:
            done.lopsided.append((label, largest, size))
        rng = random.Random(f"{seed}/{label}")
        n_val = _validation_count(size, val_fraction)
        if largest == 1:  # no group in this class: the very images the random split takes
            val_indices.update(rng.sample([unit[0] for unit in class_units], n_val))
            continue
        order = list(class_units)
        rng.shuffle(order)
        val_indices.update(_closest_share(order, n_val, size))
    train = [s for i, s in enumerate(samples) if i not in val_indices]
    val = [s for i, s in enumerate(samples) if i in val_indices]
    return train, val, done


def _closest_share(units: list[list[int]], n_val: int, size: int) -> list[int]:
    chosen: list[int] = []
    for unit in units:
        if len(chosen) >= n_val:
            break
        closer = abs(len(chosen) + len(unit) - n_val) < n_val - len(chosen)
        if closer and size - len(chosen) - len(unit) >= 1:
            chosen += unit
    return chosen


def _join(samples: list[tuple[Path, int]], groups: Sequence[Sequence[Path]]) -> list[int]:
    """The unit of each sample: samples sharing a group (directly or through overlapping groups) share a
    unit, numbered by their first sample."""
    index_of = {Path(path): i for i, (path, _) in enumerate(samples)}
    parent = list(range(len(samples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in groups:
        members = [index_of[Path(p)] for p in group if Path(p) in index_of]
        for other in members[1:]:
            a, b = root(members[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(samples))]


def lopsided_warning(class_name: str, largest: int, size: int) -> str:
    """What to tell the user about a class that is mostly one group."""
    return (f"Class '{class_name}': {largest} of its {size} images are near-duplicates of one another (frames of "
            "one clip, or one picture saved many times). They stay together on one side of the split, so "
            "validation can't honestly measure this class. Add images from other clips or sessions, or give "
            "a separate validation folder (--val-dir).")
