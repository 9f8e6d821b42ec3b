"""The "Clear cache (size)" menu item: its size is measured when its menu opens, and it clears the cache
(decoded images and features) and nothing else kept in the cache folder."""
from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QMenu

from resnet_app.ui.cache_menu import add_clear_cache_action, format_bytes


def _entry(folder, name: str, size: int):
    """A cache file of `size` bytes that takes no disk space (sparse)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "wb") as file:
        file.truncate(size)
    return folder / name


def test_the_item_shows_the_size_when_its_menu_opens_and_clears_the_cache(qtbot, tmp_path):
    cache = tmp_path / "cache"
    _entry(cache, "decoded-v2-16s-0a1b.chunk", 123_000_000)
    pasted = _entry(cache / "pasted images", "photo.png", 5_000)  # kept there, but not a cache
    menu = QMenu("Train")
    qtbot.addWidget(menu)
    action = add_clear_cache_action(menu, cache)
    assert menu.actions() == [action]
    assert action.text() == "Clear cache (123 MB)" and action.isEnabled()

    _entry(cache, "features-v2-0a1b.npy", 2_400_000)  # a run added to it meanwhile
    menu.popup(QPoint(0, 0))
    qtbot.waitUntil(menu.isVisible)
    assert action.text() == "Clear cache (125 MB)"
    menu.hide()

    with qtbot.waitSignal(action.cleared, timeout=5_000) as cleared:
        action.trigger()
    assert cleared.args == [125_400_000]
    assert action.text() == "Clear cache (0 B)" and not action.isEnabled()
    assert [p.name for p in cache.iterdir() if p.is_file()] == [] and pasted.exists()


def test_sizes_read_as_a_file_manager_shows_them():
    assert [format_bytes(n) for n in (0, 999, 1_000, 980_400, 1_250_000, 123_456_789, 4_700_000_000)] == [
        "0 B", "999 B", "1.0 KB", "980 KB", "1.2 MB", "123 MB", "4.7 GB"]
