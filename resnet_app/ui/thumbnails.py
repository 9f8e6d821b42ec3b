"""Thumbnails loaded on first request, in a worker, and kept for the next paint.

Item models ask `get(path)` from `data(DecorationRole)`: views ask only for the rows they show, so a
list of ten thousand images loads the few dozen on screen. `loaded` names the paths whose thumbnails
have arrived; the models then emit dataChanged for those rows.
"""
from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from resnet_app.ui.workers import THUMBNAIL_PX, TaskRunner, ThumbnailWorker

KEEP = 3000  # thumbnails kept (64 px: ~16 KB each, ~50 MB at most)


def max_kept() -> int:
    return KEEP  # read at use, so a test can make the cache small
PER_WORKER = 64  # files one worker loads before the queue is looked at again (newest requests first)


class ThumbnailCache(QObject):
    loaded = Signal(object)  # list[str]: paths whose thumbnail (or unreadability) is now known

    def __init__(self, runner: TaskRunner, size: int = THUMBNAIL_PX, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner, self.size = runner, size
        self._images: OrderedDict[str, QImage] = OrderedDict()
        self._queue: list[str] = []
        self._asked: set[str] = set()  # queued or loading
        self._worker: ThumbnailWorker | None = None
        self._loading: set[str] = set()

    def get(self, path: str) -> QImage | None:
        """The thumbnail if loaded (None while loading, or when the file can't be read)."""
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
            return None if image.isNull() else image
        if path not in self._asked:
            self._asked.add(path)
            self._queue.append(path)
            if self._worker is None and len(self._queue) == 1:
                QTimer.singleShot(0, self._start)  # one worker for all the rows painted in this pass
        return None

    def __len__(self) -> int:
        """Thumbnails held now (at most KEEP)."""
        return len(self._images)

    def clear(self) -> None:
        """Forget every thumbnail held (they load again when asked for)."""
        self._images.clear()

    def rename(self, old: str, new: str) -> None:
        """A file moved: its thumbnail stays."""
        image = self._images.pop(old, None)
        if image is not None:
            self._images[new] = image

    def _start(self) -> None:
        if self._worker is not None or not self._queue:
            return
        # Newest first: what the user scrolled to last is what is on screen now.
        paths, self._queue = self._queue[-PER_WORKER:][::-1], self._queue[:-PER_WORKER]
        self._loading = set(paths)
        worker = ThumbnailWorker(paths, self.size)
        worker.loaded.connect(self._loaded)
        worker.finished.connect(self._done)
        if self.runner.start(worker) is not None:  # None: the window is closing
            self._worker = worker

    def _loaded(self, paths: list[str], images: list[QImage]) -> None:
        for path, image in zip(paths, images, strict=True):
            self._images[path] = image
            self._asked.discard(path)
            self._loading.discard(path)
        while len(self._images) > max_kept():
            self._images.popitem(last=False)
        self.loaded.emit(list(paths))

    def _done(self) -> None:
        stopped = self._worker is not None and self._worker.stop_requested
        self._worker = None
        self._asked -= self._loading  # a stopped worker's unloaded files may be asked for again
        self._loading = set()
        if stopped:  # the window is closing: load nothing more
            self._asked -= set(self._queue)
            self._queue = []
        else:
            self._start()
