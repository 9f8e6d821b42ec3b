"""Loading checked samples for a torch DataLoader: a file that fails gives a LoadFailure, never an exception."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from resnet_app.core.data.images import ImageLoadError, load_image


class LoadFailure(NamedTuple):
    """Third item of a sample that failed to load. A plain tuple, so it pickles
    out of DataLoader worker processes."""

    path: str
    reason: str


class ImageFileDataset(Dataset):
    """(image path, label) samples -> (tensor, label, path_str).

    A file that cannot be loaded gives ``(None, label, LoadFailure(path, reason))``
    instead of raising: a bad image must never stop a training run. Use
    ``collate_skipping_failures`` as the DataLoader's ``collate_fn``.
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: Callable[[Any], torch.Tensor],
        size_hint: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.size_hint = size_hint

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str] | tuple[None, int, LoadFailure]:
        path, label = self.samples[i]
        try:
            image = load_image(path, self.size_hint)
        except ImageLoadError as err:
            return None, label, LoadFailure(str(path), err.reason)
        except OSError as err:
            # Defensive: e.g. the file vanished after the scan and the loader let it through.
            return None, label, LoadFailure(str(path), err.strerror or str(err))
        return self.transform(image), label, str(path)


def collate_skipping_failures(
    batch: list[tuple[Any, int, Any]],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack the samples that loaded; return (images, labels, failures).

    ``failures`` is ``[(path_str, reason), ...]`` for samples whose image was None.
    If every sample failed, images is ``torch.empty(0)`` and labels an empty long tensor,
    so callers can check ``images.numel() == 0`` / ``len(labels) == 0`` and move on.
    """
    images, labels, failures = [], [], []
    for image, label, extra in batch:
        if image is None:
            path, reason = extra
            failures.append((str(path), str(reason)))
        else:
            images.append(image)
            labels.append(int(label))
    if not images:
        return torch.empty(0), torch.empty(0, dtype=torch.long), failures
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), failures
