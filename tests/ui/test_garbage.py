"""Reference cycles holding Qt objects die on the GUI thread, never in a worker thread (ui/garbage.py)."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject


class CycleHoldingAQtObject:
    def __init__(self, deleted_in: list) -> None:
        self.me = self  # only the garbage collector can free it
        self.menu = QObject()
        self.deleted_in = deleted_in

    def __del__(self) -> None:
        self.deleted_in.append(threading.current_thread())


def test_a_cycle_left_by_a_worker_thread_is_collected_on_the_gui_thread(window, qtbot):
    deleted_in: list[threading.Thread] = []
    kept_alive: list = []
    cycle = [CycleHoldingAQtObject(deleted_in)]

    def drop_it_then_allocate() -> None:
        cycle.clear()  # the last reference goes in the worker thread...
        # ...which then allocates far past the young generation's threshold, as training does
        kept_alive.append([[] for _ in range(50_000)])

    worker = threading.Thread(target=drop_it_then_allocate)
    worker.start()
    worker.join()
    assert deleted_in == []  # the worker thread collected nothing
    qtbot.waitUntil(lambda: bool(deleted_in), timeout=10_000)
    assert deleted_in == [threading.main_thread()]
