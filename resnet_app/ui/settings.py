"""UI state in QSettings, read and written through one table of typed defaults.

Every key the app persists is listed in DEFAULTS with its type and default value (ReText's
`configOptions` habit), so a missing, stale or hand-edited value falls back to the default instead
of reaching a widget with the wrong type. Tests point QSettings at a temporary folder with
`QSettings.setPath` + `QSettings.setDefaultFormat(IniFormat)`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from resnet_app.core.train.settings import Setting, train_settings

ORGANIZATION = "ResNet App"
APPLICATION = "ResNet App"
RECENT_MODELS_MAX = 8


def default_output_folder() -> str:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return str(Path(documents or Path.home()) / "ResNet App" / "runs")


def app_data_folder() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(location or Path.home() / ".resnet-app")


def pasted_images_folder() -> Path:
    """Where images pasted from the clipboard are kept: the app's cache folder, beside the decoded
    images (the OS or the user may clean it; the images only need to outlive the session)."""
    from resnet_app.core.data.decoded_cache import default_cache_dir

    return default_cache_dir() / "pasted images"


# key -> (type, default[, allowed]). A default of None for the output folder means "computed at read
# time". `allowed` is an inclusive (low, high) range for a number or a tuple of choices for text: a value
# outside it (a hand-edited or damaged settings file) reads as the default, so no widget ever gets it.
# The training settings ("train/<name>") come from the settings table (core/train/settings.py): each is kept
# as JSON text of its value (None, "auto", numbers and text alike) and checked by its Setting on read.
TAB_COUNT = 5  # Classify, Train, Evaluate, Review, Data set
DEFAULTS: dict[str, tuple[Any, ...]] = {
    "window/geometry": (QByteArray, QByteArray()),
    "window/state": (QByteArray, QByteArray()),
    "window/tab": (int, 0, (0, TAB_COUNT - 1)),
    "window/train_splitter": (QByteArray, QByteArray()),  # the plot / log division of the Train tab
    "classify/last_folder": (str, ""),
    "classify/top_k": (int, 3, (1, 10)),
    "classify/export_folder": (str, ""),
    "model/last": (str, ""),
    "model/recent": (list, []),
    "train/data_folder": (str, ""),
    "review/images_folder": (str, ""),  # the Review tab's folder of images to label
    "review/data_folder": (str, ""),  # the data set it labels into ("": the Train tab's data folder)
    "review/move": (bool, False),  # labels move the images (a sort's _unsure) instead of copying them
    "dataset/folder": (str, ""),  # the data set the Data set tab has open
    "train/output_folder": (str, None),
    "train/checkpoint_folder": (str, ""),
    # ImageNet only when its weights are at hand (StartFromBox says so otherwise).
    "train/start_from": (str, "imagenet", ("imagenet", "scratch")),
    # "quick" (last layer), "full" (all layers), "auto" (by device)
    "train/what_learns": (str, "auto", ("auto", "quick", "full")),
    "train/imagenet_weights_file": (str, ""),  # a weights file the user chose once
    **{f"train/{spec.name}": (spec, spec.default) for spec in train_settings() if spec.in_app},
}


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _convert(kind: Any, value: Any) -> Any:
    """`value` as read from QSettings, as `kind`; TypeError or ValueError when it can't be."""
    if isinstance(kind, Setting):  # stored as JSON text, checked by the settings table
        return kind.coerce(json.loads(value))
    if kind is bool:
        return _to_bool(value)
    if kind is list:
        if value is None or value == "":
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if kind is QByteArray:
        return value if isinstance(value, QByteArray) else QByteArray()
    if kind is str and not isinstance(value, str):  # an INI line with commas reads as a list
        raise TypeError(f"text expected, not {type(value).__name__}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"whole number expected, not {value}")
    return kind(value)


def _check_allowed(key: str, value: Any) -> Any:
    allowed = DEFAULTS[key][2] if len(DEFAULTS[key]) > 2 else None
    if allowed is None:
        return value
    if isinstance(value, int) and not (allowed[0] <= value <= allowed[1]):
        raise ValueError(f"{key}: {value} is outside {allowed[0]}..{allowed[1]}")
    if isinstance(value, str) and value not in allowed:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value


class Settings:
    """Typed access to QSettings: `settings.get("train/epochs") -> int`."""

    def __init__(self, qsettings: QSettings | None = None):
        # Not QSettings(ORGANIZATION, APPLICATION): that constructor always uses the native format and
        # would ignore QSettings.setDefaultFormat(IniFormat) + setPath, which tests and the self-test use.
        self._qs = qsettings or QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope,
                                          ORGANIZATION, APPLICATION)

    def default(self, key: str) -> Any:
        kind, default = DEFAULTS[key][:2]
        if key == "train/output_folder" and default is None:
            return default_output_folder()
        return list(default) if kind is list else default

    def get(self, key: str) -> Any:
        """The stored value, or the default when there is none or it is of the wrong type or range."""
        kind = DEFAULTS[key][0]  # KeyError for an unknown key: a typo, caught by the tests
        if not self._qs.contains(key):
            return self.default(key)
        try:
            return _check_allowed(key, _convert(kind, self._qs.value(key)))
        except (TypeError, ValueError, OverflowError):
            return self.default(key)

    def set(self, key: str, value: Any) -> None:
        kind = DEFAULTS[key][0]
        if isinstance(kind, Setting):
            self._qs.setValue(key, json.dumps(kind.coerce(value)))
        else:
            self._qs.setValue(key, _convert(kind, value))

    def add_recent_model(self, path: str) -> list[str]:
        recent = [p for p in self.get("model/recent") if p != path]
        recent.insert(0, path)
        recent = recent[:RECENT_MODELS_MAX]
        self.set("model/recent", recent)
        return recent

    def sync(self) -> None:
        self._qs.sync()
