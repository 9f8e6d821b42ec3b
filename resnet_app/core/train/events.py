"""What a training run and its listeners say to each other: named events out (small dataclasses of
plain data), stop and pause requests in (RunControl), and the result at the end (TrainResult).

Every loop (the full trainer, the last-layer trainer over cached features) emits the same events
through an `EventHub`, so the command line, the app and the tests listen to any of them the same way
(minGPT's `add_callback(onevent, cb)` habit). Each event that people read also says itself in words
(`summary()`), so the command line and the app show the same sentence.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS = ("data_progress", "run_start", "batch_end", "epoch_end", "checkpoint_saved", "paused", "message", "run_end")


@dataclass
class DataProgress:
    stage: str  # what is being prepared: "training", "validation", "features"
    done: int
    total: int


@dataclass
class RunStart:
    classes: list[str]
    train_size: int
    val_size: int
    device: str
    epochs: int
    start_epoch: int  # 1-based epoch the run starts in (> 1 when resumed)
    batches_per_epoch: int
    loader_processes: int  # DataLoader processes reading images (0 for decoded images)
    data_loading: str  # "decoded", "streaming" or "features": where the batches come from
    batch_size: int  # what "auto" chose, or the batch size given
    learning_rate: float  # the base rate, after scaling for an automatic batch size
    # A resumed run's past: the epochs recorded so far (for the plot) and its model file, if any.
    history: list[dict[str, Any]] = field(default_factory=list)
    model_path: str | None = None
    run_dir: str = ""

    def summary(self) -> str:
        return (f"training on {self.train_size} images ({len(self.classes)} classes: {', '.join(self.classes)}), "
                f"validating on {self.val_size}; device: {self.device}; batch {self.batch_size}")


@dataclass
class BatchEnd:
    epoch: int  # 1-based
    batch: int  # 1-based within the epoch
    batches: int
    loss: float
    step: int  # optimiser steps since the run began, across epochs
    images: int = 0  # images in this batch (fewer in an epoch's last one, or after out-of-memory halving)


@dataclass
class EpochEnd:
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_second: float
    lr: float
    skipped_images: int

    def summary(self) -> str:
        val = ("" if self.val_accuracy is None
               else f", val loss {self.val_loss:.3f}, val accuracy {self.val_accuracy:.1%}")
        return (f"epoch {self.epoch}/{self.epochs}: train loss {self.train_loss:.3f}{val} "
                f"({self.seconds:.1f} s, {self.images_per_second:.0f} images/s)")


@dataclass
class CheckpointSaved:
    path: str
    kind: str  # "last" (resumable checkpoint) or "best" (the model file)
    epoch: int

    def summary(self) -> str:
        what = "best model so far" if self.kind == "best" else "resumable checkpoint"
        return f"saved {what} (after epoch {self.epoch}): {self.path}"


@dataclass
class Paused:
    """Training has stopped between batches at a pause request; last.pt holds this point."""
    epoch: int  # 1-based
    batch: int  # batches of the epoch done
    batches: int
    checkpoint_path: str

    def where(self) -> str:
        done = "before its first batch" if self.batch == 0 else f"batch {self.batch} of {self.batches}"
        return f"epoch {self.epoch}, {done}"


@dataclass
class Message:
    text: str
    level: str = "info"  # info | warning | error

    def summary(self) -> str:
        return self.text if self.level == "info" else f"{self.level}: {self.text}"


@dataclass
class RunEnd:
    status: str  # completed | stopped | diverged
    epochs_completed: int
    best_val_accuracy: float | None
    model_path: str | None
    checkpoint_path: str | None
    message: str = ""

    def summary(self) -> str:
        heading = {"completed": "Training finished", "stopped": "Training stopped",
                   "diverged": "Training stopped: the loss diverged"}.get(self.status, self.status)
        epochs = f"{self.epochs_completed} epoch{'' if self.epochs_completed == 1 else 's'}"
        best = "" if self.best_val_accuracy is None else f"; best validation accuracy {self.best_val_accuracy:.1%}"
        return f"{heading} after {epochs}{best}."


class EventHub:
    """Named events and their listeners; `emit` calls each listener in the emitting thread."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {name: [] for name in EVENTS}

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def emit(self, event: str, payload: Any) -> None:
        for callback in self._callbacks[event]:
            callback(payload)

    def say(self, text: str, level: str = "info") -> None:
        self.emit("message", Message(text, level))


class RunControl:
    """Stop and pause requests: made from any thread (the app's, a signal handler), seen by a loop
    between its steps (Lightning's `should_stop`, Orange's `is_interruption_requested`)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._unpaused.set()  # a paused run must wake up to stop

    def request_pause(self) -> None:
        self._unpaused.clear()

    def request_resume(self) -> None:
        self._unpaused.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def wait_while_paused(self) -> None:
        while not self._unpaused.wait(timeout=0.2):
            pass


@dataclass
class TrainResult:
    status: str  # completed | stopped | diverged
    epochs_completed: int
    best_val_accuracy: float | None
    model_path: Path | None
    checkpoint_path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
