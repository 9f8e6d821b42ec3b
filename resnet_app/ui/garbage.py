"""Python's garbage collection on the GUI thread only.

Python collects reference cycles in whichever thread happens to allocate when a generation's
threshold is crossed. During training that is usually the training thread, and a cycle that holds a
Qt object (a menu, a dialog, a window's wrapper) is then destroyed off the GUI thread. Qt objects must
be deleted on their own thread: once, in the test suite, the training thread's collection destroyed a
QMenu's wrapper while the GUI thread deleted another menu; each waited for a lock the other held, and
the app froze for good. So while the app runs, automatic collection is off and a timer on the GUI
thread collects instead, choosing the generation as Python's own thresholds would.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 200  # cycles wait at most this long; a young-generation pass takes well under 1 ms


class MainThreadGarbageCollector(QObject):
    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_due_generation)
        self.timer.start(INTERVAL_MS)

    def collect_due_generation(self) -> None:
        """The oldest generation whose count is over its threshold, as the automatic collector picks
        (counts: allocations since the last young pass, then passes of the generation below)."""
        counts = gc.get_count()
        due = [generation for generation, threshold in enumerate(self.thresholds)
               if threshold and counts[generation] > threshold]
        if due:
            gc.collect(max(due))


def collect_garbage_on_the_gui_thread() -> MainThreadGarbageCollector:
    """Install the collector once for this QApplication (the app, the self-test, the tests' windows)."""
    app = QCoreApplication.instance()
    existing = app.findChild(MainThreadGarbageCollector)
    return existing if existing is not None else MainThreadGarbageCollector(app)
