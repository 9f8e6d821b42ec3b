"""The Review tab: label a folder's images into a data set, the ones the model is least sure of first.

Choose a model, a folder of unlabelled images and the data set folder to label into; Rank orders the
images in a RankWorker (progress, Cancel). Then one image at a time, large, with the model's top 3:
keys 1-9 put it in that class, 0 or S skips it, N makes a new class from it, Ctrl+Z undoes. Every label
goes through core.use.labelling, logged in the data set before the file is placed, and the undo stack is
rebuilt from that log whenever the images are ranked, so labels of an earlier session (or one cut short
by a crash) show as done and can still be undone. Retrain asks the Train tab to train on the data set;
when that run ends the images are ranked again with its model, which "Open in Classify" offers there.

Labelling one file (a link and an unlink, or a copy of one photo, and an fsync of the log) runs on the
GUI thread, as Evaluate's move to class does; loading the model, ranking and training run in workers.
"""
from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.labelling import LabelAction, LabelError, LabelLog, classes_offered
from resnet_app.core.use.review import TOP, ReviewItem
from resnet_app.core.use.sort_log import find_log
from resnet_app.core.use.sort_names import UNSURE_FOLDER, class_folder_name, folder_key
from resnet_app.ui.classify_tab import MODEL_FILTER
from resnet_app.ui.gradcam_panel import GradCamPanel
from resnet_app.ui.messages import ask_text, show_error
from resnet_app.ui.progress_row import ProgressRow
from resnet_app.ui.review_session import LabelCommand, RankWorker, ReviewQueue, SkipCommand
from resnet_app.ui.settings import Settings
from resnet_app.ui.workers import TaskRunner

KEYED_CLASSES = 9  # keys 1-9
PLACEHOLDER = ("Choose a model, a folder of images that have no label yet, and the data set folder to label "
               "them into (one sub-folder per class), then Rank: the images the model is least sure of come "
               "first, the ones worth labelling most. Press a class's number to label an image, 0 or S to skip "
               "it, N for a new class, Ctrl+Z to undo. Then Retrain, and the rest is ranked again.")


def is_sort_unsure(folder: str | Path) -> bool:
    """A sort's `_unsure` folder (a sort log beside it): its files are the sort's, so labels move them."""
    folder = Path(folder)
    return folder.name == UNSURE_FOLDER and find_log(folder.parent) is not None


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class ReviewView(QWidget):
    status_message = Signal(str)
    retrain_requested = Signal(str)  # the data set folder: the window asks the Train tab to train on it
    model_ready = Signal(str)  # "Open in Classify": a model file
    files_labelled = Signal(str)  # the data set folder whose files changed (its scan is out of date)

    def __init__(self, settings: Settings, runner: TaskRunner, parent=None) -> None:
        super().__init__(parent)
        self.settings, self.runner = settings, runner
        # The window's loaded model, reused when it is the one chosen (no second copy in memory).
        self.shared_classifier: Callable[[], Classifier | None] = lambda: None
        self.classifier: Classifier | None = None
        self.log: LabelLog | None = None
        self.queue: ReviewQueue | None = None
        self.classes: list[str] = []
        self.review_folder: Path | None = None
        self.data_root: Path | None = None
        self.move = False  # labels move the files (a sort's _unsure) instead of copying them
        self.worker: RankWorker | None = None
        self.retraining = False
        self.retrained_model: str | None = None
        self._auto_model = ""  # the model filled in for the user: it follows the window's until edited
        self._new_class_for: Path | None = None
        self._pending: tuple[LabelLog, Path, Path, bool] | None = None  # a ranking's folders, until it arrives
        self.undo_stack = QUndoStack(self)
        self._build()
        self.images_edit.setText(settings.get("review/images_folder"))
        self.move_box.setChecked(settings.get("review/move"))
        self.data_edit.setText(settings.get("review/data_folder") or settings.get("train/data_folder"))
        self._update_actions()

    # layout -------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_edit = self._edit("Model file", "A model file (.safetensors or .pt)")
        self.images_edit = self._edit("Images to review", "A folder of images with no label yet (searched with "
                                                          "its sub-folders), e.g. a sort's _unsure folder")
        self.data_edit = self._edit("Data set folder", "The data set to label into: one sub-folder per class")
        self.move_box = QCheckBox("Move the images into the data set (else copy them)")
        self.move_box.setToolTip("A sort's _unsure folder holds the sort's own copies (or moved files): labelling "
                                 "moves them into their class. Any other folder is copied from and left as it "
                                 "is. Undo puts a moved image back, or deletes the copy.")
        self.rank_button = QPushButton("Rank")
        self.rank_button.setToolTip("Order the images least sure first (the model's top two closest)")
        self.rank_button.setDefault(True)
        self.rank_button.clicked.connect(self.start)
        inputs = QGridLayout()
        for row, (text, edit, slot) in enumerate((("Model:", self.model_edit, self.choose_model),
                                                  ("Images to review:", self.images_edit, self.choose_images),
                                                  ("Label into:", self.data_edit, self.choose_data))):
            inputs.addWidget(QLabel(text), row, 0)
            inputs.addWidget(edit, row, 1)
            button = QPushButton("Choose…")
            button.setAccessibleName(f"Choose the {edit.accessibleName().lower()}")
            button.setAutoDefault(False)
            button.clicked.connect(slot)
            inputs.addWidget(button, row, 2)
        inputs.addWidget(self.move_box, 3, 1)
        inputs.addWidget(self.rank_button, 0, 3, 3, 1)
        inputs.setColumnStretch(1, 1)
        self.progress_row = ProgressRow("%v of %m images ranked", self.cancel)
        self.progress, self.cancel_button = self.progress_row.bar, self.progress_row.cancel_button

        self.preview = GradCamPanel(self.runner, preview_px=420)
        self.placeholder = QLabel(PLACEHOLDER)
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.preview)
        self.splitter.addWidget(self._build_side())
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.stack.addWidget(self.splitter)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        layout = QVBoxLayout(self)
        layout.addLayout(inputs)
        layout.addWidget(self.progress_row)
        layout.addWidget(line)
        layout.addWidget(self.stack, 1)
        self._build_keys()

    def _edit(self, name: str, placeholder: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setAccessibleName(name)
        edit.setPlaceholderText(placeholder)
        edit.textChanged.connect(self._update_actions)
        return edit

    def _build_side(self) -> QWidget:
        self.counter = QLabel()
        self.counter.setObjectName("reviewCounter")
        font = self.counter.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.counter.setFont(font)
        self.file_label = QLabel()
        self.file_label.setWordWrap(True)
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.top_title = QLabel("<b>The model says</b> (calibrated probabilities):")
        self.top_title.setWordWrap(True)
        self.top_bars: list[QProgressBar] = []
        top_box = QVBoxLayout()
        top_box.addWidget(self.top_title)
        for _ in range(TOP):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            top_box.addWidget(bar)
            self.top_bars.append(bar)
        self.class_list = QListWidget()
        self.class_list.setObjectName("reviewClasses")
        self.class_list.setAccessibleName("Classes: press a class's number, or double-click it, to label the image")
        self.class_list.itemActivated.connect(self._class_activated)
        self.skip_button = QPushButton("Skip (0 or S)")
        self.skip_button.clicked.connect(self.skip_current)
        self.new_class_button = QPushButton("New class… (N)")
        self.new_class_button.clicked.connect(self.new_class)
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo_stack.undo)
        self.undo_stack.undoTextChanged.connect(self.undo_button.setToolTip)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.undo_stack.redo)
        self.undo_stack.redoTextChanged.connect(self.redo_button.setToolTip)
        self.undo_stack.indexChanged.connect(self._update_actions)
        buttons = QGridLayout()
        buttons.addWidget(self.skip_button, 0, 0)
        buttons.addWidget(self.new_class_button, 0, 1)
        buttons.addWidget(self.undo_button, 1, 0)
        buttons.addWidget(self.redo_button, 1, 1)
        self.retrain_button = QPushButton("Retrain on the data set")
        self.retrain_button.setToolTip("Train in the Train tab (with its settings: quick or full) on the data set "
                                       "folder; when the run ends, the images left are ranked with the new model")
        self.retrain_button.clicked.connect(self.retrain)
        self.classify_button = QPushButton("Open in Classify")
        self.classify_button.setToolTip("Use the retrained model in the Classify tab")
        self.classify_button.clicked.connect(self.open_in_classify)
        retrain_row = QHBoxLayout()
        retrain_row.addWidget(self.retrain_button)
        retrain_row.addWidget(self.classify_button)
        self.retrain_label = QLabel()
        self.retrain_label.setWordWrap(True)

        side = QWidget()
        column = QVBoxLayout(side)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.counter)
        column.addWidget(self.file_label)
        column.addLayout(top_box)
        column.addWidget(QLabel("<b>Classes</b> — press a class's number to label the image:"))
        column.addWidget(self.class_list, 1)
        column.addLayout(buttons)
        column.addLayout(retrain_row)
        column.addWidget(self.retrain_label)
        return side

    def _build_keys(self) -> None:
        """1-9, 0, S, N and Ctrl+Z while the focus is in this tab (typing in a field still types)."""
        self.class_actions: list[QAction] = []
        for n in range(1, KEYED_CLASSES + 1):
            action = self._key_action(f"Label as class {n}", str(n), self._class_key)
            action.setData(n)
            self.class_actions.append(action)
        self.skip_action = self._key_action("Skip", "0", self.skip_current)
        self.skip_action.setShortcuts([QKeySequence("0"), QKeySequence("S")])
        self.new_class_action = self._key_action("New class", "N", self.new_class)
        self.undo_action = self.undo_stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Undo))
        self.undo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.redo_action = self.undo_stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Redo))
        self.redo_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)

    def _key_action(self, text: str, key: str, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def showEvent(self, event) -> None:
        """Shown (its tab chosen): the keys work at once, without a click in the tab first."""
        super().showEvent(event)
        self._focus_keys()

    def _focus_keys(self) -> None:
        """The focus on the class list (the keys are the tab's shortcuts: they need the focus in the tab,
        and not in a field, where a digit is typed)."""
        if self.queue is not None:
            self.class_list.setFocus()

    # inputs -------------------------------------------------------------------------------------------

    def choose_model(self) -> None:
        start = str(Path(self.model_edit.text()).parent) if self.model_edit.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Model to rank with", start, MODEL_FILTER)
        if path:
            self.model_edit.setText(path)

    def choose_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Images to review", self.images_edit.text())
        if folder:
            self.set_images_folder(folder)

    def choose_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data set to label into", self.data_edit.text())
        if folder:
            self.data_edit.setText(folder)

    def set_default_model(self, path: str) -> None:
        """The window's model (Classify's, or the latest run's): filled in unless the user chose another."""
        current = self.model_edit.text().strip()
        if path and (not current or current == self._auto_model):
            self._auto_model = str(path)
            self.model_edit.setText(str(path))

    def set_default_data(self, folder: str) -> None:
        if folder and not self.data_edit.text().strip():
            self.data_edit.setText(str(folder))

    def set_images_folder(self, folder: str | Path, move: bool | None = None) -> None:
        """The folder to review; a sort's _unsure folder is moved from (unless `move` says otherwise)."""
        self.images_edit.setText(str(folder))
        self.move_box.setChecked(is_sort_unsure(folder) if move is None else move)

    def review_unsure(self, folder: str | Path, model: str | None = None) -> None:
        """The Sort dialog's "Review the unsure…": rank a sort's _unsure folder (moving from it)."""
        if model:
            self.model_edit.setText(str(model))
        self.set_images_folder(folder, move=True)
        if self.data_edit.text().strip():
            self.start()
        else:
            self.data_edit.setFocus()
            self.status_message.emit("Choose the data set to label the unsure images into, then Rank.")

    # ranking ------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def start(self) -> None:
        model = self.model_edit.text().strip()
        images, data = self.images_edit.text().strip(), self.data_edit.text().strip()
        if not (model and images and data):
            show_error(self, "Review", "Choose a model, a folder of images to review and a data set folder first.")
            return
        if self.busy:
            return
        folder, root = Path(images).expanduser().absolute(), Path(data).expanduser().absolute()
        problem = self._folders_problem(folder, root)
        if problem:
            show_error(self, "Review", problem)
            return
        try:
            log = LabelLog(root)  # finishes what a crash left half-done, before anything is shown
        except (LabelError, OSError) as exc:
            show_error(self, "Review", str(exc))
            return
        # Taken on when the ranking arrives: until then (and after a cancel) the images on show are
        # labelled as they were chosen.
        self._pending = (log, folder, root, self.move_box.isChecked())
        self.settings.set("review/images_folder", str(folder))
        self.settings.set("review/data_folder", str(root))
        self.settings.set("review/move", self.move_box.isChecked())
        shared = self.shared_classifier()
        reuse = shared if shared is not None and str(shared.source) == model else None
        self.worker = RankWorker(folder, model_path=model, classifier=reuse)
        self.worker.model_loaded.connect(self._model_loaded)
        self.worker.progress.connect(self._progress)
        self.worker.ranked.connect(self._ranked)
        self.worker.cancelled.connect(self._cancelled)
        self.worker.failed.connect(self._failed)
        self.worker.finished.connect(self._done)
        self.progress.setRange(0, 0)
        self.progress_row.show()
        self._update_actions()
        lines = log.recovery.lines()
        self.status_message.emit(f"Ranking the images of {folder} with {Path(model).name}…"
                                 + (f" ({'; '.join(lines)})" if lines else ""))
        self.runner.start(self.worker)

    @staticmethod
    def _folders_problem(folder: Path, root: Path) -> str | None:
        if not folder.is_dir():
            return f"{folder}: no such folder"
        if not root.is_dir():
            return f"{root}: no such folder (choose the data set to label into: one sub-folder per class)"
        if _is_inside(folder, root) or _is_inside(root, folder):
            return (f"The images to review ({folder}) and the data set ({root}) must be separate folders, "
                    "neither inside the other: images inside the data set are labelled already.")
        return None

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()

    def _model_loaded(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _ranked(self, items: list[ReviewItem]) -> None:
        if self._pending is None:
            return
        (self.log, self.review_folder, self.data_root, self.move), self._pending = self._pending, None
        self.queue = ReviewQueue(items, self.log.labelled(self.review_folder))
        self.undo_stack.clear()
        for path, folder, action_id in self.queue.labelled_actions():  # done already: undoable again
            self.undo_stack.push(LabelCommand(self, path, folder, action_id))
        self.classes = classes_offered(self.log.class_folders(), self.classifier.class_names)
        self._fill_classes()
        self.preview.set_classifier(self.classifier)
        self.stack.setCurrentWidget(self.splitter)
        self._show_current()
        self._focus_keys()
        unreadable = len(self.queue.unreadable)
        self.status_message.emit(f"Ranked {len(items) - unreadable} images with {self.classifier.name}, least "
                                 f"sure first" + (f"; {unreadable} can't be read (left out)" if unreadable else "")
                                 + ".")

    def _cancelled(self) -> None:
        self.status_message.emit("Ranking cancelled.")

    def _failed(self, message: str) -> None:
        show_error(self, "Ranking failed", message)

    def _done(self) -> None:
        self.worker = None
        self._pending = None
        self.progress_row.hide()
        self._update_actions()
        self._focus_keys()

    # the image on show --------------------------------------------------------------------------------

    def current(self):
        return self.queue.current() if self.queue is not None else None

    def _fill_classes(self) -> None:
        self.class_list.clear()
        for name in self.classes:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.class_list.addItem(item)
        self._mark_model_guess(self.current())

    def _mark_model_guess(self, entry) -> None:
        """Each class's number and name, with the model's probability beside the classes of its top 3 (its
        first choice in bold): the key for "the model is right" is at hand."""
        top_k = entry.item.top_k if entry is not None and entry.item is not None else []
        top = {class_folder_name(label): probability for label, probability in top_k}  # the model's names
        first = class_folder_name(top_k[0][0]) if top_k else None
        for i in range(self.class_list.count()):
            item = self.class_list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            key = f"{i + 1}" if i < KEYED_CLASSES else " "
            guess = f"      model: {top[name]:.1%}" if name in top else ""
            item.setText(f"{key}   {name}{guess}")
            font = item.font()
            font.setBold(name == first)
            item.setFont(font)

    def _show_current(self) -> None:
        entry = self.current()
        self._show_counter()
        self.preview.set_image(entry.path if entry is not None else None)
        if entry is None:
            self.file_label.setText("" if self.queue is None else
                                    "No images in this folder." if not self.queue.entries else
                                    "Every image of this folder is labelled. Retrain to teach the model, or "
                                    "choose another folder.")
            self._show_top(None)
        else:
            skipped = " <i>(skipped before)</i>" if entry.skips else ""
            self.file_label.setText(f"<b>{escape(entry.path.name)}</b>{skipped}<br><small>"
                                    f"{escape(str(entry.path.parent))}</small>")
            self._show_top(entry.item)
        self._mark_model_guess(entry)
        self._update_actions()

    def _show_top(self, item: ReviewItem | None) -> None:
        top = item.top_k if item is not None else []
        for i, bar in enumerate(self.top_bars):
            bar.setVisible(i < len(top))
            if i < len(top):
                label, probability = top[i]
                bar.setValue(round(probability * 1000))
                bar.setFormat(f"{label}: {probability:.1%}")
        if item is None and self.current() is not None:
            self.top_title.setText("<b>Not ranked</b>: it was labelled before this ranking (Undo brought it back).")
        elif item is not None:
            self.top_title.setText(f"<b>The model says</b> (calibrated; the top two {item.margin:.1%} apart):")
        else:
            self.top_title.setText("<b>The model says</b> (calibrated probabilities):")

    def _show_counter(self) -> None:
        queue = self.queue
        if queue is None:
            self.counter.setText("")
            return
        text = f"Labelled {queue.labelled}, {queue.to_go} to go"
        if queue.skipped:
            text += f" ({queue.skipped} skipped)"
        self.counter.setText(text)

    def _update_actions(self, *_signal_args) -> None:
        ready = not self.busy and self.current() is not None and self.log is not None
        for action in self.class_actions:
            action.setEnabled(ready and action.data() <= len(self.classes))
        # (The class list stays enabled: it holds the focus, so the keys keep working across a new ranking.)
        for widget in (self.skip_action, self.skip_button, self.new_class_action, self.new_class_button):
            widget.setEnabled(ready)
        idle = not self.busy
        for action, button, possible in ((self.undo_action, self.undo_button, self.undo_stack.canUndo()),
                                         (self.redo_action, self.redo_button, self.undo_stack.canRedo())):
            action.setEnabled(idle and possible)
            button.setEnabled(idle and possible)
        filled = all(e.text().strip() for e in (self.model_edit, self.images_edit, self.data_edit))
        self.rank_button.setEnabled(idle and filled)
        self.retrain_button.setEnabled(bool(self.data_edit.text().strip()) and not self.retraining)
        self.classify_button.setEnabled(bool(self.retrained_model) and Path(self.retrained_model).is_file())

    # labelling ----------------------------------------------------------------------------------------

    def _class_key(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.label_current(int(action.data()))

    def _class_activated(self, item: QListWidgetItem) -> None:
        self.label_current(self.class_list.row(item) + 1)

    def label_current(self, number: int) -> None:
        """Label the image on show as class `number` (1 = the first class listed)."""
        entry = self.current()
        if entry is None or self.busy or not 1 <= number <= len(self.classes):
            return
        self.undo_stack.push(LabelCommand(self, entry.path, self.classes[number - 1]))

    def skip_current(self) -> None:
        entry = self.current()
        if entry is not None and not self.busy:
            self.undo_stack.push(SkipCommand(self, entry.path))

    def new_class(self) -> None:
        """N: ask the new class's name, then label the image on show as it."""
        entry = self.current()
        if entry is None or self.busy:
            return
        self._new_class_for = entry.path
        ask_text(self, "New class", f"Name of the new class for {entry.path.name}:", self._new_class_named)

    def _new_class_named(self, name: str) -> None:
        path, self._new_class_for = self._new_class_for, None
        entry = self.current()
        if not name.strip() or entry is None or entry.path != path:
            return
        folder = class_folder_name(name.strip())
        same = next((c for c in self.classes if folder_key(c) == folder_key(folder)), None)
        if same is None:  # a class that differs only in case would share its folder on Windows and macOS
            self.classes.append(folder)
            self._fill_classes()
        self.label_current(self.classes.index(same or folder) + 1)

    # called by the commands (review_session.py) ---------------------------------------------------------

    def apply_label(self, path: Path, folder: str) -> LabelAction | None:
        try:
            action = self.log.label(path, folder, move=self.move)
        except LabelError as exc:
            show_error(self, "Could not label the image", str(exc))
            return None
        entry = self.queue.entry(path)
        entry.action_id, entry.folder = action.id, action.folder
        self.files_labelled.emit(str(self.data_root))
        self._show_current()
        self.status_message.emit(f"{path.name} → {action.folder}"
                                 + (f" (as {action.destination.name})" if action.destination.name != path.name
                                    else ""))
        return action

    def apply_undo(self, path: Path, action_id: str) -> bool:
        outcome = self.log.undo(action_id)
        if not outcome.done:
            show_error(self, "Could not undo", outcome.message[:1].upper() + outcome.message[1:] + ".")
            return False
        entry = self.queue.entry(path)
        entry.action_id = entry.folder = None
        self.files_labelled.emit(str(self.data_root))
        self._show_current()
        self.status_message.emit(f"Undone: {outcome.message}.")
        return True

    def apply_skip(self, path: Path, step: int) -> None:
        entry = self.queue.entry(path)
        entry.skips = max(0, entry.skips + step)
        self._show_current()

    # retraining ---------------------------------------------------------------------------------------

    def retrain(self) -> None:
        # The data set being labelled (the folder field may have been edited since the ranking).
        data = str(self.data_root) if self.queue is not None and self.data_root else self.data_edit.text().strip()
        if data and not self.retraining:
            self.retrain_requested.emit(data)

    def retrain_started(self) -> None:
        """The Train tab took the run: when it ends (training_finished), the images are ranked again."""
        self.retraining = True
        self.retrain_label.setText("Retraining in the Train tab… keep labelling; the images left are ranked "
                                   "again with the new model when it is done.")
        self._update_actions()

    def training_finished(self, result: dict) -> None:
        """A run ended (the Train tab's training_finished): if it was ours, rank again with its model."""
        if not self.retraining:
            return
        self.retraining = False
        path = result.get("model_path")
        if not path:
            self.retrain_label.setText(f"Retraining ended without a model: {result.get('summary', '')}")
            self._update_actions()
            return
        self.retrained_model = str(path)
        self._auto_model = str(path)
        self.model_edit.setText(str(path))
        accuracy = result.get("best_val_accuracy")
        self.retrain_label.setText("Retrained" + (f" (validation accuracy {accuracy:.1%})" if accuracy is not None
                                                  else "") + "; the images left are ranked with the new model.")
        self._update_actions()
        if self.review_folder is not None:
            self.start()

    def open_in_classify(self) -> None:
        if self.retrained_model:
            self.model_ready.emit(self.retrained_model)
