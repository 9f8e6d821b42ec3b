"""The Data set tab: make a data set inside the app. A folder with one sub-folder per class: add, rename and
remove classes; see a class's images as thumbnails; add images by drop, paste or a file dialog (always
copied, never overwriting: core.files.place_file); remove images to the system trash, with undo. Listing
and copying run in workers, so a class of thousands of images never freezes the window."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QImage, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.data.class_folders import CopyResult, class_images, copy_images, image_sources, list_classes
from resnet_app.core.data.images import IMAGE_EXTENSIONS
from resnet_app.core.files import place_file
from resnet_app.core.use.sort_names import class_folder_name
from resnet_app.ui.dataset_grid import CallWorker, ImageGrid, ImagesModel, TrashImages, move_to_trash
from resnet_app.ui.drop_area import local_paths
from resnet_app.ui.messages import ask, ask_text, show_error, show_info
from resnet_app.ui.settings import Settings
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import TaskRunner

NameRole = Qt.ItemDataRole.UserRole + 1  # a class row's folder name
MAX_NAMED = 8  # skipped files named in a message; the rest are counted


def _named(paths: list, limit: int = MAX_NAMED) -> str:
    names = [Path(p).name for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(names) + more


class DatasetTab(QWidget):
    status_message = Signal(str)
    use_in_train = Signal(str)  # the data set's folder
    files_changed = Signal(str)  # the data set's folder: its files changed (the Train tab's report follows)

    def __init__(self, settings: Settings, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.runner = settings, runner
        self.root: Path | None = None
        self.copying = False
        self._classes_token = self._images_token = 0
        self.undo_stack = QUndoStack(self)
        self.thumbnails = ThumbnailCache(runner, parent=self)
        self.images = ImagesModel(self.thumbnails, self)
        self.setAcceptDrops(True)
        self._build()
        self._update_buttons()
        folder = settings.get("dataset/folder")
        if folder and Path(folder).is_dir():
            self.open_dataset(folder)

    # layout -----------------------------------------------------------------------------------------

    def _button(self, text: str, slot, tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        button.setToolTip(tip)
        return button

    def _build(self) -> None:
        self.folder_label = QLabel("No data set open. Make a new one, or open a folder with one sub-folder per class.")
        self.folder_label.setWordWrap(True)
        self.new_button = self._button("New data set…", self.new_dataset_dialog,
                                       "Choose or create an empty folder: its sub-folders will be the classes.")
        self.open_button = self._button("Open data set…", self.open_dataset_dialog)
        self.train_button = self._button("Use in Train", self._use_in_train,
                                         "Set this data set as the Train tab's data folder.")
        top = QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        for button in (self.new_button, self.open_button, self.train_button):
            top.addWidget(button)

        self.class_list = QListWidget()
        self.class_list.setAccessibleName("Classes")
        self.class_list.currentItemChanged.connect(self._current_class_changed)
        self.add_class_button = self._button("Add class…", self.add_class_dialog)
        self.rename_button = self._button("Rename…", self.rename_class_dialog)
        self.remove_class_button = self._button("Remove…", self.remove_class_dialog,
                                                "Move the class folder and its images to the system trash.")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Classes"))
        left_layout.addWidget(self.class_list, 1)
        class_buttons = QHBoxLayout()
        for button in (self.add_class_button, self.rename_button, self.remove_class_button):
            class_buttons.addWidget(button)
        left_layout.addLayout(class_buttons)

        self.images_label = QLabel("Choose a class to see its images.")
        self.grid = ImageGrid()
        self.grid.setModel(self.images)
        self.grid.files_dropped.connect(self.add_paths)
        self.grid.selectionModel().selectionChanged.connect(self._selection_changed)
        self.add_images_button = self._button("Add images…", self.add_images_dialog,
                                              "Copy images into the chosen class (you can also drop or paste them).")
        self.remove_images_button = self._button("Remove selected", self.remove_selected_images,
                                                 "Move the selected images to the system trash (Undo puts them back).")
        self.undo_button = self._button("Undo", self.undo)
        self.undo_stack.undoTextChanged.connect(self.undo_button.setToolTip)
        self.undo_stack.canUndoChanged.connect(self.undo_button.setEnabled)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.images_label)
        right_layout.addWidget(self.grid, 1)
        image_buttons = QHBoxLayout()
        for button in (self.add_images_button, self.remove_images_button, self.undo_button):
            image_buttons.addWidget(button)
        image_buttons.addStretch(1)
        right_layout.addLayout(image_buttons)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

        self.paste_action = self._shortcut("Paste images", QKeySequence.StandardKey.Paste, self.paste)
        self.undo_action = self._shortcut("Undo", QKeySequence.StandardKey.Undo, self.undo)
        self.delete_action = self._shortcut("Remove selected", QKeySequence.StandardKey.Delete,
                                            self.remove_selected_images)

    def _shortcut(self, text: str, key, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # only in this tab
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _selection_changed(self, *_args) -> None:
        self._update_buttons()

    def _current_class_changed(self, *_args) -> None:
        self._class_chosen()

    def _update_buttons(self) -> None:
        has_root, has_class = self.root is not None, self.current_class() is not None
        for widget in (self.train_button, self.add_class_button):
            widget.setEnabled(has_root)
        for widget in (self.rename_button, self.remove_class_button, self.add_images_button):
            widget.setEnabled(has_class and not self.copying)
        self.remove_images_button.setEnabled(has_class and self.grid.selectionModel().hasSelection())
        self.undo_button.setEnabled(self.undo_stack.canUndo())

    # the data set -----------------------------------------------------------------------------------

    def new_dataset_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose or create a folder for the new data set",
                                                  str(self.root.parent) if self.root else "")
        if folder:
            self.new_dataset(folder)

    def new_dataset(self, folder: str | os.PathLike[str]) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.open_dataset(folder)
        self.status_message.emit(f"Data set {folder}: add a class for each kind of image.")

    def open_dataset_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a data set (a folder with one sub-folder per class)",
                                                  str(self.root or ""))
        if folder:
            self.open_dataset(folder)

    def open_dataset(self, folder: str | os.PathLike[str]) -> None:
        self.root = Path(folder)
        self.settings.set("dataset/folder", str(self.root))
        self.folder_label.setText(f"Data set: {self.root}")
        self.undo_stack.clear()  # its files belong to the data set that was open
        self.class_list.clear()
        self.images.set_images(self.root, [])
        self.refresh_classes()

    def refresh_classes(self, choose: str | None = None) -> None:
        """List the class folders and their counts in a worker; `choose` a class when it comes."""
        if self.root is None:
            return
        self._classes_token += 1
        token, root = self._classes_token, self.root
        keep = choose or self.current_class()
        worker = CallWorker(lambda _worker: list_classes(root), (token, keep))
        worker.done.connect(self._classes_listed)
        self.runner.start(worker)

    def _classes_listed(self, context: tuple[int, str | None], classes: list[tuple[str, int]]) -> None:
        token, choose = context
        if token != self._classes_token:
            return  # a newer listing is on its way
        self.class_list.blockSignals(True)
        self.class_list.clear()
        for name, count in classes:
            item = QListWidgetItem(f"{name}  ({count} image{'s' if count != 1 else ''})")
            item.setData(NameRole, name)
            self.class_list.addItem(item)
            if name == choose:
                self.class_list.setCurrentItem(item)
        self.class_list.blockSignals(False)
        if self.class_list.currentItem() is None and self.class_list.count():
            self.class_list.setCurrentRow(0)  # emits: the images follow
        else:
            self._class_chosen()
        total = sum(count for _, count in classes)
        self.folder_label.setText(f"Data set: {self.root} — {len(classes)} classes, {total} images")

    def current_class(self) -> str | None:
        item = self.class_list.currentItem()
        return None if item is None else item.data(NameRole)

    def class_folder(self, name: str | None = None) -> Path | None:
        name = name or self.current_class()
        return None if self.root is None or name is None else self.root / name

    def _class_chosen(self) -> None:
        self._update_buttons()
        folder = self.class_folder()
        self._images_token += 1
        if folder is None:
            self.images.set_images(Path(), [])
            self.images_label.setText("Add a class, then drop or paste its images here." if self.root
                                      else "Choose a class to see its images.")
            return
        token = self._images_token
        self.images_label.setText(f"Listing the images of {folder.name}…")
        worker = CallWorker(lambda _worker: class_images(folder), (token, folder))
        worker.done.connect(self._images_listed)
        self.runner.start(worker)

    def _images_listed(self, context: tuple[int, Path], names: list[str]) -> None:
        token, folder = context
        if token != self._images_token:
            return
        self.images.set_images(folder, names)
        self.images_label.setText(f"{folder.name}: {len(names)} image{'s' if len(names) != 1 else ''}. "
                                  "Drop, paste (Ctrl+V) or add images; Delete removes the selected ones.")
        self._update_buttons()

    def _use_in_train(self) -> None:
        if self.root is not None:
            self.use_in_train.emit(str(self.root))

    def _changed(self, choose: str | None = None) -> None:
        self.refresh_classes(choose)
        if self.root is not None:
            self.files_changed.emit(str(self.root))

    # classes ----------------------------------------------------------------------------------------

    def _taken(self, folder_name: str, but: str | None = None) -> str | None:
        """The existing folder a new class folder would collide with (also differing only in case)."""
        assert self.root is not None
        for entry in os.scandir(self.root):
            if entry.name != but and entry.name.casefold() == folder_name.casefold():
                return entry.name
        return None

    def add_class_dialog(self) -> None:
        ask_text(self, "Add a class", "Name of the new class:", self.add_class)

    def add_class(self, label: str) -> bool:
        if self.root is None or not label.strip():
            return False
        name = class_folder_name(label.strip())
        taken = self._taken(name)
        if taken is not None:
            show_error(self, "That class exists", f"The data set has a folder named “{taken}” already. "
                       "Choose another name.")
            return False
        try:
            (self.root / name).mkdir()
        except OSError as err:
            show_error(self, "Could not add the class", f"{self.root / name}: {err.strerror or err}")
            return False
        self._changed(choose=name)
        return True

    def rename_class_dialog(self) -> None:
        old = self.current_class()
        if old is not None:
            ask_text(self, "Rename the class", f"New name for “{old}”:", lambda text: self.rename_class(old, text),
                     value=old)

    def rename_class(self, old: str, label: str) -> bool:
        if self.root is None or not label.strip():
            return False
        name = class_folder_name(label.strip())
        if name == old:
            return False
        taken = self._taken(name, but=old)
        if taken is not None:
            show_error(self, "That name is taken", f"The data set has a folder named “{taken}” already: "
                       f"“{old}” keeps its name.")
            return False
        try:
            os.rename(self.root / old, self.root / name)
        except OSError as err:
            show_error(self, "Could not rename the class", f"{self.root / old}: {err.strerror or err}")
            return False
        self.undo_stack.clear()  # its entries name files under the old folder
        self._changed(choose=name)
        return True

    def remove_class_dialog(self) -> None:
        name = self.current_class()
        if name is not None:
            ask(self, "Remove the class?", f"Move the folder “{name}” and all its images to the system trash? "
                "You can restore it from there.", "Move to trash", lambda: self.remove_class(name))

    def remove_class(self, name: str) -> bool:
        folder = self.class_folder(name)
        if folder is None:
            return False
        if move_to_trash(folder) is None:
            show_error(self, "No trash here", f"This system has no trash the app can use for {folder}, so "
                       "nothing was removed. Remove the folder in your file manager if you mean to.")
            return False
        self.undo_stack.clear()
        self.status_message.emit(f"Moved the class {name} to the trash.")
        self._changed()
        return True

    # images -----------------------------------------------------------------------------------------

    def add_images_dialog(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to the class", "", f"Images ({patterns})")
        if files:
            self.add_paths([Path(f) for f in files])

    def add_paths(self, paths: list[Path]) -> None:
        """Copy the images among `paths` (folders: the images in them) into the chosen class, in a worker."""
        folder = self.class_folder()
        if folder is None:
            show_info(self, "Choose a class first", "Add a class (or choose one), then add its images.")
            return
        if self.copying:
            show_info(self, "Still copying", "Images are being copied in. Add more when that has finished.")
            return
        self.copying = True
        self._update_buttons()
        self.images_label.setText(f"Copying images into {folder.name}…")

        def copy(worker) -> tuple[CopyResult, list[Path]]:
            images, skipped = image_sources(paths)
            return copy_images(images, folder, lambda: worker.stop_requested), skipped

        worker = CallWorker(copy, folder)
        worker.done.connect(self._copied)
        worker.finished.connect(self._copy_finished)
        if self.runner.start(worker) is None:
            self._copy_finished()

    def _copy_finished(self) -> None:
        self.copying = False
        self._update_buttons()

    def _copied(self, folder: Path, outcome: tuple[CopyResult, list[Path]]) -> None:
        result, skipped = outcome
        self.status_message.emit(f"Copied {len(result.placed)} image{'s' if len(result.placed) != 1 else ''} "
                                 f"into {folder.name}.")
        problems = []
        if skipped:
            problems.append(f"Not images, so not added: {_named(skipped)}.")
        if result.failed:
            problems.append("Could not copy: " + ", ".join(f"{p.name} ({why})" for p, why in result.failed[:MAX_NAMED]))
        if problems:
            show_info(self, "Some files were not added", "\n\n".join(problems))
        if result.placed:
            self._changed(choose=folder.name)
        else:
            self._class_chosen()

    def paste(self) -> None:
        """Ctrl+V: files copied in a file manager (their URLs), or an image itself (saved as PNG)."""
        mime = QApplication.clipboard().mimeData()
        paths = local_paths(mime) if mime is not None and mime.hasUrls() else []
        if paths:
            self.add_paths(paths)
            return
        image = QApplication.clipboard().image() if mime is not None and mime.hasImage() else QImage()
        if image.isNull():
            show_info(self, "Nothing to paste", "The clipboard holds no image and no image files.")
            return
        folder = self.class_folder()
        if folder is None:
            show_info(self, "Choose a class first", "Add a class (or choose one), then paste its images.")
            return

        def write(tmp: Path) -> None:
            if not image.save(str(tmp), "PNG"):
                raise OSError(f"could not write {tmp}")

        try:
            placed = place_file(folder / "pasted.png", write=write, rename=True)
        except OSError as err:
            show_error(self, "Could not paste the image", f"{folder}: {err.strerror or err}")
            return
        self.status_message.emit(f"Pasted the image as {placed.name} into {folder.name}.")
        self._changed(choose=folder.name)

    def selected_paths(self) -> list[Path]:
        return [self.images.path(index.row()) for index in self.grid.selectionModel().selectedRows()]

    def remove_selected_images(self) -> None:
        self.remove_images(self.selected_paths())

    def remove_images(self, paths: list[Path]) -> None:
        moved, failed = [], []
        for path in paths:
            trashed = move_to_trash(path)
            if trashed is None:
                failed.append(path)
            else:
                moved.append((path, trashed))
        if failed:
            show_error(self, "Not removed", f"These could not be moved to the system trash, so they were left "
                       f"where they are: {_named(failed)}.")
        if moved:
            self.undo_stack.push(TrashImages(moved, self._undo_problems))
            self.status_message.emit(f"Moved {len(moved)} image{'s' if len(moved) != 1 else ''} to the trash.")
            self._changed(choose=self.current_class())

    def _undo_problems(self, lines: list[str]) -> None:
        show_error(self, "Undo", "\n".join(lines))

    def undo(self) -> None:
        self.undo_stack.undo()
        self._changed(choose=self.current_class())

    # drops anywhere on the tab go to the chosen class ----------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()) and self.root is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if local_paths(event.mimeData()) and self.root is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if not paths or self.root is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.add_paths(paths)
