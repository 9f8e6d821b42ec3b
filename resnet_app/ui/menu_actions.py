"""What the File menu's dialog actions (export, sort) share: how they join the window, how a dialog comes up."""
from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget


def add_window_action(menu: QMenu, window: object, action: QAction) -> QAction:
    """Put `action` at the end of `menu`; the window holds it too (when it is a widget), so its shortcut
    works from any tab."""
    menu.addAction(action)
    if isinstance(window, QWidget):
        window.addAction(action)
    return action


def bring_up(dialog: QWidget) -> None:
    """Show the (one, kept) dialog in front, whether it was hidden, behind the window or never shown."""
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
