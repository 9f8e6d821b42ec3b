"""The main window: five tabs (Classify, Train, Evaluate, Review, Data set), the menus, the status bar, window-level
drops, and a clean close."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget

from resnet_app import __version__
from resnet_app.core.model.devices import describe_device, resolve_device, torch_build
from resnet_app.core.train.events import counted
from resnet_app.ui.binding_check import guard_if_needed
from resnet_app.ui.cache_menu import add_clear_cache_action, format_bytes
from resnet_app.ui.classify_tab import ClassifyTab, is_model_file
from resnet_app.ui.dataset_tab import DatasetTab
from resnet_app.ui.drop_area import local_paths
from resnet_app.ui.evaluate_view import EvaluateView
from resnet_app.ui.export_dialog import add_export_action
from resnet_app.ui.garbage import collect_garbage_on_the_gui_thread
from resnet_app.ui.help import GettingStartedDialog
from resnet_app.ui.messages import ask, show_info
from resnet_app.ui.review_view import ReviewView
from resnet_app.ui.settings import Settings
from resnet_app.ui.sort_dialog import add_sort_action
from resnet_app.ui.train_tab import TrainTab
from resnet_app.ui.workers import TaskRunner

CLASSIFY, TRAIN, EVALUATE, REVIEW, DATASET = 0, 1, 2, 3, 4
RESCAN_AFTER_MS = 2000  # the data set's report is checked again this long after the last label or edit


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        collect_garbage_on_the_gui_thread()  # never in a worker thread (garbage.py)
        guard_if_needed()  # a Qt binding that leaks references to True must not abort the app (binding_check.py)
        self.settings = settings or Settings()
        self.runner = TaskRunner(self)
        self._closing = False
        # Labels come a few a second: the Train tab's report of the data set follows once they pause.
        self._rescan_timer = QTimer(self)
        self._rescan_timer.setSingleShot(True)
        self._rescan_timer.setInterval(RESCAN_AFTER_MS)
        self._labelled_folder = ""
        self.getting_started: GettingStartedDialog | None = None
        self.setWindowTitle("ResNet App")
        self.setAcceptDrops(True)
        self.resize(1180, 780)

        self.classify_tab = ClassifyTab(self.settings, self.runner)
        self.train_tab = TrainTab(self.settings, self.runner)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.classify_tab, "Classify")
        self.tabs.addTab(self.train_tab, "Train")
        self.evaluate_view = EvaluateView(self.settings, self.runner)
        self.tabs.addTab(self.evaluate_view, "Evaluate")
        self.review_view = ReviewView(self.settings, self.runner)
        self.review_view.shared_classifier = self._loaded_classifier
        self.tabs.addTab(self.review_view, "Review")
        self.dataset_tab = DatasetTab(self.settings, self.runner)
        self.tabs.addTab(self.dataset_tab, "Data set")
        self.setCentralWidget(self.tabs)

        self.model_status = QLabel("No model")
        self.device_status = QLabel(self._default_device_text())
        self.statusBar().addPermanentWidget(self.model_status)
        self.statusBar().addPermanentWidget(self.device_status)

        self._build_menus()
        self._connect()
        self._restore_state()

    @staticmethod
    def _default_device_text() -> str:
        try:
            return describe_device(resolve_device("auto"))
        except Exception:  # noqa: BLE001 - a status label must never stop the window from opening
            return "CPU"

    def _action(self, menu, text: str, slot, shortcut=None, name: str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        if name:
            action.setObjectName(name)
        menu.addAction(action)
        self.addAction(action)  # shortcuts work whichever tab has focus
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open images…", self._in_tab(CLASSIFY, self.classify_tab.open_images_dialog),
                     QKeySequence.StandardKey.Open, "openImages")
        self._action(file_menu, "Open &folder…", self._in_tab(CLASSIFY, self.classify_tab.open_folder_dialog),
                     "Ctrl+Shift+F")
        self._action(file_menu, "Open &model…", self.classify_tab.open_model_dialog, "Ctrl+Shift+O", "openModel")
        file_menu.addMenu(self.classify_tab.recent_menu)
        file_menu.addMenu(self.classify_tab.imagenet_menu).setText("ImageNet ResNet18 weights")
        file_menu.addSeparator()
        self._action(file_menu, "&Save model as…", self.classify_tab.save_model_as, "Ctrl+Shift+S", "saveModelAs")
        self._action(file_menu, "&Export results as CSV…", lambda: self.classify_tab.export_csv(), "Ctrl+E")
        self.export_model_action = add_export_action(file_menu, self)
        self.sort_folder_action = add_sort_action(file_menu, self)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit, "quit").setShortcuts(
            [QKeySequence("Ctrl+Q")])

        train_menu = bar.addMenu("&Train")
        self._action(train_menu, "Choose &data folder…", self._in_tab(TRAIN, self.train_tab.choose_data_folder),
                     "Ctrl+D")
        # The Train tab's own actions: the menu items and the tab's buttons are enabled together.
        for action in self.train_tab.actions:
            if action is self.train_tab.resume_checkpoint_action:
                train_menu.addSeparator()
            train_menu.addAction(action)
            self.addAction(action)  # shortcuts work whichever tab has focus
            action.triggered.connect(self._show_train_tab)
        self._action(train_menu, "Train on &sample data", self._in_tab(TRAIN, self.train_tab.start_sample_training))
        train_menu.addSeparator()
        self.clear_cache_action = add_clear_cache_action(train_menu)
        self.clear_cache_action.cleared.connect(
            lambda freed: self.statusBar().showMessage(f"Cleared the cache: {format_bytes(freed)} freed.", 8000))

        view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Classify", lambda: self.tabs.setCurrentIndex(CLASSIFY), "Ctrl+1")
        self._action(view_menu, "&Train", lambda: self.tabs.setCurrentIndex(TRAIN), "Ctrl+2")
        self._action(view_menu, "&Evaluate", lambda: self.tabs.setCurrentIndex(EVALUATE), "Ctrl+3")
        self._action(view_menu, "&Review", lambda: self.tabs.setCurrentIndex(REVIEW), "Ctrl+4")
        self._action(view_menu, "&Data set", lambda: self.tabs.setCurrentIndex(DATASET), "Ctrl+5")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Getting started", self.show_getting_started, QKeySequence.StandardKey.HelpContents,
                     "gettingStarted")
        self._action(help_menu, "&About ResNet App", self._about)

    def _connect(self) -> None:
        self.classify_tab.model_changed.connect(self._model_changed)
        self.classify_tab.imagenet_weights_loaded.connect(self.train_tab.start_box.weights_loaded_elsewhere)
        self.classify_tab.sample_training_requested.connect(self._in_tab(TRAIN, self.train_tab.start_sample_training))
        self.classify_tab.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.train_tab.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.train_tab.model_ready.connect(self.use_model)
        self.train_tab.training_finished.connect(self._training_finished)
        self.evaluate_view.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.evaluate_view.files_moved.connect(self._dataset_files_moved)
        self.review_view.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.review_view.files_labelled.connect(self._dataset_files_labelled)
        self.review_view.retrain_requested.connect(self._retrain)
        self.review_view.model_ready.connect(self.use_model)
        self.train_tab.running_changed.connect(self._train_running_changed)
        self.dataset_tab.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.dataset_tab.files_changed.connect(self._dataset_files_labelled)  # edits: the same debounced re-check
        self.dataset_tab.use_in_train.connect(self._use_dataset_in_train)
        self._rescan_timer.timeout.connect(self._rescan_labelled_folder)

    def _restore_state(self) -> None:
        geometry = self.settings.get("window/geometry")
        if not geometry.isEmpty():
            self.restoreGeometry(geometry)
        self.tabs.setCurrentIndex(self.settings.get("window/tab"))
        last = self.settings.get("model/last")
        if last and Path(last).is_file():
            self.classify_tab.load_model(last)
        self.review_view.set_default_model(self._default_review_model())
        self.review_view.set_default_data(self.train_tab.data_edit.text().strip())
        QTimer.singleShot(0, self.offer_unfinished_run)

    def offer_unfinished_run(self) -> None:
        """A run left unfinished (stopped, or cut short by a crash or 'Stop and quit') is offered on start."""
        run = self.train_tab.runs_view.latest_unfinished()
        if run is None or self.train_tab.running:
            return
        accuracy = "" if run.best_val_accuracy is None else f", {run.best_val_accuracy:.1%} so far"
        ask(self, "Resume the unfinished run?",
            f"Training on {run.data_root} ({counted(run.unit, run.epochs)}{accuracy}): {run.stop_words()}\n\n"
            "Resume it now? (It is also in the Train tab's Runs list.)", "Resume",
            lambda: self._resume_run(str(run.checkpoint)))

    def _resume_run(self, checkpoint: str) -> None:
        self.tabs.setCurrentIndex(TRAIN)
        self.train_tab.resume_from_checkpoint(checkpoint)

    # actions ----------------------------------------------------------------------------------------

    def _in_tab(self, index: int, method: Callable[[], object]) -> Callable[..., None]:
        """A slot that shows the tab `method` belongs to, then calls it (menu items work from any tab)."""
        def show_tab_and_run(*_signal_args) -> None:
            self.tabs.setCurrentIndex(index)
            method()
        return show_tab_and_run

    def _show_train_tab(self) -> None:
        if self.sender() is not self.train_tab.use_model_action:  # that one goes to Classify
            self.tabs.setCurrentIndex(TRAIN)

    def use_model(self, path: str) -> None:
        self.classify_tab.load_model(path)
        self.tabs.setCurrentIndex(CLASSIFY)

    def _dataset_files_moved(self, folder: str) -> None:
        """A label fixed in the Evaluate view: the Train tab's dataset report follows."""
        if Path(folder) == Path(self.train_tab.data_edit.text().strip()) and not self.train_tab.running:
            self.train_tab.set_data_folder(folder)

    def _use_dataset_in_train(self, folder: str) -> None:
        """The Data set tab's "Use in Train": the Train tab's data folder, and its report, follow."""
        if self.train_tab.running:
            show_info(self, "Training is running", "The Train tab's data folder can change when the run ends.")
            return
        self.train_tab.set_data_folder(folder)
        self.tabs.setCurrentIndex(TRAIN)

    def _dataset_files_labelled(self, folder: str) -> None:
        self._labelled_folder = folder
        self._rescan_timer.start()

    def _rescan_labelled_folder(self) -> None:
        self._dataset_files_moved(self._labelled_folder)

    def _training_finished(self, result: dict) -> None:
        self.review_view.training_finished(result)  # a Retrain of the Review tab: it ranks with the new model
        # The Evaluate view scores the new model on its data folder, ready when the user looks.
        data = self.train_tab.data_edit.text().strip()
        if result.get("model_path") and data:
            self.evaluate_view.evaluate(result["model_path"], data)
        # A newcomer's first model goes straight to the Classify tab.
        if result.get("model_path") and self.classify_tab.classifier is None:
            self.classify_tab.load_model(result["model_path"])
            if self.train_tab.sample_run:
                self.tabs.setCurrentIndex(CLASSIFY)
                show_info(self, "Your first model is ready",
                          "Training on the sample shapes finished and the model is loaded. Drop images of "
                          f"circles, squares, stars or triangles here, for example from "
                          f"{self.train_tab.data_edit.text()}.")

    def _model_changed(self, model: str, device: str) -> None:
        self.model_status.setText(f"Model: {model}")
        self.device_status.setText(device)
        self.review_view.set_default_model(self._default_review_model())

    # the Review tab ---------------------------------------------------------------------------------

    def _loaded_classifier(self):
        return self.classify_tab.classifier

    def _default_review_model(self) -> str:
        """The model Review ranks with unless the user chooses: Classify's, else the last one opened, else
        the newest run's."""
        classifier = self.classify_tab.classifier
        if classifier is not None and Path(str(classifier.source)).is_file():
            return str(classifier.source)
        last = self.settings.get("model/last")
        if last and Path(last).is_file():
            return last
        run = next((run for run in self.train_tab.runs_view.runs if run.model is not None), None)
        return str(run.model) if run is not None else ""

    def review_unsure(self, folder: str) -> None:
        """The Sort dialog's "Review the unsure…": the Review tab on a sort's _unsure folder."""
        self.tabs.setCurrentIndex(REVIEW)
        self.review_view.review_unsure(folder, self._default_review_model())

    def _retrain(self, folder: str) -> None:
        """Review's Retrain: the Train tab trains on the data set, as its settings say (quick or full)."""
        if self.train_tab.running:
            show_info(self, "Training is running", "A run is going in the Train tab already. Retrain when it "
                      "has finished (or stop it there).")
            return
        if Path(folder) != Path(self.train_tab.data_edit.text().strip()):
            self.train_tab.set_data_folder(folder)
        self.train_tab.start_training()
        if self.train_tab.running:
            self.review_view.retrain_started()
            self.statusBar().showMessage("Retraining on the data set: see the Train tab.", 8000)

    def _train_running_changed(self, running: bool) -> None:
        # A run that failed ends with no result (and no training_finished): Review stops waiting for it.
        if not running and self.train_tab.last_result is None:
            self.review_view.training_finished({"model_path": None,
                                                "summary": self.train_tab.last_error or "training did not run"})

    def show_getting_started(self) -> None:
        if self.getting_started is None:
            self.getting_started = GettingStartedDialog(self)
        self.getting_started.show()
        self.getting_started.raise_()

    def _about(self) -> None:
        show_info(self, "About ResNet App",
                  f"ResNet App {__version__}\nClassify images with ResNet18 and train it on your own folders.\n\n"
                  f"{torch_build()}")

    # window-level drops: a model file anywhere loads it ---------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        if self.tabs.currentIndex() == TRAIN and any(p.is_dir() for p in paths) \
                and not any(is_model_file(p) for p in paths):
            self.train_tab.set_data_folder(str(next(p for p in paths if p.is_dir())))
            return
        if not all(is_model_file(p) for p in paths):
            self.tabs.setCurrentIndex(CLASSIFY)
        self.classify_tab.handle_paths(paths)

    # closing ----------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.train_tab.running and not self._closing:
            event.ignore()
            ask(self, "Training is running",
                "Stop training and quit? A checkpoint is saved first, so you can resume later.",
                "Stop and quit", self._stop_and_close)
            return
        if self.runner.busy:
            # Wait without blocking the GUI: the window closes when the last thread has finished. Queued
            # work (drops, a model chosen meanwhile, previews) is dropped, and nothing new starts.
            event.ignore()
            if not self._closing:
                self._begin_closing("Finishing… the window closes in a moment.")
            return
        self._save_state()
        event.accept()

    def _stop_and_close(self) -> None:
        self._begin_closing("Stopping training and saving a checkpoint… the window closes when done.")
        if not self.runner.busy:
            self.close()

    def _begin_closing(self, text: str) -> None:
        self._closing = True
        self.statusBar().showMessage(text)
        self.classify_tab.drop_queued_work()
        self.runner.all_finished.connect(self.close, Qt.ConnectionType.QueuedConnection)
        self.runner.shut_down()

    def _save_state(self) -> None:
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.set("window/tab", self.tabs.currentIndex())
        self.train_tab.save_settings()
        self.settings.sync()
