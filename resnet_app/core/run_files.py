"""A run's files: the resumable checkpoint, the shareable model, the metrics table and the summary.

One run folder holds `last.pt` (everything needed to resume), `model.safetensors` (the best weights,
to share and open), `metrics.csv` (one row per epoch) and `run.json` (settings, result, history).
Every write is atomic (checkpoints.py). Any training loop writes its run through `RunFiles`, so all
runs look the same on disk, whichever loop made them.
"""
from __future__ import annotations

import csv
import io
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from resnet_app import __version__
from resnet_app.core import models
from resnet_app.core.checkpoints import (
    ModelFile,
    remove_stale_temp_files,
    save_checkpoint,
    save_model_file,
    write_text_atomic,
)
from resnet_app.core.config import TrainConfig

LAST_CHECKPOINT = "last.pt"
BEST_MODEL = "model.safetensors"
METRICS_CSV = "metrics.csv"
RUN_JSON = "run.json"
METRICS_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "seconds", "images_per_second", "lr",
                   "batch_size"]


def versions() -> dict[str, str]:
    import torchvision

    # str(): torch.__version__ is a TorchVersion object, which weights_only loading rightly refuses.
    return {"resnet_app": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


@dataclass
class BestModel:
    """Which epoch's weights are the run's model: the highest validation accuracy, ties broken by the
    lower validation loss; with no validation set, the newest."""

    val_accuracy: float | None = None
    val_loss: float | None = None
    epoch: int | None = None

    def is_beaten_by(self, val_loss: float | None, val_accuracy: float | None) -> bool:
        if val_accuracy is None:  # no validation set: the newest weights are the best we know
            return True
        if self.val_accuracy is None or val_accuracy > self.val_accuracy:
            return True
        return val_accuracy == self.val_accuracy and val_loss is not None and (
            self.val_loss is None or val_loss < self.val_loss)

    def update(self, epoch: int, val_loss: float | None, val_accuracy: float | None) -> None:
        self.epoch, self.val_loss, self.val_accuracy = epoch, val_loss, val_accuracy

    def state(self) -> dict[str, Any]:
        return {"best_val_accuracy": self.val_accuracy, "best_val_loss": self.val_loss, "best_epoch": self.epoch}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BestModel:
        return cls(state.get("best_val_accuracy"), state.get("best_val_loss"), state.get("best_epoch"))


class RunFiles:
    """The files of one run folder, each written atomically."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def model_path(self) -> Path:
        return self.out_dir / BEST_MODEL

    def prepare(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out_dir)  # left by a run that was killed while saving

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        return save_checkpoint(self.last_path, {**state, "versions": versions()})

    def save_model(self, model: nn.Module, config: TrainConfig, classes: list[str], record: dict[str, Any],
                   data_summary: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """Save `model` as the run's shareable model file, with what is needed to use it."""
        model_file = ModelFile(
            state_dict=model.state_dict(), arch=config.arch, class_names=list(classes),
            image_size=config.input_size, mean=list(models.IMAGENET_MEAN), std=list(models.IMAGENET_STD),
            metrics={k: record[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy")},
            extra={"config": config.to_dict(), "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "dataset": data_summary, **(extra or {})},
        )
        return save_model_file(self.model_path, model_file)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.out_dir / METRICS_CSV, buffer.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text_atomic(self.out_dir / RUN_JSON, json.dumps({**summary, "versions": versions()}, indent=2) + "\n")

    def existing_model(self) -> Path | None:
        return self.model_path if self.model_path.exists() else None

    def existing_checkpoint(self) -> Path | None:
        return self.last_path if self.last_path.exists() else None
