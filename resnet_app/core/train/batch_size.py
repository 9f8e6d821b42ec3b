"""Batch size "auto": the largest batch that fits a share of the device's memory, within sane limits.

The memory a training batch needs is mostly the activations autograd keeps for the backward pass, and
that grows linearly with the batch. We measure it rather than guess it: a forward pass on a copy of
the model with two and then four blank images, counting the bytes of every tensor autograd saves
(`saved_tensors_hooks`). The difference is the cost of one more image, on this device, with this
architecture, image size and precision (bf16 autocast halves it). This runs anywhere (CPU, CUDA, MPS)
in well under a second at the sizes we train, and touches neither the real model's batch-norm
statistics nor the random number generators (so exact resume is unaffected).

Out-of-memory halving in the trainer stays as the safety net for what the estimate cannot see
(cuDNN workspaces, fragmentation, another program taking memory later).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn as nn

from resnet_app.core.data.memory import memory_share_bytes

AUTO = "auto"
REFERENCE_BATCH = 128  # the article's batch size: the default learning rates are meant for it
# The batch is a power of two no larger than this. On a CPU, batches above ~128 train more slowly per
# image (measured on the development machine: 64 → 33 img/s, 128 → 28, 512 → 21 at 32 px) and only cut
# the number of updates per epoch. On a GPU the H200 figures were taken at 512; beyond that
# the gain in images/s is small while the updates per epoch halve again.
MAX_BATCH = {"cuda": 512, "mps": 256, "cpu": 128}
MIN_BATCH = 8
MIN_STEPS_PER_EPOCH = 8  # a small set still gets several updates an epoch
HEADROOM = 1.5  # transient buffers (activation gradients, workspaces) beyond what autograd saves
GPU_MEMORY_SHARE = 0.5  # of the memory still free once the model, optimiser and data are in place
HOST_MEMORY_SHARE = 0.25  # of physical RAM, on the CPU


@dataclass
class BatchChoice:
    batch_size: int
    learning_rate: float
    bytes_per_image: int
    budget_bytes: int
    limited_by: str  # "memory", "device" (MAX_BATCH), "dataset" (MIN_STEPS_PER_EPOCH) or "minimum"

    def describe(self, device_type: str, base_lr: float, lr_scaled: bool) -> str:
        device_name = {"cuda": "the GPU's", "mps": "the Apple GPU's"}.get(device_type, "the computer's")
        reason = {
            "memory": f"the largest that fits {_size(self.budget_bytes)}, a share of {device_name} memory",
            "device": f"the most that pays off on {'a CPU' if device_type == 'cpu' else 'a GPU'}",
            "dataset": f"so that each epoch has at least {MIN_STEPS_PER_EPOCH} updates",
            "minimum": "the smallest batch size we choose",
        }[self.limited_by]
        text = (f"batch size auto: {self.batch_size} ({reason}; "
                f"about {_size(self.bytes_per_image)} of activations an image)")
        if lr_scaled and self.batch_size != REFERENCE_BATCH:
            text += (f"; learning rate scaled from {base_lr:g} at batch {REFERENCE_BATCH} "
                     f"to {self.learning_rate:.3g}")
        return text


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def activation_bytes_per_image(model: nn.Module, image_size: int, device: torch.device,
                               autocast: Callable[[], AbstractContextManager]) -> int:
    """Bytes autograd keeps for one more training image (forward pass), measured on a copy of `model`."""
    probe = copy.deepcopy(model).train()  # a copy: the forward pass would update batch-norm statistics

    def saved_bytes(batch: int) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()  # views of one storage count once
            return tensor

        images = torch.zeros(batch, 3, image_size, image_size, device=device)  # zeros: no RNG draw
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast():
            probe(images)
        return sum(storages.values())

    # The difference of two batches leaves out what does not grow with the batch (weights and their
    # low-precision copies under autocast).
    return max(1, (saved_bytes(4) - saved_bytes(2)) // 2)


def memory_budget_bytes(device: torch.device) -> int:
    """The memory a batch may take: a share of free GPU memory, or of physical RAM on the CPU."""
    return memory_share_bytes(device, gpu_share=GPU_MEMORY_SHARE, host_share=HOST_MEMORY_SHARE)


def choose_batch_size(bytes_per_image: int, budget_bytes: int, train_size: int, device_type: str) -> tuple[int, str]:
    """The largest power of two within the memory budget, the device's cap and the dataset's size."""
    limits = {
        "memory": budget_bytes / (bytes_per_image * HEADROOM),
        "device": MAX_BATCH.get(device_type, MAX_BATCH["cpu"]),
        "dataset": train_size / MIN_STEPS_PER_EPOCH,
    }
    limited_by = min(limits, key=limits.get)
    largest = limits[limited_by]
    if largest < MIN_BATCH:
        return MIN_BATCH, "minimum"
    return 2 ** int(math.floor(math.log2(largest))), limited_by


def scaled_learning_rate(base_lr: float, batch_size: int, optimizer: str) -> float:
    """The default learning rate, given for a batch of 128, moved to `batch_size`.

    SGD scales linearly with the batch (Goyal et al., 2017); Adam, which normalises its steps, with
    the square root (its update noise falls with the square root of the batch).
    """
    ratio = batch_size / REFERENCE_BATCH
    return base_lr * (ratio if optimizer == "sgd" else math.sqrt(ratio))


def auto_batch(model: nn.Module, image_size: int, device: torch.device, autocast: Callable[[], AbstractContextManager],
               train_size: int, optimizer: str, base_lr: float, scale_lr: bool) -> BatchChoice:
    per_image = activation_bytes_per_image(model, image_size, device, autocast)
    budget = memory_budget_bytes(device)
    batch, limited_by = choose_batch_size(per_image, budget, train_size, device.type)
    lr = scaled_learning_rate(base_lr, batch, optimizer) if scale_lr else base_lr
    return BatchChoice(batch, lr, per_image, budget, limited_by)
