"""Augmentation and normalisation of whole uint8 batches, on whatever device the batch is on.

The fast training path keeps decoded images as uint8 tensors (see decoded_cache.py) and augments a
batch at a time on the GPU instead of one PIL image at a time in worker processes. These functions
draw the same random crops and flips as the torchvision transforms of transforms.py (tests compare
the distributions), and they run on the CPU too, which is how they are tested here.

Shapes: batches are (N, 3, H, W) uint8; outputs of `normalize` are float32 (N, 3, H, W).

No host synchronisation: the random draws come from a CPU generator (so that a run is reproducible
from (seed, epoch) and resumable) and reach the GPU through pinned memory with non_blocking copies. A
plain `.to("cuda")` of a CPU tensor waits for the GPU to finish all queued work, three times a batch,
which would leave the GPU idle while Python prepares the next step.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from resnet_app.core.data.decode_worker import centre_crop_offset
from resnet_app.core.data.transforms import crop_padding


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`, copied without making the host wait for the GPU."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device, non_blocking=True)
    # Pinned memory from PyTorch's caching host allocator: cheap after the first batches, and the
    # block is not reused before the copy has run.
    return tensor.pin_memory().to(device, non_blocking=True)


def random_crop_with_padding(batch: torch.Tensor, padding: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random crop of the batch's own size out of a zero-padded copy (RandomCrop(padding=p)).

    Offsets are drawn uniformly from 0..2p in each direction, as torchvision does.
    """
    n, c, h, w = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))
    dy, dx = to_device_async(torch.randint(0, 2 * padding + 1, (2, n), generator=generator), batch.device)
    rows = (dy[:, None] + torch.arange(h, device=batch.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=batch.device)[None, :])  # (n, w)
    # Two gathers: pick rows, then columns; both index per sample, so no Python loop over the batch.
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_horizontal_flip(batch: torch.Tensor, p: float = 0.5,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    flip = to_device_async(torch.rand(batch.shape[0], generator=generator) < p, batch.device)
    return torch.where(flip[:, None, None, None], batch.flip(3), batch)


def random_resized_crop_boxes(n: int, height: int, width: int, scale: Sequence[float] = (0.08, 1.0),
                              ratio: Sequence[float] = (3 / 4, 4 / 3),
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) drawn as torchvision's RandomResizedCrop.get_params does:
    up to 10 tries of a random area share and log-uniform aspect ratio that fit, else the central crop
    with the ratio clamped into range."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    boxes = torch.zeros(n, 4, dtype=torch.float64)
    found = torch.zeros(n, dtype=torch.bool)
    for _ in range(10):
        target_area = area * torch.empty(n, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
        aspect = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(log_ratio[0].item(), log_ratio[1].item(),
                                                                        generator=generator))
        w = torch.round(torch.sqrt(target_area * aspect))
        h = torch.round(torch.sqrt(target_area / aspect))
        fits = (~found) & (w > 0) & (h > 0) & (w <= width) & (h <= height)
        top = torch.floor(torch.rand(n, dtype=torch.float64, generator=generator) * (height - h + 1))
        left = torch.floor(torch.rand(n, dtype=torch.float64, generator=generator) * (width - w + 1))
        boxes[fits] = torch.stack([top, left, h, w], dim=1)[fits]
        found |= fits
        if bool(found.all()):
            break
    if not bool(found.all()):
        boxes[~found] = torch.tensor(_central_fallback(height, width, ratio), dtype=torch.float64)
    return boxes


def _central_fallback(height: int, width: int, ratio: Sequence[float]) -> tuple[float, float, float, float]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return ((height - h) // 2, (width - w) // 2, h, w)


def resized_crops(batch: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each sample to its box and resize it to size x size (bilinear), all in one grid_sample.

    Returns float32 in 0..255.
    """
    n, _, height, width = batch.shape
    boxes = to_device_async(boxes.float(), batch.device)
    top, left, h, w = boxes.unbind(1)
    # affine_grid works in [-1, 1] coordinates: scale = box size / image size, shift = box centre.
    theta = torch.zeros(n, 2, 3, device=batch.device)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(batch.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The centre size x size of each image, where torchvision's CenterCrop takes it: its offsets round
    halves to even, so flooring them (as `//` does) moves the crop a pixel at odd margins such as 3."""
    height, width = batch.shape[-2:]
    top, left = centre_crop_offset(height, size), centre_crop_offset(width, size)
    return batch[..., top:top + size, left:left + size]


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or 0..255 float) -> float32 normalised, with torchvision's arithmetic step for step.

    v2.ToDtype(float32, scale=True) is x * (1 / 255) and v2.Normalize is (x - mean) / std, each
    rounded to float32 in turn. The same operations in the same order give evaluation here the
    bit-identical tensors of transforms.eval_transform (prediction, the streaming path); one fused
    multiply-add (x * 1/(255 std) - mean/std) rounds once and differs in the last bit of most values.
    The extra passes over the batch cost little next to the network.
    """
    mean_t, std_t = _normalize_constants(tuple(mean), tuple(std), batch.device)
    # A float batch (resized_crops' output) is scaled into a new tensor: the steps after are in place.
    scaled = batch.mul(1.0 / 255) if batch.is_floating_point() else batch.to(torch.float32).mul_(1.0 / 255)
    return scaled.sub_(mean_t).div_(std_t)


@lru_cache(maxsize=8)
def _normalize_constants(mean: tuple[float, ...], std: tuple[float, ...],
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as float32 on `device`, as v2.Normalize makes them, but made once rather than
    copied to the device every batch."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return mean_t.to(device), std_t.to(device)


class BatchAugmenter:
    """The training and evaluation pipelines of transforms.py, for uint8 batches of stored images.

    Stored images are squares: `image_size` for the small regime, the resize size (256/224 of it)
    for the large one; see decoded_cache.stored_size. Evaluation gives bit-identical tensors to
    transforms.eval_transform: decode_worker.decode_stored places the large squares so that the
    centre crop here lands on torchvision's pixels, and `normalize` repeats torchvision's arithmetic.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], small: bool,
                 crop: bool = True, flip: bool = True):
        self.image_size, self.mean, self.std, self.small = image_size, mean, std, small
        self.crop, self.flip = crop, flip

    def train(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.crop:
            batch = self._central(batch)
        elif self.small:
            batch = random_crop_with_padding(batch, crop_padding(self.image_size), generator)
        else:
            boxes = random_resized_crop_boxes(batch.shape[0], batch.shape[2], batch.shape[3], generator=generator)
            batch = resized_crops(batch, boxes, self.image_size)
        if self.flip:
            batch = random_horizontal_flip(batch, generator=generator)
        return normalize(batch, self.mean, self.std)

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        return normalize(self._central(batch), self.mean, self.std)

    def _central(self, batch: torch.Tensor) -> torch.Tensor:
        """What evaluation sees: the whole stored square when small, its centre crop when large."""
        return batch if self.small else center_crop(batch, self.image_size)
