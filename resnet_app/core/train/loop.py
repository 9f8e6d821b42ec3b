"""The training loop: a plain-Python Trainer with named events, stop and pause requests, exact resume.

The loop follows the article (CrossEntropyLoss, Adam at lr 1e-3 by default) and adds what a desktop
app needs: events for the UI and CLI (events.py), stop/pause requests checked between batches, atomic
checkpoints every epoch and a shareable best model (run_files.py), NaN detection, and halving the
batch size on CUDA out-of-memory. Preparing the data is run_data.py's job, writing the run's files
run_files.py's: this module is the loop.

Reproducibility: the initial weights come from the seed, and each epoch draws its shuffle order and
augmentation randomness from (seed, epoch) alone, so the same settings on the same machine give the
same run, and a run resumed from an epoch-boundary checkpoint sees exactly what an unbroken run would.
Resumed from mid-epoch (after a stop or a crash), it trains the same remaining images in the same
order; with decoded images each batch's augmentation comes from (seed, epoch, position), so that is
exact too (streaming workers draw theirs per worker, which a resume does not reproduce).

Several processes (DDP) run this same loop, one per GPU: `self.world` (distributed/world.py) is the one
object that knows about the others. Its hooks below are marked "world:"; with one process (the
default, ONE_PROCESS) each of them is the identity or does what the loop did before.
"""
from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from resnet_app.core.errors import TrainingDiverged, TrainingError
from resnet_app.core.model import architectures
from resnet_app.core.model.checkpoints import load_checkpoint
from resnet_app.core.model.devices import describe_device, is_out_of_memory, mixed_precision, resolve_device
from resnet_app.core.model.pretrained import apply_pretrained, load_pretrained
from resnet_app.core.train.batch_size import AUTO, auto_batch
from resnet_app.core.train.distributed.world import ONE_PROCESS
from resnet_app.core.train.events import (
    EVENTS,
    BatchEnd,
    CheckpointSaved,
    DataProgress,
    EpochEnd,
    EventHub,
    Message,
    Paused,
    RunControl,
    RunEnd,
    RunStart,
    TrainResult,
)
from resnet_app.core.train.quick import train_last_layer_first
from resnet_app.core.train.recorder import EpochLosses, RunRecorder
from resnet_app.core.train.run_data import (
    BatchSources,
    RunData,
    SkippedFiles,
    make_batch_sources,
    prepare_run_data,
    warn_if_data_changed,
)
from resnet_app.core.train.run_files import (
    BEST_MODEL,
    LAST_CHECKPOINT,
    METRICS_CSV,
    RUN_JSON,
    BestModel,
    QuietRunFiles,
    RunFiles,
    RunFilesError,
    claim_run_folder,
)
from resnet_app.core.train.settings import TrainConfig, lr_factor

__all__ = [
    "BEST_MODEL", "EVENTS", "LAST_CHECKPOINT", "METRICS_CSV", "RUN_JSON", "BatchEnd", "CheckpointSaved",
    "DataProgress", "EpochEnd", "Message", "Paused", "RunEnd", "RunStart", "TrainConfig", "TrainResult",
    "Trainer", "TrainingDiverged", "TrainingError", "lr_factor",
]

# Fine-tuning pretrained weights: the pretrained layers learn at this share of the new last layer's
# rate, so that the large early gradients of a random last layer don't wreck what they learned.
PRETRAINED_LR_SCALE = 0.1


# --- the trainer -----------------------------------------------------------------------------------

class Trainer(RunControl):
    """Trains one model on one image folder into one run folder.

    Use: `trainer = Trainer(config, data_dir, out_dir); trainer.add_callback("epoch_end", fn);
    result = trainer.fit()`. `request_stop()`, `request_pause()` and `request_resume()` may be called
    from any thread; they act between batches.
    """

    def __init__(self, config: TrainConfig, data_dir: str | Path, out_dir: str | Path):
        self.config = config
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.files = RunFiles(out_dir)
        self.events = EventHub()
        self.resume_from: Path | None = None
        self._resume_state: dict[str, Any] | None = None
        self.world = ONE_PROCESS  # world: the processes training together (distributed/world.py sets another)
        self._odd_batch_said = False  # (the warning that a global batch does not divide among the processes)
        super().__init__()
        self.skipped = SkippedFiles(self.events)

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        self.events.add_callback(event, callback)

    @property
    def out_dir(self) -> Path:
        return self.files.out_dir

    @property
    def last_path(self) -> Path:
        return self.files.last_path

    @property
    def best_path(self) -> Path:
        return self.files.model_path

    # the run's data, as prepared (run_data.py) --------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def train_samples(self) -> list:
        return self.data.train_samples

    @property
    def val_samples(self) -> list:
        return self.data.val_samples

    # setup -----------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, out_dir: str | Path | None = None,
                        data_dir: str | Path | None = None, epochs: int | None = None,
                        device: str | None = None, loader_processes: int | None = None,
                        state: dict[str, Any] | None = None) -> Trainer:
        """A trainer that continues the run saved in `checkpoint` (a last.pt; `state`, if it was loaded).

        A resumed run is the same run: its settings come from the checkpoint. The user may give it
        more epochs, another device or process count, and a new place for the data or the output.
        """
        state = state or load_checkpoint(checkpoint)
        config = TrainConfig.from_dict(state["config"])
        if epochs is not None:
            config.epochs = epochs
        if device is not None:
            config.device = device
        if loader_processes is not None:
            config.loader_processes = loader_processes
        config.validate()
        trainer = cls(config, data_dir or state["data"]["root"], out_dir or Path(checkpoint).parent)
        trainer.resume_from, trainer._resume_state = Path(checkpoint), state
        return trainer

    def _build_model(self) -> None:
        # The initial weights come from the run's seed alone, so the same settings give the same run,
        # whatever other threads draw meanwhile (rng.py).
        self.model = architectures.build_model(self.config.arch, len(self.classes),
                                        generator=torch.Generator().manual_seed(self.config.seed))
        self.start = {"from": "scratch", "trained": "all layers"}
        self.start_weights = None
        if self.config.pretrained:
            weights = self.start_weights = load_pretrained(self.config.pretrained)
            apply_pretrained(self.model, weights, len(self.classes))
            self.start = {"from": "pretrained", "weights": Path(weights.source).name,
                          "weights_sha256": weights.sha256, "trained": "all layers"}
            self.events.say(f"starting from pretrained weights {weights.describe()}; the last layer is new, "
                            f"and the others learn at {PRETRAINED_LR_SCALE:g} of its rate")
        self.model.to(self.device)
        if self.device.type == "cuda":
            # Tensor cores read NHWC directly; NCHW makes cuDNN transpose every convolution.
            self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True

    def _wrap_model(self) -> None:
        """The optimiser, the losses and what training steps call, for the model as it starts training."""
        # world: training steps go through DistributedDataParallel under DDP (gradients averaged over the
        # processes, SyncBatchNorm if asked, before the optimiser); validation keeps the plain model. DDP
        # gives every process the first one's weights as it wraps them (and never again): hence after the
        # last layer is trained first, which each process does on its own shard.
        self.model, wrapped = self.world.wrap(self.model)
        self.optimizer = self._make_optimizer()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        self.val_criterion = nn.CrossEntropyLoss()  # validation loss stays the plain one, comparable across runs
        self.compiled_model = self._compiled(self.model)
        self.train_forward = self.compiled_model if wrapped is self.model else self._compiled(wrapped)

    def _compiled(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """What the loop calls for a forward pass: the model, or torch.compile's wrapper of it (which
        shares its weights, so checkpoints keep saving the model's plain keys)."""
        if not (self.config.compile and self.device.type == "cuda"):
            return model
        if importlib.util.find_spec("triton") is None:  # the installed app leaves triton out
            self.events.say("compiling needs triton, which this installation does not include: "
                            "training without compiling", "warning")
            return model
        return torch.compile(model)

    def _train_last_layer_first(self) -> None:
        """Fine-tuning starts from a last layer already trained on the pretrained features (linear
        probing, then fine-tuning: Kumar et al., 2022), so the first steps through the pretrained
        layers follow a sensible last layer instead of a random one; it took seconds (quick.py)."""
        head = train_last_layer_first(self.config, self.sources, self.start_weights, self.device, self.events,
                                      self.skipped, self)
        if head is None:
            return  # stopped: the loop sees the request at its first batch
        with torch.no_grad():
            self.model.fc.weight.copy_(head.weight)
            self.model.fc.bias.copy_(head.bias)
        self.events.say("trained the last layer first, on features of the pretrained layers; now all layers learn")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self._parameter_groups()
        # One fused kernel for the whole update on CUDA instead of several per parameter tensor.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.learning_rate, momentum=self.config.momentum,
                                   weight_decay=self.config.weight_decay, nesterov=True, **fused)
        return torch.optim.Adam(params, lr=self.config.learning_rate, **fused)

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """One group, or with pretrained weights two: the new last layer, and the pretrained rest at
        PRETRAINED_LR_SCALE of its rate ("lr_scale", read by _train_step)."""
        if not self.config.pretrained:
            return [{"params": list(self.model.parameters()), "lr_scale": 1.0}]
        head = [p for name, p in self.model.named_parameters() if name.startswith("fc.")]
        rest = [p for name, p in self.model.named_parameters() if not name.startswith("fc.")]
        return [{"params": rest, "lr_scale": PRETRAINED_LR_SCALE}, {"params": head, "lr_scale": 1.0}]

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.grad_scaler is not None and state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.start_epoch = int(state["epoch"])
        self.resume_samples = math.ceil(int(state.get("samples_done", 0)) / self.world.size)  # saved as global
        # The losses of the part of the epoch trained before the checkpoint, so its train loss covers
        # the whole epoch, not only what follows the resume.
        self.resume_losses = (float(state.get("epoch_loss_sum", 0.0)), int(state.get("epoch_images", 0)))
        self.batch_size = self._share_of(int(state["batch_size"]))  # saved as global
        self.base_lr = float(state.get("base_lr", self.config.learning_rate))
        trained_on = state.get("device_type")
        if self.config.batch_size == AUTO and trained_on and trained_on != self.device.type:
            # A batch chosen for a GPU's memory may not fit a CPU's (or be slow there): choose again.
            self.events.say(f"the run was trained on {trained_on.upper()} and goes on on "
                            f"{self.device.type.upper()}: choosing its batch size again", "warning")
            self.batch_size, self.base_lr = self._choose_batch_size()
        self.history = list(state.get("history", []))
        self.best = BestModel.from_state(state)
        # (No global random state to restore: every draw comes from (seed, epoch, position), rng.py.)
        if self.resume_samples >= self.sources.train.size:
            where = f"the end of epoch {self.start_epoch + 1}, which is validated first"
        else:
            where = f"epoch {self.start_epoch + 1}" + (f", image {self.resume_samples}" if self.resume_samples else "")
        self.events.say(f"resuming from {self.resume_from} at {where}")

    def _choose_batch_size(self) -> tuple[int, float]:
        """(batch size, base learning rate): as configured, or chosen for this device and data."""
        if self.config.batch_size != AUTO:
            # world: the batch size given is the global one; each process takes its share.
            return self._share_of(int(self.config.batch_size)), self.config.learning_rate
        choice = auto_batch(self.model, self.config.input_size, self.device, self._autocast,
                            train_size=self.sources.train.size, optimizer=self.config.optimizer,
                            base_lr=self.config.learning_rate, scale_lr=self.config.lr is None)
        if self.world.size > 1:  # world: every process takes the same batch; the rate follows the global one
            return self.world.agree_auto_batch(choice, self.config, self.events)
        self.events.say(choice.describe(self.device.type, self.config.learning_rate,
                                        lr_scaled=self.config.lr is None))
        return choice.batch_size, choice.learning_rate

    def _share_of(self, batch: int) -> int:
        """This process's share of a global batch size (all of it in one process)."""
        size = self.world.size
        local = max(1, batch // size)
        if local * size != batch and not self._odd_batch_said:
            self._odd_batch_said = True
            self.events.say(f"batch size {batch} is not a multiple of the {size} processes: each takes {local}, "
                            f"{local * size} in all", "warning")
        return local

    def _setup(self) -> None:
        resume_state = self._resume_state
        self.device = resolve_device(self.config.device)
        self.data: RunData = prepare_run_data(self.config, self.data_dir, self.events,
                                              class_names=resume_state["class_names"] if resume_state else None)
        # After the data is known to be usable (no folder made for a run that can't start), before the
        # long parts (decoding, features).
        if not self.world.is_main:  # world: the first process alone writes the run's files
            self.files = QuietRunFiles(self.files.out_dir)
        self.recorder = RunRecorder(self.files, self.events, self.skipped)
        if self.world.is_main:
            claim_run_folder(self.files, resuming=resume_state is not None, events=self.events)
            self.started = resume_state.get("started", "") if resume_state else time.strftime("%Y-%m-%dT%H:%M:%S")
            self.recorder.begin(self.started, self.config, self.data,  # the Runs list sees a run from its start
                                int(resume_state["epoch"]) if resume_state else 0, self.config.epochs)
        if resume_state:
            warn_if_data_changed(self.data, resume_state["data"], self.events)
        self._build_model()
        # world: each process decodes and holds its own shard only, and every shard runs the same steps.
        self.sources: BatchSources = self.world.shard(self, lambda data, should_stop: make_batch_sources(
            data, self.config, self.device, self.events, self.skipped, should_stop))
        self.precision = mixed_precision(self.device)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.start_epoch, self.resume_samples, self.resume_losses = 0, 0, (0.0, 0)
        self.history: list[dict[str, Any]] = []
        self.best = BestModel()
        self.global_step = 0
        if not resume_state:
            self.batch_size, self.base_lr = self._choose_batch_size()
            if self.start_weights is not None:
                self._train_last_layer_first()
        self._wrap_model()
        if resume_state:  # a resumed run keeps the batch size and learning rate it ran with
            self._restore(resume_state)
        self.eval_batch_size = max(self.batch_size, 64)
        self.world.describe(self)  # world: how the processes share the images and the batch (a message)

    def _device_words(self) -> str:
        """The device, as the run's start and run.json say it: "2 × <GPU>" for two processes."""
        words = describe_device(self.device)
        return words if self.world.size == 1 else f"{self.world.size} × {words}"

    # the loop --------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        try:
            self._setup()
            return self._loop()
        finally:
            self.files.release()

    def _loop(self) -> TrainResult:
        self.events.emit("run_start", RunStart(
            classes=list(self.classes), train_size=self.data.used(self.train_samples, self.skipped),
            val_size=self.data.used(self.val_samples, self.skipped), device=self._device_words(),
            epochs=self.config.epochs, start_epoch=self.start_epoch + 1,
            batches_per_epoch=math.ceil(self.sources.train.size / self.batch_size),
            loader_processes=self.sources.loader_processes, data_loading=self.sources.kind,
            batch_size=self.batch_size * self.world.size, learning_rate=self.base_lr, history=list(self.history),
            model_path=str(self.files.existing_model()) if self.files.existing_model() else None,
            run_dir=str(self.out_dir),
        ))
        status, message = "completed", ""
        epochs_done = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                if not self._run_epoch(epoch):
                    status = "stopped"  # (the recorder says where: _stopped_at)
                    break
                epochs_done = epoch + 1
        except TrainingDiverged as exc:
            status, message = "diverged", str(exc)
            self.events.say(message, "error")
        except RunFilesError as exc:
            status, message = "failed", str(exc)
            self.events.say(message, "error")
        return self._finish(status, epochs_done, message)

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch, validate, save. False when a stop request ended it early.

        A stop that comes once the epoch's training is done (in its last batch, or while validating)
        saves the epoch as trained but not validated: the resumed run validates it first, so every
        trained epoch is scored and considered for the best model.
        """
        started = time.perf_counter()
        start_sample = self.resume_samples if epoch == self.start_epoch else 0
        self.resume_samples = 0
        trained = self._train_one_epoch(epoch, start_sample)
        if trained is None:
            return False
        train_loss, images, skipped = trained
        train_seconds = time.perf_counter() - started
        if not self.stop_requested:
            val_loss, val_accuracy = self.evaluate()
        if self.stop_requested:
            self._save_last(epoch, samples_done=self.sources.train.size)
            self._stopped_at(epoch, self.sources.train.size)
            return False
        if val_loss is not None and not math.isfinite(val_loss):
            raise TrainingDiverged(
                f"the validation loss became {val_loss} in epoch {epoch + 1}: the model now gives no usable "
                f"answers; training stopped and the last good checkpoint was kept. Try a lower learning rate "
                f"(now {self._current_lr():g}).")
        record = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy,
            "seconds": round(time.perf_counter() - started, 3),
            "images_per_second": round(images / train_seconds, 2) if train_seconds > 0 else 0.0,
            "lr": self._current_lr(), "batch_size": self.batch_size * self.world.size,
        }
        self.history.append(record)
        if self.best.is_beaten_by(val_loss, val_accuracy):
            self._save_best(epoch + 1, record)
        elif val_accuracy is None:
            self.events.say(f"epoch {epoch + 1} could not be scored (no validation image could be read), so the "
                            f"model of epoch {self.best.epoch} stays the best", "warning")
        self._save_last(epoch + 1, samples_done=0)
        self.files.write_metrics(self.history)
        self.events.emit("epoch_end", EpochEnd(
            epoch=epoch + 1, epochs=self.config.epochs, train_loss=train_loss, val_loss=val_loss,
            val_accuracy=val_accuracy, seconds=record["seconds"], images_per_second=record["images_per_second"],
            lr=record["lr"], skipped_images=skipped,
        ))
        return True

    def _train_one_epoch(self, epoch: int, start_sample: int) -> tuple[float, int, int] | None:
        """Returns (mean loss, images trained, images skipped), or None when stopped part-way."""
        self.model.train()
        size = self.sources.train.size
        self.epoch_losses = EpochLosses(epoch, size)
        if start_sample:
            self.epoch_losses.loss_sum, self.epoch_losses.images = self.resume_losses
        samples_done, skipped = start_sample, 0
        last_autosave = time.monotonic()
        while samples_done < size:
            batch_start = samples_done
            out_of_memory = False
            try:
                for images_batch, labels, failures in self.sources.train.epoch(
                        self.config.seed, epoch, samples_done, self.batch_size):
                    batch_start = samples_done
                    samples_done += len(labels) + len(failures)
                    skipped += self.skipped.report(failures)
                    # world: all processes decide together here: skip a batch empty on any of them, and
                    # pause, stop, save or read the losses at the same step. One process: skips an empty batch.
                    skip, save_due, read_due = self.world.agree(
                        self, empty=len(labels) == 0,
                        save_due=time.monotonic() - last_autosave > self.config.checkpoint_every_s)
                    if skip:
                        continue
                    if self.paused:
                        self._pause(epoch, batch_start)
                        if self.stop_requested:  # stopped while paused: the pause saved this very point
                            return self._stopped_at(epoch, batch_start)
                    if self.stop_requested:
                        self._read_losses()
                        self._save_last(epoch, samples_done=batch_start)
                        return self._stopped_at(epoch, batch_start)
                    # The learning rate of the batch's start: one-cycle's first step at 1/25 of the
                    # peak, cosine's last above zero (its end would waste the last step).
                    loss = self._train_step(images_batch, labels, epoch, batch_start / size)
                    # world: the global batch's mean loss, the same on every process, so that all of
                    # them read it and judge it (NaN) at the same steps.
                    loss = self.world.mean_loss(loss)
                    self.epoch_losses.add(loss, len(labels) * self.world.size,
                                          math.ceil(samples_done / self.batch_size), self.batch_size)
                    if self.device.type != "cuda" or read_due:
                        self._read_losses()
                    if self.stop_requested and samples_done < size:
                        # (A stop on the last batch falls through: the epoch is complete, and
                        # _run_epoch saves it as such, so the resumed run starts a fresh epoch.)
                        self._read_losses()
                        self._save_last(epoch, samples_done=samples_done)
                        return self._stopped_at(epoch, samples_done)
                    if save_due:
                        self._read_losses()
                        self._save_last(epoch, samples_done=samples_done)
                        last_autosave = time.monotonic()
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or self.world.size > 1:  # world: one process can't halve alone
                    raise
                # Take the failed batch again, and the rest of the epoch, at half the size.
                samples_done, out_of_memory = batch_start, True
            if out_of_memory:  # after the except block, whose traceback still holds the batch's tensors
                self._halve_batch_after_out_of_memory()
        self._read_losses()
        if self.epoch_losses.images == 0:
            raise TrainingError("no image of the training set could be read in this epoch")
        return self.epoch_losses.loss_sum / self.epoch_losses.images, self.epoch_losses.images, skipped

    def _stopped_at(self, epoch: int, samples_done: int) -> None:
        """Note where a stop came: in `epoch` (counted from 0), `samples_done` of this process's images in."""
        batches = math.ceil(self.sources.train.size / self.batch_size)
        self.recorder.stop_at(epoch + 1, math.ceil(samples_done / self.batch_size), batches)

    def _read_losses(self) -> None:
        """Bring the pending batch losses to the host (one sync), check them, and emit batch_end."""
        for batch in self.epoch_losses.take_pending():
            if not math.isfinite(batch.loss):
                raise TrainingDiverged(
                    f"the loss became {batch.loss} in epoch {batch.epoch}; training stopped and the last good "
                    f"checkpoint was kept. Try a lower learning rate (now {self._current_lr():g})."
                )
            self.global_step += 1
            batch.step = self.global_step
            self.events.emit("batch_end", batch)

    def _pause(self, epoch: int, samples_done: int) -> None:
        """Wait between batches until resumed or stopped. A paused run may be left for hours, so its
        progress is saved first: closing the laptop or killing the app then loses nothing."""
        self._read_losses()
        self._save_last(epoch, samples_done=samples_done)
        batches = math.ceil(self.sources.train.size / self.batch_size)
        self.events.emit("paused", Paused(epoch + 1, math.ceil(samples_done / self.batch_size), batches,
                                          str(self.last_path)))
        self.world.wait_while_paused(self)  # world: all processes wait, and go on, together

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                    epoch_progress: float) -> torch.Tensor:
        """One optimiser step; returns the batch loss as a 0-d tensor still on the device (no sync)."""
        progress = (epoch + epoch_progress) / self.config.epochs
        factor = lr_factor(self.config.schedule, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * group.get("lr_scale", 1.0) * factor
        images, labels = self._to_device(images, labels)
        with self._autocast():
            logits = self.train_forward(images)
            loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is None:
            loss.backward()
            self.optimizer.step()
        else:  # fp16: gradients are scaled up so that small ones don't vanish, and steps with inf skipped
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        return loss.detach()

    def _halve_batch_after_out_of_memory(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size <= 1:
            raise TrainingError("the GPU ran out of memory even with a batch of 1 image; use --device cpu")
        old = self.batch_size
        self.batch_size = max(1, old // 2)
        self.events.say(f"the GPU ran out of memory at batch size {old}; continuing with batch size "
                        f"{self.batch_size}", "warning")

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=non_blocking)

    def _autocast(self):
        if self.precision is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def evaluate(self) -> tuple[float | None, float | None]:
        """Mean validation loss and accuracy (0..1) over the images that could be read; (None, None)
        with no validation images (a NaN loss means the model's outputs are, see _run_epoch).

        Out of GPU memory, validation starts again at half the batch size (its own, kept for the run).
        """
        if not self.val_samples:
            return None, None
        while True:
            out_of_memory = False
            try:
                return self._evaluate_at(self.eval_batch_size)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or self.world.size > 1:  # world: one process can't halve alone
                    raise
                out_of_memory = True
            if out_of_memory:  # after the except block, whose traceback holds the batch's tensors
                self._halve_eval_batch_after_out_of_memory()

    def _halve_eval_batch_after_out_of_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.eval_batch_size <= 1:
            raise TrainingError("the GPU ran out of memory validating even one image; use --device cpu")
        self.eval_batch_size //= 2
        self.events.say(f"the GPU ran out of memory validating; validating with batch size {self.eval_batch_size}",
                        "warning")

    @torch.no_grad()
    def _evaluate_at(self, batch_size: int) -> tuple[float | None, float | None]:
        self.model.eval()
        # world: every process scores the weights the first saves, on its share; the sums are over all shards.
        loss_sum, correct, count = self.world.validate(self.model, lambda: self._validation_sums(batch_size))
        self.model.train()
        if count == 0:
            if not self.stop_requested:
                self.events.say("no validation image could be read: this epoch is not scored", "warning")
            return None, None
        return loss_sum.item() / count, correct.item() / count

    def _validation_sums(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(loss sum, right answers, images) of the validation images this process scores."""
        # Sums stay on the device and are read once at the end: a read per batch would sync each time.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count = 0
        for images, labels, failures in self.sources.val.evaluation(batch_size):
            if self.stop_requested:
                break
            self.skipped.report(failures)
            if len(labels) == 0:
                continue
            images, labels = self._to_device(images, labels)
            with self._autocast():
                logits = self.compiled_model(images).float()
            loss_sum += self.val_criterion(logits, labels) * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
        return loss_sum, correct, count

    def _current_lr(self) -> float:
        """The last layer's learning rate (the one the settings give)."""
        return float(self.optimizer.param_groups[-1]["lr"])

    # saving (run_files.py writes) ------------------------------------------------------------------

    def _save_best(self, epoch: int, record: dict[str, Any]) -> None:
        path = self.files.save_model(self.model, self.config, self.classes, record,
                                     self.data.summary(self.skipped), extra={"start": self.start})
        self.best.update(epoch, record["val_loss"], record["val_accuracy"])  # once it is saved
        self.events.emit("checkpoint_saved", CheckpointSaved(str(path), "best", epoch))

    def _save_last(self, epoch: int, samples_done: int) -> None:
        """`epoch` counts completed epochs; `samples_done` how far into the next one training got."""
        path = self.files.save_checkpoint({
            "config": self.config.to_dict(),
            "started": getattr(self, "started", ""),
            "class_names": list(self.classes),
            "epoch": epoch,
            "samples_done": samples_done * self.world.size,  # global: any process count resumes it
            "batch_size": self.batch_size * self.world.size,
            "base_lr": self.base_lr,
            "device_type": self.device.type,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "history": self.history,
            **self.best.state(),
            # The epoch in progress: its losses so far (a resumed epoch's train loss covers all of it).
            "epoch_loss_sum": self.epoch_losses.loss_sum if samples_done else 0.0,
            "epoch_images": self.epoch_losses.images if samples_done else 0,
            "data": self.data.summary(self.skipped),
        })
        self.events.emit("checkpoint_saved", CheckpointSaved(str(path), "last", epoch))

    def _finish(self, status: str, epochs_done: int, message: str) -> TrainResult:
        return self.recorder.finish(status, epochs_done, self.config.epochs, message, config=self.config,
                                    data=self.data, history=self.history, best=self.best, device=self.device,
                                    device_words=self._device_words(), calibrate=self.world.is_main)
