"""How every run begins and ends, on disk and in its events: one RunRecorder for the full loop
(loop.Trainer) and the quick one (quick.QuickTrainer) alike.

At the start it writes run.json as "running" (the Runs list sees a run from its start). At the end it
calibrates the run's model, says which files could not be read, writes run.json with what really ran,
emits RunEnd and gives the TrainResult. What a loop counts is its unit: epochs over the images (the full
loop) or passes over the features (quick); run.json names its counts by it ("epochs_completed" or
"passes_completed"), keeps the settings the loop did not use apart ("not_used"), and for a stopped run
records where it stopped ("stopped_in"), which the app's start-up question reads back (run_files.py).
In between, EpochLosses keeps the full loop's batch losses until they are read and told (batch_end).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from resnet_app.core.model.devices import describe_device
from resnet_app.core.train.events import BatchEnd, EventHub, RunEnd, TrainResult, plural, stop_words
from resnet_app.core.train.run_data import RunData, SkippedFiles
from resnet_app.core.train.run_files import BestModel, RunFiles, write_run_summary
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.use.calibration import calibrate_finished_run


@dataclass
class StopPoint:
    """Where a stopped run stopped: the 1-based epoch (or pass) it was in, and the batches of it done."""

    epoch: int
    batch: int
    batches: int


class RunRecorder:
    """Writes a run's record at its start and its end, the same for every loop.

    `unit` is what the loop counts ("epoch" or "pass"); `not_used` names the settings it does not use
    (a quick run's epochs, batch size and learning rate), recorded apart from the ones it does.
    """

    def __init__(self, files: RunFiles, events: EventHub, skipped: SkippedFiles, *, unit: str = "epoch",
                 not_used: tuple[str, ...] = ()) -> None:
        self.files, self.events, self.skipped = files, events, skipped
        self.unit, self.not_used = unit, not_used
        self.started = ""  # ISO time the run (its first part, for a resumed run) began
        self.stopped_in: StopPoint | None = None

    def stop_at(self, epoch: int, batch: int, batches: int) -> None:
        """The loop stopped in `epoch` (1-based) after `batch` of its `batches`."""
        self.stopped_in = StopPoint(epoch, max(0, min(batch, batches)), batches)

    def begin(self, started: str, config: TrainConfig, data: RunData, done: int, total: int) -> None:
        self.started = started
        write_run_summary(self.files, self.events, {
            "status": "running", "started": started, "classes": list(data.classes), **data.summary(),
            **self._settings(config), **self._counts(done, total)})

    def finish(self, status: str, done: int, total: int, message: str, *, config: TrainConfig,
               data: RunData | None, history: list[dict[str, Any]], best: BestModel, device, device_words: str = "",
               calibrate: bool = True, extra: dict[str, Any] | None = None) -> TrainResult:
        """End the run: calibrate, warn, write run.json, emit RunEnd; a stopped run with no message of
        its own says where it stopped."""
        if status != "stopped":
            self.stopped_in = None
        stop = self.stopped_in
        if stop is not None and not message:
            message = stop_words(self.unit, stop.epoch, stop.batch, stop.batches, total)
        model_path, checkpoint_path = self.files.existing_model(), self.files.existing_checkpoint()
        calibration = None  # calibration.py: a temperature for honest probabilities, and "unsure"
        if calibrate and status != "failed" and data is not None:
            calibration = calibrate_finished_run(model_path, data.val_samples, device, self.events.say)
        if self.skipped.unreadable:
            self.events.say(f"{plural(len(self.skipped.unreadable), 'file')} could not be read and were left out; "
                            f"they are listed in {self.files.summary_path}", "warning")
        if self.files.out_dir.exists():
            write_run_summary(self.files, self.events, {
                "status": status, "message": message, **self._counts(done, total), "started": self.started,
                "stopped_in": None if stop is None else {self.unit: stop.epoch, "batch": stop.batch,
                                                         "batches": stop.batches},
                "best_val_accuracy": best.val_accuracy, "best_epoch": best.epoch,
                "model": str(model_path) if model_path else None,
                "checkpoint": str(checkpoint_path) if checkpoint_path else None,
                "classes": list(data.classes) if data else [], **(data.summary(self.skipped) if data else {}),
                "unreadable": self.skipped.listing(), "calibration": calibration,
                "device": device_words or (describe_device(device) if device is not None else ""),
                **self._settings(config), "history": history, **(extra or {}),
            })
        self.events.emit("run_end", RunEnd(
            status, done, best.val_accuracy, str(model_path) if model_path else None,
            str(checkpoint_path) if checkpoint_path else None, message, unit=self.unit, total=total,
            stopped_epoch=stop.epoch if stop else 0, stopped_batch=stop.batch if stop else 0,
            stopped_batches=stop.batches if stop else 0))
        return TrainResult(status, done, best.val_accuracy, model_path, checkpoint_path, list(history), message,
                           unit=self.unit)

    def _counts(self, done: int, total: int) -> dict[str, Any]:
        key = "epochs" if self.unit == "epoch" else "passes"
        return {"unit": self.unit, key: total, f"{key}_completed": done}

    def _settings(self, config: TrainConfig) -> dict[str, Any]:
        values = config.to_dict()
        settings: dict[str, Any] = {"config": {k: v for k, v in values.items() if k not in self.not_used}}
        if self.not_used:
            settings["not_used"] = {k: values[k] for k in self.not_used}
        return settings


LOSS_READ_INTERVAL_S = 0.25  # on a GPU, read losses back this often, not every batch (each read syncs)


class EpochLosses:
    """Losses of the batches trained so far in an epoch; on a GPU they stay there until read."""

    def __init__(self, epoch: int, size: int):
        self.epoch, self.size = epoch, size
        self.loss_sum, self.images = 0.0, 0
        self.pending: list[tuple[torch.Tensor, int, int, int]] = []  # (loss, images, batch index, batch size)
        self.last_read = time.monotonic()

    def add(self, loss: torch.Tensor, images: int, batch_index: int, batch_size: int) -> None:
        self.pending.append((loss, images, batch_index, batch_size))

    def due_for_read(self) -> bool:
        return time.monotonic() - self.last_read >= LOSS_READ_INTERVAL_S

    def take_pending(self) -> list[BatchEnd]:
        if not self.pending:
            return []
        values = torch.stack([loss for loss, *_ in self.pending]).float().tolist()  # one device sync
        ends = []
        for value, (_, images, batch_index, batch_size) in zip(values, self.pending, strict=True):
            self.loss_sum += value * images
            self.images += images
            batches = math.ceil(self.size / batch_size)
            ends.append(BatchEnd(self.epoch + 1, min(batch_index, batches), batches, value, 0, images))
        self.pending.clear()
        self.last_read = time.monotonic()
        return ends
