"""Near-duplicate images: the same picture resized, re-encoded or slightly brightened, or the frames of
one video clip, found by a perceptual hash and joined into groups, so that the dataset report can
count them (across classes: a labelling mistake) and the split can keep each group on one side.

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

Close images are found without comparing every image with every other: split the 64 bits into
max_distance + 1 blocks; two hashes that differ in at most max_distance bits agree exactly on at
least one block (pigeonhole), so only images sharing a block's value are compared (Manku et al.,
"Detecting near-duplicates for web crawling", 2007). What is found is joined into groups (union-find)
and never listed pair by pair: a folder of 5,000 frames of one clip holds 12 million pairs but one
group, and the caps in find_groups bound the comparisons a big group costs (as cleanvision and
imagededup report groups, not pairs).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


# --- the groups ----------------------------------------------------------------------------------

# Caps that keep the search linear in the number of images whatever they look like. Images are
# compared only within a block bucket (images sharing one block of hash bits). A bucket of at most
# SMALL_BUCKET images is compared all against all (SMALL_BUCKET**2 / 2 comparisons at most). In a
# bigger one (a folder of video frames puts thousands of alike images in one bucket) each image is
# compared with at most REPRESENTATIVES images standing for the pictures met so far in the bucket, the
# first image of each new picture becoming one: a frame joins its clip through that clip's
# representative, never through all its frames. The cost: in a bucket holding more than REPRESENTATIVES
# distinct pictures, an image close only to a picture that is not a representative there is not joined
# to it through that bucket (other blocks usually still bring them together).
SMALL_BUCKET = 128
REPRESENTATIVES = 64
_CHUNK = 256  # images of a big bucket compared with the representatives at once
SAMPLE_GROUPS = 20  # groups a report shows, largest first
SAMPLE_PATHS = 5  # paths a report shows of each group


class _UnionFind:
    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def root(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving: the trees stay shallow
            item = parent[item]
        return item

    def join(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_groups(hashes: Sequence[ImageHash | None], *, max_distance: int = DEFAULT_MAX_DISTANCE,
                max_colour_difference: float = MAX_MEAN_COLOUR_DIFFERENCE,
                should_stop: Callable[[], bool] | None = None) -> list[list[int]] | None:
    """Groups of near-duplicate images (connected sets: a ~ b and b ~ c make one group of three), as
    sorted lists of indices into `hashes`, largest group first; groups of one are left out, and so are
    the images without a hash (unreadable or featureless). None if stopped.

    Time and memory grow linearly with the number of images, however alike they are (the caps above).
    """
    if max_distance < 0 or max_distance >= HASH_BITS:
        raise ValueError(f"max_distance must be from 0 to {HASH_BITS - 1}, got {max_distance}")
    readable = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.intp)
    values = np.array([hashes[i].dhash for i in readable], dtype=np.uint64)
    colours = np.array([hashes[i].mean_colour for i in readable], dtype=np.float64).reshape(-1, 3)
    found = _UnionFind(len(readable))
    blocks = max_distance + 1
    edges = [round(k * HASH_BITS / blocks) for k in range(blocks + 1)]
    close = _Closeness(values, colours, max_distance, max_colour_difference)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        if should_stop is not None and should_stop():
            return None
        keys = (values >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            if end - start >= 2:
                members = np.sort(order[start:end])
                if end - start <= SMALL_BUCKET:
                    _join_all_pairs(members, close, found)
                else:
                    _join_through_representatives(members, close, found)
    roots = np.array([found.root(i) for i in range(len(readable))], dtype=np.intp)
    groups: dict[int, list[int]] = {}
    for position, root in enumerate(roots.tolist()):
        groups.setdefault(root, []).append(int(readable[position]))
    return sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: (-len(g), g[0]))


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values) if hasattr(np, "bitwise_count") else \
        np.unpackbits(values.view(np.uint8).reshape(*values.shape, 8), axis=-1).sum(axis=-1)


class _Closeness:
    """Which images of one set are near-duplicates of which of another (a boolean matrix)."""

    def __init__(self, values: np.ndarray, colours: np.ndarray, max_distance: int, max_colour: float) -> None:
        self.values, self.colours = values, colours
        self.max_distance, self.max_colour = max_distance, max_colour

    def __call__(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        near = _popcount(self.values[rows, None] ^ self.values[None, columns]) <= self.max_distance
        colour = np.abs(self.colours[rows, None, :] - self.colours[None, columns, :]).max(axis=2)
        return near & (colour <= self.max_colour)


def _join_all_pairs(members: np.ndarray, close: _Closeness, found: _UnionFind) -> None:
    for a, b in zip(*np.nonzero(np.triu(close(members, members), 1)), strict=True):
        found.join(int(members[a]), int(members[b]))


def _join_through_representatives(members: np.ndarray, close: _Closeness, found: _UnionFind) -> None:
    representatives: list[int] = []
    for start in range(0, len(members), _CHUNK):
        chunk = members[start:start + _CHUNK]
        matched = np.zeros(len(chunk), dtype=bool)
        if representatives:
            reps = np.array(representatives, dtype=np.intp)
            near = close(chunk, reps)
            matched = near.any(axis=1)
            rows = np.flatnonzero(matched)
            first = near[rows].argmax(axis=1)
            for row, rep in zip(rows.tolist(), first.tolist(), strict=True):
                found.join(int(chunk[row]), representatives[rep])
            # An image close to two representatives joins their groups: each such couple once.
            row_index, other = np.nonzero(near[rows])
            for a, b in {(int(first[r]), int(o)) for r, o in zip(row_index, other, strict=True) if o != first[r]}:
                found.join(representatives[a], representatives[b])
        for item in chunk[~matched].tolist():  # new pictures (rare once a bucket's pictures are known)
            near_reps = np.flatnonzero(close(np.array([item]), np.array(representatives, dtype=np.intp))[0]) \
                if representatives else np.empty(0, dtype=np.intp)
            for rep in near_reps.tolist():
                found.join(item, representatives[rep])
            if len(near_reps) == 0 and len(representatives) < REPRESENTATIVES:
                representatives.append(item)


# --- for the dataset report ----------------------------------------------------------------------

@dataclass
class GroupSample:
    """One group as a report shows it: its size, its classes, and a few of its files."""

    size: int
    class_counts: dict[int, int]  # label -> images of the group in that class
    paths: list[Path]  # the first SAMPLE_PATHS of its files

    @property
    def across_classes(self) -> bool:
        return len(self.class_counts) > 1

    def to_dict(self, class_names: Sequence[str]) -> dict:
        return {"size": self.size, "classes": {class_names[k]: v for k, v in sorted(self.class_counts.items())},
                "across_classes": self.across_classes, "paths": [str(p) for p in self.paths]}


@dataclass
class NearDuplicateGroups:
    """The near-duplicate groups of a data set in counts, with a bounded sample: the report stays the
    same size whether the folder holds ten near-duplicates or a million."""

    groups: int = 0  # groups of two or more images
    images: int = 0  # images in them
    largest: int = 0
    across_classes: int = 0  # groups whose images are filed under more than one class
    sample: list[GroupSample] = field(default_factory=list)  # largest first, at most SAMPLE_GROUPS

    def to_dict(self, class_names: Sequence[str]) -> dict:
        return {"groups": self.groups, "images": self.images, "largest": self.largest,
                "across_classes": self.across_classes, "shown": len(self.sample),
                "sample": [group.to_dict(class_names) for group in self.sample]}


def summarise_groups(groups: Sequence[Sequence[int]], samples: Sequence[tuple[Path, int]]) -> NearDuplicateGroups:
    """Counts and a sample of `groups` (index lists into `samples`, largest first): the groups across
    classes come first in the sample, since each holds a labelling mistake."""
    summary = NearDuplicateGroups(groups=len(groups), images=sum(len(g) for g in groups),
                                  largest=max((len(g) for g in groups), default=0))
    across: list[GroupSample] = []
    within: list[GroupSample] = []
    for group in groups:
        counts: dict[int, int] = {}
        for index in group:
            counts[samples[index][1]] = counts.get(samples[index][1], 0) + 1
        entry = GroupSample(len(group), counts, [samples[i][0] for i in group[:SAMPLE_PATHS]])
        summary.across_classes += entry.across_classes
        kept = across if entry.across_classes else within
        if len(kept) < SAMPLE_GROUPS:  # (groups come largest first: these are the largest of each kind)
            kept.append(entry)
    summary.sample = (across + within)[:SAMPLE_GROUPS]
    return summary
