"""Process-wide settings the desktop app and the command line apply once they have started."""
from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Take every object alive now out of the garbage collector's full passes.

    After start-up (Qt, torch, torchvision and the main window) the heap holds about 380,000 objects
    that live as long as the process. A full collection walks them all: 200-280 ms on the 2-core
    development machine, with the GIL held, in whichever thread happened to allocate. During training
    that froze the window for a fifth of a second at random moments (seen in the event-loop test) and
    would stall a GPU's feed just as well. Frozen (gc.freeze, Python 3.7+), a full collection of what
    is left takes under a millisecond. Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
