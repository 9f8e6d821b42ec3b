"""Worker objects that run core calls in a QThread and report back with signals carrying plain data.

Each worker is moved to its own QThread and wired (spyder's habit): `started -> run`,
`finished -> quit`, `thread.finished -> deleteLater`, with references kept by the TaskRunner until the
thread has finished. Stopping is a request checked between batches, never QThread.terminate(). The GUI
thread only calls the thread-safe `request_*` methods.

One deliberate change from the usual `worker.finished -> worker.deleteLater`: with PySide6 6.12 that
destroys the worker in its own thread, where Qt holds a signal-slot mutex while the Python slot objects
of the worker's connections are released, which needs the GIL; a GUI thread holding the GIL while
connecting anything that hashes to the same mutex then deadlocks (seen in this suite: QMenu.addAction
vs. a finishing model loader). So the worker hands itself back to the GUI thread when `run()` ends and
is deleted there, by Python, when the TaskRunner drops it after `thread.finished`.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QSize, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage, QImageReader

from resnet_app.core.data.scan import scan_dataset
from resnet_app.core.errors import user_errors, user_message
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.train.trainers import make_trainer, resume_trainer
from resnet_app.core.use.classifier import Classifier, expand_paths

THUMBNAIL_PX = 64
EMIT_INTERVAL_S = 0.1  # at most ~10 batch-loss updates per second reach the GUI thread
CLASSIFY_TOP_K = 10  # computed once; the view shows the first `top_k setting` of them


class ThrottledProgress:
    """A `progress(done, total)` callback for the engine that emits a Qt signal at most every
    EMIT_INTERVAL_S, and always for the last step: one signal per image or log row would queue tens of
    thousands of calls on the GUI thread (Orange's `set_progress_value` habit). `prefix` goes before
    (done, total) in the signal, such as a scan's token."""

    def __init__(self, emit: Callable[..., None], *prefix: Any, interval_s: float = EMIT_INTERVAL_S) -> None:
        self.emit, self.prefix, self.interval_s = emit, prefix, interval_s
        self._last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval_s or 0 < total <= done:  # total 0: not known
            self._last = now
            self.emit(*self.prefix, done, total)


class Worker(QObject):
    """Base: `run()` does the work in the thread and always ends with `finished`."""

    failed = Signal(str)  # a user-facing message
    finished = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @Slot()
    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # noqa: BLE001 - every error ends in a message, never a crash
            self.failed.emit(user_message(exc))
            if not isinstance(exc, user_errors()):
                traceback.print_exc()
        finally:
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())  # deleted in the GUI thread later: see the module doc
            self.finished.emit()

    def work(self) -> None:
        raise NotImplementedError


class _Watcher(QObject):
    """Lives in the GUI thread and tells the runner which thread finished (no QObject.sender(),
    which PySide6 does not always resolve for queued calls)."""

    def __init__(self, runner: TaskRunner, thread: QThread) -> None:
        super().__init__()
        self.runner, self.thread_ = runner, thread

    @Slot()
    def done(self) -> None:
        if shiboken6.isValid(self.runner):  # the window that owned the runner may be gone already
            self.runner._forget(self)


class TaskRunner(QObject):
    """Starts workers in threads, keeps them alive while they run, and says when all are done."""

    all_finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: dict[_Watcher, Worker] = {}
        self._shut_down = False

    def start(self, worker: Worker) -> QThread | None:
        """Run `worker` in a new thread; after `shut_down()` nothing starts (None, and the worker's
        signals never come): the window is closing, and queued work must not hold it open."""
        if self._shut_down:
            return None
        thread = QThread()
        watcher = _Watcher(self, thread)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.finished.connect(thread.quit)
        # A bound method of a GUI-thread object, never a lambda: a lambda has no receiver thread, so
        # Qt would call it directly in the finishing thread.
        thread.finished.connect(watcher.done)
        thread.finished.connect(thread.deleteLater)
        self._running[watcher] = worker
        thread.start()
        return thread

    def _forget(self, watcher: _Watcher) -> None:
        self._running.pop(watcher, None)
        watcher.thread_ = None
        if not self._running:
            self.all_finished.emit()

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def workers(self) -> list[Worker]:
        return list(self._running.values())

    def stop_all(self) -> None:
        for worker in self._running.values():
            worker.request_stop()

    def shut_down(self) -> None:
        """Closing: ask every running worker to stop, and start no new one from now on."""
        self._shut_down = True
        self.stop_all()

    @property
    def shutting_down(self) -> bool:
        return self._shut_down


# --- model loading ---------------------------------------------------------------------------------

class LoadModelWorker(Worker):
    """Loads a Classifier from a file, or ImageNet weights ("imagenet" downloads through the core)."""

    loaded = Signal(object, str)  # Classifier, the source the user chose

    def __init__(self, source: str, imagenet: bool = False, device: str = "auto") -> None:
        super().__init__()
        self.source, self.imagenet, self.device = source, imagenet, device

    def work(self) -> None:
        if self.imagenet:
            classifier = Classifier.imagenet(self.source, device=self.device)
        else:
            classifier = Classifier.from_file(self.source, device=self.device)
        self.loaded.emit(classifier, self.source)


# --- classification --------------------------------------------------------------------------------

def load_thumbnail(path: Path, size: int = THUMBNAIL_PX, enlarge: bool = False) -> QImage:
    """A QImage at most `size` px a side, or exactly when `enlarge` (safe off the GUI thread, unlike
    QPixmap); null when the file can't be read."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    full = reader.size()
    larger = full.isValid() and (full.width() > size or full.height() > size)
    if full.isValid() and full.width() > 0 and full.height() > 0 and (larger or enlarge):
        # A thumbnail is only made smaller (an enlarged copy of a small image costs memory and shows
        # nothing more); a preview is enlarged to be seen.
        reader.setScaledSize(full.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return image if not image.isNull() else QImage()


class ClassifyWorker(Worker):
    """Classifies files and folders a batch at a time; each batch is emitted as soon as it is done."""

    started_paths = Signal(int)  # how many images will be classified
    batch_ready = Signal(object)  # list[Prediction] (thumbnails load for the rows shown: ui/thumbnails.py)
    progress = Signal(int, int)  # done, total

    def __init__(self, classifier: Classifier, paths: list[Path], batch_size: int = 16) -> None:
        super().__init__()
        self.classifier, self.paths, self.batch_size = classifier, list(paths), batch_size

    def work(self) -> None:
        paths = expand_paths(self.paths)
        total = len(paths)
        self.started_paths.emit(total)
        report_progress = ThrottledProgress(self.progress.emit)
        done = 0
        batch: list = []
        for prediction in self.classifier.predict_paths(paths, top_k=CLASSIFY_TOP_K, batch_size=self.batch_size,
                                                        should_stop=lambda: self.stop_requested):
            batch.append(prediction)
            if len(batch) == self.batch_size or done + len(batch) == total:
                done += len(batch)
                self._emit_batch(batch)
                report_progress(done, total)
                batch = []
                if self.stop_requested:
                    return
        if batch:
            self._emit_batch(batch)
            report_progress(done + len(batch), total)

    def _emit_batch(self, batch: list) -> None:
        self.batch_ready.emit(list(batch))


# --- dataset scan ----------------------------------------------------------------------------------

class _ScanCancelled(Exception):
    pass


class ScanWorker(Worker):
    """Runs the core's dataset scan (images checked) and emits the DatasetReport.

    Every signal carries the scan's `token`, so the tab can ignore a scan it has since replaced.
    """

    progress = Signal(int, int, int)  # token, done, total
    report_ready = Signal(int, object)  # token, DatasetReport (a plain dataclass)
    scan_failed = Signal(int, str)  # token, message

    def __init__(self, folder: str, token: int = 0) -> None:
        super().__init__()
        self.folder, self.token = folder, token
        self._report = ThrottledProgress(self.progress.emit, token)

    def _progress(self, done: int, total: int) -> None:
        if self.stop_requested:
            raise _ScanCancelled()
        self._report(done, total)

    def work(self) -> None:
        try:
            report = scan_dataset(self.folder, check_images=True, progress=self._progress)
        except _ScanCancelled:
            return
        except Exception as exc:  # noqa: BLE001 - shown in the report panel
            self.scan_failed.emit(self.token, user_message(exc))
            return
        self.report_ready.emit(self.token, report)


# --- training --------------------------------------------------------------------------------------

class TrainWorker(Worker):
    """Adapts the core Trainer's events to throttled signals carrying plain numbers.

    Batch losses are buffered in the training thread and sent at most every EMIT_INTERVAL_S, so the
    GUI thread does a bounded amount of work however fast the batches are.
    """

    run_started = Signal(object)  # dict (RunStart fields)
    batch_losses = Signal(object)  # list[(x in epochs, loss)]
    progress = Signal(object)  # dict: epoch, epochs, batch, batches, step, eta_s, images_per_second
    epoch_ended = Signal(object)  # dict (EpochEnd fields)
    checkpoint_saved = Signal(str, str, int)  # path, kind, epoch
    paused = Signal(object)  # dict (Paused fields): training is waiting between batches
    message = Signal(str, str)  # text, level
    run_ended = Signal(object)  # dict (RunEnd fields + steps_after_stop)

    def __init__(self, config: TrainConfig | None = None, data_dir: str | None = None,
                 out_dir: str | None = None, checkpoint: str | None = None,
                 resume_epochs: int | None = None, device: str | None = None) -> None:
        super().__init__()
        self.config, self.data_dir, self.out_dir = config, data_dir, out_dir
        self.checkpoint, self.resume_epochs, self.device = checkpoint, resume_epochs, device
        self.trainer = None  # a Trainer or QuickTrainer (core.trainers), once made
        self._lock = threading.Lock()
        self._paused = False
        self._buffer: list[tuple[float, float]] = []
        self._last_emit = 0.0
        self._last_batch: Any = None
        self._run_started_at: float | None = None
        self._steps_this_run = 0
        self._epochs = 1
        self._images_this_run = 0  # trained since the first batch of this run (or since a pause)
        self._stop_step: int | None = None
        self._step = 0

    # requests from the GUI thread ----------------------------------------------------------------

    def request_stop(self) -> None:
        super().request_stop()
        with self._lock:
            if self._stop_step is None:
                self._stop_step = self._step
            if self.trainer is not None:
                self.trainer.request_stop()

    def request_pause(self) -> None:
        with self._lock:
            self._paused = True
            if self.trainer is not None:
                self.trainer.request_pause()

    def request_resume(self) -> None:
        with self._lock:
            self._paused = False
            if self.trainer is not None:
                self.trainer.request_resume()

    # the run ------------------------------------------------------------------------------------

    def _make_trainer(self):
        if self.checkpoint:
            return resume_trainer(self.checkpoint, out_dir=self.out_dir, data_dir=self.data_dir,
                                  epochs=self.resume_epochs, device=self.device)
        assert self.config is not None
        return make_trainer(self.config, self.data_dir, self.out_dir)

    def work(self) -> None:
        trainer = self._make_trainer()
        for event, callback in (("run_start", self._on_run_start), ("batch_end", self._on_batch_end),
                                ("epoch_end", self._on_epoch_end), ("checkpoint_saved", self._on_checkpoint),
                                ("paused", self._on_paused), ("message", self._on_message),
                                ("run_end", self._on_run_end)):
            trainer.add_callback(event, callback)
        with self._lock:  # requests made before the trainer existed still count
            self.trainer = trainer
            if self.stop_requested:
                trainer.request_stop()
            if self._paused:
                trainer.request_pause()
        trainer.fit()

    def _on_run_start(self, event) -> None:
        self._epochs = event.epochs
        self.run_started.emit({**asdict(event), "summary": event.summary()})

    def _on_batch_end(self, event) -> None:
        now = time.monotonic()
        if self._run_started_at is None:  # timing starts at the end of the first batch
            self._run_started_at = now
            self._steps_this_run, self._images_this_run = 0, -event.images
        self._steps_this_run += 1
        self._images_this_run += event.images
        with self._lock:
            self._step = event.step
        self._buffer.append((event.epoch - 1 + event.batch / max(1, event.batches), event.loss))
        self._last_batch = event
        if now - self._last_emit >= EMIT_INTERVAL_S:
            self._flush(now)

    def _flush(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._last_emit = now
        if self._buffer:
            self.batch_losses.emit(self._buffer)
            self._buffer = []
        event = self._last_batch
        if event is None:
            return
        elapsed = now - (self._run_started_at or now)
        per_step = elapsed / max(1, self._steps_this_run - 1) if self._steps_this_run > 1 else None
        remaining = (self._epochs - event.epoch) * event.batches + (event.batches - event.batch)
        self.progress.emit({
            "epoch": event.epoch, "epochs": self._epochs, "batch": event.batch, "batches": event.batches,
            "step": event.step, "loss": event.loss,
            "eta_s": per_step * remaining if per_step is not None else None,
            "images_per_second": self._images_this_run / elapsed if per_step else None,
        })

    def _on_epoch_end(self, event) -> None:
        self._flush()
        self.epoch_ended.emit({**asdict(event), "summary": event.summary()})

    def _on_checkpoint(self, event) -> None:
        self.checkpoint_saved.emit(event.path, event.kind, event.epoch)

    def _on_paused(self, event) -> None:
        self._flush()  # the plot shows every batch trained before the pause
        self._run_started_at = None  # time spent paused must not count in the speed and time left
        self.paused.emit({**asdict(event), "where": event.where()})

    def _on_message(self, event) -> None:
        self.message.emit(event.summary(), event.level)

    def _on_run_end(self, event) -> None:
        self._flush()
        result = {**asdict(event), "summary": event.summary()}
        with self._lock:
            result["steps_after_stop"] = (self._step - self._stop_step) if self._stop_step is not None else None
        self.run_ended.emit(result)


# --- sample data -----------------------------------------------------------------------------------

class SampleDataWorker(Worker):
    """Makes (or reuses) the generated shapes dataset for the first-run "train on sample data"."""

    ready = Signal(str)  # the dataset folder

    def __init__(self, folder: str, images_per_class: int, image_size: int) -> None:
        super().__init__()
        self.folder, self.images_per_class, self.image_size = folder, images_per_class, image_size

    def work(self) -> None:
        from resnet_app.core.data.sample_data import ensure_sample_dataset

        folder = ensure_sample_dataset(self.folder, images_per_class=self.images_per_class,
                                       image_size=self.image_size)
        self.ready.emit(str(folder))


# --- ImageNet weights --------------------------------------------------------------------------------

class DownloadWeightsWorker(Worker):
    """Downloads torchvision's ImageNet ResNet18 file into its cache, with progress and cancel."""

    progress = Signal(int, int)  # bytes done, bytes in all (0 when the server doesn't say)
    downloaded = Signal(str)  # the file
    cancelled = Signal()

    def work(self) -> None:
        from resnet_app.core.model.pretrained import DownloadCancelled, fetch_imagenet_weights_file

        try:
            path = fetch_imagenet_weights_file(ThrottledProgress(self.progress.emit), lambda: self.stop_requested)
        except DownloadCancelled:
            self.cancelled.emit()
            return
        self.downloaded.emit(str(path))


# --- evaluation, thumbnails, Grad-CAM (issue 11) ------------------------------------------------------

class _EvalCancelled(Exception):
    pass


class EvaluateWorker(Worker):
    """Loads a model file (unless given a Classifier) and evaluates it on a labelled folder.

    The EvalReport carries a row per image (path, true and predicted class, probabilities); stopping is
    checked after each batch, through the core's progress callback.
    """

    model_loaded = Signal(object)  # Classifier
    progress = Signal(int, int)  # images done, total
    report_ready = Signal(object)  # EvalReport
    cancelled = Signal()

    EVAL_BATCH = 32  # images per forward pass: cancel waits for at most one batch

    def __init__(self, folder: str, model_path: str | None = None, classifier: Classifier | None = None,
                 device: str = "auto") -> None:
        super().__init__()
        self.folder, self.model_path, self.classifier, self.device = folder, model_path, classifier, device
        self._report = ThrottledProgress(self.progress.emit)

    def _progress(self, done: int, total: int) -> None:
        if self.stop_requested:
            raise _EvalCancelled()
        self._report(done, total)

    def work(self) -> None:
        from resnet_app.core.use.evaluation import evaluate_folder

        classifier = self.classifier or Classifier.from_file(self.model_path, device=self.device)
        self.model_loaded.emit(classifier)
        try:
            if self.stop_requested:
                raise _EvalCancelled()
            report = evaluate_folder(classifier, self.folder, batch_size=self.EVAL_BATCH, progress=self._progress)
        except _EvalCancelled:
            self.cancelled.emit()
            return
        self.report_ready.emit(report)


class ThumbnailWorker(Worker):
    """Thumbnails (QImage, null for an unreadable file) for a list of files, a few at a time."""

    loaded = Signal(object, object)  # list[str] paths, list[QImage] (same order)

    CHUNK = 16

    def __init__(self, paths: list[str], size: int = THUMBNAIL_PX) -> None:
        super().__init__()
        self.paths, self.size = list(paths), size

    def work(self) -> None:
        for start in range(0, len(self.paths), self.CHUNK):
            if self.stop_requested:
                return
            chunk = self.paths[start:start + self.CHUNK]
            self.loaded.emit(chunk, [load_thumbnail(Path(p), self.size) for p in chunk])


class PreviewWorker(Worker):
    """One image scaled to fit a preview, with its Grad-CAM heat map blended over it when a Classifier
    is given (for `class_index`, or the predicted class when None)."""

    ready = Signal(int, object, object)  # token, QImage, dict | None (class_index, class_name, probability, layer)
    unreadable = Signal(int, str)  # token, why the image can't be shown

    def __init__(self, token: int, path: str, size: int, classifier: Classifier | None = None,
                 class_index: int | None = None) -> None:
        super().__init__()
        self.token, self.path, self.size = token, path, size
        self.classifier, self.class_index = classifier, class_index

    def work(self) -> None:
        from resnet_app.core.data.images import ImageLoadError
        from resnet_app.core.use.explain import grad_cam
        from resnet_app.ui.heatmap import blend_heatmap

        image = load_thumbnail(Path(self.path), self.size, enlarge=True)
        if image.isNull():
            self.unreadable.emit(self.token, f"{Path(self.path).name} can't be shown (missing, or not an image).")
            return
        info = None
        if self.classifier is not None:
            try:
                cam = grad_cam(self.classifier, self.path, self.class_index, size=(image.width(), image.height()))
            except ImageLoadError as exc:
                self.unreadable.emit(self.token, str(exc))
                return
            image = blend_heatmap(image, cam.heatmap)
            info = {"class_index": cam.class_index, "class_name": self.classifier.class_names[cam.class_index],
                    "probability": cam.probability, "layer": cam.layer}
        self.ready.emit(self.token, image, info)
