"""Image features from a pretrained ResNet18, computed once and kept on disk.

The quick way to learn from a few photos (quick.py) trains only the last layer, on the 512 numbers
the pretrained network's last pooling gives for each image. Computing those numbers is the slow part
(a forward pass per image); training on them takes seconds. So they are computed once per image set,
weights and view, and cached beside the decoded images, keyed the same way plus the weights' hash:
another run on the same photos, with other settings, starts at once.

A view is how an image is shown to the network: "centre" (as prediction does), "mirrored" (the
same, flipped left-right) or "crop" (a random crop, as training augments). Extra views give the last
layer more varied examples at the cost of one forward pass each.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from resnet_app.core.data.batch_augment import BatchAugmenter
from resnet_app.core.data.decoded_cache import (
    DecodedImages,
    cache_key,
    default_cache_dir,
    discard_entry,
    evict_to_limit,
    touch_entry,
)
from resnet_app.core.data.transforms import is_small
from resnet_app.core.files import atomic_write
from resnet_app.core.model import architectures
from resnet_app.core.model.pretrained import PretrainedWeights

FEATURES_FORMAT = 2  # 1: .npy + .json; 2: one float16 .npy, checked by its shape
FEATURE_SIZE = 512  # ResNet18's last pooling
VIEWS = ("centre", "mirrored", "crop")


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


def view_transform(view: str, augmenter: BatchAugmenter, seed: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """(uint8 batch, index of its first image) -> the normalised batch as `view` shows it."""
    if view == "centre":
        return lambda batch, start: augmenter.eval(batch)
    if view == "mirrored":
        return lambda batch, start: augmenter.eval(batch).flip(3)
    if view == "crop":
        crops = BatchAugmenter(augmenter.image_size, augmenter.mean, augmenter.std, augmenter.small, crop=True,
                               flip=False)
        # Seeded by position, so the same images give the same crops in every run (and the cache holds).
        return lambda batch, start: crops.train(batch, torch.Generator().manual_seed(seed * 1_000_003 + start))
    raise ValueError(f"unknown view {view!r}; views are {', '.join(VIEWS)}")


@torch.no_grad()
def compute_features(network: nn.Module, decoded: DecodedImages, image_size: int, view: str, device: torch.device,
                     batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> torch.Tensor | None:
    """(N, 512) float32 features of the decoded images, on the CPU; None if stopped part-way."""
    augmenter = BatchAugmenter(image_size, architectures.IMAGENET_MEAN, architectures.IMAGENET_STD,
                               small=is_small(image_size))
    transform = view_transform(view, augmenter, seed=0)
    count = int(decoded.labels.shape[0])
    out = torch.empty(count, FEATURE_SIZE)
    for start in range(0, count, batch_size):
        if should_stop is not None and should_stop():
            return None
        batch = decoded.images[start:start + batch_size].to(device)
        inputs = transform(batch, start)
        if device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        out[start:start + len(batch)] = network(inputs).float().cpu()
        if progress is not None:
            progress(min(start + batch_size, count), count)
    return out


def features_key(samples: list[tuple[Path, int]], image_size: int, weights_sha256: str, view: str) -> str:
    """Changes when the images (as the decoded cache sees them), the size, the weights or the view change."""
    text = f"features/v{FEATURES_FORMAT}/{cache_key(samples, image_size)}/{weights_sha256}/{view}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_compute_features(network: nn.Module, decoded: DecodedImages, samples: list[tuple[Path, int]],
                             image_size: int, weights_sha256: str, view: str, device: torch.device,
                             progress: Callable[[int, int], None] | None = None,
                             should_stop: Callable[[], bool] | None = None,
                             cache_dir: Path | None = None) -> tuple[torch.Tensor | None, bool]:
    """(features, from the cache?) of `decoded` (the readable images of `samples`) for `view`."""
    path = _path(cache_dir or default_cache_dir(), features_key(samples, image_size, weights_sha256, view))
    cached = _read(path, int(decoded.labels.shape[0]))
    if cached is not None:
        return cached, True
    features = compute_features(network, decoded, image_size, view, device, progress=progress,
                                should_stop=should_stop)
    if features is None:
        return None, False
    # Rounded as the cache stores them, so a run from the cache is the same run as the first one.
    features = features.half().float()
    _write(path, features)
    return features, False


def _path(cache_dir: Path, key: str) -> Path:
    # One file per entry (the format is in its name, the count in its shape): nothing to keep in step.
    return cache_dir / f"features-v{FEATURES_FORMAT}-{key}.npy"


def _read(path: Path, count: int) -> torch.Tensor | None:
    """The cached features, or None if there are none; a damaged or inconsistent file is deleted."""
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
    if not isinstance(stored, np.ndarray) or stored.dtype != np.float16 or stored.shape != (count, FEATURE_SIZE):
        discard_entry(path, f"not {count} x {FEATURE_SIZE} features")
        return None
    features = torch.from_numpy(np.array(stored, dtype=np.float32))
    del stored  # unmapped now: Windows can't delete or replace a mapped file
    touch_entry(path)
    return features


def _write(path: Path, features: torch.Tensor) -> None:
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.save(f, features.numpy().astype(np.float16), allow_pickle=False)  # half the disk; ample precision
    except OSError:
        return  # a full disk or a read-only cache folder costs the next run a forward pass, nothing more
    evict_to_limit(path.parent)
