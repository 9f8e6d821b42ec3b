"""`resnet-app selftest`: the GUI end to end, offscreen where there is no display.

Makes sample data in a temporary folder, trains one short epoch through the Train tab's own worker and
thread, loads the result with "Use this model", classifies an image through the Classify tab, exports
the model to ONNX and checks the export (when the ONNX packages are there), prints a short report and
returns 0 only if every step worked. User settings are not touched (QSettings point at the temporary
folder).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STEP_TIMEOUT_S = 300.0


def _wait(condition: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S) -> bool:
    """Run an event loop until `condition` holds or the time is up (a QTimer polls; no busy loop)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return True
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    timer.start()
    loop.exec()
    timer.stop()
    return condition()


def run_selftest(soak_minutes: float = 0.0) -> int:
    """The self-test; with `soak_minutes`, it then trains through the app for that long (a long session
    in little: every signal the run sends is counted) and passes only if the run ends normally."""
    from resnet_app.ui.app import has_display

    if not has_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings

    from resnet_app.core.data.sample_data import generate_sample_dataset
    from resnet_app.ui.app import create_app

    report: list[tuple[str, bool, str]] = []

    def step(name: str, ok: bool, detail: str = "") -> bool:
        report.append((name, ok, detail))
        print(f"[{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
        return ok

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="resnet-app-selftest-") as tmp:
        tmp_path = Path(tmp)
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
        app = create_app()
        _quiet_offscreen_warnings(app)
        from resnet_app.ui.main_window import MainWindow

        window = MainWindow()
        window.show()
        try:
            ok = _run_steps(app, window, tmp_path, step, generate_sample_dataset)
            if ok and soak_minutes > 0:
                ok = _soak_step(window, tmp_path, soak_minutes, step)
        except Exception as exc:  # noqa: BLE001 - the report says what broke
            ok = step("self-test", False, f"{type(exc).__name__}: {exc}")
        finally:
            window.train_tab.stop()
            window.classify_tab.cancel()
            _wait(lambda: not window.runner.busy, 60)
            window.close()
            window.deleteLater()
    print(f"self-test {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s "
          f"({sum(r[1] for r in report)}/{len(report)} steps)", flush=True)
    return 0 if ok else 1


def _quiet_offscreen_warnings(app) -> None:
    """Qt's offscreen platform says "This plugin does not support propagateSizeHints()" for every new
    window: true and of no use in a report, so that line alone is left out (others still print)."""
    if app.platformName() != "offscreen":
        return
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(f"qt: {message}", file=sys.stderr, flush=True)

    qInstallMessageHandler(handler)


def _run_steps(app, window, tmp_path: Path, step, generate_sample_dataset) -> bool:
    import PySide6

    if not step("GUI started", window.isVisible(), f"Qt {PySide6.__version__}, platform {app.platformName()}"):
        return False
    from resnet_app.ui.binding_check import PROBE_EMITS, describe_binding, true_references_lost

    lost = true_references_lost()
    binding_ok = step("Qt binding keeps its references", lost < PROBE_EMITS // 2,
         f"{describe_binding()}: {lost} references to True lost in {PROBE_EMITS} signals"
         + ("" if lost < PROBE_EMITS // 2 else " (a binding bug that aborts long sessions: "
                                                "install PySide6-Essentials < 6.12)"))
    from resnet_app.core.model.devices import torch_build
    from resnet_app.ui.start_from import SCRATCH

    step("PyTorch", True, torch_build())
    data = generate_sample_dataset(tmp_path / "data", images_per_class=8, image_size=16)
    step("sample data", True, str(data))

    train = window.train_tab
    train.apply_settings({"arch": "resnet18-cifar", "epochs": 1, "batch_size": 8, "image_size": 16, "lr": None,
                          "optimizer": "adam", "val_fraction": 0.25, "output_folder": str(tmp_path / "runs")})
    train.config_overrides = {"loader_processes": 0}
    # From scratch: the training loop itself, whether or not ImageNet weights are on this computer
    # (the installers bundle them, and with them the app would start from ImageNet by default).
    train.start_box.choose_start(SCRATCH)
    train.set_data_folder(str(data))
    train.start_training()
    if not step("training started", train.running):
        return False
    if not _wait(lambda: not train.running):
        return step("training finished", False, "timed out")
    result = train.last_result or {}
    if not step("trained one epoch", result.get("status") == "completed" and bool(train.model_path),
                f"status {result.get('status')}, {train.plot.point_count} loss points, model {train.model_path}"
                + (f"; error: {train.last_error}" if train.last_error else "")):
        return False

    classify = window.classify_tab
    train.use_model()
    if not _wait(lambda: classify.classifier is not None and not classify._loading, 120):
        return step("model loaded in Classify", False, "timed out")
    step("model loaded in Classify", True, classify.model_description())

    image = next(Path(data).rglob("*.png"))
    classify.handle_paths([image])
    if not _wait(lambda: classify.results.rowCount() >= 1 and not classify.busy, 120):
        return step("classified an image", False, "timed out")
    prediction = classify.results.predictions()[0]
    label = prediction.top_k[0] if prediction.top_k else None
    if not step("classified an image", prediction.ok and label is not None,
                f"{image.name} -> {label[0]} ({label[1]:.0%})" if label else str(prediction.error)):
        return False
    # A leaking binding fails the self-test, after the other steps have said what else works.
    return _export_step(step, Path(train.model_path), tmp_path) and binding_ok


def _soak_step(window, tmp_path: Path, minutes: float, step) -> bool:
    """Train on the sample data through the Train tab for `minutes`, then stop; count the signals the
    training worker sent to the GUI thread and the references to True before and after (a binding that
    leaks one per signal aborts the process long before the end: issue 23)."""
    from PySide6.QtCore import QObject, Slot

    class SignalCounter(QObject):  # lives in the GUI thread: each signal is queued to it, as to the tab
        count = 0

        @Slot()
        def received(self, *_args) -> None:
            self.count += 1

    train = window.train_tab
    before = sys.getrefcount(True)
    train.apply_settings({"epochs": 100_000})
    train.start_training()
    if not step("soak: training started", train.running):
        return False
    counter = SignalCounter()
    worker = train.worker
    for signal in (worker.run_started, worker.batch_losses, worker.progress, worker.epoch_ended,
                   worker.checkpoint_saved, worker.paused, worker.message, worker.run_ended):
        signal.connect(counter.received)
    deadline = time.monotonic() + minutes * 60
    _wait(lambda: time.monotonic() > deadline or not train.running, minutes * 60 + 60)
    ran_to_the_end = train.running
    train.stop()
    _wait(lambda: not train.running, 300)
    result = train.last_result or {}
    return step("soak: a long run ended normally", ran_to_the_end and result.get("status") == "stopped",
                f"{minutes:g} min, {counter.count} signals from the training worker, "
                f"{result.get('epochs_completed', '?')} epochs, status {result.get('status')}; "
                f"references to True {before} -> {sys.getrefcount(True)}")


def _export_step(step, model: Path, tmp_path: Path) -> bool:
    """Export the trained model to ONNX and check it against the app (export_model checks every export
    before it keeps it). A build without the ONNX packages says so and passes: they are optional."""
    from resnet_app.core.use.export import export_model, missing_packages

    missing = missing_packages("onnx")
    if missing:
        print(f"[skip] exported to ONNX: {', '.join(missing)} not in this build (optional)", flush=True)
        return True
    result = export_model(model, "onnx", tmp_path / "model.onnx", check_images=8)
    return step("exported to ONNX and checked it", result.check.passed, result.check.line())


if __name__ == "__main__":
    sys.exit(run_selftest())
