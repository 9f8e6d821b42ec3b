"""A run's data, prepared once for any training loop: the classes, the train/validation split, and
the batches each side is served in (decoded once and kept in memory, or streamed from disk).

The full trainer (loop.py) and the last-layer trainer over cached features (quick.py) both
start here, so they see the same images, split the same way, with the same messages about files that
could not be used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_app.core.data.batch_augment import BatchAugmenter
from resnet_app.core.data.batches import DecodedBatches, StreamingBatches
from resnet_app.core.data.datasets import ImageFileDataset
from resnet_app.core.data.decoded_cache import (
    DecodedImages,
    dataset_bytes,
    host_budget_bytes,
    load_or_decode,
    memory_budget_bytes,
)
from resnet_app.core.data.near_duplicates import find_groups, hash_images
from resnet_app.core.data.scan import DatasetError, DatasetReport, scan_dataset
from resnet_app.core.data.splits import grouped_split, lopsided_warning, split_layout, stratified_split
from resnet_app.core.data.transforms import decode_size_hint, eval_transform, is_small, train_transform
from resnet_app.core.errors import TrainingError
from resnet_app.core.model import architectures
from resnet_app.core.train.events import DataProgress, EventHub
from resnet_app.core.train.settings import TrainConfig

Samples = list[tuple[Path, int]]


@dataclass
class RunData:
    """The images of one run: its classes and which files train and which validate."""

    data_dir: Path
    classes: list[str]
    train_samples: Samples
    val_samples: Samples
    report: DatasetReport
    shard: tuple[int, int] | None = None  # (this process, processes) under DDP: see shard_run_data
    split: dict[str, Any] = dataclasses.field(default_factory=dict)  # how it was split (run.json, checkpoints)

    def used(self, samples: Samples, skipped: SkippedFiles | None) -> int:
        """How many of `samples` are really used: those that could be read (as far as known)."""
        if skipped is None or not skipped.unreadable:
            return len(samples)
        return sum(str(path) not in skipped.unreadable for path, _ in samples)

    def summary(self, skipped: SkippedFiles | None = None) -> dict[str, Any]:
        """What checkpoints, model files and run.json record about the data: the images really used
        (files that could not be read are not counted), and the training files' fingerprint."""
        return {"root": str(self.data_dir), "train_size": self.used(self.train_samples, skipped),
                "val_size": self.used(self.val_samples, skipped),
                "unreadable": len(skipped.unreadable) if skipped else 0,
                "train_files": files_fingerprint(self.train_samples), **self.split}


class SkippedFiles:
    """Says once per file (not once per epoch) that a file could not be read, and keeps the list."""

    def __init__(self, events: EventHub) -> None:
        self.events = events
        self.unreadable: dict[str, str] = {}  # path -> reason

    def report(self, failures: list[tuple[str, str]]) -> int:
        for path, reason in failures:
            if path not in self.unreadable:
                self.unreadable[path] = reason
                self.events.say(f"skipped {path}: {reason}", "warning")
        return len(failures)

    def listing(self) -> list[dict[str, str]]:
        return [{"path": path, "reason": reason} for path, reason in self.unreadable.items()]


def _scan(folder: Path, class_names: list[str] | None, events: EventHub) -> DatasetReport:
    # No decode check here: training reads every image anyway and reports the ones that fail (the
    # decoded path before the first epoch, streaming as it meets them), and a check would decode the
    # whole set once more, even when the decoded set is already in the cache.
    report = scan_dataset(folder, class_names=class_names, check_images=False)
    report.raise_if_unusable()
    for skipped in report.skipped:
        events.say(f"skipped {skipped.path}: {skipped.reason}", "warning")
    for warning in report.warnings:
        events.say(warning, "warning")
    return report


def prepare_run_data(config: TrainConfig, data_dir: str | Path, events: EventHub,
                     class_names: list[str] | None = None) -> RunData:
    """Scan the data folder (and the validation folder, if any) and split it as `config` says.

    `class_names` fixes the classes and their order (a resumed run keeps its own). A data folder that
    holds train/ and val/ folders is taken as such: `config.val_dir` is set to val/ (so the run's
    checkpoints record it, and a resume validates on the same images).
    """
    data_dir = Path(data_dir).expanduser().resolve()  # recorded in checkpoints: must work from any folder
    layout = split_layout(data_dir) if not config.val_dir else None
    if layout is not None:
        data_dir, config.val_dir = layout[0], str(layout[1])
        events.say(f"{layout[0].parent} holds {layout[0].name}/ and {layout[1].name}/ folders: training on "
                   f"{layout[0].name}/, validating on {layout[1].name}/")
    report = _scan(data_dir, class_names, events)
    if config.val_dir:
        val_report = _scan(Path(config.val_dir), report.classes, events)
        refuse_overlap(report.samples, val_report.samples, Path(config.val_dir))
        train, val = report.samples, val_report.samples
        split: dict[str, Any] = {"split": "folder"}
    elif config.split == "grouped" and config.val_fraction > 0:
        train, val, split = _grouped_split(report, config, events)
    else:
        # Byte-identical copies within a class stay on one side: validating on a copy of a training
        # image would overstate accuracy.
        train, val = stratified_split(report.samples, config.val_fraction, config.seed, report.copies)
        split = {"split": "random"}
    return RunData(data_dir, report.classes, train, val, report, split=split)


def _grouped_split(report: DatasetReport, config: TrainConfig, events: EventHub) -> tuple[Samples, Samples, dict]:
    """The split that keeps near-duplicates (and byte-identical copies) whole: each image hashed once here,
    at 1/8 scale for JPEGs (the training scan decodes nothing), then grouped and split in linear time."""
    paths = [path for path, _ in report.samples]
    hashes = hash_images(paths, lambda done, total: events.emit("data_progress", DataProgress("grouping", done, total)))
    groups = [[paths[i] for i in group] for group in find_groups(hashes or [])]
    train, val, done = grouped_split(report.samples, config.val_fraction, config.seed, report.copies + groups)
    if done.groups:  # with none, the grouped split is the random one: nothing worth a line
        events.say(f"split: {done.groups} group{'s' if done.groups != 1 else ''} of near-duplicate or identical "
                   f"images ({done.images} images) kept whole, each on one side of the training/validation split "
                   "(--split random would not)")
    for label, largest, size in done.lopsided:
        events.say(lopsided_warning(report.classes[label], largest, size), "warning")
    return train, val, done.summary()


def shard_run_data(data: RunData, shard: int, shards: int, seed: int) -> RunData:
    """One process's share of a run's images under DDP (distributed/world.py): the training images dealt out
    in the order of a permutation seeded by the run's seed (the same on every process, so the shards
    never overlap), the validation images in turn. Shares differ by one image at most; each process
    decodes and holds only its own."""
    order = torch.randperm(len(data.train_samples), generator=torch.Generator().manual_seed(seed)).tolist()
    return dataclasses.replace(data, train_samples=[data.train_samples[i] for i in order[shard::shards]],
                               val_samples=data.val_samples[shard::shards], shard=(shard, shards))


def refuse_overlap(train: Samples, val: Samples, val_dir: Path) -> None:
    """A validation folder that shares files with the training folder (the same folder given twice,
    or one inside the other) would validate on training images: refused."""
    def identity(path: Path) -> tuple[int, int]:
        status = os.stat(path)
        return status.st_dev, status.st_ino

    trained = {identity(path) for path, _ in train}
    shared = [path for path, _ in val if identity(path) in trained]
    if shared:
        raise DatasetError(f"the validation folder {val_dir} shares {len(shared)} of its {len(val)} images with "
                           f"the training folder (for example {shared[0]}): validating on images the model "
                           "trains on would overstate its accuracy. Choose a separate folder.")


def files_fingerprint(samples: Samples) -> str:
    """A short digest of which files (and labels) a list holds: equal lists, equal digests."""
    digest = hashlib.sha256()
    for path, label in samples:
        digest.update(os.fsencode(path) + b"\t" + str(label).encode() + b"\n")
    return digest.hexdigest()[:16]


def warn_if_data_changed(data: RunData, saved: dict[str, Any], events: EventHub) -> None:
    """A resumed run on a changed folder goes on, but not exactly as an unbroken run would have.

    The training files themselves are compared (their fingerprint), not their number: a file added
    and another removed would otherwise move trained-on images into validation unnoticed.
    """
    now = files_fingerprint(data.train_samples)
    if saved.get("train_files", now) != now or ("train_files" not in saved
                                                and saved["train_size"] != len(data.train_samples)):
        events.say(
            f"the training images are not the ones the checkpoint was trained on ({saved['train_size']} "
            f"then, {len(data.train_samples)} now): files were added, removed or renamed, so the validation "
            "images may include some the run trained on, and the resumed run will not match an unbroken one",
            "warning")


# --- batches ---------------------------------------------------------------------------------------

BatchSource = DecodedBatches | StreamingBatches


@dataclass
class BatchSources:
    train: BatchSource
    val: BatchSource
    loader_processes: int  # DataLoader processes of the streaming path (0 when decoded)
    data: RunData  # the images they serve (under DDP, this process's shard)

    @property
    def kind(self) -> str:
        return self.train.kind


def auto_loader_processes(train_size: int) -> int:
    """DataLoader processes for streaming: none for small sets (process start-up costs more than it saves)."""
    if train_size < 1000:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def make_batch_sources(data: RunData, config: TrainConfig, device: torch.device, events: EventHub,
                       skipped: SkippedFiles, should_stop: Callable[[], bool]) -> BatchSources:
    """Decoded (fast) or streaming batches, as configured; 'auto' decodes when the set fits memory."""
    mode = config.data_loading
    if mode == "auto":
        needed = dataset_bytes(len(data.train_samples) + len(data.val_samples), config.input_size)
        # It fits on the device, or (GPU) in host RAM, whence each batch is copied over.
        budget = max(memory_budget_bytes(device), host_budget_bytes())
        mode = "decoded" if needed <= budget else "streaming"
        if mode == "streaming":
            events.say(f"the decoded images would take {needed / 2**30:.1f} GiB, more than the "
                       f"{budget / 2**30:.1f} GiB budget: decoding them every epoch instead", "warning")
    if mode == "decoded":
        sources = _decoded_sources(data, config, device, events, skipped, should_stop)
        if sources is not None:
            return sources
        # stopped while decoding: the run ends at once (the trainer sees the stop request)
    return _streaming_sources(data, config, device)


def _streaming_sources(data: RunData, config: TrainConfig, device: torch.device) -> BatchSources:
    size, mean, std = config.input_size, architectures.IMAGENET_MEAN, architectures.IMAGENET_STD
    processes = (config.loader_processes if config.loader_processes is not None
                 else auto_loader_processes(len(data.train_samples)))
    hint = decode_size_hint(size)
    augmented = train_transform(size, mean, std, crop=config.augment, flip=config.flip)
    train = ImageFileDataset(data.train_samples, augmented, size_hint=hint)
    val = ImageFileDataset(data.val_samples, eval_transform(size, mean, std), size_hint=hint)
    views = {"image_size": size, "mean": mean, "std": std}
    return BatchSources(StreamingBatches(train, processes, device, **views),
                        StreamingBatches(val, processes, device, **views), processes, data)


def decode_samples(samples: Samples, image_size: int, stage: str, events: EventHub, skipped: SkippedFiles,
                   should_stop: Callable[[], bool]) -> DecodedImages | None:
    """The decoded images of `samples` (from the disk cache when current); None if stopped part-way."""
    # Decode in processes only when there is enough to amortise their start-up (~1 s each).
    processes = min(16, os.cpu_count() or 1) if len(samples) >= 2000 else 1
    decoded = load_or_decode(
        samples, image_size, processes=processes, should_stop=should_stop,
        progress=lambda done, total: events.emit("data_progress", DataProgress(stage, done, total)))
    if decoded is None:
        return None
    skipped.report(decoded.failures)
    if samples:  # (no line for an empty validation set)
        events.say(f"{len(decoded.labels)} {stage} images {_where_from(decoded)} in {decoded.seconds:.1f} s")
    return decoded


def _where_from(decoded: DecodedImages) -> str:
    if decoded.from_disk_cache:
        return "from the cache"
    if decoded.cached:  # a run stopped while decoding, files added, or chunks evicted
        return f"decoded ({decoded.cached} files read from the cache)"
    return "decoded"


def refuse_empty_classes(labels: torch.Tensor, classes: list[str]) -> None:
    present = set(labels.unique().tolist())
    empty = [name for index, name in enumerate(classes) if index not in present]
    if empty:
        raise TrainingError(f"no image of class {', '.join(repr(n) for n in empty)} could be read: "
                            "see the skipped files above")


def _decoded_sources(data: RunData, config: TrainConfig, device: torch.device, events: EventHub,
                     skipped: SkippedFiles, should_stop: Callable[[], bool]) -> BatchSources | None:
    size = config.input_size
    train = decode_samples(data.train_samples, size, "training", events, skipped, should_stop)
    val = decode_samples(data.val_samples, size, "validation", events, skipped, should_stop) if train else None
    if train is None or val is None:
        return None
    if data.shard is None:  # a shard may lack a class: under DDP all shards are checked together (distributed/world.py)
        refuse_empty_classes(train.labels, data.classes)
    augmenter = BatchAugmenter(size, architectures.IMAGENET_MEAN, architectures.IMAGENET_STD, small=is_small(size),
                               crop=config.augment, flip=config.flip)
    # On the GPU when it fits: each batch is then a slice in GPU memory, with no copy from the host.
    # Otherwise in ordinary host memory: each batch is gathered and pinned on its way (batches.py);
    # pinning the whole set too would only lock RAM that is copied from anyway.
    on_device = device.type != "cuda" or (
        train.images.numel() + val.images.numel() <= memory_budget_bytes(device))
    storage = device if on_device else torch.device("cpu")
    return BatchSources(DecodedBatches(train.to(storage), augmenter, device),
                        DecodedBatches(val.to(storage), augmenter, device), 0, data)
