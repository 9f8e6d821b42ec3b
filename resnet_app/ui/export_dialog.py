"""File > Export model…: a small dialog over core.use.export.export_model, run in a worker thread.

The dialog chooses the model (by default the one loaded in the Classify tab), the format and the file;
the export (a few seconds: the exporter, then the check against the app's own predictions) runs in an
ExportWorker started by the window's TaskRunner, so closing the window waits for it. Progress is a bar
with the step's name; the result is one or more lines under it (where the file went, the check's
numbers), or the error in its words (a failed check leaves no file).

Added to a menu with `add_export_action(menu, window)`; the window needs `runner` (a TaskRunner) and may
have `classify_tab` (whose loaded model is the default) and `settings` (its "model/last").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.use.export import ExportCancelled, default_output, export_model, missing_packages
from resnet_app.ui.menu_actions import add_window_action, bring_up
from resnet_app.ui.workers import TaskRunner, Worker

FORMAT_LABELS = {"onnx": "ONNX (onnxruntime, any language)", "torchscript": "TorchScript (LibTorch, torch.jit.load)"}
EXPORTABLE = (".safetensors", ".pt", ".pth")
MODEL_FILTER = "Model files (*.safetensors *.pt *.pth);;All files (*)"
SAVE_FILTERS = {"onnx": "ONNX models (*.onnx)", "torchscript": "TorchScript files (*.pt);;All files (*)"}


class ExportWorker(Worker):
    """Runs export_model in its thread; stopping is a request checked between the export's steps."""

    progress = Signal(int, int, str)  # step, steps, what is being done
    exported = Signal(object)  # dict: ExportResult.to_dict() plus "lines" (its summary lines)
    cancelled = Signal()

    def __init__(self, model: str, fmt: str, out: str) -> None:
        super().__init__()
        self.model, self.fmt, self.out = model, fmt, out

    def work(self) -> None:
        try:
            result = export_model(self.model, self.fmt, self.out, progress=self.progress.emit,
                                  should_stop=lambda: self.stop_requested)
        except ExportCancelled:
            self.cancelled.emit()
            return
        self.exported.emit({**result.to_dict(), "lines": result.summary_lines()})


class ExportDialog(QDialog):
    """Model, format and file in; a progress bar and the result line out."""

    finished_export = Signal(object)  # the exported dict, or None when it failed or was stopped

    def __init__(self, parent: QWidget | None, runner: TaskRunner, model: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.setObjectName("exportDialog")
        self.runner = runner
        self.worker: ExportWorker | None = None
        self._out_chosen = False  # the user typed or picked the file: don't follow the model any more

        self.model_edit = QLineEdit(model)
        self.format_combo = QComboBox()
        for fmt, label in FORMAT_LABELS.items():
            missing = missing_packages(fmt)
            self.format_combo.addItem(label + (f" — needs {', '.join(missing)}" if missing else ""), fmt)
        # What works here is the default: ONNX when its packages are installed (they come with the app),
        # TorchScript otherwise.
        self.format_combo.setCurrentIndex(next(
            (i for i in range(self.format_combo.count()) if not missing_packages(self.format_combo.itemData(i))), 0))
        self.out_edit = QLineEdit()
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.result_label = QLabel()
        self.result_label.setObjectName("exportResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("Model:", self._with_button(self.model_edit, "Browse…", self._choose_model))
        form.addRow("Format:", self.format_combo)
        form.addRow("Save as:", self._with_button(self.out_edit, "Browse…", self._choose_out))
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("exportButton")
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.close_button.clicked.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.result_label)
        layout.addWidget(self.buttons)

        self.model_edit.textChanged.connect(self._follow_model)
        self.format_combo.currentIndexChanged.connect(self._follow_model)
        self.out_edit.textEdited.connect(self._mark_out_chosen)
        self._follow_model()
        self.resize(560, self.sizeHint().height())

    @staticmethod
    def _with_button(edit: QLineEdit, text: str, slot) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit)
        button = QPushButton(text)
        button.clicked.connect(slot)
        box.addWidget(button)
        return row

    # choices --------------------------------------------------------------------------------------

    @property
    def fmt(self) -> str:
        return self.format_combo.currentData()

    def _mark_out_chosen(self, *_: Any) -> None:
        self._out_chosen = True

    def _follow_model(self, *_: Any) -> None:
        model = self.model_edit.text().strip()
        if model and not self._out_chosen:
            self.out_edit.setText(str(default_output(model, self.fmt)))
        self.export_button.setEnabled(bool(model) and self.worker is None)

    def _choose_model(self) -> None:
        start = str(Path(self.model_edit.text()).parent) if self.model_edit.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Model to export", start, MODEL_FILTER)
        if path:
            self.model_edit.setText(path)

    def _choose_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export as", self.out_edit.text(), SAVE_FILTERS[self.fmt])
        if path:
            self._out_chosen = True
            self.out_edit.setText(path)

    # the export -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start_export(self) -> None:
        if self.running or not self.model_edit.text().strip():
            return
        worker = ExportWorker(self.model_edit.text().strip(), self.fmt, self.out_edit.text().strip())
        worker.progress.connect(self._progress)
        worker.exported.connect(self._exported)
        worker.failed.connect(self._failed)
        worker.cancelled.connect(self._cancelled)
        worker.finished.connect(self._worker_finished)
        self.worker = worker
        self._set_inputs_enabled(False)
        self.progress_bar.setRange(0, 0)  # busy until the first step reports
        self.progress_bar.setVisible(True)
        self._show_result("Exporting…")
        self.runner.start(worker)

    def _set_inputs_enabled(self, enabled: bool) -> None:
        for widget in (self.model_edit, self.format_combo, self.out_edit, self.export_button):
            widget.setEnabled(enabled)

    def _progress(self, step: int, steps: int, text: str) -> None:
        self.progress_bar.setRange(0, steps)
        self.progress_bar.setValue(step)
        self.progress_bar.setFormat(f"{text[:1].upper()}{text[1:]}…" if step < steps else "Done")

    def _exported(self, result: dict) -> None:
        self._show_result("\n".join(result["lines"]))
        self.finished_export.emit(result)

    def _failed(self, message: str) -> None:
        self.progress_bar.setVisible(False)
        self._show_result(f"Export failed: {message}", error=True)
        self.finished_export.emit(None)

    def _cancelled(self) -> None:
        self.progress_bar.setVisible(False)
        self._show_result("Export stopped; nothing was written.")
        self.finished_export.emit(None)

    def _worker_finished(self) -> None:
        self.worker = None
        self._set_inputs_enabled(True)
        self._follow_model()

    def _show_result(self, text: str, error: bool = False) -> None:
        self.result_label.setStyleSheet("color: #b00020;" if error else "")
        self.result_label.setText(text)

    def closeEvent(self, event) -> None:
        if self.worker is not None:
            self.worker.request_stop()  # acts between steps; a file is only ever left complete and checked
        super().closeEvent(event)


class ExportAction(QAction):
    """"Export model…": opens the (one) export dialog, with the model loaded in the window as default."""

    def __init__(self, menu: QMenu, window: QObject) -> None:
        super().__init__("E&xport model…", menu)
        self.window_ = window
        self.dialog: ExportDialog | None = None
        self.setObjectName("exportModel")
        self.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.setStatusTip("Save the model as ONNX or TorchScript to use it outside the app, checked against "
                          "the app's own predictions")
        self.triggered.connect(self.open_dialog)

    def current_model(self) -> str:
        """The model loaded in the Classify tab when it is an exportable file, else the last one opened."""
        classifier = getattr(getattr(self.window_, "classify_tab", None), "classifier", None)
        source = getattr(classifier, "source", "") or ""
        if Path(source).suffix.lower() in EXPORTABLE and Path(source).is_file():
            return source
        settings = getattr(self.window_, "settings", None)
        last = settings.get("model/last") if settings is not None else ""
        return last if last and Path(last).suffix.lower() in EXPORTABLE and Path(last).is_file() else ""

    def open_dialog(self) -> ExportDialog:
        if self.dialog is None:
            runner = getattr(self.window_, "runner", None) or TaskRunner(self)
            self.dialog = ExportDialog(self.window_ if isinstance(self.window_, QWidget) else None, runner)
        if not self.dialog.running:
            model = self.current_model()
            if model and model != self.dialog.model_edit.text():
                self.dialog.model_edit.setText(model)
        bring_up(self.dialog)
        return self.dialog


def add_export_action(menu: QMenu, window: QObject) -> ExportAction:
    """Add "Export model…" (Ctrl+Shift+E) at the end of `menu`; the action works from any tab once the
    window also holds it (`window.addAction(action)`, done here when `window` is a widget)."""
    return add_window_action(menu, window, ExportAction(menu, window))
