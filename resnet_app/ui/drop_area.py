"""A drop target that only says what was dropped (PySide6's dropsite example, trimmed)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout


def local_paths(mime: QMimeData | None) -> list[Path]:
    """Local files and folders in dragged or pasted data (URLs, or one path per line of text)."""
    if mime is None:
        return []
    if mime.hasUrls():
        return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
    if mime.hasText():
        lines = [line.strip().strip('"') for line in mime.text().splitlines()]
        candidates = [Path(line[7:] if line.startswith("file://") else line) for line in lines if line]
        return [p for p in candidates if p.exists()]
    return []


class DropArea(QFrame):
    files_dropped = Signal(list)  # list[Path]

    def __init__(self, text: str, parent=None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("dropArea")
        self.setAccessibleName("Drop area")
        self.setMinimumHeight(64)
        self._label = QLabel(text, self)
        self._label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self._label)
        self._set_highlight(False)

    def _set_highlight(self, on: bool) -> None:
        self.setStyleSheet("QFrame#dropArea { border: 2px dashed %s; border-radius: 8px; }"
                           % ("palette(highlight)" if on else "palette(mid)"))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._set_highlight(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:
        self._set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_highlight(False)
        emit_dropped_paths(event, self.files_dropped)


def emit_dropped_paths(event: QDropEvent, signal) -> None:
    """Accept a drop of local files or folders and emit their paths through `signal`; ignore any other drop."""
    paths = local_paths(event.mimeData())
    if paths:
        event.acceptProposedAction()
        signal.emit(paths)
    else:
        event.ignore()
