"""The Data set tab's pieces: a worker that runs one plain function, the thumbnail grid's model and view,
and the undoable "remove images to the trash"."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QFile, QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage, QUndoCommand
from PySide6.QtWidgets import QAbstractItemView, QListView

from resnet_app.core.files import place_file
from resnet_app.ui.drop_area import emit_dropped_paths, local_paths
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import THUMBNAIL_PX, Worker

_ROOT = QModelIndex()


class CallWorker(Worker):
    """Runs `function(worker)` in the thread and emits (context, its plain result); the worker is passed for
    stop_requested. Connect `done` to a bound method of a GUI-thread QObject (a lambda would run in the
    worker's thread); `context` tells the slot which request this answers."""

    done = Signal(object, object)

    def __init__(self, function: Callable[[Worker], object], context: object = None) -> None:
        super().__init__()
        self.function, self.context = function, context

    def work(self) -> None:
        self.done.emit(self.context, self.function(self))


class ImagesModel(QAbstractListModel):
    """One class folder's images: names, thumbnails from the shared cache as they arrive."""

    def __init__(self, cache: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.folder = Path()
        self.names: list[str] = []
        self._rows: dict[str, int] = {}
        self._blank = QImage(THUMBNAIL_PX, THUMBNAIL_PX, QImage.Format.Format_ARGB32)
        self._blank.fill(0)
        cache.loaded.connect(self._thumbnails_loaded)

    def set_images(self, folder: Path, names: list[str]) -> None:
        self.beginResetModel()
        self.folder, self.names = folder, list(names)
        self._rows = {str(folder / name): row for row, name in enumerate(self.names)}
        self.endResetModel()

    def path(self, row: int) -> Path:
        return self.folder / self.names[row]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.names)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self.names):
            return None
        name = self.names[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return Path(name).name
        if role == Qt.ItemDataRole.ToolTipRole:
            return str(self.folder / name)
        if role == Qt.ItemDataRole.DecorationRole:
            image = self.cache.get(str(self.folder / name))  # None until the worker has made it
            return image if image is not None else self._blank  # full size: uniform item sizes hold
        return None

    def _thumbnails_loaded(self, paths: list[str]) -> None:
        rows = [self._rows[p] for p in paths if p in self._rows]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)), [Qt.ItemDataRole.DecorationRole])


class ImageGrid(QListView):
    """Thumbnails in a grid; files dropped on it are only announced (drop_area.py's habit)."""

    files_dropped = Signal(list)  # list[Path]

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)  # thousands of rows lay out without measuring each
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.setGridSize(QSize(THUMBNAIL_PX + 48, THUMBNAIL_PX + 32))
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setAcceptDrops(True)
        self.setAccessibleName("Images of the class")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        emit_dropped_paths(event, self.files_dropped)


def move_to_trash(path: Path) -> Path | None:
    """Where the file went in the system trash, or None when there is no trash (nothing is moved)."""
    file = QFile(str(path))
    if not file.moveToTrash():
        return None
    return Path(file.fileName())


def _forget_trash_info(trashed: Path) -> None:
    """The freedesktop trash keeps Trash/info/NAME.trashinfo beside Trash/files/NAME: gone with the file."""
    info = trashed.parent.parent / "info" / f"{trashed.name}.trashinfo"
    if trashed.parent.name == "files" and info.is_file():
        try:
            info.unlink()
        except OSError:
            pass


class TrashImages(QUndoCommand):
    """Images already moved to the trash; undo puts them back (a name taken since: name-2.ext), redo trashes
    them again. `problems` collects what could not be done, for the view to say."""

    def __init__(self, moved: list[tuple[Path, Path]], problems: Callable[[list[str]], None]) -> None:
        super().__init__(f"Remove {len(moved)} image{'s' if len(moved) != 1 else ''}"
                         + (f" ({moved[0][0].name})" if len(moved) == 1 else ""))
        self.moved = moved  # (original, in the trash)
        self.problems = problems
        self._done_once = True  # pushed after the files were trashed: the first redo() does nothing

    def undo(self) -> None:
        back: list[tuple[Path, Path]] = []
        failed: list[str] = []
        for original, trashed in self.moved:
            try:
                placed = place_file(original, source=trashed, move=True, rename=True)
            except OSError as err:
                failed.append(f"{original.name}: {err.strerror or err} (it is still in the trash: {trashed})")
                continue
            _forget_trash_info(trashed)
            back.append((placed, trashed))
        self.moved = back  # redo trashes what came back, under the name it came back to
        if failed:
            self.problems(["Could not put back " + f for f in failed])

    def redo(self) -> None:
        if self._done_once:
            self._done_once = False
            return
        moved: list[tuple[Path, Path]] = []
        failed: list[str] = []
        for original, _old in self.moved:
            trashed = move_to_trash(original)
            if trashed is None:
                failed.append(f"Could not move {original.name} to the trash again.")
            else:
                moved.append((original, trashed))
        self.moved = moved
        if failed:
            self.problems(failed)
