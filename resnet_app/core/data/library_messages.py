"""Collecting what Pillow and libtiff say while a file decodes, for that file alone (images.py's loader).

Two sources print while Pillow decodes: Python warnings (from Pillow's plugins) and libtiff,
which writes its errors to C's stderr (Pillow already silences libtiff *warnings*: it sets a
NULL warning handler before each decode). Loads run in several threads at once, so whatever
is collected must land on the file that the *same thread* is decoding:

- warnings.catch_warnings would swap the process-wide filters and showwarning for the length
  of each decode, mixing up threads and the code around them. Instead two entries sit at the
  front of warnings.filters whose "message pattern" is an object matching only in a thread
  that is inside collecting_library_messages() (its list is in a threading.local): there it
  records the warning and the action is "ignore" (or "error" for a decompression-bomb
  warning, so that an oversized image nested in another file, e.g. a PNG in an ICNS, is
  refused before it is allocated); everywhere else it does not match and the normal filters
  apply. Code that replaces warnings.filters wholesale (resetwarnings, or catch_warnings in
  another thread) drops the entries until the next load puts them back; a warning raised
  meanwhile follows the normal filters, as would one that Python's "default" action already
  showed once from the same place (the registry check comes before the filters). Any warning
  raised in the decoding thread during the decode is the file's, even one that isn't Pillow's
  (say a ResourceWarning from an unrelated object garbage-collected at that moment).
- libtiff has a process-wide error handler, which Pillow leaves at libtiff's default (print to
  stderr, naming "tempfile.tif", the placeholder name Pillow gives every file). It is replaced
  once, through ctypes, by a handler that formats the message (vsnprintf over libtiff's
  va_list) and appends it to the calling thread's list; libtiff calls it on the decoding
  thread, so attribution is exact. Outside our loads it prints as libtiff would. This needs
  the libtiff Pillow uses as a shared library, found for sure (Linux wheels and system builds:
  tested; macOS wheels: the same mechanism, untested) and a va_list passed as a pointer
  (x86-64, arm64). Elsewhere (Windows wheels link libtiff statically) libtiff's errors still
  go to stderr unattributed; the reasons given for failures don't depend on them.
  Redirecting file descriptor 2 was rejected: it is process-wide, so while one thread
  decodes, every other thread's stderr (other files' messages, tracebacks, progress bars)
  would be swallowed into the wrong file, unless all decodes were serialised.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import PIL
from PIL import Image

_thread_state = threading.local()
_hooks_lock = threading.Lock()
_libtiff_hook_tried = False
_libtiff_handler = None  # kept alive for as long as libtiff may call it: for ever


def _new_lock_after_fork() -> None:
    # A DataLoader worker forked while another thread held the lock would otherwise wait for ever.
    global _hooks_lock
    _hooks_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


@contextmanager
def collecting_library_messages() -> Iterator[list[str]]:
    """Collect, for this thread only, what Pillow and libtiff say inside the block."""
    _install_message_hooks()
    outer = getattr(_thread_state, "messages", None)
    messages: list[str] = []
    _thread_state.messages = messages
    try:
        yield messages
    finally:
        _thread_state.messages = outer


def _messages_of_this_thread() -> list[str] | None:
    return getattr(_thread_state, "messages", None)


class _WhileCollecting:
    """Stands in for a warnings filter's message regex (the warnings machinery only calls its
    ``match``): matches every warning raised in a thread that is collecting messages, and
    nothing anywhere else."""

    def __init__(self, record: bool) -> None:
        self.record = record

    def match(self, text: str) -> bool:
        messages = _messages_of_this_thread()
        if messages is None:
            return False
        if self.record:
            messages.append(text)
        return True


_WARNING_FILTERS = [
    ("error", _WhileCollecting(record=False), Image.DecompressionBombWarning, None, 0),
    ("ignore", _WhileCollecting(record=True), Warning, None, 0),
]


def _install_message_hooks() -> None:
    global _libtiff_hook_tried, _libtiff_handler
    if _libtiff_hook_tried and _warning_filters_are_first():
        return  # the usual case: no lock taken
    with _hooks_lock:
        _put_warning_filters_first()
        if not _libtiff_hook_tried:
            # "Tried" only once the handler is in place: another thread that sees it set skips the
            # lock and decodes at once, and libtiff would print that file's errors to stderr.
            _libtiff_handler = _hook_libtiff_errors()
            _libtiff_hook_tried = True


def _warning_filters_are_first() -> bool:
    return warnings.filters[: len(_WARNING_FILTERS)] == _WARNING_FILTERS


def _put_warning_filters_first() -> None:
    if _warning_filters_are_first():
        return
    # Filters added since (pytest's, a caller's catch_warnings) went in front of ours; during
    # our own decodes ours must be seen first. They match nothing elsewhere, so order is moot there.
    filters = warnings.filters
    for entry in _WARNING_FILTERS:
        while entry in filters:
            filters.remove(entry)
    filters[0:0] = _WARNING_FILTERS


# libtiff: void handler(const char *module, const char *fmt, va_list ap). A va_list parameter
# is passed as a pointer on the platforms allowed below, so it travels as c_void_p.
_TiffErrorHandler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_PILLOW_TIFF_NAME = "tempfile.tif"  # the name Pillow gives libtiff for every file it decodes
_VA_LIST_AS_POINTER = {"x86_64", "amd64", "aarch64", "arm64"}


def _hook_libtiff_errors():
    """Route libtiff's error messages to the decoding thread; the handler, or None if not possible."""
    if sys.platform not in ("linux", "darwin") or platform.machine().lower() not in _VA_LIST_AS_POINTER:
        return None
    library = _pillows_libtiff()
    if library is None:
        return None
    try:
        libtiff = ctypes.CDLL(library)  # the same handle Pillow's _imaging already loaded
        set_error_handler = libtiff.TIFFSetErrorHandler
        vsnprintf = ctypes.CDLL(None).vsnprintf
    except (OSError, AttributeError):
        return None
    vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    vsnprintf.restype = ctypes.c_int
    set_error_handler.argtypes = [_TiffErrorHandler]
    set_error_handler.restype = ctypes.c_void_p

    def on_libtiff_error(module: bytes | None, fmt: bytes | None, args: int | None) -> None:
        try:  # an exception must never cross back into C
            text = ctypes.create_string_buffer(1024)
            if fmt:
                vsnprintf(text, len(text), fmt, args)
            _report_libtiff_error((module or b"").decode("utf-8", "replace"),
                                  text.value.decode("utf-8", "replace"))
        except BaseException:
            pass

    handler = _TiffErrorHandler(on_libtiff_error)
    set_error_handler(handler)
    return handler


def _report_libtiff_error(module: str, text: str) -> None:
    messages = _messages_of_this_thread()
    if messages is None:  # not one of our loads: print as libtiff's own handler does
        if sys.stderr is not None:
            sys.stderr.write(f"{module}: {text}.\n" if module else f"{text}.\n")
        return
    where = "" if module in ("", _PILLOW_TIFF_NAME) else f" ({module})"
    messages.append(f"libtiff{where}: {text}")


def _pillows_libtiff() -> str | None:
    """Path of the libtiff Pillow's _imaging uses, or None when it can't be told for sure.

    Wheels bundle it next to the package (pillow.libs/ on Linux, PIL/.dylibs/ on macOS);
    a Pillow built against a system libtiff uses the one libtiff mapped into the process.
    """
    package = Path(PIL.__file__).parent
    bundled = sorted((package.parent / "pillow.libs").glob("libtiff*"))
    bundled += sorted((package / ".dylibs").glob("libtiff*"))
    if bundled:
        return str(bundled[0]) if len(bundled) == 1 else None
    mapped = _mapped_libraries("libtiff")
    return mapped[0] if len(mapped) == 1 else None


def _mapped_libraries(stem: str) -> list[str]:
    """Files mapped into this process (Linux) whose name starts with ``stem``."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            fields = [line.split(None, 5) for line in maps]
    except OSError:
        return []
    paths = {parts[5].strip() for parts in fields if len(parts) == 6}  # anonymous mappings have no path
    return sorted(p for p in paths if os.path.basename(p).startswith(stem))
