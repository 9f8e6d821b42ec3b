"""The Train tab: data folder and its report, settings, Start/Pause/Resume/Stop, live plot and log."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.train.quick import QUICK_PASSES
from resnet_app.core.train.settings import QUICK_NOT_USED, TrainConfig, setting_named
from resnet_app.ui.drop_area import DropArea
from resnet_app.ui.messages import show_error, show_info
from resnet_app.ui.plot import TrainingPlot
from resnet_app.ui.runs_view import RunsView
from resnet_app.ui.settings import Settings, app_data_folder
from resnet_app.ui.settings_form import SettingsForm
from resnet_app.ui.start_from import SCRATCH, StartFromBox
from resnet_app.ui.workers import SampleDataWorker, ScanWorker, TaskRunner, TrainWorker

# The first-run sample: from scratch, about a minute on two idle CPU cores (~25 images/s at 32 px; six
# on a busy machine), with enough steps (12 an epoch, 72 in all) to reach 75-90 % validation accuracy on
# the shapes; with ImageNet weights at hand, quick transfer instead (StartFromBox). The app shows the
# time left as measured from the first batches, never a fixed promise.
SAMPLE_IMAGES_PER_CLASS = 60
SAMPLE_SETTINGS = {"arch": "resnet18-cifar", "epochs": 6, "batch_size": 16, "image_size": 32, "lr": None,
                   "optimizer": "adam", "val_fraction": 0.2}


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def device_choices() -> list[tuple[str, str]]:
    """(value, label) for the device box; the detected GPU is named."""
    choices = []
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        choices += [("auto", f"Automatic ({name})"), ("cuda", f"GPU: {name}")]
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        choices += [("auto", "Automatic (Apple GPU)"), ("mps", "Apple GPU (MPS)")]
    else:
        choices.append(("auto", "Automatic (CPU: no GPU found)"))
    choices.append(("cpu", "CPU"))
    return choices


def _folder_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


class TrainTab(QWidget):
    model_ready = Signal(str)  # "Use this model": a model file to load in the Classify tab
    running_changed = Signal(bool)
    training_finished = Signal(object)  # the run_end dict (status, model_path, ...)
    status_message = Signal(str)

    def __init__(self, settings: Settings, runner: TaskRunner, parent=None) -> None:
        super().__init__(parent)
        self.settings, self.runner = settings, runner
        # TrainConfig fields not shown in the app, set by the self-test and tests ({"loader_processes": 0}).
        self.config_overrides: dict = {}
        self.worker: TrainWorker | None = None
        self._scan_worker: ScanWorker | None = None
        self._sample_worker: SampleDataWorker | None = None
        self._scan_token = 0
        self.report = None
        self.model_path: str | None = None
        self.last_result: dict | None = None
        self.last_error: str | None = None  # the message of the last run that could not run at all
        self.sample_run = False
        # The user's own settings while a sample run shows (and uses) the sample's: saved in their
        # place and shown again when the run ends, so the sample never changes a later run.
        self._settings_before_sample: dict | None = None
        self._start_before_sample: str | None = None  # the Start-from choice, likewise
        self._paused = False
        self._build()
        self._load_settings()
        self._update_buttons()

    # layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        # data
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("A folder with one sub-folder of images per class")
        self.data_edit.setAccessibleName("Data folder")
        self.data_edit.editingFinished.connect(self._data_edited)
        self.data_button = QPushButton("Choose…")
        self.data_button.setAccessibleName("Choose data folder")
        self.data_button.clicked.connect(self.choose_data_folder)
        self.data_drop = DropArea("Drop a data folder here")
        self.data_drop.setMinimumHeight(44)
        self.data_drop.files_dropped.connect(self._folder_dropped)
        self.scan_progress = QProgressBar()
        self.scan_progress.setFormat("checking images: %v of %m")
        self.scan_progress.hide()
        self.report_view = QPlainTextEdit()
        self.report_view.setReadOnly(True)
        self.report_view.setAccessibleName("Dataset report")
        self.report_view.setPlaceholderText("The dataset report appears here when you choose a folder.")
        self.report_view.setMinimumHeight(110)
        data_box = QGroupBox("Data")
        data_layout = QVBoxLayout(data_box)
        data_layout.addWidget(_folder_row(self.data_edit, self.data_button))
        data_layout.addWidget(self.data_drop)
        data_layout.addWidget(self.scan_progress)
        data_layout.addWidget(self.report_view, 1)

        # where training starts (ImageNet or nothing) and what learns
        self.start_box = StartFromBox(self.settings, self.runner)
        self.start_box.changed.connect(self._follow_start)
        self.quick_note = QLabel(self.QUICK_NOTE)  # under the panel: why some settings are greyed
        self.quick_note.setObjectName("quickNote")
        self.quick_note.setWordWrap(True)

        # settings: one editor per setting of the table in core/train/settings.py
        self.settings_form = SettingsForm(choices={"device": device_choices()})
        self.settings_form.editor("device").changed.connect(self._follow_device)
        self.out_edit = QLineEdit()
        self.out_edit.setAccessibleName("Output folder")
        self.out_button = QPushButton("Choose…")
        self.out_button.setAccessibleName("Choose output folder")
        self.out_button.clicked.connect(self.choose_output_folder)
        settings_box = QGroupBox("Settings")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addWidget(self.settings_form)
        out_form = QFormLayout()
        out_form.addRow("Output folder:", _folder_row(self.out_edit, self.out_button))
        settings_layout.addLayout(out_form)

        # controls: one QAction each, shared by the buttons here and the Train menu, so that both are
        # enabled and disabled together (TrainTab.actions; MainWindow puts them in its menu)
        self.start_action = self._make_action("&Start training", self.start_training, "Ctrl+Return", self.START_TIP)
        self.pause_action = self._make_action("&Pause", self.pause, "Ctrl+P",
                                              "Pause after the current batch; progress is saved first")
        self.resume_action = self._make_action("&Resume", self.resume, "Ctrl+R", "Go on with a paused run")
        self.stop_action = self._make_action("S&top", self.stop, "Ctrl+.",
                                             "Stop after the current batch; a checkpoint is saved first")
        self.resume_checkpoint_action = self._make_action("Resume from &checkpoint…", self.choose_checkpoint,
                                                          None, "Continue a stopped or crashed run")
        self.use_model_action = self._make_action("&Use this model", self.use_model, None,
                                                  "Load the best model of this run in the Classify tab")
        self.start_button = self._button(self.start_action, "Start")
        self.pause_button = self._button(self.pause_action, "Pause")
        self.resume_button = self._button(self.resume_action, "Resume")
        self.stop_button = self._button(self.stop_action, "Stop")
        self.resume_checkpoint_button = self._button(self.resume_checkpoint_action, "Resume from checkpoint…")
        self.use_model_button = self._button(self.use_model_action, "Use this model")
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            controls.addWidget(button)
        controls2 = QHBoxLayout()
        controls2.addWidget(self.resume_checkpoint_button)
        controls2.addWidget(self.use_model_button)

        # The settings scroll on their own; the run buttons stay below them, always in view (at
        # 800 x 600 too).
        settings_column = QWidget()
        column_layout = QVBoxLayout(settings_column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.addWidget(data_box, 1)
        column_layout.addWidget(self.start_box)
        column_layout.addWidget(self.quick_note)
        column_layout.addWidget(settings_box)
        self.settings_scroll = QScrollArea()
        self.settings_scroll.setWidget(settings_column)
        self.settings_scroll.setWidgetResizable(True)
        self.settings_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        left_scroll = QWidget()
        left_layout = QVBoxLayout(left_scroll)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.settings_scroll, 1)
        left_layout.addLayout(controls)
        left_layout.addLayout(controls2)
        # Wide enough for the settings and the vertical scroll bar beside them: never a sideways scroll.
        self.settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll_bar = self.settings_scroll.verticalScrollBar().sizeHint().width()
        left_scroll.setMinimumWidth(max(340, settings_column.minimumSizeHint().width() + scroll_bar))

        # progress, plot, log
        self.status_label = QLabel("Not training.")
        self.status_label.setWordWrap(True)
        self.epoch_progress = QProgressBar()
        self.epoch_progress.setAccessibleName("Epoch progress")
        self.epoch_progress.setFormat("batch %v of %m")
        self.plot = TrainingPlot()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setAccessibleName("Training log")
        self.checkpoint_list = QListWidget()
        self.checkpoint_list.setAccessibleName("Checkpoints")
        self.checkpoint_list.itemDoubleClicked.connect(
            lambda item: self.model_ready.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.log_view, "Log")
        self.bottom_tabs.addTab(self.checkpoint_list, "Checkpoints")
        self.runs_view = RunsView()
        self.runs_view.resume_requested.connect(
            lambda checkpoint, epochs: self.resume_from_checkpoint(checkpoint, epochs or None))
        self.runs_view.model_requested.connect(self.model_ready)
        self.bottom_tabs.addTab(self.runs_view, "Runs")
        self.clear_log_button = QToolButton()
        self.clear_log_button.setText("✕")
        self.clear_log_button.setToolTip("Clear the log")
        self.clear_log_button.setAccessibleName("Clear the log")
        self.clear_log_button.clicked.connect(self.log_view.clear)
        self.bottom_tabs.setCornerWidget(self.clear_log_button)

        right_splitter = self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.status_label)
        top_layout.addWidget(self.epoch_progress)
        top_layout.addWidget(self.plot.legend_bar())
        top_layout.addWidget(self.plot, 1)
        right_splitter.addWidget(top)
        right_splitter.addWidget(self.bottom_tabs)
        right_splitter.setStretchFactor(0, 3)
        right_splitter.setStretchFactor(1, 2)
        self.bottom_tabs.setMinimumHeight(120)  # the log: at least a few lines, more by dragging the divider

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left_scroll)
        splitter.addWidget(right_splitter)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _make_action(self, text: str, slot, shortcut: str | None, tip: str) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip)
        action.setStatusTip(tip)
        return action

    @staticmethod
    def _button(action: QAction, text: str) -> QToolButton:
        """A push-button-looking button that shows and triggers `action` (its enabled state included)."""
        button = QToolButton()
        # The button shows the action's icon text: set there, it stays when the action changes (a text
        # set on the button alone was replaced by the menu's "Start training" at the first change).
        action.setIconText(text)
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        button.setMinimumHeight(30)
        return button

    @property
    def actions(self) -> list[QAction]:
        """The run's actions, in menu order."""
        return [self.start_action, self.pause_action, self.resume_action, self.stop_action,
                self.resume_checkpoint_action, self.use_model_action]

    # settings ---------------------------------------------------------------------------------------

    def _load_settings(self) -> None:
        splitter = self.settings.get("window/train_splitter")
        if not splitter.isEmpty():  # the plot and log heights the user left
            self.right_splitter.restoreState(splitter)
        self.settings_form.load(self.settings)
        self._follow_device()
        self.out_edit.setText(self.settings.get("train/output_folder"))
        self.runs_view.show_folder(self.out_edit.text())
        self.out_edit.editingFinished.connect(lambda: self.runs_view.show_folder(self.out_edit.text()))
        folder = self.settings.get("train/data_folder")
        if folder and Path(folder).is_dir():
            self.set_data_folder(folder)

    def save_settings(self) -> None:
        self.settings.set("window/train_splitter", self.right_splitter.saveState())
        self.settings_form.save(self.settings, self._settings_before_sample)
        self.start_box.save(start=self._start_before_sample)
        self.settings.set("train/output_folder", self.out_edit.text())
        self.settings.set("train/data_folder", self.data_edit.text())

    def apply_settings(self, values: dict) -> None:
        """Set several training settings at once (TrainConfig field names, plus "output_folder")."""
        self.settings_form.set_values(values)
        if "output_folder" in values:
            self.out_edit.setText(values["output_folder"])
            self.runs_view.show_folder(values["output_folder"])

    def build_config(self) -> TrainConfig:
        """The shown settings as a TrainConfig; raises ValueError with a user-facing message."""
        start = {"pretrained": self.start_box.pretrained(), "quick": self.start_box.quick()}
        if start["pretrained"]:
            start["arch"] = "resnet18"  # the only architecture ImageNet weights exist for
        return self.settings_form.config(**start, **self.config_overrides)

    START_TIP = "Start training with these settings"

    # Settings that don't apply to a quick run (those of them the tab shows): the last layer trains
    # with its own fixed recipe, and the note under the Start-from panel and their tooltips say so.
    NOT_USED_WHEN_QUICK = tuple(name for name in QUICK_NOT_USED if setting_named(name).in_app)
    QUICK_NOTE = (f"Quick trains the last layer for {QUICK_PASSES} passes over features computed once; epochs, "
                  "batch size and the learning-rate settings don't apply.")

    def _follow_start(self) -> None:
        """Starting from ImageNet fixes the architecture; a quick run has no use for the loop's settings."""
        imagenet, quick = self.start_box.starts_from_imagenet(), self.start_box.quick()
        arch = self.settings_form.editor("arch")
        if imagenet:
            arch.set_setting_value("resnet18")
        arch.setEnabled(not imagenet)
        arch.setToolTip("ImageNet weights exist for torchvision's ResNet18 only." if imagenet
                        else self.settings_form.tooltip("arch"))
        for name in self.NOT_USED_WHEN_QUICK:
            editor = self.settings_form.editor(name)
            editor.setEnabled(not quick)
            editor.setToolTip(self.QUICK_NOTE if quick else self.settings_form.tooltip(name))
        self.quick_note.setVisible(quick)

    def _follow_device(self) -> None:
        device = self.settings_form.values()["device"]
        on_gpu = device in ("cuda", "mps") or (device == "auto" and any(
            value in ("cuda", "mps") for value, _ in device_choices()))
        self.start_box.set_on_gpu(on_gpu)
        self._follow_start()

    # data -----------------------------------------------------------------------------------------

    def choose_data_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the data folder", self.data_edit.text())
        if folder:
            self.set_data_folder(folder)

    def choose_output_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose where runs are saved", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def _data_edited(self) -> None:
        if self.data_edit.text().strip() != self.settings.get("train/data_folder"):
            self.set_data_folder(self.data_edit.text())

    def _folder_dropped(self, paths: list[Path]) -> None:
        folders = [p for p in paths if Path(p).is_dir()]
        if folders:
            self.set_data_folder(str(folders[0]))
        else:
            show_info(self, "Data folder", "Drop a folder (one sub-folder of images per class), not files.")

    def set_data_folder(self, folder: str) -> None:
        folder = str(folder).strip()
        if not folder:
            return
        self.data_edit.setText(folder)
        self.settings.set("train/data_folder", folder)
        if self._scan_worker is not None:
            self._scan_worker.request_stop()
        self.report = None
        self.report_view.setPlainText("Checking the folder…")
        if not self.running and self.last_error is not None:  # the last run's failure is past
            self.last_error = None
            self.status_label.setText("Not training.")
        self._update_buttons()
        self._scan_token += 1
        worker = ScanWorker(folder, self._scan_token)
        self.scan_progress.hide()
        worker.progress.connect(self._scan_progress)
        worker.report_ready.connect(self._scan_done)
        worker.scan_failed.connect(self._scan_failed)
        self._scan_worker = worker
        self.runner.start(worker)

    # Slots for worker signals are bound methods, never lambdas: a lambda would run in the worker's thread.
    def _scan_progress(self, token: int, done: int, total: int) -> None:
        if token == self._scan_token:
            self.scan_progress.setMaximum(max(1, total))
            self.scan_progress.setValue(done)
            self.scan_progress.setVisible(done < total)

    def _scan_done(self, token: int, report) -> None:
        if token != self._scan_token:
            return  # an older scan, replaced by a newer folder choice
        self._scan_worker = None
        self.scan_progress.hide()
        self.report = report
        self.report_view.setPlainText("\n".join(report.summary_lines()))
        self._update_buttons()

    def _scan_failed(self, token: int, message: str) -> None:
        if token == self._scan_token:
            self._scan_worker = None
            self.scan_progress.hide()
            self.report_view.setPlainText(f"Could not check the folder: {message}")

    # sample data ----------------------------------------------------------------------------------

    def start_sample_training(self, folder: str | None = None) -> None:
        """First run: make the shapes dataset (once), apply quick settings, and start training."""
        if self.running or self._sample_worker is not None:  # a second click while the data is made
            return
        folder = folder or str(app_data_folder() / "sample-data")
        self.sample_run = True
        self.log(f"Making sample data in {folder}…")
        worker = SampleDataWorker(folder, SAMPLE_IMAGES_PER_CLASS, 64)
        worker.ready.connect(self._sample_ready)
        worker.failed.connect(self._sample_failed)
        self._sample_worker = worker
        self.runner.start(worker)

    def _sample_failed(self, message: str) -> None:
        self.sample_run = False
        self._sample_worker = None
        show_error(self, "Could not make sample data", message)

    def _sample_ready(self, folder: str) -> None:
        worker, self._sample_worker = self._sample_worker, None
        if worker is not None and worker.stop_requested:
            return  # cancelled meanwhile (the window is closing): the chain ends here, no run starts
        if self._settings_before_sample is None:
            self._settings_before_sample = self.settings_form.values()
            self._start_before_sample = self.start_box.start_choice()
        if self.start_box.weights_file() is None:
            # Without ImageNet weights the sample trains from scratch: the panel says so, instead of
            # "ImageNet weights (recommended)" over a run that can't use them.
            self.start_box.choose_start(SCRATCH)
        self.apply_settings(SAMPLE_SETTINGS)
        self.set_data_folder(folder)
        self.start_training(sample=True)
        if not self.running:  # it could not start: the user's settings are back at once
            self._restore_settings_after_sample()

    def _restore_settings_after_sample(self) -> None:
        if self._settings_before_sample is not None:
            self.settings_form.set_values(self._settings_before_sample)
            self.start_box.choose_start(self._start_before_sample)
            self._settings_before_sample = self._start_before_sample = None

    # training -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _new_run_folder(self) -> Path:
        root = Path(self.out_edit.text().strip() or self.settings.default("train/output_folder")).expanduser()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder, n = root / f"run-{stamp}", 1
        while folder.exists():
            n += 1
            folder = root / f"run-{stamp}-{n}"
        return folder

    def start_training(self, sample: bool = False) -> None:
        if self.running:
            return
        self.sample_run = sample
        data = self.data_edit.text().strip()
        if not data:
            show_error(self, "No data folder", "Choose a data folder first: one sub-folder of images per class.")
            return
        try:
            config = self.build_config()
        except ValueError as exc:
            show_error(self, "Check the settings", str(exc))
            return
        self.save_settings()
        out_dir = self._new_run_folder()
        self._start_worker(TrainWorker(config=config, data_dir=data, out_dir=str(out_dir)),
                           f"Training in {out_dir}")

    def choose_checkpoint(self) -> None:
        start = self.settings.get("train/checkpoint_folder") or self.out_edit.text()
        path, _ = QFileDialog.getOpenFileName(self, "Resume from checkpoint", start,
                                              "Checkpoints (*.pt);;All files (*)")
        if path:
            self.settings.set("train/checkpoint_folder", str(Path(path).parent))
            self.resume_from_checkpoint(path)

    def resume_from_checkpoint(self, path: str, epochs: int | None = None) -> None:
        if self.running:
            return
        self.sample_run = False
        worker = TrainWorker(checkpoint=path, resume_epochs=epochs,
                             device=self.settings_form.values()["device"])
        self._start_worker(worker, f"Resuming from {path}")

    def _start_worker(self, worker: TrainWorker, text: str) -> None:
        self.plot.clear_data()
        self.checkpoint_list.clear()
        self.model_path = None
        self.last_result = None
        self.last_error = None
        self._paused = False
        self.epoch_progress.setValue(0)
        self.log(text)
        worker.run_started.connect(self._run_started)
        worker.batch_losses.connect(self.plot.add_batch_losses)
        worker.progress.connect(self.show_progress)
        worker.epoch_ended.connect(self._epoch_ended)
        worker.checkpoint_saved.connect(self._checkpoint_saved)
        worker.paused.connect(self._paused_between_batches)
        worker.message.connect(self._message)
        worker.run_ended.connect(self._run_ended)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._worker_finished)
        self.worker = worker
        self.status_label.setText("Starting…")
        self.runner.start(worker)
        self._update_buttons()
        self.running_changed.emit(True)

    def pause(self) -> None:
        if self.worker is not None and not self._paused:
            self.worker.request_pause()
            self._paused = True
            self.status_label.setText("Pausing after the current batch…")
            self._update_buttons()

    def _paused_between_batches(self, info: dict) -> None:
        if not self._paused:  # resumed again before the pause took effect
            return
        where = info["where"]
        self.status_label.setText(f"Paused at {where}; progress saved. Press Resume to go on.")
        self.log(f"paused at {where}; saved {info['checkpoint_path']}")

    def resume(self) -> None:
        if self.worker is not None and self._paused:
            self.worker.request_resume()
            self._paused = False
            self.status_label.setText("Resuming…")
            self.log("resumed")
            self._update_buttons()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()
            self._paused = False
            self.status_label.setText("Stopping after the current batch and saving a checkpoint…")
            self._update_buttons()

    def use_model(self) -> None:
        if self.model_path:
            self.model_ready.emit(self.model_path)

    def _update_buttons(self) -> None:
        """Enable what applies now (the actions drive the buttons and the menu alike); the settings can't
        change under a running run."""
        running = self.running
        stopping = running and self.worker.stop_requested
        unusable = self.report is not None and not self.report.ok
        self.start_action.setEnabled(not running and not unusable)
        self.start_action.setToolTip("The data folder can't be used as it is: the report above says why."
                                     if unusable else self.START_TIP)
        self.resume_checkpoint_action.setEnabled(not running)
        self.pause_action.setEnabled(running and not self._paused and not stopping)
        self.resume_action.setEnabled(running and self._paused and not stopping)
        self.stop_action.setEnabled(running and not stopping)
        self.use_model_action.setEnabled(bool(self.model_path) and Path(self.model_path).is_file())
        for panel in (self.settings_form, self.start_box, self.data_edit, self.data_button, self.data_drop,
                      self.out_edit, self.out_button):
            panel.setEnabled(not running)

    # worker signals ---------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _message(self, text: str, level: str) -> None:
        self.log(text)

    def _run_started(self, info: dict) -> None:
        self.epoch_progress.setMaximum(info["batches_per_epoch"])
        self.log(info["summary"])
        for record in info.get("history", []):  # a resumed run: its past epochs back on the plot
            self.plot.add_epoch(record["epoch"], record["train_loss"], record["val_loss"], record["val_accuracy"])
        if info.get("model_path"):  # a resumed run's model file: usable before its next epoch ends
            self.model_path = info["model_path"]
            self._update_buttons()
        self.status_label.setText(f"Epoch {info['start_epoch']} of {info['epochs']} on {info['device']}…")

    def show_progress(self, p: dict) -> None:
        """The status line and progress bar for a TrainWorker.progress dict."""
        self.epoch_progress.setMaximum(p["batches"])
        self.epoch_progress.setValue(p["batch"])
        if self._paused or (self.worker is not None and self.worker.stop_requested):
            return
        parts = [f"Epoch {p['epoch']} of {p['epochs']}", f"loss {p['loss']:.3f}"]
        if p.get("eta_s") is not None:  # measured from this run's batches; nothing until it can be
            parts.append(f"about {format_duration(p['eta_s'])} left")
        if p.get("images_per_second"):
            parts.append(f"{p['images_per_second']:.0f} images/s")
        self.status_label.setText(" · ".join(parts))

    def _epoch_ended(self, e: dict) -> None:
        self.plot.add_epoch(e["epoch"], e["train_loss"], e["val_loss"], e["val_accuracy"])
        self.log(e["summary"])

    def _checkpoint_saved(self, path: str, kind: str, epoch: int) -> None:
        text = f"{'best model' if kind == 'best' else 'last checkpoint (resumable)'} · after epoch {epoch} · {path}"
        for i in range(self.checkpoint_list.count()):
            item = self.checkpoint_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                item.setText(text)
                break
        else:
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip("Double-click to use it in the Classify tab")
            self.checkpoint_list.addItem(item)
        if kind == "best":
            self.model_path = path
            self._update_buttons()

    def _run_ended(self, result: dict) -> None:
        self.last_result = result
        if result.get("model_path"):
            self.model_path = result["model_path"]
        self.status_label.setText(result["summary"])
        message = result.get("message") or ""
        # (A stopped run's message is its summary's first sentence: said once.)
        self.log(result["summary"] if message in result["summary"] else f"{result['summary']} {message}")
        if result["status"] == "diverged":
            show_error(self, "Training diverged", result.get("message") or "The loss became NaN.")

    def _failed(self, message: str) -> None:
        self.last_error = message
        self.log(f"error: {message}")
        self.status_label.setText("Training could not run. See the message.")
        show_error(self, "Training failed", message)

    def _worker_finished(self) -> None:
        self.worker = None
        self._restore_settings_after_sample()
        self._paused = False
        self._update_buttons()  # first: nothing below may leave Start disabled
        self.running_changed.emit(False)
        self.runs_view.refresh()
        if self.last_result is not None:
            self.training_finished.emit(self.last_result)
            self.status_message.emit(self.status_label.text())
