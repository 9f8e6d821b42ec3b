"""A guard against a Qt binding bug that aborts the interpreter in long sessions.

PySide6 6.12.0 on Python 3.11 drops one reference to `True` on every `Signal.emit()` (measured: 100
emits change `sys.getrefcount(True)` by exactly -100; PySide6 6.11.3 on the same Python: 0). When the
count reaches zero Python aborts with "Fatal Python error: bool_dealloc". The app starts with about
29,500 references to `True`, so a few tens of thousands of signals (a long training run, undoing a big
sort) end it. On Python >= 3.12 `True` is immortal and the bug is harmless.

pyproject.toml keeps such bindings out on Python < 3.12; this module is the second line: it measures
the binding (`signals_leak_true`), tells the self-test and the log, and, when the leak is there anyway
(an environment made before the bound), keeps `True` alive by holding as many references as the
binding lost (`TrueReferenceGuard`), so the app does not abort. See docs/decisions.md.
"""
from __future__ import annotations

import logging
import sys

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

log = logging.getLogger(__name__)

PROBE_EMITS = 2000
GUARD_INTERVAL_MS = 250
# References held from the start, so that a burst of signals between two top-ups (an undo of a huge
# sort log, ~10,000 a second) never reaches zero: 800 KB.
CUSHION = 100_000


class _Probe(QObject):
    ping = Signal(int, int)


def true_references_lost(emits: int = PROBE_EMITS) -> int:
    """How many references to `True` `emits` signal emissions lose (0 for a sound binding).

    Emits a connected signal on this thread (a direct call), so nothing else runs in between; the
    measure is exact when no other thread is busy creating or dropping references to `True`. The
    references a leaking binding loses here are given back (a small script holds fewer than `emits`).
    """
    reserve = [True] * emits  # True must survive the measure itself
    probe = _Probe()
    probe.ping.connect(lambda _a, _b: None)
    before = sys.getrefcount(True)
    for n in range(emits):
        probe.ping.emit(n, n)
    lost = before - sys.getrefcount(True)
    probe.deleteLater()
    if lost > 0:
        _given_back.extend(reserve[:lost])
    return lost


_given_back: list[bool] = []  # references that stand in for those a probe lost; never emptied


def signals_leak_true(emits: int = PROBE_EMITS) -> bool:
    """True when the binding loses a reference to `True` per signal (most of `emits`, not noise)."""
    return true_references_lost(emits) >= emits // 2


def describe_binding() -> str:
    return f"PySide6 {PYSIDE_VERSION} on Python {sys.version.split()[0]}"


class TrueReferenceGuard(QObject):
    """Holds back references to `True` as fast as a leaking binding loses them.

    It starts with CUSHION references in hand. Every GUARD_INTERVAL_MS on the GUI thread: when
    `sys.getrefcount(True)` has fallen below the count seen at start, as many references as are missing
    are appended to a list that is never emptied (8 bytes each: ~0.6 MB an hour at 20 signals a second).
    Without the leak it only ever adds the few a busy moment takes away.
    """

    def __init__(self, parent: QObject | None = None, floor: int | None = None) -> None:
        super().__init__(parent)
        self._kept: list[bool] = [True] * CUSHION
        self._floor = sys.getrefcount(True) if floor is None else floor
        self._timer = QTimer(self)
        self._timer.setInterval(GUARD_INTERVAL_MS)
        self._timer.timeout.connect(self.top_up)
        self._timer.start()

    def top_up(self) -> int:
        missing = self._floor - sys.getrefcount(True)
        if missing > 0:
            self._kept.extend([True] * missing)
        return max(0, missing)

    @property
    def kept(self) -> int:
        """References put back so far (beyond the cushion)."""
        return len(self._kept) - CUSHION


_guard: TrueReferenceGuard | None = None
_checked = False


def guard_if_needed() -> TrueReferenceGuard | None:
    """Once a process: measure the binding and, on a leaking one, log it and start the guard (owned by
    the application)."""
    global _guard, _checked
    if _checked or sys.version_info >= (3, 12):
        return _guard
    _checked = True
    if signals_leak_true():
        log.warning("%s loses a reference to True on every signal (a binding bug that would abort the app); "
                    "guarding against it. Install PySide6-Essentials < 6.12 to remove the cause.",
                    describe_binding())
        _guard = TrueReferenceGuard(QCoreApplication.instance())
    return _guard
