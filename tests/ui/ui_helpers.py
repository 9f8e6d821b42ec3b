"""Helpers the UI tests share: real drag-and-drop of file URLs, and the app's open message boxes.

Imported by name (`from ui_helpers import drop_on`), never `from conftest import ...`: with a conftest.py
in tests/ and another in tests/ui/, which one a bare `conftest` names depends on import order. The name
is unique in the test tree for the same reason.
"""
from __future__ import annotations

import warnings

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox


def mime_with_paths(paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drop_on(widget, paths) -> bool:
    """Send a real drag-enter then drop (file URLs) to `widget`; returns whether the drop was accepted."""
    mime = mime_with_paths(paths)
    center = widget.rect().center()
    with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated; Qt has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(center, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(center), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def message_boxes(parent, name: str = "errorMessage") -> list[QMessageBox]:
    """The visible message boxes under `parent` with this objectName ("errorMessage", "questionMessage")."""
    return [box for box in parent.findChildren(QMessageBox) if box.objectName() == name and box.isVisible()]
