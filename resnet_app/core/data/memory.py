"""How much memory there is to fill: the budgets of the decoded-image cache and of the batch size."""
from __future__ import annotations

import os

import torch


def memory_share_bytes(device: torch.device, gpu_share: float, host_share: float) -> int:
    """A share of the memory `device` computes in: free GPU memory on CUDA, physical RAM otherwise."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * gpu_share)
    return int(physical_memory_bytes() * host_share)


def physical_memory_bytes() -> int:
    """The machine's RAM (for memory budgets); 8 GB where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 8 * 2**30
