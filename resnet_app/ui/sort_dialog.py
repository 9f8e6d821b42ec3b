"""File > Sort a folder with this model…: a small dialog over core.sorting.sort_folder and undo_sort.

The dialog sorts with the model loaded in the Classify tab: the user picks a source folder, a destination
(by default `<source>-sorted` beside it), copy or move, and a minimum confidence (by default the model's
own unsure threshold). The sort runs in a SortWorker started by the window's TaskRunner, so the GUI stays
responsive and closing the window waits for it; Cancel (or closing the dialog) asks it to stop after the
image in hand, and the engine's log still lists everything placed. Undo runs in an UndoWorker the same way.
"Review the unsure…" hands the sort's `_unsure` folder to the window's Review tab (`review_unsure`, when
the window has one), where each image is labelled into the user's data set.

Added to a menu with `add_sort_action(menu, window)`; the window needs `runner` (a TaskRunner) and
`classify_tab` (whose `classifier` sorts, and whose `model_changed` signal, when it has one, keeps the
dialog's model line current).
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
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
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.use.sorting import (
    UNREADABLE_FOLDER,
    UNSURE_FOLDER,
    SortSummary,
    UndoSummary,
    sort_folder,
    undo_sort,
)
from resnet_app.ui.menu_actions import add_window_action, bring_up
from resnet_app.ui.workers import TaskRunner, ThrottledProgress, Worker

NO_MODEL_TEXT = ("No model is loaded. Load a model in the Classify tab (File > Open model…) or train one "
                 "first; then come back here to sort.")
MODEL_OWN_TEXT = "model's own"


def default_dest(source: str) -> str:
    """`<source>-sorted` beside the source folder; "" for no source (or a root, which has no name)."""
    path = Path(source.strip())
    return str(path.with_name(path.name + "-sorted")) if source.strip() and path.name else ""


class SortWorker(Worker):
    """Runs sort_folder in its thread; stopping is a request the engine checks after each image."""

    progress = Signal(int, int)  # images done, images in all
    sorted_folder = Signal(object)  # the SortSummary (finished, stopped, or ended by a write error)

    def __init__(self, classifier, source: str, dest: str, move: bool, min_confidence: float | None) -> None:
        super().__init__()
        self.classifier, self.source, self.dest = classifier, source, dest
        self.move, self.min_confidence = move, min_confidence

    def work(self) -> None:
        # Throttled: a fast model sorts hundreds of small images a second; the GUI needs ~10 updates.
        summary = sort_folder(self.classifier, self.source, self.dest, move=self.move,
                              min_confidence=self.min_confidence, progress=ThrottledProgress(self.progress.emit),
                              should_stop=lambda: self.stop_requested)
        self.sorted_folder.emit(summary)


class UndoWorker(Worker):
    """Runs undo_sort on a sort's log in its thread (thousands of files can take a while)."""

    progress = Signal(int, int)  # log rows done, rows in all
    undone = Signal(object)  # the UndoSummary

    def __init__(self, log_path: str) -> None:
        super().__init__()
        self.log_path = log_path

    def work(self) -> None:
        # Throttled: undo puts back thousands of files a second, one progress call per log row.
        self.undone.emit(undo_sort(self.log_path, progress=ThrottledProgress(self.progress.emit)))


class SortDialog(QDialog):
    """Source, destination, copy/move and minimum confidence in; a progress bar, the result and Undo out."""

    sort_finished = Signal(object)  # the SortSummary, or None when the sort could not start or failed
    review_requested = Signal(str)  # "Review the unsure…": the sort's _unsure folder
    undo_finished = Signal(object)  # the UndoSummary, or None when the undo failed

    def __init__(self, parent: QWidget | None, runner: TaskRunner, classifier=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sort a folder")
        self.setObjectName("sortDialog")
        self.runner = runner
        self.classifier = None
        self.worker: SortWorker | UndoWorker | None = None
        self.last_summary: SortSummary | None = None
        self.last_undo: UndoSummary | None = None
        self._auto_dest = ""  # the destination we filled in ourselves: it follows the source until edited
        self._build()
        self.set_classifier(classifier)
        self.resize(600, self.sizeHint().height())

    # layout ----------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_label = QLabel()
        self.model_label.setObjectName("sortModel")
        self.model_label.setWordWrap(True)
        self.no_model_label = QLabel(NO_MODEL_TEXT)
        self.no_model_label.setObjectName("sortNoModel")
        self.no_model_label.setWordWrap(True)
        self.source_edit = self._line_edit("Source folder", "The folder of images to sort (searched with its "
                                                            "subfolders)")
        self.dest_edit = self._line_edit("Destination folder", "Where the class folders, _unsure, _unreadable "
                                                               "and sort-log.jsonl go")
        self.source_edit.textChanged.connect(self._follow_source)
        self.dest_edit.textChanged.connect(self._update_buttons)
        self._build_mode()
        self._build_confidence()
        self._build_result()

        form = QFormLayout()
        form.addRow("Model:", self.model_label)
        form.addRow(self._buddy("S&ource folder:", self.source_edit),
                    self._with_button(self.source_edit, "Choose…", self._choose_source, "Choose the source folder"))
        form.addRow(self._buddy("&Destination:", self.dest_edit),
                    self._with_button(self.dest_edit, "Choose…", self._choose_dest, "Choose the destination folder"))
        form.addRow("Images:", self._mode_row())
        form.addRow(self._buddy("Minimum co&nfidence:", self.confidence_spin), self.confidence_spin)
        layout = QVBoxLayout(self)
        layout.addWidget(self.no_model_label)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.result_label)
        layout.addWidget(self.buttons)

    @staticmethod
    def _line_edit(name: str, tip: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setAccessibleName(name)
        edit.setToolTip(tip)
        edit.setClearButtonEnabled(True)
        return edit

    @staticmethod
    def _buddy(text: str, widget: QWidget) -> QLabel:
        # The label's mnemonic (Alt+O, Alt+D, Alt+N) focuses the input itself, not the row around it.
        label = QLabel(text)
        label.setBuddy(widget)
        return label

    @staticmethod
    def _with_button(edit: QLineEdit, text: str, slot, accessible: str) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit)
        button = QPushButton(text)
        button.setAccessibleName(accessible)
        button.setAutoDefault(False)  # Enter in a field starts the sort, not a file dialog
        button.clicked.connect(slot)
        box.addWidget(button)
        return row

    def _build_mode(self) -> None:
        self.copy_radio = QRadioButton("Co&py")
        self.copy_radio.setAccessibleName("Copy the images")
        self.copy_radio.setToolTip("The originals stay where they are; copies go into the destination")
        self.move_radio = QRadioButton("&Move")
        self.move_radio.setAccessibleName("Move the images")
        self.move_radio.setToolTip("The originals are moved into the destination; Undo puts them back where "
                                   "they were (from the destination's sort-log.jsonl)")
        self.copy_radio.setChecked(True)  # the safe default: nothing leaves the source
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.copy_radio)
        self.mode_group.addButton(self.move_radio)

    def _mode_row(self) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.copy_radio)
        box.addWidget(self.move_radio)
        box.addStretch(1)
        return row

    def _build_confidence(self) -> None:
        self.confidence_spin = QSpinBox()
        self.confidence_spin.setRange(0, 100)
        self.confidence_spin.setSuffix(" %")
        self.confidence_spin.setSpecialValueText(MODEL_OWN_TEXT)  # 0: min_confidence=None
        self.confidence_spin.setAccessibleName("Minimum confidence in percent")
        self.confidence_spin.setValue(0)

    def _build_result(self) -> None:
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_bar.setFormat("%v of %m images")
        self.result_label = QLabel()
        self.result_label.setObjectName("sortResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox()
        role = QDialogButtonBox.ButtonRole
        self.sort_button = self._add_button("&Sort", role.AcceptRole, "sortButton", self.start_sort)
        self.cancel_button = self._add_button("C&ancel", role.RejectRole, "sortCancel", self.cancel)
        self.show_button = self._add_button("Show &folder", role.ActionRole, "sortShowFolder", self.show_folder)
        self.undo_button = self._add_button("&Undo", role.ActionRole, "sortUndo", self.start_undo)
        self.review_button = self._add_button("&Review the unsure…", role.ActionRole, "sortReview", self.review)
        self.close_button = self._add_button("Close", role.RejectRole, "sortClose", self.close)
        self.sort_button.setDefault(True)
        self.show_button.setToolTip("Open the destination folder in the file manager")
        self.undo_button.setToolTip("Put every moved file back where it was, for every sort logged in this "
                                    "destination (copies stay; their originals never moved)")
        self.review_button.setToolTip(f"Label the images the model was unsure of ({UNSURE_FOLDER}) in the Review "
                                      "tab, least sure first; each is moved into its class folder of your data set")
        for button in (self.cancel_button, self.show_button, self.undo_button, self.review_button):
            button.setEnabled(False)

    def _add_button(self, text: str, role, name: str, slot) -> QPushButton:
        button = self.buttons.addButton(text, role)
        button.setObjectName(name)
        button.setAccessibleName(text.replace("&", ""))
        button.clicked.connect(slot)
        return button

    # choices ---------------------------------------------------------------------------------------

    def set_classifier(self, classifier) -> None:
        """The model that will sort (None: none loaded); ignored while a sort or undo runs."""
        if self.running:
            return
        self.classifier = classifier
        self.no_model_label.setVisible(classifier is None)
        if classifier is None:
            self.model_label.setText("none loaded")
            self.model_label.setToolTip("")
        else:
            self.model_label.setText(f"<b>{escape(classifier.name)}</b> — {len(classifier.class_names)} classes"
                                     f"<br><small>from {escape(str(classifier.source))}</small>")
            self.model_label.setToolTip(", ".join(classifier.class_names[:50]))
        self._describe_threshold()
        self._update_buttons()

    def _describe_threshold(self) -> None:
        own = getattr(self.classifier, "unsure_below", None)
        own_text = f" (now {own:.0%})" if own else " (none: every image goes to its class)" if own == 0 else ""
        self.confidence_spin.setToolTip(
            f"Images whose top class is under this confidence go to {UNSURE_FOLDER}; unreadable ones go to "
            f"{UNREADABLE_FOLDER}. At 0 the {MODEL_OWN_TEXT} unsure threshold is used{own_text}.")

    @property
    def min_confidence(self) -> float | None:
        value = self.confidence_spin.value()
        return None if value == 0 else value / 100

    @property
    def move(self) -> bool:
        return self.move_radio.isChecked()

    def _follow_source(self, text: str) -> None:
        # The destination follows the source (`<source>-sorted`) until the user picks or types another.
        dest = self.dest_edit.text().strip()
        if not dest or dest == self._auto_dest:
            self._auto_dest = default_dest(text)
            self.dest_edit.setText(self._auto_dest)
        self._update_buttons()

    def _choose_source(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder to sort", self.source_edit.text())
        if path:
            self.source_edit.setText(path)

    def _choose_dest(self) -> None:
        start = self.dest_edit.text() or self.source_edit.text()
        path = QFileDialog.getExistingDirectory(self, "Sort into", start)
        if path:
            self.dest_edit.setText(path)

    def _update_buttons(self, *_: Any) -> None:
        idle = not self.running
        ready = self.classifier is not None and bool(self.source_edit.text().strip() and self.dest_edit.text().strip())
        self.sort_button.setEnabled(idle and ready)
        self.cancel_button.setEnabled(isinstance(self.worker, SortWorker))
        for widget in (self.source_edit, self.dest_edit, self.copy_radio, self.move_radio, self.confidence_spin):
            widget.setEnabled(idle)
        summary = self.last_summary
        self.show_button.setEnabled(summary is not None and summary.dest.is_dir())
        self.undo_button.setEnabled(idle and self._can_undo())
        self.review_button.setEnabled(idle and self.unsure_folder() is not None)

    def unsure_folder(self) -> Path | None:
        """The last sort's _unsure folder, when it holds images to review."""
        summary = self.last_summary
        folder = summary.dest / UNSURE_FOLDER if summary is not None else None
        return folder if folder is not None and summary.unsure and folder.is_dir() else None

    def review(self) -> None:
        folder = self.unsure_folder()
        if folder is not None and not self.running:
            self.review_requested.emit(str(folder))
            self.close()

    def _can_undo(self) -> bool:
        summary = self.last_summary
        return summary is not None and self.last_undo is None and summary.done > 0 and summary.log_path.is_file()

    # the sort --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A sort or an undo is in progress."""
        return self.worker is not None

    def start_sort(self) -> None:
        if self.running or self.classifier is None:
            return
        source, dest = self.source_edit.text().strip(), self.dest_edit.text().strip()
        if not source or not dest:
            return
        worker = SortWorker(self.classifier, source, dest, self.move, self.min_confidence)
        worker.progress.connect(self._progress)
        worker.sorted_folder.connect(self._sorted)
        worker.failed.connect(self._sort_failed)
        self.last_summary, self.last_undo = None, None
        self._start(worker, "Sorting…")

    def start_undo(self) -> None:
        if self.running or not self._can_undo():
            return
        worker = UndoWorker(str(self.last_summary.log_path))
        worker.progress.connect(self._undo_progress)
        worker.undone.connect(self._undone)
        worker.failed.connect(self._undo_failed)
        self._start(worker, "Putting the moved files back…")

    def _start(self, worker: SortWorker | UndoWorker, text: str) -> None:
        worker.finished.connect(self._worker_finished)
        self.worker = worker
        self.progress_bar.setRange(0, 0)  # busy until the first image is done
        self.progress_bar.setVisible(True)
        self._show_result(text)
        self._update_buttons()
        self.runner.start(worker)

    def cancel(self) -> None:
        """Ask the sort to stop after the image in hand; what was placed stays logged (and undoable)."""
        if isinstance(self.worker, SortWorker):
            self.worker.request_stop()
            self.cancel_button.setEnabled(False)
            self._show_result("Stopping after this image…")

    def _progress(self, done: int, total: int) -> None:
        self.progress_bar.setFormat("%v of %m images")
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)

    def _undo_progress(self, done: int, total: int) -> None:
        self.progress_bar.setFormat("%v of %m files")
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)

    def _sorted(self, summary: SortSummary) -> None:
        self.last_summary = summary
        self._progress(summary.done, summary.total)
        line = summary.summary_line()
        text = "\n".join([line[:1].upper() + line[1:], *summary.detail_lines()])
        self._show_result(text, error=bool(summary.error))
        self.sort_finished.emit(summary)

    def _sort_failed(self, message: str) -> None:
        self.progress_bar.setVisible(False)
        self._show_result(f"Could not sort: {message}", error=True)
        self.sort_finished.emit(None)

    def _undone(self, summary: UndoSummary) -> None:
        self.last_undo = summary
        line = summary.summary_line()
        problems = [f"{p['path']}: {p['problem']}" for p in summary.problems]
        self._show_result("\n".join([line[:1].upper() + line[1:], *problems]), error=bool(problems))
        self.undo_finished.emit(summary)

    def _undo_failed(self, message: str) -> None:
        self.progress_bar.setVisible(False)
        self._show_result(f"Could not undo: {message}", error=True)
        self.undo_finished.emit(None)

    def _worker_finished(self) -> None:
        self.worker = None
        self._update_buttons()

    def _show_result(self, text: str, error: bool = False) -> None:
        self.result_label.setStyleSheet("color: #b00020;" if error else "")
        self.result_label.setText(text)

    def show_folder(self) -> None:
        if self.last_summary is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.last_summary.dest)))

    # closing ---------------------------------------------------------------------------------------

    def _stop_sort(self) -> None:
        # An undo is left to finish: stopping it half-way would leave files on both sides for no gain.
        if isinstance(self.worker, SortWorker):
            self.worker.request_stop()

    def reject(self) -> None:  # Escape
        self._stop_sort()
        super().reject()

    def closeEvent(self, event) -> None:
        self._stop_sort()
        super().closeEvent(event)


class SortAction(QAction):
    """"Sort a folder with this model…": opens the (one) sort dialog with the Classify tab's model."""

    def __init__(self, menu: QMenu, window: QObject) -> None:
        super().__init__("&Sort a folder with this model…", menu)
        self.window_ = window
        self.dialog: SortDialog | None = None
        self.setObjectName("sortFolder")
        self.setStatusTip("Copy or move a folder's photos into one folder per class with the loaded model; "
                          "a move can be undone")
        self.triggered.connect(self.open_dialog)
        # Follow the Classify tab's model while the dialog is open (the tab's signal, when it has one).
        changed = getattr(getattr(window, "classify_tab", None), "model_changed", None)
        if changed is not None:
            changed.connect(self._model_changed)

    def current_classifier(self):
        """The model loaded in the Classify tab, or None."""
        return getattr(getattr(self.window_, "classify_tab", None), "classifier", None)

    def _model_changed(self, *_: Any) -> None:
        if self.dialog is not None:
            self.dialog.set_classifier(self.current_classifier())

    def open_dialog(self) -> SortDialog:
        if self.dialog is None:
            runner = getattr(self.window_, "runner", None) or TaskRunner(self)
            self.dialog = SortDialog(self.window_ if isinstance(self.window_, QWidget) else None, runner)
            review = getattr(self.window_, "review_unsure", None)  # the window's Review tab, when it has one
            if review is not None:
                self.dialog.review_requested.connect(review)
            else:
                self.dialog.review_button.hide()
        self.dialog.set_classifier(self.current_classifier())
        bring_up(self.dialog)
        return self.dialog


def add_sort_action(menu: QMenu, window: QObject) -> SortAction:
    """Add "Sort a folder with this model…" at the end of `menu`; always enabled (the dialog says when no
    model is loaded). The window also holds the action (`window.addAction`) when it is a widget."""
    return add_window_action(menu, window, SortAction(menu, window))
