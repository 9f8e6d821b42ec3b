"""Decode each image once: a uint8 tensor of the whole dataset at the training resolution.

Decoding (Pillow) is what limits a ResNet18 on a GPU fed by a DataLoader. Here every image is
decoded once, in parallel processes, into one (N, 3, S, S) uint8 tensor that stays in memory (on the
GPU when it fits) for all epochs, and is saved in the user's cache folder so that the next run on the
same files skips decoding altogether. Augmentation then works on whole batches (batch_augment.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from resnet_app.core.checkpoints import atomic_write, write_text_atomic
from resnet_app.core.decode_worker import decode_chunk
from resnet_app.core.devices import memory_share_bytes
from resnet_app.core.transforms import decode_size_hint, is_small

CACHE_FORMAT = 1
HOST_SHARE = 0.25  # of physical RAM that a decoded set may take
CHUNK = 256  # images per task sent to a decode process: big enough to amortise the round trip


def stored_size(image_size: int) -> int:
    """Side of the stored square: the input size itself for small images; for large ones the resize
    size (256 for 224), which leaves room for random-resized crops."""
    return decode_size_hint(image_size)


def default_cache_dir() -> Path:
    """The per-user cache folder (RESNET_APP_CACHE_DIR overrides it, as tests do)."""
    if os.environ.get("RESNET_APP_CACHE_DIR"):
        return Path(os.environ["RESNET_APP_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "resnet-app" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "resnet-app"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet-app"


def dataset_bytes(count: int, image_size: int) -> int:
    side = stored_size(image_size)
    return count * 3 * side * side


def memory_budget_bytes(device: torch.device) -> int:
    """How much the decoded set may take where it is used: 40% of free GPU memory on CUDA, else 25% of
    system RAM (host_budget_bytes)."""
    return memory_share_bytes(device, gpu_share=0.4, host_share=HOST_SHARE)


def host_budget_bytes() -> int:
    """How much the decoded set may take in system RAM (where it waits when it does not fit a GPU)."""
    return memory_share_bytes(torch.device("cpu"), gpu_share=0.0, host_share=HOST_SHARE)


@dataclass
class DecodedImages:
    images: torch.Tensor  # (N, 3, S, S) uint8, the readable images only
    labels: torch.Tensor  # (N,) int64
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable files
    from_disk_cache: bool = False
    seconds: float = 0.0

    def to(self, device: torch.device) -> DecodedImages:
        return DecodedImages(self.images.to(device), self.labels.to(device), self.failures,
                             self.from_disk_cache, self.seconds)


def cache_key(samples: list[tuple[Path, int]], image_size: int) -> str:
    """Changes when any file's path, size or modification time, a label, or the resolution changes."""
    digest = hashlib.sha256(f"v{CACHE_FORMAT}/{stored_size(image_size)}/{is_small(image_size)}".encode())
    for path, label in samples:
        try:
            stat = os.stat(path)
            digest.update(f"\n{path}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"\n{path}\t{label}\tmissing".encode())
    return digest.hexdigest()[:32]


def load_or_decode(samples: list[tuple[Path, int]], image_size: int, *, workers: int,
                   cache_dir: Path | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> DecodedImages | None:
    """The decoded images of `samples`, from the disk cache when it is current, else decoded now
    (and saved). None if `should_stop` asked to stop part-way."""
    started = time.perf_counter()
    cache_dir = cache_dir or default_cache_dir()
    key = cache_key(samples, image_size)
    cached = _read_cache(cache_dir, key)
    if cached is not None:
        cached.seconds = time.perf_counter() - started
        return cached
    decoded = decode_all(samples, image_size, workers=workers, progress=progress, should_stop=should_stop)
    if decoded is None:
        return None
    _write_cache(cache_dir, key, decoded)
    decoded.seconds = time.perf_counter() - started
    return decoded


def decode_all(samples: list[tuple[Path, int]], image_size: int, *, workers: int,
               progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> DecodedImages | None:
    side, small = stored_size(image_size), is_small(image_size)
    paths = [str(path) for path, _ in samples]
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    array = np.zeros((len(paths), 3, side, side), dtype=np.uint8)
    failed: dict[int, str] = {}
    done = 0
    for start, (chunk_array, chunk_failures) in _decode_chunks(chunks, side, small, workers):
        array[start:start + len(chunk_array)] = chunk_array
        failed.update({start + i: reason for i, reason in chunk_failures})
        done += len(chunk_array)
        if progress is not None:
            progress(done, len(paths))
        if should_stop is not None and should_stop():
            return None
    keep = np.array([i not in failed for i in range(len(paths))], dtype=bool)
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)[torch.from_numpy(keep)]
    return DecodedImages(torch.from_numpy(array[keep]), labels,
                         [(paths[i], reason) for i, reason in sorted(failed.items())])


def _decode_chunks(chunks: list[list[str]], side: int, small: bool, workers: int):
    """Yield (start index, (array, failures)) per chunk, in order, from `workers` processes (or inline)."""
    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]]).tolist() if chunks else []
    if workers <= 1 or len(chunks) <= 1:
        for start, chunk in zip(starts, chunks, strict=True):
            yield start, decode_chunk(chunk, side, small)
        return
    # spawn: forking a process that runs Qt or CUDA threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(decode_chunk, chunks, [side] * len(chunks), [small] * len(chunks))
        yield from zip(starts, results, strict=True)


# --- the disk cache --------------------------------------------------------------------------------

def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"decoded-{key}.npy", cache_dir / f"decoded-{key}.json"


def _read_cache(cache_dir: Path, key: str) -> DecodedImages | None:
    array_path, meta_path = _paths(cache_dir, key)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        array = np.load(array_path, allow_pickle=False)  # plain numbers only: nothing can execute
    except (OSError, ValueError):
        return None  # a damaged cache is only a cache: decode again
    if array.shape[0] != len(meta["labels"]):
        return None
    return DecodedImages(torch.from_numpy(array), torch.tensor(meta["labels"], dtype=torch.long),
                         [tuple(f) for f in meta["failures"]], from_disk_cache=True)


def _write_cache(cache_dir: Path, key: str, decoded: DecodedImages) -> None:
    array_path, meta_path = _paths(cache_dir, key)
    try:
        with atomic_write(array_path) as tmp, open(tmp, "wb") as f:
            np.save(f, decoded.images.numpy(), allow_pickle=False)
        meta = {"format": CACHE_FORMAT, "labels": decoded.labels.tolist(), "failures": decoded.failures}
        write_text_atomic(meta_path, json.dumps(meta))
    except OSError:
        pass  # a full disk or a read-only cache folder costs the next run a decode, nothing more
