"""The "Clear cache (123 MB)" menu item.

The cache folder keeps decoded images and image features so that the next run on the same images starts
at once (core/data/decoded_cache.py, core/model/features.py). The item shows how much it takes, measured again each
time its menu opens (runs fill it meanwhile), and empties it when chosen; the next run on the same
images then decodes them again. Pasted images, also kept in that folder, are not part of the cache.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from resnet_app.core.data.decoded_cache import cache_size_bytes, clear_cache


def format_bytes(count: int) -> str:
    """'0 B', '980 KB', '123 MB', '1.2 GB': decimal units, as file managers show sizes."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} B"


class ClearCacheAction(QAction):
    """A menu item that shows the cache's size and clears it; `cleared` carries the bytes freed."""

    cleared = Signal(object)  # int: object, because a byte count may not fit a 32-bit Qt int

    def __init__(self, menu: QMenu, cache_dir: Path | None = None) -> None:
        super().__init__(menu)
        self.cache_dir = cache_dir  # None: the user's cache folder, looked up at each use
        self.setObjectName("clearCache")
        self.setStatusTip("Delete the decoded images and features kept to start runs faster; "
                          "runs make them again when needed")
        self.triggered.connect(self.clear)
        menu.aboutToShow.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        size = cache_size_bytes(self.cache_dir)
        self.setText(f"Clear cache ({format_bytes(size)})")
        self.setEnabled(size > 0)

    def clear(self) -> None:
        freed = clear_cache(self.cache_dir)
        self.refresh()
        self.cleared.emit(freed)


def add_clear_cache_action(menu: QMenu, cache_dir: Path | None = None) -> ClearCacheAction:
    """Add the "Clear cache (size)" item at the end of `menu`."""
    action = ClearCacheAction(menu, cache_dir)
    menu.addAction(action)
    return action
