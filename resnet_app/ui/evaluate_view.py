"""The Evaluate view: how a model does on a labelled folder, and which images it gets wrong.

Overall and per-class figures, a confusion matrix painted as a heat map (a click on a cell shows its
images as a thumbnail grid), every image most wrong first, and for the selected image: open it, show
its folder, move it to another class folder (recorded on an undo stack; the figures follow), and
Grad-CAM. Evaluation runs in an EvaluateWorker with progress and cancel; nothing here blocks.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QFont,
    QFontMetrics,
    QKeySequence,
    QPainter,
    QPalette,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.evaluation import EvalReport, report_with_rows
from resnet_app.ui.classify_tab import MODEL_FILTER
from resnet_app.ui.evaluate_models import (
    GRID_CELL,
    ConfusionMatrixModel,
    DiagonalRole,
    EvalRowsModel,
    ImageGridModel,
    PerClassModel,
    RowRole,
    ShareRole,
)
from resnet_app.ui.gradcam_panel import GradCamPanel
from resnet_app.ui.messages import show_error
from resnet_app.ui.move_to_class import MoveImageCommand
from resnet_app.ui.progress_row import ProgressRow
from resnet_app.ui.settings import Settings
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import THUMBNAIL_PX, EvaluateWorker, TaskRunner

RIGHT = QColor(46, 160, 67)  # the diagonal's heat: green, readable on light and dark bases
WRONG = QColor(230, 81, 0)  # off the diagonal: orange
CELL_PX = 52
NARROW_PX = 1100  # below this width the selected image goes under the lists


# --- the confusion matrix's heat ----------------------------------------------------------------------

class ConfusionDelegate(QStyledItemDelegate):
    """A cell's colour says what share of its true class landed there: green on the diagonal (right),
    orange elsewhere (wrong); mixed into the palette's base colour, so light and dark themes both work,
    with the text black or white, whichever reads better on the mix."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        share = float(index.data(ShareRole) or 0.0)
        hue = RIGHT if index.data(DiagonalRole) else WRONG
        base = option.palette.color(QPalette.ColorRole.Base)
        strength = 0.15 + 0.85 * share if share > 0 else 0.0
        fill = QColor.fromRgbF(*(b + (h - b) * strength for b, h in
                                 zip(base.getRgbF()[:3], hue.getRgbF()[:3], strict=True)))
        painter.save()
        painter.fillRect(option.rect, fill)
        if option.state & QStyle.StateFlag.State_Selected:
            pen = painter.pen()
            pen.setColor(option.palette.color(QPalette.ColorRole.Highlight))
            pen.setWidth(3)
            painter.setPen(pen)
            painter.drawRect(option.rect.adjusted(1, 1, -2, -2))
        luminance = 0.299 * fill.redF() + 0.587 * fill.greenF() + 0.114 * fill.blueF()
        painter.setPen(QColor("black") if luminance > 0.55 else QColor("white"))
        font = painter.font()
        font.setBold(share > 0)
        painter.setFont(font)
        painter.drawText(option.rect, Qt.AlignmentFlag.AlignCenter, index.data() or "")
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(CELL_PX, CELL_PX * 3 // 4)


# --- the view -------------------------------------------------------------------------------------------

class EvaluateView(QWidget):
    status_message = Signal(str)
    report_changed = Signal(object)  # EvalReport: after an evaluation, and after each move or undo
    files_moved = Signal(str)  # the dataset folder whose files were moved (its scan is out of date)

    def __init__(self, settings: Settings, runner: TaskRunner, parent=None) -> None:
        super().__init__(parent)
        self.settings, self.runner = settings, runner
        self.report: EvalReport | None = None
        self.classifier: Classifier | None = None
        self.data_root: Path | None = None  # the folder the shown report is of
        self.current_row: int | None = None  # index into report.rows of the selected image
        self.open_url = QDesktopServices.openUrl  # replaced in tests: nothing is launched there
        self.worker: EvaluateWorker | None = None
        self._worker_folder: Path | None = None
        self.undo_stack = QUndoStack(self)
        self.thumbnails = ThumbnailCache(runner, parent=self)
        self.per_class = PerClassModel(self)
        self.confusion = ConfusionMatrixModel(self)
        self.rows = EvalRowsModel(self.thumbnails, self)
        self.grid = ImageGridModel(self.thumbnails, self)
        self._build()
        self.model_edit.setText(settings.get("model/last"))
        self.folder_edit.setText(settings.get("train/data_folder"))

    # layout -------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("A model file (.safetensors or .pt)")
        self.model_edit.setAccessibleName("Model file")
        self.model_button = QPushButton("Choose…")
        self.model_button.clicked.connect(self.choose_model)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("A folder with one sub-folder of images per class")
        self.folder_edit.setAccessibleName("Labelled folder")
        self.folder_button = QPushButton("Choose…")
        self.folder_button.clicked.connect(self.choose_folder)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setDefault(True)
        self.evaluate_button.clicked.connect(self.start)
        inputs = QGridLayout()
        inputs.addWidget(QLabel("Model:"), 0, 0)
        inputs.addWidget(self.model_edit, 0, 1)
        inputs.addWidget(self.model_button, 0, 2)
        inputs.addWidget(QLabel("Labelled folder:"), 1, 0)
        inputs.addWidget(self.folder_edit, 1, 1)
        inputs.addWidget(self.folder_button, 1, 2)
        inputs.addWidget(self.evaluate_button, 0, 3, 2, 1)
        inputs.setColumnStretch(1, 1)

        self.progress_row = ProgressRow("%v of %m images", self.cancel)
        self.progress, self.cancel_button = self.progress_row.bar, self.progress_row.cancel_button

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # left: the confusion matrix and the per-class table
        self.matrix = QTableView()
        self.matrix.setObjectName("confusionMatrix")
        self.matrix.setAccessibleName("Confusion matrix: rows are true classes, columns predicted classes")
        self.matrix.setModel(self.confusion)
        self.matrix.setItemDelegate(ConfusionDelegate(self.matrix))
        self.matrix.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.matrix.setShowGrid(True)
        self.matrix.setMouseTracking(True)
        for header, size in ((self.matrix.horizontalHeader(), CELL_PX),
                             (self.matrix.verticalHeader(), CELL_PX * 3 // 4)):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
            header.setDefaultSectionSize(size)
        self.matrix.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        self.matrix.clicked.connect(self.show_cell)
        self.matrix.activated.connect(self.show_cell)
        self.per_class_table = QTableView()
        self.per_class_table.setModel(self.per_class)
        self.per_class_table.verticalHeader().hide()
        self.per_class_table.setAlternatingRowColors(True)
        self.per_class_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.per_class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.per_class_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        matrix_title = QLabel("<b>Confusion matrix</b> — rows: true class, columns: predicted.<br>"
                              "<small>Colour: share of the true class. Click a cell to see its images.</small>")
        matrix_title.setWordWrap(True)
        left_layout.addWidget(matrix_title)
        left_layout.addWidget(self.matrix, 3)
        left_layout.addWidget(QLabel("<b>Per class</b>"))
        left_layout.addWidget(self.per_class_table, 2)

        # middle: the images, most wrong first, and the grid of a cell
        self.wrong_table = QTableView()
        self.wrong_table.setObjectName("mostWrong")
        self.wrong_table.setAccessibleName("Images, most wrong first")
        self.wrong_table.setModel(self.rows)
        self.wrong_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.wrong_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.wrong_table.setAlternatingRowColors(True)
        self.wrong_table.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.wrong_table.setWordWrap(False)
        self.wrong_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "triang…0003.png": the number shows
        self.wrong_table.verticalHeader().hide()
        self.wrong_table.verticalHeader().setDefaultSectionSize(THUMBNAIL_PX + 6)
        header = self.wrong_table.horizontalHeader()
        header.setSectionResizeMode(EvalRowsModel.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(EvalRowsModel.THUMBNAIL, THUMBNAIL_PX + 10)
        header.setSectionResizeMode(EvalRowsModel.FILE, QHeaderView.ResizeMode.Stretch)
        for column in (EvalRowsModel.TRUE, EvalRowsModel.PREDICTED, EvalRowsModel.CONFIDENCE, EvalRowsModel.LOSS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.wrong_table.selectionModel().currentRowChanged.connect(self._wrong_row_changed)
        self.wrong_table.doubleClicked.connect(self.open_current)
        self.wrong_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.wrong_table.customContextMenuRequested.connect(self._wrong_context_menu)

        self.grid_view = QListView()
        self.grid_view.setObjectName("cellImages")
        self.grid_view.setAccessibleName("Images of the chosen cell")
        self.grid_view.setModel(self.grid)
        self.grid_view.setViewMode(QListView.ViewMode.IconMode)
        self.grid_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid_view.setMovement(QListView.Movement.Static)
        self.grid_view.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.grid_view.setGridSize(GRID_CELL)
        self.grid_view.setUniformItemSizes(True)
        self.grid_view.setWordWrap(True)
        self.grid_view.setSpacing(4)
        self.grid_view.selectionModel().currentRowChanged.connect(self._grid_row_changed)
        self.grid_view.doubleClicked.connect(self.open_current)
        self.grid_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid_view.customContextMenuRequested.connect(self._grid_context_menu)
        self.grid_title = QLabel("Click a cell of the confusion matrix to see its images here.")
        self.grid_title.setWordWrap(True)
        grid_page = QWidget()
        grid_layout = QVBoxLayout(grid_page)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addWidget(self.grid_title)
        grid_layout.addWidget(self.grid_view, 1)

        self.image_tabs = QTabWidget()
        self.image_tabs.addTab(self.wrong_table, "Most wrong first")
        self.image_tabs.addTab(grid_page, "Cell images")

        # the selected image's actions
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the image in your image viewer")
        self.open_button.clicked.connect(self.open_current)
        self.folder_show_button = QPushButton("Show in folder")
        self.folder_show_button.clicked.connect(self.show_current_in_folder)
        self.move_button = QPushButton("Move to class")  # its menu arrow drawn clear of the text
        self.move_button.setToolTip("The label is wrong: move the file to another class folder (undo with Ctrl+Z)")
        self.move_menu = QMenu("Move to class", self)
        self.move_menu.aboutToShow.connect(self._fill_move_menu)
        self.move_menu.triggered.connect(self._move_chosen)
        self.move_button.setMenu(self.move_menu)
        self.undo_action = self.undo_stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Undo))
        self.undo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.redo_action = self.undo_stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Redo))
        self.redo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)
        # Buttons of fixed text (the actions' text grows with the command's): what they undo is in the tooltip.
        self.undo_button = QPushButton("Undo move")
        self.undo_button.clicked.connect(self.undo_stack.undo)
        self.undo_stack.canUndoChanged.connect(self._update_undo)
        self.undo_stack.undoTextChanged.connect(self.undo_button.setToolTip)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.undo_stack.redo)
        self.undo_stack.canRedoChanged.connect(self._update_undo)
        self.undo_stack.redoTextChanged.connect(self.redo_button.setToolTip)
        self.undo_button.setEnabled(False)
        self.redo_button.setEnabled(False)
        actions = QHBoxLayout()
        for w in (self.open_button, self.folder_show_button, self.move_button):
            actions.addWidget(w)
        actions.addStretch(1)

        self.gradcam = GradCamPanel(self.runner, preview_px=224)
        self.image_pane = QWidget()  # the selected image: beside the lists, or under them when narrow
        right_layout = QVBoxLayout(self.image_pane)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(actions)
        right_layout.addWidget(self.gradcam, 1)

        self.lists = QSplitter(Qt.Orientation.Vertical)  # the lists, and the image pane when narrow
        self.lists.addWidget(self.image_tabs)
        self.lists.setChildrenCollapsible(False)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.lists)
        self.splitter.addWidget(self.image_pane)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([340, 540, 400])  # px at 1280 wide; the list's file names need the room
        self._narrow = False

        self.placeholder = QLabel("Choose a model and a labelled folder (one sub-folder of images per class), "
                                  "then Evaluate: you will see what the model gets right and wrong, image by image.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.splitter)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        layout = QVBoxLayout(self)
        layout.addLayout(inputs)
        layout.addWidget(self.progress_row)
        layout.addWidget(line)
        summary_row = QHBoxLayout()
        summary_row.addWidget(self.summary, 1)
        summary_row.addWidget(self.undo_button)
        summary_row.addWidget(self.redo_button)
        layout.addLayout(summary_row)
        layout.addWidget(self.stack, 1)
        self._update_actions()

    # narrow windows ---------------------------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange(self.width() < NARROW_PX)

    def _arrange(self, narrow: bool) -> None:
        """Three panes side by side need ~1100 px; below that the selected image goes under the lists,
        so the matrix shows every column and the list its True/Predicted/Confidence columns."""
        if narrow == self._narrow:
            return
        self._narrow = narrow
        if narrow:
            self.lists.addWidget(self.image_pane)  # moves it out of the side-by-side splitter
            room = max(self.lists.height(), self.height() // 2)
            self.lists.setSizes([room * 3 // 5, room * 2 // 5])
            self.splitter.setSizes([2 * self.width() // 5, 3 * self.width() // 5])
        else:
            self.splitter.addWidget(self.image_pane)
            self.splitter.setSizes([340, 540, 400])

    # inputs -------------------------------------------------------------------------------------------

    def choose_model(self) -> None:
        start = str(Path(self.model_edit.text()).parent) if self.model_edit.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Model to evaluate", start, MODEL_FILTER)
        if path:
            self.model_edit.setText(path)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled folder to evaluate on", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def set_model_path(self, path: str) -> None:
        self.model_edit.setText(str(path))

    def set_data_folder(self, folder: str) -> None:
        self.folder_edit.setText(str(folder))

    # evaluation ---------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def evaluate(self, model_path: str, folder: str) -> None:
        """Evaluate `model_path` on `folder` (the lead's "after training" entry point)."""
        self.set_model_path(model_path)
        self.set_data_folder(folder)
        self.start()

    def start(self) -> None:
        model, folder = self.model_edit.text().strip(), self.folder_edit.text().strip()
        if not model or not folder:
            show_error(self, "Evaluate", "Choose a model file and a labelled folder first.")
            return
        if self.busy:
            return
        self.worker = EvaluateWorker(folder, model_path=model)
        self._worker_folder = Path(folder)
        self.worker.model_loaded.connect(self._model_loaded)
        self.worker.progress.connect(self._progress)
        self.worker.report_ready.connect(self._report_ready)
        self.worker.cancelled.connect(self._cancelled)
        self.worker.failed.connect(self._failed)
        self.worker.finished.connect(self._done)
        self.progress.setRange(0, 0)
        self.progress_row.show()
        self.evaluate_button.setEnabled(False)
        self._update_actions()
        self.status_message.emit(f"Evaluating {Path(model).name} on {folder}…")
        self.runner.start(self.worker)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()

    def _model_loaded(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _report_ready(self, report: EvalReport) -> None:
        self.data_root = self._worker_folder
        self.gradcam.set_classifier(self.classifier)
        self.set_report(report)
        self.stack.setCurrentWidget(self.splitter)
        self.status_message.emit(f"Evaluated on {report.images} images: accuracy {report.accuracy:.1%}.")

    def _cancelled(self) -> None:
        self.status_message.emit("Evaluation cancelled.")

    def _failed(self, message: str) -> None:
        show_error(self, "Evaluation failed", message)

    def _done(self) -> None:
        self.worker = None
        self.progress_row.hide()
        self.evaluate_button.setEnabled(True)
        self._update_actions()

    # showing a report ---------------------------------------------------------------------------------

    def set_report(self, report: EvalReport, select: str | None = None) -> None:
        """Show `report`: the models refresh; the chosen cell stays chosen, and the selected image (or the
        file `select`) stays selected, where they are still in the report."""
        current_path = select or self._current_path()
        self.report = report
        scrolls = [(bar, bar.value()) for bar in (self.wrong_table.verticalScrollBar(),
                                                  self.grid_view.verticalScrollBar())]
        self.per_class.set_report(report)
        self.confusion.set_report(report)
        self._fit_matrix_columns()
        self.rows.set_report(report)
        cell = self.grid.cell
        self.grid.set_cell(report, cell if cell and self._cell_shown(cell) else None)
        self._show_grid_title()
        self._show_summary()
        self._select_path(current_path)
        for bar, value in scrolls:  # the lists stay where the user was
            bar.setValue(value)
        self.report_changed.emit(report)

    def _fit_matrix_columns(self) -> None:
        """Each class's column wide enough for its name in bold (the chosen column's header is bold: at
        a fixed width "triangle" lost its t), and never narrower than a cell."""
        header = self.matrix.horizontalHeader()
        bold = QFont(header.font())
        bold.setBold(True)
        metrics = QFontMetrics(bold)
        for column in range(self.confusion.columnCount()):
            name = str(self.confusion.headerData(column, Qt.Orientation.Horizontal) or "")
            header.resizeSection(column, max(CELL_PX, min(3 * CELL_PX, metrics.horizontalAdvance(name) + 14)))

    def _cell_shown(self, cell: tuple[int, int]) -> bool:
        try:
            self.confusion.index_of_cell(*cell)
        except ValueError:
            return False
        return True

    def _show_summary(self) -> None:
        report = self.report
        wrong = sum(1 for row in report.rows if not row.correct)
        parts = [f"<b>Accuracy {report.accuracy:.1%}</b> on {report.images} images "
                 f"({report.images - wrong} right, {wrong} wrong)"]
        if self.classifier is not None and self.data_root is not None:
            parts.append(f"model <b>{self.classifier.name}</b> on {self.data_root}")
        if report.unreadable:
            parts.append(f"{len(report.unreadable)} unreadable file{'s' if len(report.unreadable) != 1 else ''} "
                         "left out")
        self.summary.setText(" — ".join(parts))
        self.summary.setToolTip("\n".join(report.summary_lines()))

    def show_cell(self, index: QModelIndex) -> None:
        """Show the images of a confusion-matrix cell in the grid."""
        if self.report is None or not index.isValid():
            return
        self.grid.set_cell(self.report, self.confusion.cell_classes(index))
        self._show_grid_title()
        self.image_tabs.setCurrentIndex(1)
        # The preview follows the cell: its first image, or nothing (never the last cell's image).
        if self.grid.rowCount():
            self.grid_view.setCurrentIndex(self.grid.index(0, 0))
        else:
            self._set_current(None)

    def _show_grid_title(self) -> None:
        if self.grid.cell is None or self.report is None:
            self.grid_title.setText("Click a cell of the confusion matrix to see its images here.")
            return
        names = self.report.classes
        true_index, predicted_index = self.grid.cell
        n = self.grid.rowCount()
        verdict = "right" if true_index == predicted_index else "wrong"
        self.grid_title.setText(f"True <b>{names[true_index]}</b>, predicted <b>{names[predicted_index]}</b> "
                                f"({verdict}): {n} image{'s' if n != 1 else ''}")

    # the selected image -------------------------------------------------------------------------------

    def _wrong_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._set_current(current.data(RowRole) if current.isValid() else None)

    def _grid_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._set_current(current.data(RowRole) if current.isValid() else None)

    def _set_current(self, row_index: int | None) -> None:
        self.current_row = row_index
        self.gradcam.set_image(self._current_path())
        self._update_actions()

    def _current_path(self) -> str | None:
        if self.report is None or self.current_row is None or self.current_row >= len(self.report.rows):
            return None
        return self.report.rows[self.current_row].path

    def _select_path(self, path: str | None) -> None:
        """After a refresh, select the image at `path` again in the list shown (if it is there)."""
        row_index = None
        if path is not None and self.report is not None:
            row_index = next((i for i, row in enumerate(self.report.rows) if row.path == path), None)
        for view, model in ((self.wrong_table, self.rows), (self.grid_view, self.grid)):
            indices = model.row_indices()
            if row_index in indices:
                view.setCurrentIndex(model.index(indices.index(row_index), 0))
        self._set_current(row_index)

    def select_row(self, row_index: int) -> None:
        """Make report.rows[row_index] the selected image (as a click in the list would)."""
        indices = self.rows.row_indices()
        self.image_tabs.setCurrentIndex(0)
        self.wrong_table.setCurrentIndex(self.rows.index(indices.index(row_index), EvalRowsModel.FILE))

    def _update_actions(self) -> None:
        has_image = self._current_path() is not None
        for w in (self.open_button, self.folder_show_button):
            w.setEnabled(has_image)
        self.move_button.setEnabled(has_image and not self.busy and self.data_root is not None)
        self._update_undo()

    def _update_undo(self, *_signal_args) -> None:
        """Undo and Redo move files: never while an evaluation reads them (its figures would be of
        files that moved under it)."""
        idle = not self.busy
        for action, button, possible in ((self.undo_action, self.undo_button, self.undo_stack.canUndo()),
                                         (self.redo_action, self.redo_button, self.undo_stack.canRedo())):
            action.setEnabled(idle and possible)
            button.setEnabled(idle and possible)

    def open_current(self, *_signal_args) -> None:
        path = self._current_path()
        if path:
            self.open_url(QUrl.fromLocalFile(path))

    def show_current_in_folder(self) -> None:
        path = self._current_path()
        if path:
            self.open_url(QUrl.fromLocalFile(str(Path(path).parent)))

    def _fill_move_menu(self, menu: QMenu | None = None) -> None:
        menu = menu or self.move_menu
        menu.clear()
        if self.report is None or self.current_row is None:
            return
        row = self.report.rows[self.current_row]
        for i, name in enumerate(self.report.classes):
            action = menu.addAction(name)
            action.setData(i)
            action.setEnabled(i != row.true_index)
            if i == row.predicted_index and i != row.true_index:
                action.setText(f"{name}  (the model's answer)")

    def _move_chosen(self, action) -> None:
        if action.data() is not None:
            self.move_current_to(int(action.data()))

    def move_current_to(self, class_index: int) -> None:
        """Move the selected image into the class folder `class_index` (undoable)."""
        if self.report is None or self.current_row is None or self.data_root is None or self.busy:
            return
        row = self.report.rows[self.current_row]
        if class_index == row.true_index:
            return
        self.undo_stack.push(MoveImageCommand(self, row.path, row.true_index, class_index, self.data_root))

    def _context_menu(self, view: QAbstractItemView, point) -> None:
        if self._current_path() is None:
            return
        menu = QMenu(self)
        menu.addAction("Open", self.open_current)
        menu.addAction("Show in folder", self.show_current_in_folder)
        move = menu.addMenu("Move to class")
        self._fill_move_menu(move)
        move.setEnabled(self.move_button.isEnabled())
        move.triggered.connect(self._move_chosen)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(view.viewport().mapToGlobal(point))

    def _wrong_context_menu(self, point) -> None:
        self._context_menu(self.wrong_table, point)

    def _grid_context_menu(self, point) -> None:
        self._context_menu(self.grid_view, point)

    # moves (called by MoveImageCommand) ---------------------------------------------------------------

    def file_moved(self, old: str, new: str, true_index: int, advance: bool = False) -> None:
        """A file went to another class folder (or came back): its row follows, and the figures.

        `advance` (a move, not an undo): the image after the moved one in the list on show is selected
        next, as the user works down the list; an undo selects the file it brought back.
        """
        self.thumbnails.rename(old, new)
        self.files_moved.emit(str(self.data_root) if self.data_root else str(Path(new).parent.parent))
        if self.report is None:
            return
        rows = list(self.report.rows)
        for i, row in enumerate(rows):
            if row.path == old:
                rows[i] = replace(row, path=new, true_index=true_index)
                break
        else:
            return  # a file of an earlier evaluation: moved, but not in this report
        selected = self._current_path()
        if not advance:
            select = new
        elif selected == old:
            select = self._neighbour_in_list(old) or new
        else:
            select = selected
        self.set_report(report_with_rows(self.report, rows), select=select)
        self.status_message.emit(f"Moved {Path(new).name} to {self.report.classes[true_index]}.")

    def _neighbour_in_list(self, path: str) -> str | None:
        """The image after `path` in the list on show (before it, for the last one)."""
        model = self.rows if self.image_tabs.currentIndex() == 0 else self.grid
        paths = model.paths()
        if path not in paths or len(paths) < 2:
            return None
        position = paths.index(path)
        return paths[position + 1] if position + 1 < len(paths) else paths[position - 1]

    def move_failed(self, message: str) -> None:
        show_error(self, "Move failed", message)
