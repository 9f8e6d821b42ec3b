"""Training: a plain-Python Trainer with named events, cancel and pause requests, exact resume.

The loop follows the article (CrossEntropyLoss, Adam at lr 1e-3 by default) and adds what a desktop
app needs: events for the UI and CLI (minGPT-style `add_callback`), stop/pause requests checked between
batches, atomic checkpoints every epoch, a shareable best model, NaN detection, and halving the batch
size on CUDA out-of-memory.

Reproducibility: the initial weights come from the seed, and each epoch draws its shuffle order and
augmentation randomness from (seed, epoch) alone, so the same settings on the same machine give the
same run, and a run resumed from an epoch-boundary checkpoint sees exactly what an unbroken run would.
Resumed from mid-epoch (after a stop or a crash), it trains the same remaining images in the same
order; with decoded images each batch's augmentation comes from (seed, epoch, position), so that is
exact too (streaming workers draw theirs per worker, which a resume does not reproduce).
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from resnet_app import __version__
from resnet_app.core import models
from resnet_app.core.checkpoints import (
    ModelFile,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    save_model_file,
    write_text_atomic,
)
from resnet_app.core.batch_augment import BatchAugmenter
from resnet_app.core.batch_size import AUTO, auto_batch
from resnet_app.core.batches import DecodedBatches, StreamingBatches, epoch_seed
from resnet_app.core.data import DatasetReport, ImageFileDataset, scan_dataset, stratified_split
from resnet_app.core.decoded_cache import dataset_bytes, host_budget_bytes, load_or_decode, memory_budget_bytes
from resnet_app.core.devices import describe_device, resolve_device
from resnet_app.core.transforms import decode_size_hint, eval_transform, is_small, train_transform

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "cosine", "onecycle")
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}  # adam: the article's (torch's default); sgd: per batch of 128
DATA_LOADING = ("auto", "decoded", "streaming")
EVENTS = ("data_progress", "run_start", "batch_end", "epoch_end", "checkpoint_saved", "paused", "message", "run_end")
LOSS_READ_INTERVAL_S = 0.25  # on a GPU, read losses back this often, not every batch (each read syncs)

LAST_CHECKPOINT = "last.pt"
BEST_MODEL = "model.safetensors"
METRICS_CSV = "metrics.csv"
RUN_JSON = "run.json"


class TrainingError(RuntimeError):
    """Training can't start or go on; the message says why and what to do."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite."""


# --- configuration ---------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that defines a run; saved inside every checkpoint and model file."""

    arch: str = "resnet18-cifar"
    epochs: int = 10
    batch_size: int | str = AUTO  # AUTO: the largest that fits the device's memory (batch_size.py)
    optimizer: str = "adam"
    lr: float | None = None  # None: DEFAULT_LR for the optimizer
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-4  # sgd only; the article's Adam has none
    schedule: str = "none"
    image_size: int | None = None  # None: the architecture's native size (32 or 224 px)
    augment: bool = True
    val_fraction: float = 0.2
    val_dir: str | None = None  # a separate validation folder instead of a split
    device: str = "auto"
    seed: int = 0
    workers: int | None = None  # DataLoader worker processes; None: chosen from data size and cores
    pretrained: str | None = None  # resnet18 only: a .pth path or "imagenet"
    log_every: int = 0  # batches between running-loss lines; 0: about four per epoch
    checkpoint_every_s: float = 600.0  # also save last.pt mid-epoch this often (seconds), for crashes
    data_loading: str = "auto"  # decoded (decode once, augment batches on the device) | streaming | auto
    compile: bool = False  # torch.compile the model (CUDA only; pays off only for long runs)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.arch in models.ARCHITECTURES, f"arch must be one of {', '.join(models.ARCHITECTURES)}"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size == AUTO or (isinstance(self.batch_size, int) and self.batch_size >= 1),
             "batch size must be at least 1, or auto"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr is None or self.lr > 0, "learning rate must be positive"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.image_size is None or 16 <= self.image_size <= 1024, "image size must be between 16 and 1024 px"),
            (0.0 <= self.val_fraction < 1.0, "validation fraction must be at least 0 and below 1"),
            (self.workers is None or self.workers >= 0, "workers must be 0 or more"),
            (self.data_loading in DATA_LOADING, f"data loading must be one of {', '.join(DATA_LOADING)}"),
            (self.pretrained is None or self.arch == "resnet18",
             "pretrained ImageNet weights exist for the resnet18 architecture only"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def learning_rate(self) -> float:
        """The learning rate asked for; with batch size auto and no lr given, the trainer scales it."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def input_size(self) -> int:
        return self.image_size or models.DEFAULT_IMAGE_SIZE[self.arch]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# --- events ----------------------------------------------------------------------------------------

@dataclass
class DataProgress:
    stage: str  # "decoding"
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
    workers: int
    data_loading: str  # "decoded" or "streaming": what "auto" chose
    batch_size: int  # what "auto" chose, or the batch size given
    learning_rate: float  # the base rate, after scaling for an automatic batch size


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


@dataclass
class CheckpointSaved:
    path: str
    kind: str  # "last" (resumable checkpoint) or "best" (the model file)
    epoch: int


@dataclass
class Paused:
    """Training has stopped between batches at a pause request; last.pt holds this point."""
    epoch: int  # 1-based
    batch: int  # batches of the epoch done
    batches: int
    checkpoint_path: str


@dataclass
class Message:
    text: str
    level: str = "info"  # info | warning | error


@dataclass
class RunEnd:
    status: str  # completed | stopped | diverged
    epochs_completed: int
    best_val_accuracy: float | None
    model_path: str | None
    checkpoint_path: str | None
    message: str = ""


@dataclass
class TrainResult:
    status: str
    epochs_completed: int
    best_val_accuracy: float | None
    model_path: Path | None
    checkpoint_path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


# --- sampling and schedules ------------------------------------------------------------------------

def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at `progress` (0 at the start of training, 1 at the end).

    Written as a function of progress rather than a torch scheduler so that it survives resume and
    batch-size changes with nothing to store.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        warmup = 0.3  # the share of training spent warming up, as torch's OneCycleLR
        if progress < warmup:
            return 0.04 + 0.96 * progress / warmup  # from 1/25 of the peak, OneCycleLR's div_factor
        return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (1.0 - warmup)))
    return 1.0


def auto_workers(train_size: int) -> int:
    """Worker processes for decoding: none for small sets (process start-up costs more than it saves)."""
    if train_size < 1000:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _EpochTally:
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
        for value, (_, images, batch_index, batch_size) in zip(values, self.pending):
            self.loss_sum += value * images
            self.images += images
            batches = math.ceil(self.size / batch_size)
            ends.append(BatchEnd(self.epoch + 1, min(batch_index, batches), batches, value, 0, images))
        self.pending.clear()
        self.last_read = time.monotonic()
        return ends


# --- the trainer -----------------------------------------------------------------------------------

class Trainer:
    """Trains one model on one image folder into one run folder.

    Use: `trainer = Trainer(config, data_dir, out_dir); trainer.add_callback("epoch_end", fn);
    result = trainer.fit()`. `request_stop()`, `request_pause()` and `request_resume()` may be called
    from any thread; they act between batches.
    """

    def __init__(self, config: TrainConfig, data_dir: str | Path, out_dir: str | Path):
        self.config = config
        self.data_dir = Path(data_dir).expanduser().resolve()  # recorded in checkpoints: must work from any folder
        self.out_dir = Path(out_dir)
        self.resume_from: Path | None = None
        self._resume_state: dict[str, Any] | None = None
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {name: [] for name in EVENTS}
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._reported_failures: set[str] = set()

    # events and requests -------------------------------------------------------------------------

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def _emit(self, event: str, payload: Any) -> None:
        for callback in self._callbacks[event]:
            callback(payload)

    def _say(self, text: str, level: str = "info") -> None:
        self._emit("message", Message(text, level))

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

    # setup -----------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, out_dir: str | Path | None = None,
                        data_dir: str | Path | None = None, epochs: int | None = None,
                        device: str | None = None, workers: int | None = None) -> "Trainer":
        """A trainer that continues the run saved in `checkpoint` (a last.pt).

        A resumed run is the same run: its settings come from the checkpoint. The user may give it
        more epochs, another device or worker count, and a new place for the data or the output.
        """
        state = load_checkpoint(checkpoint)
        config = TrainConfig.from_dict(state["config"])
        if epochs is not None:
            config.epochs = epochs
        if device is not None:
            config.device = device
        if workers is not None:
            config.workers = workers
        config.validate()
        trainer = cls(config, data_dir or state["data"]["root"], out_dir or Path(checkpoint).parent)
        trainer.resume_from, trainer._resume_state = Path(checkpoint), state
        return trainer

    def _scan(self, folder: Path, class_names: list[str] | None = None) -> DatasetReport:
        # No decode check here: the training pass reads every image anyway and reports the ones that
        # fail (the decoded path before the first epoch, streaming as it meets them), and a check
        # would decode the whole set once more, even when the decoded set is already in the cache.
        report = scan_dataset(folder, class_names=class_names, check_images=False)
        report.raise_if_unusable()
        for skipped in report.skipped:
            self._say(f"skipped {skipped.path}: {skipped.reason}", "warning")
        for warning in report.warnings:
            self._say(warning, "warning")
        return report

    def _prepare_data(self, resume_state: dict[str, Any] | None) -> None:
        class_names = resume_state["class_names"] if resume_state else None
        report = self._scan(self.data_dir, class_names)
        self.classes = report.classes
        if self.config.val_dir:
            val_report = self._scan(Path(self.config.val_dir), self.classes)
            self.train_samples, self.val_samples = report.samples, val_report.samples
        else:
            self.train_samples, self.val_samples = stratified_split(
                report.samples, self.config.val_fraction, self.config.seed
            )
        if resume_state and resume_state["data"]["train_size"] != len(self.train_samples):
            self._say(
                f"the data folder changed since the checkpoint was saved "
                f"({resume_state['data']['train_size']} training images then, {len(self.train_samples)} now); "
                "the resumed run will not match an unbroken one exactly",
                "warning",
            )
        self.report = report

    def _build_sources(self) -> None:
        """Decoded (fast) or streaming batches, as configured; 'auto' decodes when the set fits."""
        self.workers = self.config.workers if self.config.workers is not None else auto_workers(len(self.train_samples))
        mode = self.config.data_loading
        if mode == "auto":
            needed = dataset_bytes(len(self.train_samples) + len(self.val_samples), self.config.input_size)
            # It fits on the device, or (GPU) in host RAM, whence each batch is copied over.
            budget = max(memory_budget_bytes(self.device), host_budget_bytes())
            mode = "decoded" if needed <= budget else "streaming"
            if mode == "streaming":
                self._say(f"the decoded images would take {needed / 2**30:.1f} GiB, more than the "
                          f"{budget / 2**30:.1f} GiB budget: decoding them every epoch instead", "warning")
        if mode == "decoded":
            train, val = self._decoded_sources()
            if train is not None:
                self.train_source, self.val_source = train, val
                return
            mode = "streaming"  # stopped while decoding
        self.train_source, self.val_source = self._streaming_sources()

    def _streaming_sources(self) -> tuple[StreamingBatches, StreamingBatches]:
        size, (mean, std) = self.config.input_size, (models.IMAGENET_MEAN, models.IMAGENET_STD)
        hint = decode_size_hint(size)
        train = ImageFileDataset(self.train_samples, train_transform(size, mean, std, self.config.augment), size_hint=hint)
        val = ImageFileDataset(self.val_samples, eval_transform(size, mean, std), size_hint=hint)
        return StreamingBatches(train, self.workers, self.device), StreamingBatches(val, self.workers, self.device)

    def _decode(self, samples: list, stage: str):
        # Decode in processes only when there is enough to amortise their start-up (~1 s each).
        workers = min(16, os.cpu_count() or 1) if len(samples) >= 2000 else 1
        decoded = load_or_decode(
            samples, self.config.input_size, workers=workers, should_stop=lambda: self.stop_requested,
            progress=lambda done, total: self._emit("data_progress", DataProgress(stage, done, total)))
        if decoded is None:
            return None
        for path, reason in decoded.failures:
            self._report_failures([(path, reason)])
        where = "from the cache" if decoded.from_disk_cache else "decoded"
        if samples:  # (no line for an empty validation set)
            self._say(f"{len(decoded.labels)} {stage} images {where} in {decoded.seconds:.1f} s")
        return decoded

    def _refuse_empty_classes(self, train) -> None:
        present = set(train.labels.unique().tolist())
        empty = [name for index, name in enumerate(self.classes) if index not in present]
        if empty:
            raise TrainingError(f"no image of class {', '.join(repr(n) for n in empty)} could be read: "
                                "see the skipped files above")

    def _decoded_sources(self) -> tuple[DecodedBatches | None, DecodedBatches | None]:
        size = self.config.input_size
        augmenter = BatchAugmenter(size, models.IMAGENET_MEAN, models.IMAGENET_STD, small=is_small(size),
                                   augment=self.config.augment)
        train = self._decode(self.train_samples, "training")
        val = self._decode(self.val_samples, "validation") if train is not None else None
        if train is None or val is None:
            return None, None
        self._refuse_empty_classes(train)
        # On the GPU when it fits: each batch is then a slice in GPU memory, with no copy from the host.
        # Otherwise in ordinary host memory: each batch is gathered and pinned on its way (batches.py);
        # pinning the whole set too would only lock RAM that is copied from anyway.
        on_device = self.device.type != "cuda" or (
            train.images.numel() + val.images.numel() <= memory_budget_bytes(self.device))
        storage = self.device if on_device else torch.device("cpu")
        return (DecodedBatches(train.to(storage), augmenter, self.device),
                DecodedBatches(val.to(storage), augmenter, self.device))

    def _build_model(self) -> None:
        # The initial weights come from the run's seed, so the same settings give the same run; the
        # RNG is forked so that the caller's random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.config.seed)  # (torch.manual_seed would reseed CUDA's too)
            self.model = models.build_model(self.config.arch, len(self.classes))
        if self.config.pretrained:
            weights = models.load_pretrained(self.config.pretrained)
            models.apply_pretrained(self.model, weights, len(self.classes))
            self._say(f"starting from ImageNet weights ({weights.source}); the classifier layer is new")
        self.model.to(self.device)
        if self.device.type == "cuda":
            # Tensor cores read NHWC directly; NCHW makes cuDNN transpose every convolution.
            self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.optimizer = self._make_optimizer()
        self.criterion = nn.CrossEntropyLoss()
        self.forward = self.model
        if self.config.compile and self.device.type == "cuda":
            if importlib.util.find_spec("triton") is None:  # the installed app leaves triton out
                self._say("compiling needs triton, which this installation does not include: "
                          "training without compiling", "warning")
            else:
                # The compiled wrapper shares the weights; checkpoints keep saving self.model's plain keys.
                self.forward = torch.compile(self.model)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        # One fused kernel for the whole update on CUDA instead of several per parameter tensor.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.learning_rate, momentum=self.config.momentum,
                                   weight_decay=self.config.weight_decay, nesterov=True, **fused)
        return torch.optim.Adam(params, lr=self.config.learning_rate, **fused)

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = int(state["epoch"])
        self.resume_samples = int(state.get("samples_done", 0))
        self.batch_size = int(state["batch_size"])
        self.base_lr = float(state.get("base_lr", self.config.learning_rate))
        trained_on = state.get("device_type")
        if self.config.batch_size == AUTO and trained_on and trained_on != self.device.type:
            # A batch chosen for a GPU's memory may not fit a CPU's (or be slow there): choose again.
            self._say(f"the run was trained on {trained_on.upper()} and goes on on {self.device.type.upper()}: "
                      "choosing its batch size again", "warning")
            self.batch_size, self.base_lr = self._choose_batch_size()
        self.history = list(state.get("history", []))
        self.best_val_accuracy = state.get("best_val_accuracy")
        self.best_val_loss = state.get("best_val_loss")
        self.best_epoch = state.get("best_epoch")
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        where = f"epoch {self.start_epoch + 1}" + (f", image {self.resume_samples}" if self.resume_samples else "")
        self._say(f"resuming from {self.resume_from} at {where}")

    def _choose_batch_size(self) -> tuple[int, float]:
        """(batch size, base learning rate): as configured, or chosen for this device and data."""
        if self.config.batch_size != AUTO:
            return int(self.config.batch_size), self.config.learning_rate
        choice = auto_batch(self.model, self.config.input_size, self.device, self._autocast,
                            train_size=self.train_source.size, optimizer=self.config.optimizer,
                            base_lr=self.config.learning_rate, scale_lr=self.config.lr is None)
        self._say(choice.describe(self.device.type, self.config.learning_rate,
                                  lr_scaled=self.config.lr is None))
        return choice.batch_size, choice.learning_rate

    def _setup(self) -> None:
        resume_state = self._resume_state
        self.device = resolve_device(self.config.device)
        self._prepare_data(resume_state)
        self._build_model()
        self._build_sources()
        self.start_epoch, self.resume_samples = 0, 0
        if not resume_state:  # a resumed run keeps the batch size and learning rate it ran with
            self.batch_size, self.base_lr = self._choose_batch_size()
        self.history: list[dict[str, Any]] = []
        self.best_val_accuracy: float | None = None
        self.best_val_loss: float | None = None
        self.best_epoch: int | None = None
        self.global_step = 0
        if resume_state:
            self._restore(resume_state)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out_dir)  # left by a run that was killed while saving

    # the loop --------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self._setup()
        batches = math.ceil(self.train_source.size / self.batch_size)
        self._emit("run_start", RunStart(
            classes=list(self.classes), train_size=len(self.train_samples), val_size=len(self.val_samples),
            device=describe_device(self.device), epochs=self.config.epochs, start_epoch=self.start_epoch + 1,
            batches_per_epoch=batches, workers=self.workers, data_loading=self.train_source.kind,
            batch_size=self.batch_size, learning_rate=self.base_lr,
        ))
        status, message = "completed", ""
        epochs_done = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                if not self._run_epoch(epoch):
                    status, message = "stopped", f"stopped during epoch {epoch + 1}; resume from {self.last_path}"
                    break
                epochs_done = epoch + 1
        except TrainingDiverged as exc:
            status, message = "diverged", str(exc)
            self._say(message, "error")
        result = self._finish(status, epochs_done, message)
        return result

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch, validate, save. False when a stop request ended it early."""
        started = time.perf_counter()
        start_sample = self.resume_samples if epoch == self.start_epoch else 0
        self.resume_samples = 0
        trained = self._train_one_epoch(epoch, start_sample)
        if trained is None:
            return False
        train_loss, images, skipped = trained
        train_seconds = time.perf_counter() - started
        val_loss, val_accuracy = self.evaluate() if self.val_samples else (None, None)
        if self.stop_requested:  # stopped while validating: the epoch's training is kept, not scored
            self._save_last(epoch + 1, samples_done=0)
            return False
        record = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy,
            "seconds": round(time.perf_counter() - started, 3),
            "images_per_second": round(images / train_seconds, 2) if train_seconds > 0 else 0.0,
            "lr": self._current_lr(), "batch_size": self.batch_size,
        }
        self.history.append(record)
        if self._is_best(val_loss, val_accuracy, train_loss):
            self._save_best(epoch + 1, record)
        self._save_last(epoch + 1, samples_done=0)
        self._write_metrics()
        self._emit("epoch_end", EpochEnd(
            epoch=epoch + 1, epochs=self.config.epochs, train_loss=train_loss, val_loss=val_loss,
            val_accuracy=val_accuracy, seconds=record["seconds"], images_per_second=record["images_per_second"],
            lr=record["lr"], skipped_images=skipped,
        ))
        return True

    def _train_one_epoch(self, epoch: int, start_sample: int) -> tuple[float, int, int] | None:
        """Returns (mean loss, images trained, images skipped), or None when stopped part-way."""
        self.model.train()
        torch.manual_seed(epoch_seed(self.config.seed, epoch))
        size = self.train_source.size
        self._epoch = _EpochTally(epoch, size)
        samples_done, skipped = start_sample, 0
        last_autosave = time.monotonic()
        while samples_done < size:
            batch_start = samples_done
            out_of_memory = False
            try:
                for images_batch, labels, failures in self.train_source.epoch(
                        self.config.seed, epoch, samples_done, self.batch_size):
                    batch_start = samples_done
                    samples_done += len(labels) + len(failures)
                    skipped += self._report_failures(failures)
                    if len(labels) == 0:
                        continue
                    if self.paused:
                        self._pause(epoch, batch_start)
                        if self.stop_requested:
                            return None  # stopped while paused: the pause saved this very point
                    if self.stop_requested:
                        self._read_losses()
                        self._save_last(epoch, samples_done=batch_start)
                        return None
                    loss = self._train_step(images_batch, labels, epoch, samples_done / size)
                    self._epoch.add(loss, len(labels), math.ceil(samples_done / self.batch_size), self.batch_size)
                    if self.device.type != "cuda" or self._epoch.due_for_read():
                        self._read_losses()
                    if self.stop_requested and samples_done < size:
                        # (A stop on the last batch falls through: the epoch is complete, and
                        # _run_epoch saves it as such, so the resumed run starts a fresh epoch.)
                        self._read_losses()
                        self._save_last(epoch, samples_done=samples_done)
                        return None
                    if time.monotonic() - last_autosave > self.config.checkpoint_every_s:
                        self._read_losses()
                        self._save_last(epoch, samples_done=samples_done)
                        last_autosave = time.monotonic()
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                # Take the failed batch again, and the rest of the epoch, at half the size.
                samples_done, out_of_memory = batch_start, True
            if out_of_memory:  # after the except block, whose traceback still holds the batch's tensors
                self._halve_batch_after_out_of_memory()
        self._read_losses()
        if self._epoch.images == 0:
            raise TrainingError("no image of the training set could be read in this epoch")
        return self._epoch.loss_sum / self._epoch.images, self._epoch.images, skipped

    def _read_losses(self) -> None:
        """Bring the pending batch losses to the host (one sync), check them, and emit batch_end."""
        for batch in self._epoch.take_pending():
            if not math.isfinite(batch.loss):
                raise TrainingDiverged(
                    f"the loss became {batch.loss} in epoch {batch.epoch}; training stopped and the last good "
                    f"checkpoint was kept. Try a lower learning rate (now {self._current_lr():g})."
                )
            self.global_step += 1
            batch.step = self.global_step
            self._emit("batch_end", batch)

    def _pause(self, epoch: int, samples_done: int) -> None:
        """Wait between batches until resumed or stopped. A paused run may be left for hours, so its
        progress is saved first: closing the laptop or killing the app then loses nothing."""
        self._read_losses()
        self._save_last(epoch, samples_done=samples_done)
        batches = math.ceil(self.train_source.size / self.batch_size)
        self._emit("paused", Paused(epoch + 1, math.ceil(samples_done / self.batch_size), batches,
                                    str(self.last_path)))
        while not self._unpaused.wait(timeout=0.2):
            pass

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                    epoch_progress: float) -> torch.Tensor:
        """One optimiser step; returns the batch loss as a 0-d tensor still on the device (no sync)."""
        progress = (epoch + epoch_progress) / self.config.epochs
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * lr_factor(self.config.schedule, progress)
        images, labels = self._to_device(images, labels)
        with self._autocast():
            logits = self.forward(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _halve_batch_after_out_of_memory(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size <= 1:
            raise TrainingError("the GPU ran out of memory even with a batch of 1 image; use --device cpu")
        old = self.batch_size
        self.batch_size = max(1, old // 2)
        self._say(f"the GPU ran out of memory at batch size {old}; continuing with batch size {self.batch_size}", "warning")

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=non_blocking)

    def _autocast(self):
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Mean validation loss and accuracy (0..1) over the images that could be read."""
        self.model.eval()
        # Sums stay on the device and are read once at the end: a read per batch would sync each time.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count = 0
        for images, labels, failures in self.val_source.evaluation(max(self.batch_size, 64)):
            if self.stop_requested:
                break
            self._report_failures(failures)
            if len(labels) == 0:
                continue
            images, labels = self._to_device(images, labels)
            with self._autocast():
                logits = self.forward(images).float()
            loss_sum += self.criterion(logits, labels) * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
        self.model.train()
        if count == 0:
            return float("nan"), 0.0
        return loss_sum.item() / count, correct.item() / count

    def _report_failures(self, failures: list[tuple[str, str]]) -> int:
        for path, reason in failures:
            if path not in self._reported_failures:  # once per file, not once per epoch
                self._reported_failures.add(path)
                self._say(f"skipped {path}: {reason}", "warning")
        return len(failures)

    def _current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # saving ----------------------------------------------------------------------------------------

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST_MODEL

    def _is_best(self, val_loss: float | None, val_accuracy: float | None, train_loss: float) -> bool:
        if val_accuracy is None:  # no validation set: the newest weights are the best we know
            return True
        if self.best_val_accuracy is None or val_accuracy > self.best_val_accuracy:
            return True
        return val_accuracy == self.best_val_accuracy and val_loss is not None and (
            self.best_val_loss is None or val_loss < self.best_val_loss)

    def _save_best(self, epoch: int, record: dict[str, Any]) -> None:
        self.best_val_accuracy, self.best_val_loss, self.best_epoch = record["val_accuracy"], record["val_loss"], epoch
        model_file = ModelFile(
            state_dict=self.model.state_dict(), arch=self.config.arch, class_names=list(self.classes),
            image_size=self.config.input_size, mean=list(models.IMAGENET_MEAN), std=list(models.IMAGENET_STD),
            metrics={k: record[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy")},
            extra={"config": asdict(self.config), "versions": versions(),
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "dataset": {"root": str(self.data_dir), "train_size": len(self.train_samples),
                               "val_size": len(self.val_samples)}},
        )
        save_model_file(self.best_path, model_file)
        self._emit("checkpoint_saved", CheckpointSaved(str(self.best_path), "best", epoch))

    def _save_last(self, epoch: int, samples_done: int) -> None:
        """`epoch` counts completed epochs; `samples_done` how far into the next one training got."""
        state = {
            "config": asdict(self.config),
            "class_names": list(self.classes),
            "epoch": epoch,
            "samples_done": samples_done,
            "batch_size": self.batch_size,
            "base_lr": self.base_lr,
            "device_type": self.device.type,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "best_val_accuracy": self.best_val_accuracy,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "data": {"root": str(self.data_dir), "train_size": len(self.train_samples),
                     "val_size": len(self.val_samples)},
            "versions": versions(),
        }
        save_checkpoint(self.last_path, state)
        self._emit("checkpoint_saved", CheckpointSaved(str(self.last_path), "last", epoch))

    def _write_metrics(self) -> None:
        columns = ["epoch", "train_loss", "val_loss", "val_accuracy", "seconds", "images_per_second", "lr", "batch_size"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        write_text_atomic(self.out_dir / METRICS_CSV, buffer.getvalue())

    def _finish(self, status: str, epochs_done: int, message: str) -> TrainResult:
        model_path = self.best_path if self.best_path.exists() else None
        checkpoint_path = self.last_path if self.last_path.exists() else None
        summary = {
            "status": status, "message": message, "epochs_completed": epochs_done,
            "best_val_accuracy": self.best_val_accuracy, "best_epoch": self.best_epoch,
            "model": str(model_path) if model_path else None,
            "checkpoint": str(checkpoint_path) if checkpoint_path else None,
            "classes": list(self.classes), "train_size": len(self.train_samples), "val_size": len(self.val_samples),
            "device": describe_device(self.device), "config": asdict(self.config), "history": self.history,
            "versions": versions(),
        }
        write_text_atomic(self.out_dir / RUN_JSON, json.dumps(summary, indent=2) + "\n")
        self._emit("run_end", RunEnd(status, epochs_done, self.best_val_accuracy,
                                     str(model_path) if model_path else None,
                                     str(checkpoint_path) if checkpoint_path else None, message))
        return TrainResult(status, epochs_done, self.best_val_accuracy, model_path, checkpoint_path,
                           list(self.history), message)


# cuBLAS and cuDNN report a failed allocation of their own workspaces as a plain RuntimeError.
OUT_OF_MEMORY_MARKERS = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in OUT_OF_MEMORY_MARKERS))


def versions() -> dict[str, str]:
    import torchvision

    # str(): torch.__version__ is a TorchVersion object, which weights_only loading rightly refuses.
    return {"resnet_app": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}
