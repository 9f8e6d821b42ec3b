"""Quick training (the app's "Quick: the last layer only", `TrainConfig.quick`, `--quick`): only the
last layer of a pretrained ResNet18 learns, on features computed once.

This is how Teachable Machine, Lobe and Create ML learn from ~30 photos a class in seconds: the
pretrained network already turns a photo into 512 numbers that say a lot about it (features.py); only
the last layer, 512 x classes weights, learns the user's classes. Its training reads the features,
not the images, so it takes seconds even on a CPU once the features exist.

The run is the same run as the full trainer's to everyone watching: the same data preparation
(run_data.py), the same events, the same files (run_files.py). The model file holds the whole
ResNet18 (the pretrained layers, untouched, and the new last layer), so predicting, evaluating and
exporting treat it like any other model.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from resnet_app.core.data.batches import epoch_seed
from resnet_app.core.data.rng import GLOBAL_RNG_LOCK
from resnet_app.core.model import architectures
from resnet_app.core.model.checkpoints import load_checkpoint
from resnet_app.core.model.devices import describe_device, resolve_device
from resnet_app.core.model.features import FEATURE_SIZE, Features, feature_network, load_or_compute_features
from resnet_app.core.model.pretrained import load_pretrained
from resnet_app.core.train.events import (
    BatchEnd,
    CheckpointSaved,
    DataProgress,
    EpochEnd,
    EventHub,
    Paused,
    RunControl,
    RunStart,
    TrainResult,
)
from resnet_app.core.train.recorder import RunRecorder
from resnet_app.core.train.run_data import (
    BatchSources,
    RunData,
    SkippedFiles,
    make_batch_sources,
    prepare_run_data,
    refuse_empty_classes,
)
from resnet_app.core.train.run_files import BestModel, RunFiles, RunFilesError, claim_run_folder
from resnet_app.core.train.settings import QUICK_NOT_USED, TrainConfig, lr_factor

# The last layer's recipe, chosen on benchmarks/learning_quality.py's stand-in transfer runs: Adam
# with cosine decay over enough passes to converge; a pass over a few thousand features takes
# milliseconds, so there is no reason to stop early. The Epochs setting is for full training.
QUICK_PASSES = 60
QUICK_BATCH = 128
QUICK_LR = 3e-3
QUICK_WEIGHT_DECAY = 1e-4


def feature_views(config: TrainConfig) -> list[str]:
    """The views of each training image: as predicted, plus mirrored and cropped copies when the
    settings ask for flips and crops (one forward pass each, once)."""
    return ["centre"] + (["mirrored"] if config.flip else []) + (["crop"] if config.augment else [])


def prepare_feature_sets(config: TrainConfig, sources: BatchSources, weights, device: torch.device,
                         events: EventHub, skipped: SkippedFiles, should_stop: Callable[[], bool],
                         stages: tuple[str, ...] = ("training", "validation")) -> list[Features] | None:
    """(features, labels) of each of `stages` of the run's batch sources, computed with `weights` (or
    read from the cache): each training image in every view of feature_views(config), each validation
    image as predicted. Images that can't be read are left out with their labels. None if stopped."""
    network = feature_network(weights, device)
    sets = []
    for stage in stages:
        training = stage == "training"
        source, samples = ((sources.train, sources.data.train_samples) if training
                           else (sources.val, sources.data.val_samples))
        features, labels = [], []
        for view in feature_views(config) if training else ["centre"]:
            got = _features(network, source, samples, view, stage, weights.sha256, device, events, skipped,
                            should_stop)
            if got is None:
                return None
            if training and not labels and sources.data.shard is None:  # (under DDP: world.py checks all shards)
                refuse_empty_classes(got[1], sources.data.classes)
            features.append(got[0])
            labels.append(got[1])
        sets.append((torch.cat(features), torch.cat(labels)))
    return sets


def _features(network, source, samples, view: str, stage: str, weights_sha256: str, device: torch.device,
              events: EventHub, skipped: SkippedFiles, should_stop: Callable[[], bool]) -> Features | None:
    label = f"{stage} features ({view})"
    started = time.perf_counter()
    features, cached = load_or_compute_features(
        network, source, samples, weights_sha256, view, device,
        progress=lambda done, total: events.emit("data_progress", DataProgress(label, done, total)),
        should_stop=should_stop, on_failures=skipped.report)
    if features is not None and len(samples):
        count = len(features[1])
        seconds = time.perf_counter() - started
        rate = "" if cached or seconds <= 0 else f", {count / seconds:.0f} images/s"
        events.say(f"{count} {label} {'from the cache' if cached else 'computed'} in {seconds:.1f} s{rate}")
        unread = len(samples) - count
        if cached and unread and source.kind == "streaming" and view == "centre":
            # (Decoded sources named them as they decoded; streamed ones name them only when read.)
            events.say(f"{unread} {stage} file{'s' if unread != 1 else ''} could not be read when these features "
                       "were computed (named then): left out", "warning")
    return features


def train_last_layer_first(config: TrainConfig, sources: BatchSources, weights, device: torch.device,
                           events: EventHub, skipped: SkippedFiles, control: RunControl) -> nn.Linear | None:
    """Fine-tuning's first step (loop.py): a last layer trained on the features of the training images
    (their validation features are not needed). None if stopped while computing the features."""
    sets = prepare_feature_sets(config, sources, weights, device, events, skipped, lambda: control.stop_requested,
                                stages=("training",))
    if sets is None:
        return None
    [(features, labels)] = sets
    return train_linear_head(features, labels, len(sources.data.classes), config, control=control)


@contextmanager
def _one_thread():
    """Run torch on one thread inside the block. The last layer's ops are tiny: spread over threads
    they gain nothing, and on a busy machine the threads' waiting for each other made 60 passes over
    240 features take 4.4 s instead of 0.2 s (measured on the 2-core development machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_linear_head(features: torch.Tensor, labels: torch.Tensor, classes: int, config: TrainConfig, *,
                      control: RunControl | None = None, on_batch=None, on_epoch=None, on_pause=None) -> nn.Linear:
    """A last layer (512 -> classes) trained on `features`: AdamW, QUICK_PASSES passes, cosine decay,
    the run's label smoothing; seeded by the run's seed. `control` is checked between passes (pause,
    stop); `on_batch(epoch, batch, batches, loss, step, images)` and `on_epoch(epoch, head, train_loss,
    seconds, lr)` report progress (epochs counted from 0)."""
    with _one_thread():
        return _train_linear_head(features, labels, classes, config, control, on_batch, on_epoch, on_pause)


def _train_linear_head(features, labels, classes, config, control, on_batch, on_epoch, on_pause) -> nn.Linear:
    with GLOBAL_RNG_LOCK:
        head = nn.Linear(FEATURE_SIZE, classes)
    architectures.initialize(head, torch.Generator().manual_seed(config.seed))  # the run's seed alone (rng.py)
    optimizer = torch.optim.AdamW(head.parameters(), lr=QUICK_LR, weight_decay=QUICK_WEIGHT_DECAY)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    batches = math.ceil(len(labels) / QUICK_BATCH)
    step = 0
    for epoch in range(QUICK_PASSES):
        if control is not None and control.paused:
            if on_pause is not None:
                on_pause(epoch, batches)
            control.wait_while_paused()
        if control is not None and control.stop_requested:
            break
        started = time.perf_counter()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)))
        loss_sum = 0.0
        for batch, start in enumerate(range(0, len(order), QUICK_BATCH), 1):
            index = order[start:start + QUICK_BATCH]
            for group in optimizer.param_groups:
                group["lr"] = QUICK_LR * lr_factor("cosine", (epoch + batch / batches) / QUICK_PASSES)
            loss = criterion(head(features[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(index)
            if on_batch is not None:
                on_batch(epoch, batch, batches, loss.item(), step, len(index))
        if on_epoch is not None:
            on_epoch(epoch, head, loss_sum / len(labels), time.perf_counter() - started,
                     float(optimizer.param_groups[0]["lr"]))
    return head


class QuickTrainer(RunControl):
    """Trains the last layer of a pretrained ResNet18 on one image folder into one run folder.

    Same use as loop.Trainer: `add_callback`, `fit()`, and stop/pause requests from any thread
    (acted on between passes over the features, which take milliseconds).
    """

    def __init__(self, config: TrainConfig, data_dir: str | Path, out_dir: str | Path):
        if not config.pretrained:
            raise ValueError("training only the last layer needs pretrained weights (--pretrained)")
        super().__init__()
        self.config = config
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.files = RunFiles(out_dir)
        self.events = EventHub()
        self.skipped = SkippedFiles(self.events)
        # What ran is recorded as passes over the features; the settings of the full loop are set apart.
        self.recorder = RunRecorder(self.files, self.events, self.skipped, unit="pass", not_used=QUICK_NOT_USED)
        self.history: list[dict[str, Any]] = []
        self.best = BestModel()
        self.data: RunData | None = None
        self.device: torch.device | None = None
        self.resuming = False  # from_checkpoint: the run's own folder, trained again

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        self.events.add_callback(event, callback)

    @property
    def out_dir(self) -> Path:
        return self.files.out_dir

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, out_dir: str | Path | None = None,
                        data_dir: str | Path | None = None, device: str | None = None,
                        state: dict[str, Any] | None = None, **_ignored: Any) -> QuickTrainer:
        """Runs the quick training of `checkpoint`'s run again: it takes seconds, and its features are
        in the cache, so there is nothing to resume part-way. (Epochs and processes don't apply.)"""
        state = state or load_checkpoint(checkpoint)
        config = TrainConfig.from_dict(state["config"])
        if device is not None:
            config.device = device
        trainer = cls(config, data_dir or state["data"]["root"], out_dir or Path(checkpoint).parent)
        trainer.resuming = True
        return trainer

    # the run ---------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        try:
            return self._fit()
        except RunFilesError as exc:
            self.events.say(str(exc), "error")
            return self._finish("failed", len(self.history), str(exc))
        finally:
            self.files.release()

    def _fit(self) -> TrainResult:
        self.device = resolve_device(self.config.device)
        self.data: RunData = prepare_run_data(self.config, self.data_dir, self.events)
        claim_run_folder(self.files, resuming=self.resuming, events=self.events)
        self.recorder.begin(time.strftime("%Y-%m-%dT%H:%M:%S"), self.config, self.data, 0, QUICK_PASSES)
        self.weights = load_pretrained(self.config.pretrained)
        prepared = self._prepare_features()
        if prepared is None:
            return self._finish("stopped", 0, "Stopped while computing the features; start again to continue "
                                              "(the features computed so far are not kept).")
        (train_x, train_y), (val_x, val_y) = prepared
        self.events.emit("run_start", RunStart(
            # The images read (a streamed set's unreadable files are known only once read, or from the cache).
            classes=list(self.data.classes), train_size=len(train_y) // len(feature_views(self.config)),
            val_size=len(val_y), device=describe_device(self.device),
            epochs=QUICK_PASSES,
            start_epoch=1, batches_per_epoch=math.ceil(len(train_y) / QUICK_BATCH), loader_processes=0,
            data_loading="features", batch_size=QUICK_BATCH, learning_rate=QUICK_LR, run_dir=str(self.out_dir)))
        head, best_head = self._train_head(train_x, train_y, val_x, val_y)
        passes = len(self.history)
        if passes < QUICK_PASSES:  # stopped between passes
            self.recorder.stop_at(passes + 1, 0, math.ceil(len(train_y) / QUICK_BATCH))
        if best_head is not None:
            self._save(head, best_head)
        return self._finish("completed" if passes == QUICK_PASSES else "stopped", passes, "")

    def _prepare_features(self) -> list[Features] | None:
        """[(train features, labels), (validation features, labels)], or None if stopped."""
        self.events.say(f"quick: training the last layer only, on features of {self.weights.describe()}; views of "
                        f"each training image: {', '.join(feature_views(self.config))}")
        # The images as the full loop gets them: decoded when they fit the memory budget, else streamed.
        sources = make_batch_sources(self.data, self.config, self.device, self.events, self.skipped,
                                     lambda: self.stop_requested)
        if self.stop_requested:  # (stopped while decoding)
            return None
        return prepare_feature_sets(self.config, sources, self.weights, self.device, self.events, self.skipped,
                                    lambda: self.stop_requested)

    def _train_head(self, train_x, train_y, val_x, val_y) -> tuple[nn.Linear, dict | None]:
        """The head after QUICK_PASSES passes, and the best epoch's weights (None if stopped before the
        first pass ended)."""
        best_head: dict | None = None

        def on_batch(epoch: int, batch: int, batches: int, loss: float, step: int, images: int) -> None:
            self.events.emit("batch_end", BatchEnd(epoch + 1, batch, batches, loss, step, images))

        def on_epoch(epoch: int, head: nn.Linear, train_loss: float, seconds: float, lr: float) -> None:
            nonlocal best_head
            record = self._record(epoch, head, train_loss, val_x, val_y, seconds, len(train_y), lr)
            if self.best.is_beaten_by(record["val_loss"], record["val_accuracy"]):
                self.best.update(epoch + 1, record["val_loss"], record["val_accuracy"])
                best_head = {k: v.clone() for k, v in head.state_dict().items()}

        def on_pause(epoch: int, batches: int) -> None:
            self.events.emit("paused", Paused(epoch + 1, 0, batches, ""))

        head = train_linear_head(train_x, train_y, len(self.data.classes), self.config, control=self,
                                 on_batch=on_batch, on_epoch=on_epoch, on_pause=on_pause)
        return head, best_head

    @torch.no_grad()
    def _record(self, epoch: int, head: nn.Linear, train_loss: float, val_x, val_y, seconds: float,
                images: int, lr: float) -> dict[str, Any]:
        val_loss = val_accuracy = None
        if len(val_y):
            logits = head(val_x)
            val_loss = float(nn.functional.cross_entropy(logits, val_y))
            val_accuracy = float((logits.argmax(1) == val_y).float().mean())
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy,
                  "seconds": round(seconds, 4), "images_per_second": round(images / seconds, 1) if seconds else 0.0,
                  "lr": lr, "batch_size": QUICK_BATCH}
        self.history.append(record)
        self.events.emit("epoch_end", EpochEnd(epoch + 1, QUICK_PASSES, train_loss, val_loss, val_accuracy,
                                               record["seconds"], record["images_per_second"], record["lr"], 0))
        return record

    # the run's files ----------------------------------------------------------------------------------

    def full_model(self, head_state: dict[str, torch.Tensor]) -> nn.Module:
        """The whole ResNet18: the pretrained layers as they were, and the trained last layer."""
        model = architectures.build_model("resnet18", len(self.data.classes))
        backbone = {k: v for k, v in self.weights.state_dict.items() if not k.startswith("fc.")}
        model.load_state_dict({**backbone, "fc.weight": head_state["weight"], "fc.bias": head_state["bias"]})
        return model

    def _save(self, head: nn.Linear, best_head: dict) -> None:
        start = {"from": "pretrained", "weights": Path(self.weights.source).name,
                 "weights_sha256": self.weights.sha256, "trained": "last layer"}
        record = next(r for r in self.history if r["epoch"] == self.best.epoch)
        path = self.files.save_model(self.full_model(best_head), self.config, self.data.classes, record,
                                     self.data.summary(self.skipped), extra={"start": start})
        self.events.emit("checkpoint_saved", CheckpointSaved(str(path), "best", self.best.epoch))
        path = self.files.save_checkpoint({
            "config": self.config.to_dict(), "class_names": list(self.data.classes), "epoch": len(self.history),
            "samples_done": 0, "batch_size": QUICK_BATCH, "base_lr": QUICK_LR, "device_type": self.device.type,
            "model": self.full_model(head.state_dict()).state_dict(), "history": self.history,
            **self.best.state(), "data": self.data.summary(self.skipped), "start": start,
        })
        self.events.emit("checkpoint_saved", CheckpointSaved(str(path), "last", len(self.history)))
        self.files.write_metrics(self.history)

    def _finish(self, status: str, passes: int, message: str) -> TrainResult:
        return self.recorder.finish(status, passes, QUICK_PASSES, message, config=self.config, data=self.data,
                                    history=self.history, best=self.best, device=self.device,
                                    extra={"trained": "last layer"})
