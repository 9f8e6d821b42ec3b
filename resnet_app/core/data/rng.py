"""torch's global random generator: one per process, shared by every thread, so guarded here.

A run must not depend on what other threads draw meanwhile (the app loads a model, which initialises
weights at random, while another run trains). So the engine draws its randomness from generators of
its own wherever torch lets it (shuffles, crops, flips of decoded batches); where torch only offers
the global generator (a fresh model's initial weights, torchvision's per-image transforms), it draws
inside `seeded_global_rng`, which holds the lock every such use in this process takes (build_model
included), seeds the generator, and puts its state back afterwards.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Inside: torch's global CPU generator seeded with `seed`, and no other thread of this process
    drawing from it through the engine; afterwards, its state as it was."""
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # (torch.manual_seed would reseed CUDA's too)
        yield
