"""Image features from a pretrained ResNet18, computed once and kept on disk.

The quick way to learn from a few photos (quick.py) trains only the last layer, on the 512 numbers
the pretrained network's last pooling gives for each image. Computing those numbers is the slow part
(a forward pass per image); training on them takes seconds. So they are computed once per image set,
weights and view, and cached beside the decoded images, keyed the same way plus the weights' hash:
another run on the same photos, with other settings, starts at once.

The images come from the run's batch sources (data/batches.py: decoded, or streamed from the files
when the decoded set would not fit the memory budget; under DDP a process's own shard), one batch at
a time: no tensor of the whole set's pixels is made here. A view is how an image is shown to the
network (batches.VIEWS): "centre" (as prediction does), "mirrored" (the same, flipped left-right) or
"crop" (a random crop, as training augments). Extra views give the last layer more varied examples at
the cost of one forward pass each.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from resnet_app.core.data.batches import VIEWS, Batch
from resnet_app.core.data.decoded_cache import (
    cache_key,
    default_cache_dir,
    discard_entry,
    evict_to_limit,
    touch_entry,
)
from resnet_app.core.files import atomic_write
from resnet_app.core.model import architectures
from resnet_app.core.model.pretrained import PretrainedWeights

__all__ = ["FEATURES_FORMAT", "FEATURE_SIZE", "VIEWS", "compute_features", "feature_network", "features_key",
           "load_or_compute_features"]

# 1: .npy + .json; 2: one float16 .npy, checked by its shape; 3: one .npy of (label, features) records
# (a streamed set learns which files can be read only as it reads them, so the labels are kept too).
FEATURES_FORMAT = 3
FEATURE_SIZE = 512  # ResNet18's last pooling
FEATURE_BATCH = 64  # images a forward pass; the decoded crops are drawn per batch, so it is part of the key
RECORD = np.dtype([("label", "<i4"), ("features", "<f2", (FEATURE_SIZE,))])  # float16: half the disk, ample


class ViewSource(Protocol):
    """What features are computed from: a run's batch source (batches.DecodedBatches, StreamingBatches)."""

    kind: str  # "decoded" or "streaming": their pixels may differ slightly, so their features are kept apart

    @property
    def count(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def views(self, view: str, batch_size: int) -> Iterator[Batch]: ...


Features = tuple[torch.Tensor, torch.Tensor]  # (N, 512) float32 features and their (N,) int64 labels, on the CPU


def feature_network(weights: PretrainedWeights, device: torch.device) -> nn.Module:
    """torchvision's ResNet18 with `weights`, its classifier replaced by the identity: images in,
    512 features out. In eval mode (batch-norm uses its ImageNet statistics)."""
    network = architectures.build_model("resnet18", 1)
    backbone = {k: v for k, v in weights.state_dict.items() if not k.startswith("fc.")}
    missing, _ = network.load_state_dict(backbone, strict=False)
    if any(not key.startswith("fc.") for key in missing):  # check_resnet18_state_dict makes this unreachable
        raise architectures.ModelError(f"{weights.source}: weights lack {missing[0]}")
    network.fc = nn.Identity()
    return network.to(device).eval()


@torch.no_grad()
def compute_features(network: nn.Module, batches: Iterable[Batch], device: torch.device, *, total: int = 0,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     on_failures: Callable[[list[tuple[str, str]]], object] | None = None) -> Features | None:
    """(features, labels) of the images of `batches` (normalised images, labels, failures), in their
    order; images that could not be read are left out with their labels (`on_failures` hears of them).
    `progress(done, total)` counts the images met, readable or not. None if stopped part-way."""
    stop = should_stop or (lambda: False)
    parts: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    done = 0
    if stop():
        return None
    for images, batch_labels, failures in batches:
        if stop():
            return None
        if failures and on_failures is not None:
            on_failures(failures)
        done += len(batch_labels) + len(failures)
        if len(batch_labels):
            inputs = images.to(device, non_blocking=True)
            if device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            parts.append(network(inputs).float().cpu())
            labels.append(batch_labels.cpu().long())
        if progress is not None:
            progress(done, max(total, done))
    return (torch.cat(parts) if parts else torch.empty(0, FEATURE_SIZE),
            torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))


def features_key(samples: list[tuple[Path, int]], image_size: int, weights_sha256: str, view: str,
                 kind: str) -> str:
    """Changes when the images (as the decoded cache sees them), the size, the weights, the view or the
    kind of source (decoded or streaming, whose pixels differ slightly) change."""
    text = (f"features/v{FEATURES_FORMAT}/{cache_key(samples, image_size)}/{weights_sha256}/{view}/{kind}/"
            f"{FEATURE_BATCH}")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_compute_features(network: nn.Module, source: ViewSource, samples: list[tuple[Path, int]],
                             weights_sha256: str, view: str, device: torch.device,
                             progress: Callable[[int, int], None] | None = None,
                             should_stop: Callable[[], bool] | None = None,
                             on_failures: Callable[[list[tuple[str, str]]], object] | None = None,
                             cache_dir: Path | None = None) -> tuple[Features | None, bool]:
    """((features, labels), from the cache?) of `source`'s images (the readable ones of `samples`, in
    their order) in `view`; (None, False) if stopped."""
    if not samples:
        return (torch.empty(0, FEATURE_SIZE), torch.empty(0, dtype=torch.long)), False
    key = features_key(samples, source.image_size, weights_sha256, view, source.kind)
    path = _path(cache_dir or default_cache_dir(), key)
    cached = _read(path, samples)
    if cached is not None:
        return cached, True
    computed = compute_features(network, source.views(view, FEATURE_BATCH), device, total=source.count,
                                progress=progress, should_stop=should_stop, on_failures=on_failures)
    if computed is None:
        return None, False
    # Rounded as the cache stores them, so a run from the cache is the same run as the first one.
    features, labels = computed[0].half().float(), computed[1]
    _write(path, features, labels)
    return (features, labels), False


def _path(cache_dir: Path, key: str) -> Path:
    # One file per entry (the format is in its name, the count in its shape): nothing to keep in step.
    return cache_dir / f"features-v{FEATURES_FORMAT}-{key}.npy"


def _read(path: Path, samples: list[tuple[Path, int]]) -> Features | None:
    """The cached (features, labels), or None if there are none; a damaged or inconsistent file is deleted."""
    try:
        # Plain numbers only: nothing can execute. Mapped, so a header that claims more rows than the
        # file holds is refused before anything is allocated.
        stored = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged file makes np.load's parsers raise ValueError, EOFError,
        # tokenize.TokenError, zipfile.BadZipFile...: whichever it is, the entry is rebuilt
        discard_entry(path, str(exc) or type(exc).__name__)
        return None
    if not isinstance(stored, np.ndarray) or stored.dtype != RECORD or stored.ndim != 1 or len(stored) > len(samples):
        del stored  # unmapped first: Windows can't delete a mapped file
        discard_entry(path, f"not labelled {FEATURE_SIZE}-number features of at most {len(samples)} images")
        return None
    labels = torch.from_numpy(np.array(stored["label"], dtype=np.int64))
    features = torch.from_numpy(np.array(stored["features"], dtype=np.float32))
    del stored  # unmapped now: Windows can't delete or replace a mapped file
    if not _labels_in_order(labels, samples):
        discard_entry(path, "its labels are not those of the images, in order")
        return None
    touch_entry(path)
    return features, labels


def _labels_in_order(labels: torch.Tensor, samples: list[tuple[Path, int]]) -> bool:
    """Whether `labels` are those of some of `samples`, in their order (the readable ones)."""
    remaining = iter(label for _, label in samples)
    return all(any(label == other for other in remaining) for label in labels.tolist())


def _write(path: Path, features: torch.Tensor, labels: torch.Tensor) -> None:
    records = np.empty(len(labels), dtype=RECORD)
    records["label"] = labels.numpy()
    records["features"] = features.numpy()
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.save(f, records, allow_pickle=False)
    except OSError:
        return  # a full disk or a read-only cache folder costs the next run a forward pass, nothing more
    evict_to_limit(path.parent)
