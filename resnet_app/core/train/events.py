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
    status: str  # completed | stopped | diverged | failed
    epochs_completed: int  # in `unit`s: epochs, or for a quick run passes over the features
    best_val_accuracy: float | None
    model_path: str | None
    checkpoint_path: str | None
    message: str = ""
    unit: str = "epoch"  # what the loop counts: "epoch" (the full loop) or "pass" (quick: over the features)
    total: int = 0  # the epochs (passes) the run meant to make
    # Where a stopped run stopped (0: it did not, or it is not known): the 1-based epoch (pass) it was
    # in, the batches of it done, and its batches; last.pt holds this point.
    stopped_epoch: int = 0
    stopped_batch: int = 0
    stopped_batches: int = 0

    def summary(self) -> str:
        if self.status == "stopped" and self.stopped_epoch:
            best = ("" if self.best_val_accuracy is None
                    else f" Best validation accuracy so far: {self.best_val_accuracy:.1%}.")
            return stop_words(self.unit, self.stopped_epoch, self.stopped_batch, self.stopped_batches,
                              self.total) + best
        heading = {"completed": "Training finished", "stopped": "Training stopped",
                   "diverged": "Training stopped: the loss diverged"}.get(self.status, self.status)
        best = "" if self.best_val_accuracy is None else f"; best validation accuracy {self.best_val_accuracy:.1%}"
        if self.epochs_completed == 0 and self.status != "completed":
            return f"{heading} before its first {self.unit} ended{best}."
        return f"{heading} after {counted(self.unit, self.epochs_completed)}{best}."


def plural(count: int, word: str) -> str:
    """'1 epoch', '2 epochs', '3 passes': a count and its noun, the noun as the count needs it."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}{'es' if word.endswith('s') else 's'}"  # (pass: passes)


def counted(unit: str, count: int) -> str:
    """'6 epochs', '60 passes over the features': how many of a run's units."""
    return plural(count, unit) + (" over the features" if unit == "pass" else "")


def stop_words(unit: str, epoch: int, batch: int, batches: int, total: int) -> str:
    """Where a stopped run stopped and what resuming does, as the app, the command line and run.json say
    it: 'Stopped in epoch 1 (batch 8 of 12); resume continues from there.' `epoch` is 1-based, `batch`
    the batches of it done. A quick run stops between passes and trains again from the start."""
    if unit == "pass":
        return (f"Stopped after {epoch - 1} of {plural(total, 'pass')} over the features; resuming trains the "
                "last layer again (it takes seconds).")
    if batch <= 0:
        where = f"at the start of epoch {epoch}"
    elif batch >= batches:
        where = f"at the end of epoch {epoch}, before validating it"
    else:
        where = f"in epoch {epoch} (batch {batch} of {batches})"
    return f"Stopped {where}; resume continues from there."


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
    unit: str = "epoch"  # what epochs_completed counts: "epoch", or "pass" for a quick run
