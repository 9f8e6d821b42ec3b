"""The Train tab's settings, built from the training settings table (core/train/settings.py).

One editor widget per setting, chosen by the setting's kind: a combo box for choices, a check box for
on/off, a spin box for numbers (whose lowest position reads "auto" where the setting has an automatic
value). Labels, tooltips, ranges and units all come from the table, so a new setting appears here
without code of its own. Settings marked advanced sit under "More settings", folded by default.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.train.settings import Setting, TrainConfig, train_settings


class _WheelOnlyWhenFocused:
    """Mixin: the mouse wheel scrolls the settings panel, not the value under the pointer, unless the
    user has clicked into the box (a scroll over "Batch size" once changed a run's settings)."""

    def _init_focus(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()  # passes the wheel on to the scroll area


class ChoiceEditor(_WheelOnlyWhenFocused, QComboBox):
    """A combo box of (value, label) items whose value is the item's data."""

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._init_focus()
        for value, label in items:
            self.addItem(label, value)

    def setting_value(self) -> str:
        return self.currentData()

    def set_setting_value(self, value: Any) -> None:
        self.setCurrentIndex(max(0, self.findData(value)))

    @property
    def changed(self):
        return self.currentIndexChanged


class SwitchEditor(QCheckBox):
    def setting_value(self) -> bool:
        return self.isChecked()

    def set_setting_value(self, value: Any) -> None:
        self.setChecked(bool(value))

    @property
    def changed(self):
        return self.toggled


class _NumberEditorBase(_WheelOnlyWhenFocused):
    """A spin box over a setting's range; with an automatic value, one step below the minimum shows
    the automatic text (Qt's special value) and stands for it."""

    spec: Setting
    position_type: type = float  # what the Qt spin box holds: int for QSpinBox

    def _setup(self, spec: Setting) -> None:
        self.spec = spec
        self._init_focus()
        self._scale = 100 if spec.percent else 1
        low = self._position(spec.minimum if spec.minimum is not None else 0)
        high = self._position(spec.maximum if spec.maximum is not None else 10**6)
        self._first_real = low
        self._automatic_position = low - self._unit_step() if spec.has_automatic else None
        self.setRange(self._automatic_position if spec.has_automatic else low, high)
        if spec.has_automatic:
            self.setSpecialValueText(spec.automatic)
        self.setSuffix(spec.unit)
        if spec.step:
            self.setSingleStep(self._position(spec.step))

    def _position(self, value: float) -> Any:
        """A setting's value as the spin box's number (a percentage for a share)."""
        return self.position_type(round(value * self._scale, 9))

    def _unit_step(self) -> Any:
        return 1

    def stepBy(self, steps: int) -> None:
        # From "auto", one step up goes to the smallest real value (not to auto + step); one step
        # down from there goes back to auto.
        if self.spec.has_automatic:
            if self.value_position() == self._automatic_position and steps > 0:
                self.setValue(self._first_real)
                return
            if self.value_position() == self._first_real and steps < 0:
                self.setValue(self._automatic_position)
                return
        super().stepBy(steps)

    def value_position(self) -> Any:
        return self.value()

    def setting_value(self) -> Any:
        position = self.value_position()
        if self.spec.has_automatic and position == self._automatic_position:
            return self.spec.automatic_value
        number = position / self._scale
        return round(number) if self.spec.kind is int else round(number, 9)

    def set_setting_value(self, value: Any) -> None:
        if self.spec.is_automatic(value) or value is None:
            self.setValue(self._automatic_position if self.spec.has_automatic else self._first_real)
        else:
            self.setValue(self._position(value))

    @property
    def changed(self):
        return self.valueChanged


class IntEditor(_NumberEditorBase, QSpinBox):
    position_type = int

    def __init__(self, spec: Setting) -> None:
        super().__init__()
        self._setup(spec)


class FloatEditor(_NumberEditorBase, QDoubleSpinBox):
    def __init__(self, spec: Setting) -> None:
        super().__init__()
        self.setDecimals(0 if spec.percent else spec.decimals)
        self._setup(spec)

    def _unit_step(self) -> float:
        return 10.0 ** -self.decimals()


class TextEditor(QLineEdit):
    def setting_value(self) -> str | None:
        return self.text().strip() or None

    def set_setting_value(self, value: Any) -> None:
        self.setText("" if value is None else str(value))

    @property
    def changed(self):
        return self.textChanged


def make_editor(spec: Setting, choices: Sequence[tuple[str, str]] | None = None) -> QWidget:
    """The widget that edits `spec`: setting_value(), set_setting_value() and a `changed` signal."""
    if spec.choices:
        editor = ChoiceEditor(choices or [(c, spec.choice_labels.get(c, c)) for c in spec.choices])
    elif spec.kind is bool:
        editor = SwitchEditor()
    elif spec.kind is int:
        editor = IntEditor(spec)
    elif spec.kind is float:
        editor = FloatEditor(spec)
    else:
        editor = TextEditor()
    editor.setToolTip(_tooltip(spec))
    editor.setAccessibleName(spec.label)
    editor.setObjectName(f"setting_{spec.name}")
    return editor


def _tooltip(spec: Setting) -> str:
    return spec.help[:1].upper() + spec.help[1:] + "."


class SettingsForm(QWidget):
    """Editors for the training settings shown in the app, laid out as a form."""

    changed = Signal()

    def __init__(self, choices: dict[str, Sequence[tuple[str, str]]] | None = None, parent=None) -> None:
        """`choices` replaces a setting's table choices with (value, label) pairs known only at run
        time, such as the devices this computer has."""
        super().__init__(parent)
        choices = choices or {}
        self.specs = [spec for spec in train_settings() if spec.in_app]
        self.editors: dict[str, QWidget] = {}
        main, more = QFormLayout(), QFormLayout()
        for spec in self.specs:
            editor = make_editor(spec, choices.get(spec.name))
            editor.set_setting_value(spec.default)
            editor.changed.connect(self.changed)
            self.editors[spec.name] = editor
            (more if spec.advanced else main).addRow(spec.label + ":", editor)
        self.more_button = QToolButton()
        self.more_button.setText("More settings")
        self.more_button.setCheckable(True)
        self.more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more_button.setArrowType(Qt.ArrowType.RightArrow)
        self.more_box = QWidget()
        self.more_box.setLayout(more)
        self.more_box.setVisible(False)
        self.more_button.toggled.connect(self._show_more)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        if more.rowCount():
            layout.addWidget(self.more_button, 0, Qt.AlignmentFlag.AlignLeft)
            layout.addWidget(self.more_box)
        else:
            self.more_button.hide()

    def _show_more(self, shown: bool) -> None:
        self.more_box.setVisible(shown)
        self.more_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def editor(self, name: str) -> QWidget:
        return self.editors[name]

    def tooltip(self, name: str) -> str:
        """The table's help for a setting, as its editor shows it."""
        return _tooltip(next(spec for spec in self.specs if spec.name == name))

    def values(self) -> dict[str, Any]:
        """The settings as TrainConfig keyword arguments."""
        return {name: editor.setting_value() for name, editor in self.editors.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Set the settings named in `values` (others are left as they are)."""
        for name, value in values.items():
            if name in self.editors:
                self.editors[name].set_setting_value(value)

    def config(self, **extra: Any) -> TrainConfig:
        """A TrainConfig of the shown settings (plus `extra` fields); ValueError says what is wrong."""
        return TrainConfig(**{**self.values(), **extra})

    def load(self, settings) -> None:
        """Show the saved settings (ui/settings.Settings), each checked against the table."""
        self.set_values({spec.name: settings.get(f"train/{spec.name}") for spec in self.specs})

    def save(self, settings, values: dict[str, Any] | None = None) -> None:
        """Remember the shown settings, or `values` in their place (the user's own, while a sample run
        shows its settings)."""
        shown = self.values()
        for spec in self.specs:
            try:
                value = spec.coerce((values or shown).get(spec.name, shown[spec.name]))
            except ValueError:
                value = spec.default  # an out-of-range entry is not remembered
            settings.set(f"train/{spec.name}", value)
