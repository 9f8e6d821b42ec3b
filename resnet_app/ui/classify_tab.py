"""The Classify tab: the model in use, a drop area, and the results table."""
from __future__ import annotations

import html
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.files import place_file
from resnet_app.core.model.checkpoints import (
    MODEL_FILE_SUFFIXES,
    CheckpointError,
    copy_model_file,
    describe_model_file,
)
from resnet_app.core.model.devices import describe_device
from resnet_app.core.use.classifier import Classifier, write_predictions_csv
from resnet_app.ui.delegates import TopKDelegate
from resnet_app.ui.drop_area import DropArea, local_paths
from resnet_app.ui.gradcam_panel import GradCamPanel
from resnet_app.ui.messages import show_error, show_info
from resnet_app.ui.models import PredictionFilterProxy, PredictionRole, PredictionTableModel
from resnet_app.ui.progress_row import ProgressRow
from resnet_app.ui.settings import Settings, pasted_images_folder
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import THUMBNAIL_PX, ClassifyWorker, LoadModelWorker, TaskRunner

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp);;All files (*)"
MODEL_FILTER = "Model files (*.safetensors *.pt *.pth);;All files (*)"
IMAGENET_FILTER = "ImageNet ResNet18 weights (*.pth *.pt);;All files (*)"


def is_model_file(path: Path) -> bool:
    return path.suffix.lower() in MODEL_FILE_SUFFIXES and path.is_file()


class WelcomePage(QWidget):
    """What a newcomer sees before any model is loaded: three ways to start."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        title = QLabel("<h2>Welcome to ResNet App</h2>")
        text = QLabel(
            "To classify images you need a model. Pick one way to start:<br>"
            "• <b>Try it now</b>: make a small set of drawn shapes and train on it "
            "(a minute or so; the Train tab shows the time left as it goes), then drop images here.<br>"
            "• <b>Open a model file</b> (.safetensors or .pt) that you or someone else trained.<br>"
            "• <b>ImageNet ResNet18</b>: recognises 1,000 everyday things; downloads 45 MB once, "
            "or open the weights file if you have it."
        )
        text.setWordWrap(True)
        self.sample_button = QPushButton("Train on sample data")
        self.open_button = QPushButton("Open a model file…")
        self.imagenet_button = QPushButton("Get ImageNet ResNet18 weights…")
        for button in (self.sample_button, self.open_button, self.imagenet_button):
            button.setMinimumHeight(36)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addSpacing(12)
        for button in (self.sample_button, self.open_button, self.imagenet_button):
            row = QHBoxLayout()
            row.addWidget(button)
            row.addStretch(1)
            layout.addLayout(row)
        layout.addStretch(2)


class ModelNamedProxy(PredictionFilterProxy):
    """The results' filter proxy, whose header names the model that made the rows (on the widest
    column, Top predictions, where a long file name still fits)."""

    NAMED = PredictionTableModel.TOP_K

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model_name = ""

    def set_model_name(self, name: str) -> None:
        if name != self.model_name:
            self.model_name = name
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, self.NAMED, self.NAMED)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if (self.model_name and section == self.NAMED and orientation == Qt.Orientation.Horizontal
                and role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole)):
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"Every row was classified by {self.model_name}"
            return f"{super().headerData(section, orientation, role)} by {self.model_name}"
        return super().headerData(section, orientation, role)


class ClassifyTab(QWidget):
    model_changed = Signal(str, str)  # model description, device description
    imagenet_weights_loaded = Signal(str)  # a weights file opened (or "imagenet": downloaded into the cache)
    sample_training_requested = Signal()
    status_message = Signal(str)

    def __init__(self, settings: Settings, runner: TaskRunner, parent=None) -> None:
        super().__init__(parent)
        self.settings, self.runner = settings, runner
        self.classifier: Classifier | None = None
        self._classify_worker: ClassifyWorker | None = None
        self._loading = False
        self._next_load: tuple[LoadModelWorker, str] | None = None
        self._pending: list[Path] = []
        # What the rows were made from (files and folders, in order): a new model classifies them again.
        self._inputs: list[Path] = []
        self._reclassify_when_done = False
        self._cancelled = False
        self.thumbnails = ThumbnailCache(runner, parent=self)
        self.results = PredictionTableModel(self, top_k=settings.get("classify/top_k"), thumbnails=self.thumbnails)
        self.proxy = ModelNamedProxy(self)
        self.proxy.setSourceModel(self.results)
        self._build()
        self._refresh_recent_menu()

    # layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_box = QGroupBox("Model")
        self.model_label = QLabel("No model loaded.")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_model_button = QPushButton("Open model…")
        self.open_model_button.clicked.connect(self.open_model_dialog)
        # Push buttons with a menu: the style draws the menu arrow beside the text, with room (a tool
        # button's arrow touched "ImageNet ResNet18").
        self.recent_button = QPushButton("Recent")
        self.recent_menu = QMenu("Recent models", self)
        self.recent_button.setMenu(self.recent_menu)
        self.imagenet_button = QPushButton("ImageNet ResNet18")
        self.imagenet_menu = QMenu(self)
        self.imagenet_menu.addAction("Download (45 MB, once)", lambda: self.load_imagenet("imagenet"))
        self.imagenet_menu.addAction("Open weights file…", self.open_imagenet_file_dialog)
        self.imagenet_button.setMenu(self.imagenet_menu)
        model_row = QHBoxLayout(self.model_box)
        model_row.addWidget(self.model_label, 1)
        for w in (self.open_model_button, self.recent_button, self.imagenet_button):
            model_row.addWidget(w)

        self.welcome = WelcomePage()
        self.welcome.sample_button.clicked.connect(self.sample_training_requested)
        self.welcome.open_button.clicked.connect(self.open_model_dialog)
        self.welcome.imagenet_button.clicked.connect(self._ask_imagenet)

        self.drop_area = DropArea("Drop images or folders here, paste them (Ctrl+V), or use Open images…")
        self.drop_area.files_dropped.connect(self.handle_paths)
        self.open_images_button = QPushButton("Open images…")
        self.open_images_button.clicked.connect(self.open_images_dialog)
        self.open_folder_button = QPushButton("Open folder…")
        self.open_folder_button.clicked.connect(self.open_folder_dialog)
        self.top_k_spin = QSpinBox()
        self.top_k_spin.setRange(1, 10)
        self.top_k_spin.setValue(self.results.top_k)
        self.top_k_spin.setAccessibleName("Top-k labels shown")
        self.top_k_spin.valueChanged.connect(self._set_top_k)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by label")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAccessibleName("Filter by label")
        self.filter_edit.textChanged.connect(self.proxy.set_label_filter)
        self.min_confidence_spin = QDoubleSpinBox()
        self.min_confidence_spin.setRange(0, 100)
        self.min_confidence_spin.setDecimals(0)
        self.min_confidence_spin.setSuffix(" %")
        self.min_confidence_spin.setAccessibleName("Minimum confidence")
        self.min_confidence_spin.valueChanged.connect(lambda v: self.proxy.set_min_confidence(v / 100.0))
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear_results)

        tools = QHBoxLayout()
        for w in (self.open_images_button, self.open_folder_button):
            tools.addWidget(w)
        tools.addSpacing(12)
        tools.addWidget(QLabel("Top-k:"))
        tools.addWidget(self.top_k_spin)
        tools.addWidget(self.filter_edit, 1)
        tools.addWidget(QLabel("Min. confidence:"))
        tools.addWidget(self.min_confidence_spin)
        tools.addWidget(self.export_button)
        tools.addWidget(self.clear_button)

        self.progress_row = ProgressRow("%v of %m images", self.cancel)
        self.progress, self.cancel_button = self.progress_row.bar, self.progress_row.cancel_button

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(PredictionTableModel.THUMBNAIL, Qt.SortOrder.AscendingOrder)  # = dropped order
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.table.setWordWrap(False)
        self.table.setItemDelegateForColumn(PredictionTableModel.TOP_K, TopKDelegate(self.table))
        self.table.setAccessibleName("Classification results")
        self.table.setTabKeyNavigation(False)  # Tab leaves the table (arrows move inside it)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._row_menu)
        self.table.doubleClicked.connect(lambda _index: self.open_selected())
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(PredictionTableModel.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(PredictionTableModel.THUMBNAIL, THUMBNAIL_PX + 12)
        self._narrow: bool | None = None  # column widths for the window's width (resizeEvent)
        header.setStretchLastSection(True)
        # Left-aligned: "Top predictions by <model>" in a narrow column shows its start, not its middle.
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.verticalHeader().hide()
        self._update_row_height()

        self.work_page = QWidget()
        work = QVBoxLayout(self.work_page)
        work.setContentsMargins(0, 0, 0, 0)
        work.addWidget(self.drop_area)
        work.addLayout(tools)
        work.addWidget(self.progress_row)
        # Grad-CAM beside the results: the selected row's image, with "why this class" on request.
        self.gradcam = GradCamPanel(self.runner)
        self.table.selectionModel().currentRowChanged.connect(self._row_selected)
        self.results_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.results_splitter.addWidget(self.table)
        self.results_splitter.addWidget(self.gradcam)
        self.results_splitter.setStretchFactor(0, 1)
        self.results_splitter.setChildrenCollapsible(False)
        self._fit_columns(narrow=False)
        work.addWidget(self.results_splitter, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.work_page)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_box)
        layout.addWidget(self.stack, 1)

        paste = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        paste.activated.connect(self.paste)

    # Column widths (file, label, confidence) and the preview's share: in a narrow window the top
    # predictions, the column that matters most, would otherwise start off screen.
    COLUMNS_WIDE, COLUMNS_NARROW = (200, 130, 90), (130, 90, 76)
    NARROW_PX = 1000

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_columns(self.width() < self.NARROW_PX)

    def _fit_columns(self, narrow: bool) -> None:
        if narrow == self._narrow:
            return
        self._narrow = narrow
        header = self.table.horizontalHeader()
        widths = self.COLUMNS_NARROW if narrow else self.COLUMNS_WIDE
        for column, width in zip((PredictionTableModel.FILE, PredictionTableModel.LABEL,
                                  PredictionTableModel.CONFIDENCE), widths, strict=True):
            header.resizeSection(column, width)
        if narrow:
            self.results_splitter.setSizes([self.width() * 3 // 4, self.width() // 4])

    def _update_row_height(self) -> None:
        line_h = self.table.fontMetrics().height() + 4
        self.table.verticalHeader().setDefaultSectionSize(max(THUMBNAIL_PX + 8, self.results.top_k * line_h + 8))

    def _set_top_k(self, k: int) -> None:
        self.results.set_top_k(k)
        self.settings.set("classify/top_k", k)
        self._update_row_height()

    # models ---------------------------------------------------------------------------------------

    def _refresh_recent_menu(self) -> None:
        """Recent models named by their run (data folder, classes, accuracy, date): their files are all
        called model.safetensors. The path is in the tooltip."""
        self.recent_menu.clear()
        self.recent_menu.setToolTipsVisible(True)
        recent = self.settings.get("model/recent")
        for path in recent:
            action = self.recent_menu.addAction(describe_model_file(path), lambda p=path: self.load_model(p))
            action.setToolTip(path)
        if not recent:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    # the rows' own actions (right-click, double-click) ---------------------------------------------------

    def selected_predictions(self) -> list:
        rows = sorted({self.proxy.mapToSource(index).row() for index in self.table.selectionModel().selectedRows()})
        predictions = self.results.predictions()
        return [predictions[row] for row in rows]

    def _row_menu(self, position) -> None:
        if not self.selected_predictions():
            return
        menu = QMenu(self)
        menu.addAction("Open", self.open_selected)
        menu.addAction("Show in folder", self.show_selected_in_folder)
        menu.addAction("Copy path", self.copy_selected_paths)
        menu.addSeparator()
        menu.addAction("Remove from the list", self.remove_selected)
        menu.popup(self.table.viewport().mapToGlobal(position))

    def open_selected(self) -> None:
        for prediction in self.selected_predictions()[:10]:  # a slip of the mouse shouldn't open hundreds
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(prediction.path)))

    def show_selected_in_folder(self) -> None:
        folders = {Path(p.path).parent for p in self.selected_predictions()}
        for folder in list(folders)[:10]:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def copy_selected_paths(self) -> None:
        QGuiApplication.clipboard().setText("\n".join(str(p.path) for p in self.selected_predictions()))

    def remove_selected(self) -> None:
        rows = [self.proxy.mapToSource(index).row() for index in self.table.selectionModel().selectedRows()]
        self.results.remove_rows(rows)

    def save_model_as(self) -> None:
        """Keep the model in use under a name of the user's choice (its run folder's file is always
        model.safetensors)."""
        source = Path(self.classifier.source) if self.classifier else None
        if source is None or source.suffix.lower() != ".safetensors" or not source.is_file():
            show_info(self, "Save model as", "Open a model file (.safetensors) first: the model in use has no "
                                            "file of its own to save.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", str(source.parent / source.name),
                                              "Model files (*.safetensors)")
        if path:
            self.save_model_to(path)

    def save_model_to(self, path: str) -> Path | None:
        target = Path(path).with_suffix(".safetensors")
        try:
            copy_model_file(Path(self.classifier.source), target)  # without an older file's folder paths
        except OSError as exc:
            show_error(self, "Could not save the model", f"{target}: {exc.strerror or exc}")
            return None
        except CheckpointError as exc:
            show_error(self, "Could not save the model", str(exc))
            return None
        self.settings.add_recent_model(str(target))
        self._refresh_recent_menu()
        self.status_message.emit(f"Saved the model as {target}")
        return target

    def open_model_dialog(self) -> None:
        start = str(Path(self.settings.get("model/last")).parent) if self.settings.get("model/last") else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, MODEL_FILTER)
        if path:
            self.load_model(path)

    def open_imagenet_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open ImageNet ResNet18 weights", "", IMAGENET_FILTER)
        if path:
            self.load_imagenet(path)

    def _ask_imagenet(self) -> None:
        self.imagenet_menu.popup(self.welcome.imagenet_button.mapToGlobal(
            self.welcome.imagenet_button.rect().bottomLeft()))

    def load_model(self, path: str | Path) -> None:
        self._start_load(LoadModelWorker(str(path)), f"Loading {Path(path).name}…")

    def load_imagenet(self, source: str = "imagenet") -> None:
        what = "Downloading ImageNet ResNet18 weights…" if source == "imagenet" else f"Loading {Path(source).name}…"
        worker = LoadModelWorker(source, imagenet=True)
        worker.loaded.connect(self._imagenet_loaded)
        self._start_load(worker, what)

    def _imagenet_loaded(self, _classifier: Classifier, source: str) -> None:
        self.imagenet_weights_loaded.emit(source)  # the Train tab remembers them too (chosen once)

    def _start_load(self, worker: LoadModelWorker, text: str) -> None:
        if self._loading:
            self._next_load = (worker, text)  # the latest choice wins, once the current load is done
            return
        worker.loaded.connect(self.use_loaded_model)
        worker.failed.connect(self._model_failed)
        worker.finished.connect(self._load_done)
        if self.runner.start(worker) is None:
            return  # the window is closing
        self._loading = True
        self.model_label.setText(text)

    def _load_done(self) -> None:
        self._loading = False
        if self._next_load is not None and not self.runner.shutting_down:
            worker, text = self._next_load
            self._next_load = None
            self._start_load(worker, text)

    def use_loaded_model(self, classifier: Classifier, source: str) -> None:
        if self.runner.shutting_down:
            return  # loaded while the window closes: nothing is classified again
        previous, self.classifier = self.classifier, classifier
        self.gradcam.set_classifier(classifier)
        # Images dropped before the first model loaded wait in _pending alone; any others are among
        # the inputs already, and classifying the inputs again takes them along.
        waiting_for_a_model = [] if previous is not None else self._pending
        if previous is not None:
            self._pending = []
        if previous is not None and self._inputs:
            self._reclassify()  # rows never show two models' answers
        elif self.results.rowCount() == 0:
            self.proxy.set_model_name(classifier.name)
        self._show_model_info()
        self.stack.setCurrentWidget(self.work_page)
        if Path(source).is_file():
            self.settings.set("model/last", source)
            self.settings.add_recent_model(source)
            self._refresh_recent_menu()
        self.model_changed.emit(self.model_description(), describe_device(classifier.device))
        if waiting_for_a_model:
            self._pending = []
            self.classify(waiting_for_a_model)

    def _model_failed(self, message: str) -> None:
        self._show_model_info()
        show_error(self, "Could not load the model", message)

    def _show_model_info(self) -> None:
        if self.classifier is None:
            self.model_label.setText("No model loaded.")
            return
        c = self.classifier
        accuracy = c.metrics.get("val_accuracy") if c.metrics else None
        extra = f", validation accuracy {accuracy:.0%}" if isinstance(accuracy, (int, float)) else ""
        self.model_label.setText(
            f"<b>{c.name}</b> — {c.arch}, {len(c.class_names)} classes, {c.image_size} px{extra}<br>"
            + (f"<small>{html.escape(c.weights, quote=False)}</small><br>" if c.weights else "")
            + f"<small>from {c.source}</small>")
        self.model_label.setToolTip(", ".join(c.class_names[:50]))

    def model_description(self) -> str:
        if self.classifier is None:
            return "No model"
        return f"{self.classifier.name} ({len(self.classifier.class_names)} classes)"

    # classification -------------------------------------------------------------------------------

    def handle_paths(self, paths: list[Path]) -> None:
        """Dropped or pasted paths: a model file loads; images and folders are classified."""
        paths = [Path(p) for p in paths]
        models = [p for p in paths if is_model_file(p)]
        images = [p for p in paths if p not in models]
        if models:
            self.load_model(models[0])
        if images:
            if self.classifier is None and (self._loading or models):
                self._pending.extend(images)  # classified once the model has loaded
            else:
                self.classify(images)

    def paste(self) -> None:
        """Ctrl+V: files or folders copied in a file manager, or an image copied from a browser or a
        screenshot tool (saved as a PNG first, so its row has a file to point to)."""
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        paths = local_paths(mime)
        if not paths and mime is not None and mime.hasImage():
            saved = self._save_pasted_image(clipboard.image())
            if saved is None:
                return
            paths = [saved]
        if paths:
            self.handle_paths(paths)
        else:
            show_info(self, "Paste", "The clipboard holds no image, image files or folders. Copy an image, "
                                     "or files in your file manager, then paste here.")

    def _save_pasted_image(self, image: QImage) -> Path | None:
        folder = pasted_images_folder()
        wanted = folder / time.strftime("pasted %Y-%m-%d %H.%M.%S.png")

        def encode(tmp: Path) -> None:
            # Quality 90: light PNG compression, quick to write for a screen-sized image.
            if image.isNull() or not image.save(str(tmp), "PNG", 90):
                raise ValueError("not saved")

        try:
            # Several pastes within a second: "pasted ... .png", then "-2", "-3" (files.place_file's rule).
            return place_file(wanted, write=encode)
        except ValueError:
            show_error(self, "Paste", f"The pasted image could not be saved to {wanted}.")
        except OSError as exc:
            show_error(self, "Paste", f"Could not save the pasted image in {folder}: {exc.strerror or exc}")
        return None

    def open_images_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.get("classify/last_folder"),
                                                IMAGE_FILTER)
        if paths:
            self.settings.set("classify/last_folder", str(Path(paths[0]).parent))
            self.handle_paths([Path(p) for p in paths])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Classify a folder", self.settings.get("classify/last_folder"))
        if folder:
            self.settings.set("classify/last_folder", folder)
            self.handle_paths([Path(folder)])

    @property
    def busy(self) -> bool:
        return self._classify_worker is not None

    def classify(self, paths: list[Path]) -> None:
        """Classify `paths` (files and folders) with the model in use: now, or after the current job."""
        if self.classifier is None:
            show_info(self, "No model yet", "Load a model first: open a model file, use ImageNet weights, "
                                            "or train one on the Train tab.")
            return
        paths = [Path(p) for p in paths]
        self._inputs.extend(paths)  # once each: what a new model classifies again
        if self.busy:
            self._pending.extend(paths)  # run after the current batch of files
            return
        self._start_classify(paths)

    def _start_classify(self, paths: list[Path]) -> None:
        self.stack.setCurrentWidget(self.work_page)
        if self.results.rowCount() == 0:
            self.proxy.set_model_name(self.classifier.name)
        worker = ClassifyWorker(self.classifier, paths)
        worker.started_paths.connect(self._classify_started)
        worker.batch_ready.connect(self.results.append)
        worker.progress.connect(self._classify_progress)
        worker.failed.connect(self._classify_failed)
        worker.finished.connect(self._classify_done)
        if self.runner.start(worker) is None:
            return  # the window is closing
        self._classify_worker = worker
        self.progress.setRange(0, 0)
        self.progress_row.show()

    def _classify_started(self, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        if total == 0:
            show_info(self, "No images", "No image files were found in what you dropped.")

    def _classify_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)

    def _classify_failed(self, message: str) -> None:
        show_error(self, "Classification failed", message)

    def _classify_done(self) -> None:
        self._classify_worker = None
        self.progress_row.hide()
        if self._reclassify_when_done:
            self._reclassify_when_done = self._cancelled = False
            self._reclassify()
            return
        if self._cancelled:  # what a new model classifies again is what is on show
            self._cancelled = False
            self._inputs = [prediction.path for prediction in self.results.predictions()]
        if self._pending:  # already among the inputs
            pending, self._pending = self._pending, []
            self._start_classify(pending)

    def cancel(self) -> None:
        self._pending = []
        if self._classify_worker is not None:
            self._cancelled = True
            self._classify_worker.request_stop()

    def drop_queued_work(self) -> None:
        """The window is closing: forget queued drops and model loads, and stop the running job."""
        self._next_load = None
        self._reclassify_when_done = False
        self.cancel()
        self.gradcam.drop_queued_work()

    def clear_results(self) -> None:
        self.cancel()
        self._inputs = []
        self.results.clear()

    def _reclassify(self) -> None:
        """Classify what the rows were made from again, with the model now loaded."""
        if self.busy:  # the running job's rows must arrive before the table is emptied
            self._reclassify_when_done = True
            self._classify_worker.request_stop()
            return
        inputs, self._inputs, self._pending = self._inputs, [], []
        self.results.clear()
        self.status_message.emit(f"Classifying {len(inputs)} item{'s' if len(inputs) != 1 else ''} again "
                                 f"with {self.classifier.name}…")
        self.classify(inputs)

    def _row_selected(self, current, _previous) -> None:
        prediction = current.data(PredictionRole) if current.isValid() else None
        self.gradcam.set_image(prediction.path if prediction is not None else None)

    def export_csv(self, path: str | None = None) -> bool:
        if self.results.rowCount() == 0:
            show_info(self, "Export CSV", "There are no results to export yet.")
            return False
        if self.proxy.rowCount() == 0:
            show_info(self, "Export CSV", "The filter hides every row: clear it to export them.")
            return False
        if path is None:
            start = str(Path(self.settings.get("classify/export_folder") or Path.home()) / "predictions.csv")
            path, _ = QFileDialog.getSaveFileName(self, "Export results", start, "CSV files (*.csv)")
            if not path:
                return False
        shown = self.shown_predictions()
        try:
            rows = write_predictions_csv(path, shown, self.results.top_k)
        except OSError as exc:
            show_error(self, "Export failed", f"Could not write {path}: {exc.strerror or exc}")
            return False
        self.settings.set("classify/export_folder", str(Path(path).parent))
        hidden = self.results.rowCount() - rows
        self.status_message.emit(f"Exported {rows} row{'s' if rows != 1 else ''} to {path}"
                                 + (f" ({hidden} hidden by the filter left out)" if hidden else ""))
        return True

    def shown_predictions(self) -> list:
        """The rows as the table shows them: filtered, in the order sorted."""
        return [self.proxy.index(row, 0).data(PredictionRole) for row in range(self.proxy.rowCount())]
