"""Choosing and naming the compute device, and what it computes in (precision, running out of memory)."""
from __future__ import annotations

import os

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """The requested device is not available here."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks an NVIDIA GPU, then Apple's MPS, then the CPU; a named device must exist."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise DeviceError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no NVIDIA GPU is usable here (torch.cuda.is_available() is False); "
                          "use --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise DeviceError("MPS was requested but Apple's Metal backend is not available here")
    if name == "cuda":
        # With its index, as tensors report theirs: torch.device("cuda") != torch.device("cuda:0").
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A short human name: the GPU's model, or the CPU with its thread count."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (CUDA)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores)"


def mixed_precision(device: torch.device, bf16_in_hardware: bool | None = None) -> str | None:
    """The precision a GPU trains in: "bf16" where the GPU computes bfloat16 itself (Ampere and newer),
    "fp16" with a gradient scaler on older NVIDIA GPUs (where torch would emulate bfloat16, slowly),
    None (fp32) on a CPU or an Apple GPU."""
    if device.type != "cuda":
        return None
    if bf16_in_hardware is None:
        bf16_in_hardware = torch.cuda.is_bf16_supported(including_emulation=False)
    return "bf16" if bf16_in_hardware else "fp16"


# cuBLAS and cuDNN report a failed allocation of their own workspaces as a plain RuntimeError.
OUT_OF_MEMORY_MARKERS = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in OUT_OF_MEMORY_MARKERS))


def torch_build() -> str:
    """Which PyTorch build runs, and what it can use: the About box and the self-test say it, because
    a CUDA build on a computer without an NVIDIA GPU is 5 GB for nothing (README: CPU-only PyTorch)."""
    cuda = torch.version.cuda
    kind = f"CUDA {cuda} build" if cuda else "CPU-only build"
    if torch.cuda.is_available():
        where = f"training runs on {torch.cuda.get_device_name(0)}"
    elif _mps_available():
        where = "training runs on the Apple GPU"
    elif cuda:
        where = "no NVIDIA GPU found, so training runs on the CPU (the CPU-only build would do the same)"
    else:
        where = "training runs on the CPU"
    return f"PyTorch {torch.__version__} ({kind}); {where}"
