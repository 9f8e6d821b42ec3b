"""A run's files: the resumable checkpoint, the shareable model, the metrics table and the summary.

One run folder holds `last.pt` (everything needed to resume), `model.safetensors` (the best weights,
to share and open), `metrics.csv` (one row per epoch) and `run.json` (settings, result, history).
Every write is atomic (checkpoints.py). Any training loop writes its run through `RunFiles`, so all
runs look the same on disk, whichever loop made them.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError

from resnet_app import __version__
from resnet_app.core.errors import TrainingError
from resnet_app.core.files import finite_json, free_names, remove_stale_temp_files, write_text_atomic
from resnet_app.core.model import architectures
from resnet_app.core.model.checkpoints import ModelFile, save_checkpoint, save_model_file
from resnet_app.core.train.events import stop_words
from resnet_app.core.train.settings import TrainConfig

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
        if val_accuracy is None:
            # Not scored. Without any validation the newest weights are the best we know; but an epoch
            # whose validation images could not be read (a flaky network share) never replaces a
            # model that was scored.
            return self.val_accuracy is None
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


class RunFilesError(TrainingError):
    """A run's file could not be written (a full disk, a file-size limit, a read-only folder)."""


class RunFolderBusy(TrainingError):
    """Another process is training into this run folder now."""


LOCK_FILE = ".run.lock"
RUN_FILES = (LAST_CHECKPOINT, BEST_MODEL, METRICS_CSV, RUN_JSON)


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL_ERRNOS
    # safetensors reports the OS error in its message only: "I/O error: ... (os error 28)".
    return any(f"(os error {number})" in str(exc) for number in _DISK_FULL_ERRNOS)


def holds_a_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    except OSError:
        return False
    return True


class RunFiles:
    """The files of one run folder, each written atomically, with the folder locked while a run
    writes into it and a new run never writing into a folder that holds another run."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.own: set[str] = set()  # the files of this run: only these are reported as its results
        self._locked = False

    # the folder -----------------------------------------------------------------------------------

    def claim_new(self) -> Path | None:
        """Take a folder for a new run: the one asked for, unless it holds another run (or one is
        training into it now): then the first free `<name>-2`, `<name>-3`... Returns the folder
        actually taken when it is not the one asked for."""
        wanted = self.out_dir
        for candidate in free_names(wanted):  # the one naming rule: run, run-2, run-3...
            if holds_a_run(candidate):
                continue
            try:
                self._lock(candidate)
            except RunFolderBusy:
                continue
            self.out_dir = candidate
            return None if candidate == wanted else candidate
        raise RunFilesError(f"no free run folder next to {wanted}")

    def claim_existing(self) -> None:
        """Take the run's own folder to go on with it (a resumed run); its files are its own."""
        self._lock(self.out_dir)
        self.own = {name for name in RUN_FILES if (self.out_dir / name).exists()}

    def _lock(self, folder: Path) -> None:
        """Create the folder's lock file, or say which live process holds it. A lock left by a process
        that died (a crash, kill -9) is taken over."""
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / LOCK_FILE
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder(lock)
                if holder is not None and _process_alive(holder):
                    raise RunFolderBusy(f"{folder} is in use by another training run (process {holder})") from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self._locked, self.out_dir = True, folder
            return
        raise RunFolderBusy(f"{folder} is in use by another training run")

    @staticmethod
    def _lock_holder(lock: Path) -> int | None:
        try:
            return int(lock.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._locked:
            (self.out_dir / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def model_path(self) -> Path:
        return self.out_dir / BEST_MODEL

    @property
    def summary_path(self) -> Path:
        return self.out_dir / RUN_JSON

    def prepare(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out_dir)  # left by a run that was killed while saving

    # writing ----------------------------------------------------------------------------------------

    @contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Turn a failed write into one clear error; the previous file stays (the writes are atomic)."""
        try:
            yield
        except (OSError, SafetensorError) as exc:
            why = "the disk is full (or a file-size limit was reached)" if _is_disk_full(exc) else str(exc)
            then = (f"resume from {self.last_path}" if LAST_CHECKPOINT in self.own
                    else "start the run again")
            raise RunFilesError(f"could not save {path}: {why}. The run's earlier files are kept; free some "
                                f"space, then {then}") from exc
        self.own.add(path.name)

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        with self._writing(self.last_path):
            save_checkpoint(self.last_path, {**state, "versions": versions()})
        return self.last_path

    def save_model(self, model: nn.Module, config: TrainConfig, classes: list[str], record: dict[str, Any],
                   data_summary: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """Save `model` as the run's shareable model file, with what is needed to use it."""
        model_file = ModelFile(
            state_dict=model.state_dict(), arch=config.arch, class_names=list(classes),
            image_size=config.input_size, mean=list(architectures.IMAGENET_MEAN), std=list(architectures.IMAGENET_STD),
            metrics={k: record[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy")},
            extra={"config": config.to_dict(), "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "dataset": data_summary, **(extra or {})},
        )
        with self._writing(self.model_path):
            save_model_file(self.model_path, model_file)
        return self.model_path

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        path = self.out_dir / METRICS_CSV
        with self._writing(path):
            write_text_atomic(path, buffer.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        """run.json; strict JSON (no NaN or Infinity: they become null)."""
        text = json.dumps(finite_json({**summary, "versions": versions()}), indent=2, allow_nan=False) + "\n"
        with self._writing(self.summary_path):
            write_text_atomic(self.summary_path, text)

    def existing_model(self) -> Path | None:
        """The run's model file, if this run wrote it (never another run's left in the folder)."""
        return self.model_path if BEST_MODEL in self.own and self.model_path.exists() else None

    def existing_checkpoint(self) -> Path | None:
        return self.last_path if LAST_CHECKPOINT in self.own and self.last_path.exists() else None


def claim_run_folder(files: RunFiles, resuming: bool, events) -> None:
    """Lock the run's folder; a new run moves to a free one (and says so) rather than mix with another."""
    if resuming:
        files.claim_existing()
    else:
        wanted = files.out_dir
        moved = files.claim_new()
        if moved is not None:
            events.say(f"{wanted} holds another run, which is left as it is: this run is saved in {moved}",
                       "warning")
    files.prepare()


def write_run_summary(files: RunFiles, events, summary: dict[str, Any]) -> None:
    """run.json at a run's end; if even that can't be written, say so (the run's result stands)."""
    try:
        files.write_summary(summary)
    except RunFilesError as exc:
        events.say(str(exc), "error")


class QuietRunFiles(RunFiles):
    """RunFiles as every process of a distributed run but the first sees them: the same paths, never written."""

    def prepare(self) -> None:
        pass

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        return self.last_path

    def save_model(self, model, config, classes, record, data_summary, extra=None) -> Path:
        return self.model_path

    def write_metrics(self, history) -> None:
        pass

    def write_summary(self, summary) -> None:
        pass


# --- the runs in a folder ---------------------------------------------------------------------------

@dataclass
class RunSummary:
    """A run folder as the app's Runs list shows it, read from its run.json (written when the run starts
    and when it ends) and its lock: no checkpoint is loaded."""

    folder: Path
    status: str  # completed | stopped | diverged | failed | running | interrupted (running, but its process is gone)
    data_root: str
    classes: list[str]
    epochs_completed: int  # in `unit`s, as epochs
    epochs: int
    best_val_accuracy: float | None
    started: str  # ISO time
    problem: str = ""  # why run.json could not be read, for a "damaged" run
    unit: str = "epoch"  # "epoch", or "pass" for a quick run (passes over the features)
    how: str = ""  # "scratch", "quick" (ImageNet, the last layer) or "full" (ImageNet, all layers)
    stopped_in: tuple[int, int, int] | None = None  # a stopped run's (epoch or pass, batch, batches)

    @property
    def model(self) -> Path | None:
        return self.folder / BEST_MODEL if (self.folder / BEST_MODEL).exists() else None

    @property
    def checkpoint(self) -> Path | None:
        return self.folder / LAST_CHECKPOINT if (self.folder / LAST_CHECKPOINT).exists() else None

    @property
    def unfinished(self) -> bool:
        """Could go on: stopped, interrupted or failed before its last epoch, with a checkpoint."""
        return (self.status in ("stopped", "interrupted", "failed") and self.checkpoint is not None
                and self.epochs_completed < self.epochs)

    def stop_words(self) -> str:
        """Where the run stopped and what resuming does: 'Stopped in epoch 1 (batch 8 of 12); resume
        continues from there.' (A run cut short by a crash says the epoch it was in.)"""
        if self.stopped_in is not None:
            return stop_words(self.unit, *self.stopped_in, self.epochs)
        if self.unit == "pass":
            return stop_words(self.unit, self.epochs_completed + 1, 0, 0, self.epochs)
        return (f"Stopped in epoch {self.epochs_completed + 1} of {self.epochs}; resume continues from its "
                "last checkpoint.")

    def title(self) -> str:
        """'flowers · quick · 28 Nov 14:02 · 91.2 %': the data folder, how it trained, when, and how well,
        to tell runs apart (runs on the same folder differ by the rest)."""
        when = time.strftime("%d %b %H:%M", _parse_time(self.started)) if self.started else "?"
        accuracy = "" if self.best_val_accuracy is None else f" · {self.best_val_accuracy:.1%}"
        how = f" · {self.how}" if self.how else ""
        return f"{Path(self.data_root).name or self.folder.name}{how} · {when}{accuracy}"

    def state(self) -> str:
        """'completed, epoch 6 of 6', or what is wrong with a damaged run's run.json."""
        if self.status == "damaged":
            return f"damaged ({self.problem})"
        return f"{self.status}, {self.unit} {self.epochs_completed} of {self.epochs}"

    def describe(self) -> str:
        classes = f", {len(self.classes)} classes" if self.status != "damaged" else ""
        return f"{self.title()} — {self.state()}{classes}"


def _parse_time(text: str) -> time.struct_time:
    try:
        return time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return time.localtime(0)


def read_run(folder: Path) -> RunSummary | None:
    """The run in `folder`; None if it holds none. A run.json that is there but can't be read, or holds
    values of the wrong kind, gives a "damaged" run that says why (its files stay usable and deletable)."""
    path = folder / RUN_JSON
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        return _run_summary(folder, summary)
    except (OSError, ValueError, TypeError) as exc:
        problem = f"{RUN_JSON}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        return RunSummary(folder, "damaged", "", [], 0, 0, None, _modified_time(path), problem=problem)


def _run_summary(folder: Path, summary: dict) -> RunSummary:
    status = _text(summary, "status", "?")
    lock = folder / LOCK_FILE
    if status == "running" and not (lock.exists() and _process_alive(RunFiles._lock_holder(lock) or -1)):
        status = "interrupted"  # its process is gone: crashed, killed, or the computer went off
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    unit = "pass" if summary.get("unit") == "pass" else "epoch"
    key = "passes" if unit == "pass" else "epochs"  # what the run counted (recorder.py)
    done = _metrics_rows(folder) if status == "interrupted" else _count(summary, f"{key}_completed")
    epochs = _count(summary, key) or (_count(config, "epochs") if unit == "epoch" else 0)
    classes = summary.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ValueError("classes is not a list of names")
    accuracy = summary.get("best_val_accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                 or not 0 <= accuracy <= 1):
        raise ValueError(f"best_val_accuracy {accuracy!r} is not a fraction")
    how = "quick" if unit == "pass" else ("full" if config.get("pretrained") else "scratch")
    return RunSummary(folder, status, _text(summary, "root", ""), classes, done, epochs, accuracy,
                      _text(summary, "started", ""), unit=unit, stopped_in=_stop_point(summary, unit), how=how)


def _stop_point(summary: dict, unit: str) -> tuple[int, int, int] | None:
    """A stopped run's (epoch or pass, batch, batches) from run.json's "stopped_in"; None if not there."""
    stop = summary.get("stopped_in")
    if not isinstance(stop, dict):
        return None
    return _count(stop, unit), _count(stop, "batch"), _count(stop, "batches")


def _text(summary: dict, key: str, default: str) -> str:
    value = summary.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} {value!r} is not text")
    return value


def _count(summary: dict, key: str) -> int:
    value = summary.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} {value!r} is not a whole number")
    return value


def _modified_time(path: Path) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(path.stat().st_mtime))
    except OSError:
        return ""


def _metrics_rows(folder: Path) -> int:
    try:
        return max(0, len((folder / METRICS_CSV).read_text(encoding="utf-8").splitlines()) - 1)
    except OSError:
        return 0


def list_runs(root: str | Path) -> list[RunSummary]:
    """The runs in the folders directly under `root`, newest first."""
    root = Path(root)
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    runs = [run for run in (read_run(folder) for folder in folders) if run is not None]
    return sorted(runs, key=lambda run: run.started, reverse=True)
