"""Message boxes that never block the event loop (window-modal, opened with open())."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget


def _box(parent: QWidget | None, icon: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    return box


def show_error(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    box = _box(parent, QMessageBox.Icon.Warning, title, text)
    box.setObjectName("errorMessage")
    box.open()
    return box


def show_info(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    box = _box(parent, QMessageBox.Icon.Information, title, text)
    box.open()
    return box


def ask(parent: QWidget | None, title: str, text: str, yes_text: str, on_yes: Callable[[], None]) -> QMessageBox:
    """A question with a custom yes button; `on_yes` runs when it is chosen."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setObjectName("questionMessage")
    yes = box.addButton(yes_text, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(yes)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.buttonClicked.connect(lambda button: on_yes() if button is yes else None)
    box.open()
    return box


def _question(parent: QWidget | None, name: str, title: str, text: str) -> QInputDialog:
    """An input dialog that deletes itself when closed, before its input mode is set."""
    dialog = QInputDialog(parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.setObjectName(name)
    dialog.setWindowTitle(title)
    dialog.setLabelText(text)
    return dialog


def ask_number(parent: QWidget | None, title: str, text: str, value: int, minimum: int, maximum: int,
               on_ok: Callable[[int], None]) -> QInputDialog:
    """A whole number to choose (window-modal, never blocking); `on_ok(number)` runs on OK."""
    dialog = _question(parent, "numberQuestion", title, text)
    dialog.setInputMode(QInputDialog.InputMode.IntInput)
    dialog.setIntRange(minimum, maximum)
    dialog.setIntValue(value)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.intValueSelected.connect(on_ok)
    dialog.open()
    return dialog


def ask_text(parent: QWidget | None, title: str, text: str, on_ok: Callable[[str], None],
             value: str = "") -> QInputDialog:
    """A line of text to type (window-modal, never blocking); `on_ok(text)` runs on OK."""
    dialog = _question(parent, "textQuestion", title, text)
    dialog.setInputMode(QInputDialog.InputMode.TextInput)
    dialog.setTextValue(value)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.textValueSelected.connect(on_ok)
    dialog.open()
    return dialog
