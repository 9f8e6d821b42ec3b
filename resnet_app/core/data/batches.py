"""Where training batches come from: two interchangeable sources with the same interface.

- `DecodedBatches`: every image decoded once into a uint8 tensor (decoded_cache.py), kept on the
  training device when it fits, and augmented a whole batch at a time (batch_augment.py). The fast
  path, and the default whenever the decoded set fits the memory budget.
- `StreamingBatches`: torchvision-style streaming, each image decoded and augmented per epoch by
  DataLoader worker processes. For datasets too large to hold decoded.

Both draw an epoch's order from EpochSampler(seed, epoch) and can start part-way into an epoch, which
is what exact resume and out-of-memory recovery rely on. Both yield (images, labels, failures), where
failures lists the (path, reason) of files that could not be read.

Both also serve their images once each, in order, as a *view* shows them (`views`): what the features
of a pretrained network are computed from (model/features.py), so that features obey the same memory
budget, cache and shards as training.

Under DDP (train/distributed/world.py) each process serves only its shard of the images, through the same two
classes: `shard_batches` makes every shard run the same number of positions per epoch (so every
process takes the same number of steps) and gives each shard draws of its own.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from resnet_app.core.data.batch_augment import BatchAugmenter, to_device_async
from resnet_app.core.data.datasets import ImageFileDataset, collate_skipping_failures
from resnet_app.core.data.decoded_cache import DecodedImages
from resnet_app.core.data.rng import seeded_global_rng
from resnet_app.core.data.transforms import eval_transform, train_transform

Batch = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]

# How an image is shown to a network whose features are computed: "centre" as prediction shows it,
# "mirrored" the same flipped left-right, "crop" a random crop (as training crops, without the flip),
# drawn from the image's position alone, so that the same images give the same crops in every run.
VIEWS = ("centre", "mirrored", "crop")


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; views are {', '.join(VIEWS)}")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation: a function of (seed, epoch) only."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


class EpochSampler(Sampler[int]):
    """A seeded permutation of the training set for one epoch, optionally starting part-way through.

    Starting at `start` lets a run resumed mid-epoch, or restarted with a smaller batch after running
    out of GPU memory, carry on with exactly the samples that were not yet seen. `length` (DDP only,
    at least `size`) makes the epoch that many positions long, the permutation wrapping round.
    """

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0, length: int | None = None):
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start
        self.length = size if length is None else length

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.length > self.size and order:  # a shorter shard repeats its first images (DDP)
            order = (order * -(-self.length // self.size))[:self.length]
        return order

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return max(0, self.length - self.start)


def shard_seed(seed: int, shard: int) -> int:
    """The seed shard `shard` draws its shuffles and augmentation from: the run's own for shard 0 (and
    a single process), another for each other shard, so that shards don't crop and flip in step."""
    return seed if shard == 0 else (seed + shard * 1_000_033) % (2**31)


def shard_batches(source: DecodedBatches | StreamingBatches, shard: int, epoch_length: int) -> None:
    """Make `source` one shard of a DDP run: `epoch_length` positions an epoch (the longest shard's
    image count, so every process takes the same number of steps), drawing as shard `shard`."""
    source.shard, source.epoch_length = shard, epoch_length


def _augment_generator(seed: int, epoch: int, start: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch) + start)


class DecodedBatches:
    """Batches cut from decoded uint8 images, augmented on their device."""

    kind = "decoded"
    shard, epoch_length = 0, None  # one process alone; see shard_batches (DDP)

    def __init__(self, decoded: DecodedImages, augmenter: BatchAugmenter, device: torch.device):
        self.images, self.labels = decoded.images, decoded.labels
        self.augmenter, self.device = augmenter, device

    @property
    def count(self) -> int:
        """The images held."""
        return int(self.labels.shape[0])

    @property
    def size(self) -> int:
        """Positions in a training epoch: the images held, or under DDP the longest shard's count."""
        return self.epoch_length or self.count

    def _take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at `index` (a tensor where the images are), on the training device."""
        images, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
        if images.device == self.device:
            return images, labels
        return to_device_async(images, self.device), to_device_async(labels, self.device)

    def epoch(self, seed: int, epoch: int, start: int, batch_size: int) -> Iterator[Batch]:
        seed = shard_seed(seed, self.shard)
        order = torch.tensor(EpochSampler(self.count, seed, epoch, start, self.size).order()[start:],
                             dtype=torch.long)
        order = to_device_async(order, self.images.device)  # once an epoch; batches are slices of it
        for i in range(0, len(order), batch_size):
            images, labels = self._take(order[i:i + batch_size])
            # Each batch's augmentation comes from its own position in the epoch, so a run resumed
            # mid-epoch (same batch size) draws exactly what the unbroken run drew for that batch.
            generator = _augment_generator(seed, epoch, start + i)
            yield self.augmenter.train(images, generator), labels, []

    def evaluation(self, batch_size: int) -> Iterator[Batch]:
        return self.views("centre", batch_size)

    @property
    def image_size(self) -> int:
        return self.augmenter.image_size

    def views(self, view: str, batch_size: int) -> Iterator[Batch]:
        """The images held, once each and in order (under DDP the shard's own, not its wrapped epoch),
        as `view` (VIEWS) shows them, normalised."""
        check_view(view)
        return self._views(view, batch_size)

    def _views(self, view: str, batch_size: int) -> Iterator[Batch]:
        a = self.augmenter
        crops = BatchAugmenter(a.image_size, a.mean, a.std, a.small, crop=True, flip=False)
        for i in range(0, self.count, batch_size):
            index = torch.arange(i, min(i + batch_size, self.count), device=self.images.device)
            images, labels = self._take(index)
            if view == "crop":  # each batch's crops drawn from its position alone
                yield crops.train(images, torch.Generator().manual_seed(i)), labels, []
                continue
            images = a.eval(images)
            yield (images.flip(3) if view == "mirrored" else images), labels, []


class StreamingBatches:
    """Batches decoded per epoch from the files by a DataLoader (worker processes when loader_processes > 0)."""

    kind = "streaming"
    shard, epoch_length = 0, None  # one process alone; see shard_batches (DDP)

    def __init__(self, dataset: ImageFileDataset, loader_processes: int, device: torch.device, *,
                 image_size: int | None = None, mean: Sequence[float] = (), std: Sequence[float] = ()):
        self.dataset, self.loader_processes, self.device = dataset, loader_processes, device
        self.image_size, self.mean, self.std = image_size, mean, std  # for views

    @property
    def count(self) -> int:
        return len(self.dataset)

    @property
    def size(self) -> int:
        return self.epoch_length or self.count

    def _loader(self, batch_size: int, sampler: Sampler | None, generator: torch.Generator | None,
                dataset: Dataset | None = None) -> DataLoader:
        options: dict[str, Any] = {}
        if self.loader_processes > 0:
            # spawn, not fork: forking a process that runs Qt and CUDA threads can deadlock.
            options = {"multiprocessing_context": "spawn", "prefetch_factor": 4}
        return DataLoader(self.dataset if dataset is None else dataset, batch_size=batch_size, sampler=sampler,
                          shuffle=False, num_workers=self.loader_processes, collate_fn=collate_skipping_failures,
                          pin_memory=self.device.type == "cuda", generator=generator, **options)

    def epoch(self, seed: int, epoch: int, start: int, batch_size: int) -> Iterator[Batch]:
        seed = shard_seed(seed, self.shard)
        sampler = EpochSampler(self.count, seed, epoch, start, self.size)
        if self.loader_processes == 0:
            return self._in_this_process(sampler.order()[start:], seed, epoch, start, batch_size)
        # The loader's generator seeds the workers' augmentation; a function of (seed, epoch, start).
        return iter(self._loader(batch_size, sampler, _augment_generator(seed, epoch, start)))

    def _in_this_process(self, order: list[int], seed: int, epoch: int, start: int,
                         batch_size: int) -> Iterator[Batch]:
        """Batches read and augmented in this process. torchvision's transforms draw from torch's
        global generator, so each batch draws inside seeded_global_rng, seeded by its position in the
        epoch: other threads' draws can't change the run, and a resume draws what an unbroken run did."""
        for i in range(0, len(order), batch_size):
            with seeded_global_rng(epoch_seed(seed, epoch) + start + i):
                samples = [self.dataset[j] for j in order[i:i + batch_size]]
            yield collate_skipping_failures(samples)

    def evaluation(self, batch_size: int) -> Iterator[Batch]:
        return iter(self._loader(batch_size, None, None))

    def views(self, view: str, batch_size: int) -> Iterator[Batch]:
        """The files, once each and in order (under DDP the shard's own, not its wrapped epoch), as `view`
        (VIEWS) shows them, normalised; files that can't be read are left out (named in the failures)."""
        check_view(view)
        if self.image_size is None:
            raise ValueError("these streaming batches were made without their image size: they have no views")
        size, mean, std = self.image_size, self.mean, self.std
        transform = (train_transform(size, mean, std, crop=True, flip=False) if view == "crop"
                     else eval_transform(size, mean, std))
        dataset: Dataset = ImageFileDataset(self.dataset.samples, transform, size_hint=self.dataset.size_hint)
        if view == "crop":
            dataset = SeededByPosition(dataset)
        batches = iter(self._loader(batch_size, None, None, dataset))
        return _mirrored(batches) if view == "mirrored" else batches


def _mirrored(batches: Iterator[Batch]) -> Iterator[Batch]:
    for images, labels, failures in batches:
        yield (images.flip(3) if len(labels) else images), labels, failures


class SeededByPosition(Dataset):
    """A dataset whose item i draws its random transform inside seeded_global_rng(i) (torchvision's
    transforms draw from torch's global generator): the same draws whatever the batch size, whichever
    process reads it (DataLoader workers too), and whatever other threads draw meanwhile."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        with seeded_global_rng(i):
            return self.dataset[i]
