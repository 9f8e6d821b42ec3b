"""The one safe image loader used by training and prediction.

Every image the app reads goes through :func:`load_image` (or
:func:`load_image_with_warnings`), which always returns a fully decoded ``"RGB"``
image with its EXIF orientation applied, or raises an :class:`ImageLoadError`
subclass whose message names the file and says in plain words what is wrong.
Raw Pillow / OS errors never escape, so callers (dataset scanning, the training
loop, the CLI, the UI) only have to handle one family of exceptions.

What Pillow and libtiff *say* while a file decodes (Python warnings, libtiff's
error messages) is collected for that file instead of being printed: it comes
back as ``LoadedImage.warnings`` or ``ImageLoadError.warnings``, so a caller can
put it in the file's row, JSON or log. See "collecting what the libraries say".

Memory per decode is bounded before any pixel is decoded: by Pillow's pixel limit
(counting the per-row overhead of very narrow images), and by the file size, which
for most formats caps how many pixels the file can really hold (a tiny file whose
header declares millions of pixels is refused, not decoded).

Plain Python + Pillow; no Qt, no global Pillow settings are changed (in
particular ``Image.MAX_IMAGE_PIXELS`` and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are
left alone), so this module is safe to call from several threads and from
DataLoader worker processes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import PIL
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "ImageCheck",
    "ImageLoadError",
    "ImageTooLargeError",
    "LoadedImage",
    "NotAnImageError",
    "UnsupportedImageError",
    "check_image",
    "check_image_with_warnings",
    "is_image_file",
    "load_image",
    "load_image_with_warnings",
    "not_an_image_reason",
]

logger = logging.getLogger(__name__)

# Transparent pixels are shown on white: it is what image viewers and browsers do,
# so it is what the person labelling the images saw.
_BACKGROUND = (255, 255, 255)

# check_image only needs to know the file decodes; 1 lets JPEG decode at 1/8 scale.
_CHECK_SIZE_HINT = 1


# --- which files are images ----------------------------------------------------

Image.init()  # load every format plugin now, so Pillow's registry below is complete

# Formats Pillow registers as openable that the app still does not read, and why. Folder
# scans leave their files out with this reason; a file named directly is refused with it.
_UNUSED_FORMATS: dict[str, str] = {
    # Pillow draws PostScript by running Ghostscript on it: an external program, usually not
    # installed, and PostScript is itself a program, not something to run from an image folder.
    "EPS": "PostScript is drawn only by running Ghostscript, which the app does not do",
    # Pillow reads an MPEG video's sequence header (its size) but has no decoder for its frames.
    "MPEG": "it is video; Pillow reads only its header, not its frames",
}
# Stub plugins (BUFR, GRIB, HDF5, WMF/EMF) only parse a header; their pixels need a handler
# the application would have to install, which this app never does. (On Windows Pillow renders
# WMF/EMF vector drawings through the system; they are left out there too, for the same results
# on every platform.)
_UNUSED_FORMATS.update(
    {
        fmt: "Pillow reads only the header of this format, not its pixels"
        for fmt, (factory, _accept) in Image.OPEN.items()
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
    }
)

# MPO files (multi-picture JPEGs from cameras) are opened by Pillow's JPEG opener, which
# returns an MPO image when it finds the MP extension; "MPO" has no opener of its own.
_OPENED_AS = {"MPO": "JPEG"}


def _readable_formats() -> set[str]:
    readable = set(Image.OPEN) | {fmt for fmt, opener in _OPENED_AS.items() if opener in Image.OPEN}
    return readable - set(_UNUSED_FORMATS)


# The extensions of every format Pillow can open (Image.OPEN; PDF, PALM and other
# save-only formats are not in it), minus the unused ones above. Computed once, at
# import: a plugin registered later (e.g. pillow-heif) is not counted.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in _readable_formats()
)
_UNUSED_EXTENSIONS: dict[str, str] = {
    ext: f"not used ({fmt} file): {_UNUSED_FORMATS[fmt]}"
    for ext, fmt in Image.registered_extensions().items()
    if fmt in _UNUSED_FORMATS
}


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the file name has the extension of a format the app reads. Looks at the name only."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def not_an_image_reason(path: str | os.PathLike[str]) -> str:
    """Why a folder scan leaves out a file that :func:`is_image_file` turns down."""
    suffix = Path(path).suffix.lower()
    if suffix in _UNUSED_EXTENSIONS:
        return _UNUSED_EXTENSIONS[suffix]
    return f"not an image (extension {suffix})" if suffix else "not an image (no extension)"


# --- results and errors ----------------------------------------------------------


class ImageLoadError(Exception):
    """An image file could not be loaded. ``str(err)`` is ``"<path>: <reason>"``.

    ``warnings`` holds what the libraries said while the file was read, if anything.
    """

    def __init__(
        self, path: str | os.PathLike[str], reason: str, warnings: Sequence[str] = ()
    ) -> None:
        # All values go to Exception.args so the error survives pickling, which
        # is how DataLoader worker processes hand errors back.
        super().__init__(Path(path), reason, tuple(warnings))
        self.path = Path(path)
        self.reason = reason
        self.warnings = tuple(warnings)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def _attach_warnings(self, messages: Sequence[str]) -> None:
        self.warnings = tuple(messages)
        self.args = (self.path, self.reason, self.warnings)


class NotAnImageError(ImageLoadError):
    """The file is not an image at all (empty, text, unknown format)."""


class CorruptImageError(ImageLoadError):
    """The file looks like an image but its data is truncated or broken."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than Pillow's decompression-bomb limit allows."""


class UnsupportedImageError(ImageLoadError):
    """A valid image in a format or variant that Pillow (or a library it uses) cannot decode."""


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, fully decoded
    warnings: tuple[str, ...] = ()  # what the libraries said while decoding this file


@dataclass(frozen=True)
class ImageCheck:
    reason: str | None  # None when the file loads
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


# --- loading -----------------------------------------------------------------------


def load_image_with_warnings(
    path: str | os.PathLike[str], size_hint: int | None = None
) -> LoadedImage:
    """Load ``path`` as a fully decoded RGB image with EXIF orientation applied.

    ``size_hint`` is the shorter side the caller needs. JPEGs are then decoded
    at the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still at
    least ``size_hint``; nothing else is resized, the caller's transforms do that.

    Returns the image with what Pillow and libtiff said while decoding it. Raises
    :class:`ImageLoadError` (or a subclass) for any file that cannot be loaded; its
    ``warnings`` hold what was said before it failed. Nothing is printed.
    """
    if size_hint is not None and size_hint < 1:
        raise ValueError(f"size_hint must be a positive number of pixels, got {size_hint}")
    path = Path(path)
    with _collecting_library_messages() as messages:
        try:
            image = _load(path, size_hint, messages)
        except ImageLoadError as err:
            err._attach_warnings(_unique(messages))
            raise
    return LoadedImage(image, _unique(messages))


def load_image(path: str | os.PathLike[str], size_hint: int | None = None) -> Image.Image:
    """:func:`load_image_with_warnings`, returning only the image.

    What the libraries said is logged (``logging``, this module's logger, WARNING, once
    per file and message per process) with the file name in front; callers that show
    warnings next to the file use :func:`load_image_with_warnings` instead.
    """
    try:
        loaded = load_image_with_warnings(path, size_hint)
    except ImageLoadError as err:
        _log_warnings(err.path, err.warnings)
        raise
    _log_warnings(Path(path), loaded.warnings)
    return loaded.image


def check_image_with_warnings(path: str | os.PathLike[str]) -> ImageCheck:
    """Whether ``path`` loads, and if not why, with what the libraries said.

    Decodes the whole file (at the smallest JPEG draft scale, to stay cheap),
    because only decoding finds truncated or corrupt data.
    """
    try:
        loaded = load_image_with_warnings(path, size_hint=_CHECK_SIZE_HINT)
    except ImageLoadError as err:
        return ImageCheck(err.reason, err.warnings)
    return ImageCheck(None, loaded.warnings)


def check_image(path: str | os.PathLike[str]) -> str | None:
    """Return None if ``path`` loads as an image, else the reason it does not.

    Warnings are logged as :func:`load_image` does.
    """
    check = check_image_with_warnings(path)
    _log_warnings(Path(path), check.warnings)
    return check.reason


def _load(path: Path, size_hint: int | None, messages: list[str]) -> Image.Image:
    im = _open(path, messages)
    # Closing the file as soon as decoding ends matters when scanning thousands of
    # images; the returned image is always a new, fully loaded object.
    with im:
        _refuse_unused_format(path, im)
        _refuse_if_too_large(path, im)
        _refuse_if_file_too_small(path, im)
        _refuse_if_rows_too_costly(path, im)
        try:
            _decode(im, size_hint)
            return _to_rgb(_apply_exif_orientation(im))
        except ImageLoadError:
            raise
        except Exception as exc:  # any decoder failure: say which kind it is
            raise _failure_error(path, im.format, exc, messages) from exc


def _unique(messages: list[str]) -> tuple[str, ...]:
    # libtiff repeats itself (the same error for each strip it tries); say it once.
    return tuple(dict.fromkeys(messages))


_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _log_warnings(path: Path, messages: Sequence[str]) -> None:
    # Once per file and message: a streaming training run decodes every file every epoch.
    for message in messages:
        key = (str(path), message)
        with _logged_lock:
            if key in _logged:
                continue
            _logged.add(key)
        logger.warning("%s: %s", path, message)


# --- collecting what the libraries say --------------------------------------------
#
# Two sources print while Pillow decodes: Python warnings (from Pillow's plugins) and libtiff,
# which writes its errors to C's stderr (Pillow already silences libtiff *warnings*: it sets a
# NULL warning handler before each decode). Loads run in several threads at once, so whatever
# is collected must land on the file that the *same thread* is decoding:
#
# - warnings.catch_warnings would swap the process-wide filters and showwarning for the length
#   of each decode, mixing up threads and the code around them. Instead two entries sit at the
#   front of warnings.filters whose "message pattern" is an object matching only in a thread
#   that is inside _collecting_library_messages() (its list is in a threading.local): there it
#   records the warning and the action is "ignore" (or "error" for a decompression-bomb
#   warning, so that an oversized image nested in another file, e.g. a PNG in an ICNS, is
#   refused before it is allocated); everywhere else it does not match and the normal filters
#   apply. Code that replaces warnings.filters wholesale (resetwarnings, or catch_warnings in
#   another thread) drops the entries until the next load puts them back; a warning raised
#   meanwhile follows the normal filters, as would one that Python's "default" action already
#   showed once from the same place (the registry check comes before the filters). Any warning
#   raised in the decoding thread during the decode is the file's, even one that isn't Pillow's
#   (say a ResourceWarning from an unrelated object garbage-collected at that moment).
# - libtiff has a process-wide error handler, which Pillow leaves at libtiff's default (print to
#   stderr, naming "tempfile.tif", the placeholder name Pillow gives every file). It is replaced
#   once, through ctypes, by a handler that formats the message (vsnprintf over libtiff's
#   va_list) and appends it to the calling thread's list; libtiff calls it on the decoding
#   thread, so attribution is exact. Outside our loads it prints as libtiff would. This needs
#   the libtiff Pillow uses as a shared library, found for sure (Linux wheels and system builds:
#   tested; macOS wheels: the same mechanism, untested) and a va_list passed as a pointer
#   (x86-64, arm64). Elsewhere (Windows wheels link libtiff statically) libtiff's errors still
#   go to stderr unattributed; the reasons given for failures don't depend on them.
#   Redirecting file descriptor 2 was rejected: it is process-wide, so while one thread
#   decodes, every other thread's stderr (other files' messages, tracebacks, progress bars)
#   would be swallowed into the wrong file, unless all decodes were serialised.

_thread_state = threading.local()
_hooks_lock = threading.Lock()
_libtiff_hook_tried = False
_libtiff_handler = None  # kept alive for as long as libtiff may call it: for ever


def _new_locks_after_fork() -> None:
    # A DataLoader worker forked while another thread held a lock would otherwise wait for ever.
    global _hooks_lock, _logged_lock
    _hooks_lock, _logged_lock = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)


@contextmanager
def _collecting_library_messages() -> Iterator[list[str]]:
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


# --- opening -----------------------------------------------------------------


def _open(path: Path, messages: list[str]) -> Image.Image:
    """Open the file and parse its header (no pixel data is decoded yet)."""
    try:
        return Image.open(path)
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except PermissionError as exc:
        raise ImageLoadError(path, "permission denied") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(path, "is a directory, not a file") from exc
    except UnidentifiedImageError as exc:
        raise _unidentified_error(path) from exc
    except Exception as exc:  # a plugin refused or choked on the header
        # A decompression-bomb warning arrives here as an exception from our own
        # "error" filter (or with python -W error); _failure_error refuses it as too large.
        raise _failure_error(path, _format_claiming(path), exc, messages) from exc


def _unidentified_error(path: Path) -> ImageLoadError:
    """No plugin opened the file: not an image, or a format variant its plugin rejects."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return NotAnImageError(path, "not an image file (file is empty)")
    fmt = _format_claiming(path)
    if fmt is not None:
        # Image.open swallows why the plugin that recognised the file refused it; ask it again.
        refusal = _opener_refusal(path, fmt)
        variant = _unsupported_variant(path, fmt, refusal, []) if refusal is not None else None
        if variant is not None:
            return UnsupportedImageError(path, variant)
    return NotAnImageError(path, "not an image file (cannot identify image format)")


def _format_claiming(path: Path) -> str | None:
    """The first format whose signature check accepts the file's first bytes, as Image.open tries them."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(16)  # what Image.open gives the checks
    except OSError:
        return None
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        try:
            # Formats without a check (TGA, IM, ...) would claim any file: they can't tell us.
            if accept is not None and accept(prefix):
                return fmt
        except Exception:
            continue
    return None


def _opener_refusal(path: Path, fmt: str) -> Exception | None:
    factory = Image.OPEN[fmt][0]
    try:
        with open(path, "rb") as fp:
            factory(fp, str(path)).close()
    except Exception as exc:
        return exc
    return None


# --- naming what went wrong ---------------------------------------------------------

# Words Pillow's plugins use when a valid file uses a feature they don't implement
# ("Unsupported BMP compression (4)", "Unknown pixel mode"), but not its codec status "unknown error".
_UNSUPPORTED_WORDS = re.compile(
    r"\b(unsupported|unimplemented|not supported|not implemented|unknown(?! error))\b", re.IGNORECASE
)
# libtiff built without a codec: "WEBP compression support is not configured".
_LIBTIFF_MISSING_CODEC = re.compile(r"(\w+) compression support is not configured", re.IGNORECASE)
# Pillow's codec status words, which say less than the library's own message.
_GENERIC_CODEC_ERROR = re.compile(r"(decoder|encoder) error -?\d+|decoding error|broken data stream|unknown error")
# TIFF compression codes that Pillow has no name for (it refuses the file at open).
_TIFF_COMPRESSION_NAMES = {
    34661: "JBIG",
    34712: "JPEG 2000",
    34887: "LERC",
    34892: "lossy JPEG",
    50002: "JPEG XL",
}


def _failure_error(path: Path, fmt: str | None, exc: BaseException, messages: list[str]) -> ImageLoadError:
    """The typed error for a failure while opening or decoding, with the most telling reason."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageTooLargeError(path, _too_large_reason_from_message(str(exc)))
    if isinstance(exc, MemoryError):
        return ImageTooLargeError(path, "image is too large: not enough memory to decode it")
    if isinstance(exc, OSError) and exc.errno is not None:  # a real I/O problem, not a format problem
        return ImageLoadError(path, f"cannot read file: {exc.strerror or exc}")
    variant = _unsupported_variant(path, fmt, exc, messages)
    if variant is not None:
        return UnsupportedImageError(path, variant)
    return CorruptImageError(path, f"file is truncated or corrupt: {_failure_detail(exc, messages)}")


def _unsupported_variant(path: Path, fmt: str | None, exc: BaseException, messages: list[str]) -> str | None:
    """'unsupported variant of FORMAT (what)' if the failure is a missing feature, else None."""
    for message in messages:
        missing = _LIBTIFF_MISSING_CODEC.search(message)
        if missing:
            return f"unsupported variant of TIFF ({missing.group(1)} compression)"
    if fmt == "TIFF":
        code = _tiff_compression_code(path)
        if code is not None and code not in TiffImagePlugin.COMPRESSION_INFO:
            name = _TIFF_COMPRESSION_NAMES.get(code)
            what = f"{name} compression, code {code}" if name else f"compression code {code}"
            return f"unsupported variant of TIFF ({what})"
    message = str(exc)
    if isinstance(exc, NotImplementedError) or _UNSUPPORTED_WORDS.search(message):
        return f"unsupported variant of {fmt or 'its image format'} ({_variant_detail(message, fmt)})"
    return None


def _variant_detail(message: str, fmt: str | None) -> str:
    """'Unsupported BMP compression (4)' -> 'compression 4'."""
    detail = message.strip().rstrip(".")
    detail = re.sub(r"^(unsupported|unimplemented|unknown)\s+", "", detail, flags=re.IGNORECASE)
    if fmt:
        detail = re.sub(rf"^{re.escape(fmt)}\s+", "", detail, flags=re.IGNORECASE)
    detail = re.sub(r"\s*\((\w+)\)", r" \1", detail)
    return detail or message or "a feature Pillow does not implement"


def _failure_detail(exc: BaseException, messages: list[str]) -> str:
    message = str(exc) or type(exc).__name__
    from_libtiff = _unique([m for m in messages if m.startswith("libtiff")])
    if from_libtiff and _GENERIC_CODEC_ERROR.search(message):
        return "; ".join(from_libtiff)  # libtiff's own words say more than Pillow's status code
    return message


def _tiff_compression_code(path: Path) -> int | None:
    """The Compression tag of the first image, read with Pillow's own TIFF tag parser."""
    try:
        with open(path, "rb") as f:
            directory = TiffImagePlugin.ImageFileDirectory_v2(f.read(8))
            f.seek(directory.next)
            directory.load(f)
        code = directory.get(TiffImagePlugin.COMPRESSION, 1)
    except Exception:
        return None
    return code if isinstance(code, int) else None


# --- refusing before decoding ----------------------------------------------------


def _refuse_unused_format(path: Path, im: Image.Image) -> None:
    why = _UNUSED_FORMATS.get(im.format or "")
    if why is not None:
        raise UnsupportedImageError(path, f"unsupported format {im.format}: {why}")


# Pillow keeps an 8-byte pointer per row beside the (up to) 4-byte pixels, so a row costs as
# much memory as 2 more pixels: a 1-pixel-wide image costs 3x its pixel count.
_ROW_COST_IN_PIXELS = 2


def _refuse_if_too_large(path: Path, im: Image.Image) -> None:
    """Refuse images over Pillow's pixel limit, using only the parsed header.

    Image.open raises only above twice the limit and merely warns between 1x and
    2x; an image in that band is just as expensive, so it is refused too. Checking
    the size ourselves avoids changing Image.MAX_IMAGE_PIXELS for the whole process.
    """
    limit = Image.MAX_IMAGE_PIXELS  # read at call time: the user may have changed it
    if limit is None:
        return
    pixels = im.width * im.height
    if pixels > limit:
        raise ImageTooLargeError(path, _too_large_reason(pixels, limit))


def _refuse_if_rows_too_costly(path: Path, im: Image.Image) -> None:
    """Refuse very narrow images whose rows, not pixels, would exceed the pixel limit's memory:
    a 1 x 84,000,000 image is under the limit but would take about a gigabyte."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    width, height = im.size
    cost = width * height + _ROW_COST_IN_PIXELS * height
    if cost > limit:
        raise ImageTooLargeError(
            path,
            f"image is too large: {width} x {height} pixels in {height} rows take as much "
            f"memory as {cost} pixels, over the limit of {limit}",
        )


def _too_large_reason(pixels: int, limit: int) -> str:
    return f"image is too large: {pixels} pixels exceeds the limit of {limit}"


def _too_large_reason_from_message(message: str) -> str:
    # Pillow raised before we could see the size; its message carries the count.
    match = re.search(r"\((\d+) pixels\)", message)
    limit = Image.MAX_IMAGE_PIXELS
    if match and limit is not None:
        return _too_large_reason(int(match.group(1)), limit)
    return f"image is too large: {message}"


# The most pixels one byte of file can describe, by how the format stores pixels. Each bound is
# several times what a real file reaches, so that only a header that lies (or a file cut short)
# is refused; the refusal comes before Pillow allocates the declared size.
_STORED = 8  # raw or fixed-rate: at least 1 bit per pixel (DXT/BCn: 4 bits)
_RUN_LENGTH = 1024  # a packet of 1-3 bytes repeats at most 128-255 values: <= ~700 px/byte even
#                     at 1 bit per pixel. (A BMP RLE "delta" can skip whole rows in 4 bytes:
#                     such BMPs, rare, are refused.)
_DEFLATE_OR_LZW = 16_384  # deflate expands at most 1032x, GIF's LZW ~2730x, TIFF's ~1300x;
#                           x8 for 1-bit pixels: <= ~10,300 px/byte
_HUFFMAN_JPEG = 4096  # Huffman JPEG needs >= 1 bit per 8x8 block in its DC scan: <= 512 px/byte.
#                       Arithmetic-coded JPEGs (rare) of near-flat images can go beyond.
_PIXELS_PER_BYTE = {
    **dict.fromkeys(
        ["DDS", "FTEX", "GBR", "IM", "IMT", "IPTC", "MCIDAS", "PCD", "PIXAR", "PPM", "SPIDER",
         "XBM", "XPM", "XVTHUMB"],
        _STORED,
    ),
    **dict.fromkeys(
        ["BMP", "DIB", "DCX", "FLI", "MSP", "PCX", "PSD", "QOI", "SGI", "SUN", "TGA"], _RUN_LENGTH
    ),
    **dict.fromkeys(["CUR", "FITS", "GIF", "ICO", "PNG"], _DEFLATE_OR_LZW),
    **dict.fromkeys(["JPEG", "MPO"], _HUFFMAN_JPEG),
    # No bound: WebP, AVIF and JPEG 2000 (their entropy coders can describe a flat image of any
    # size in a few bytes), ICNS (fixed icon sizes), and formats not listed (plugins added later).
    # Only the pixel limit bounds them.
}
_TIFF_PIXELS_PER_BYTE = {
    "raw": _STORED,
    "tiff_raw_16": _STORED,
    "packbits": _RUN_LENGTH,
    "tiff_thunderscan": _RUN_LENGTH,
    "tiff_lzw": _DEFLATE_OR_LZW,
    "tiff_adobe_deflate": _DEFLATE_OR_LZW,
    "tiff_deflate": _DEFLATE_OR_LZW,
    "jpeg": _HUFFMAN_JPEG,
    "tiff_jpeg": _HUFFMAN_JPEG,
    # No bound: CCITT fax (a blank row is 1 bit), zstd and LZMA (huge ratios on runs), WebP.
}
# Any file may hold this many pixels (a 64 x 64 image), whatever its size: below it the
# check could only refuse harmless odd files.
_ANY_FILE_MAY_HOLD = 64 * 64


def _refuse_if_file_too_small(path: Path, im: Image.Image) -> None:
    """Refuse a header that declares more pixels than a file this size can hold in its format."""
    most = _most_pixels_per_byte(im)
    if most is None:
        return
    try:
        size = path.stat().st_size
    except OSError:
        return  # decoding will say what is wrong
    width, height = im.size
    if width * height > most * size + _ANY_FILE_MAY_HOLD:
        raise CorruptImageError(
            path,
            f"file is truncated or corrupt: declares {width} x {height} pixels but the file is only "
            f"{size} bytes (too small for a {im.format} image that size)",
        )


def _most_pixels_per_byte(im: Image.Image) -> int | None:
    fmt = im.format or ""
    if fmt == "TIFF":
        return _TIFF_PIXELS_PER_BYTE.get(im.info.get("compression", ""))
    if fmt == "BLP":
        return _HUFFMAN_JPEG if _is_jpeg_blp(im) else _STORED
    most = _PIXELS_PER_BYTE.get(fmt)
    if most == _RUN_LENGTH and im.tile and all(tile[0] == "raw" for tile in im.tile):
        return _STORED  # this file of a raw-or-RLE format is raw
    return most


def _is_jpeg_blp(im: Image.Image) -> bool:
    # BLP1 tiles carry (compression, encoding, alpha); compression 0 is JPEG.
    tile = im.tile[0] if im.tile else None
    return bool(tile and tile[0] == "BLP1" and tile[3] and tile[3][0] == 0)


# --- decoding ----------------------------------------------------------------


def _decode(im: Image.Image, size_hint: int | None) -> None:
    """Decode the first frame, letting JPEG shrink by DCT scaling when allowed."""
    if size_hint is not None:
        # draft() keeps both sides >= the requested box, so a square box keeps the
        # shorter side >= size_hint. It is a no-op for formats other than JPEG.
        im.draft("RGB", (size_hint, size_hint))
    # Image.open leaves animated GIF / WebP / APNG on frame 0, which is the frame
    # we want; load() decodes it and is where truncated data is detected.
    im.load()


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip as the camera's EXIF orientation tag says."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        # Broken EXIF is metadata damage, not image damage: the pixels decoded
        # fine, so use them as stored rather than refuse a usable photo.
        return im.copy()


# --- mode conversion ---------------------------------------------------------


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or black backgrounds."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if _has_transparency(im):
        return _composite_on_white(im)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I"):
        return _integer_to_l(im.convert("I")).convert("RGB")
    if im.mode == "F":
        return _float_to_l(im).convert("RGB")
    # "1", "L", "P", "CMYK", "YCbCr", "HSV", ... : Pillow's own conversion is right.
    return im.convert("RGB")


def _has_transparency(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _composite_on_white(im: Image.Image) -> Image.Image:
    if im.mode == "La":  # premultiplied grey has no direct route to RGBA
        im = im.convert("LA")
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _integer_to_l(im: Image.Image) -> Image.Image:
    """Scale a 32-bit integer image ("I") to 8 bits.

    Values that fit in 0..65535 are 16-bit samples (16-bit PNG/TIFF): divide by
    257 so 65535 -> 255 and 32768 -> 128. Anything else (negative or wider
    values) is stretched from its own min..max, as there is no known full scale.
    """
    low, high = im.getextrema()
    if low >= 0 and high <= 65535:
        return _scale_to_l(im, scale=255 / 65535, offset=0.0)
    return _stretch_to_l(im, low, high)


def _float_to_l(im: Image.Image) -> Image.Image:
    """Scale a float image ("F") to 8 bits.

    Floats in 0..1 are the usual normalised convention; 0..255 is already 8-bit
    scale; anything else is stretched from its own min..max.
    """
    low, high = im.getextrema()
    if low >= 0 and high <= 1:
        return _scale_to_l(im, scale=255.0, offset=0.0)
    if low >= 0 and high <= 255:
        return _scale_to_l(im, scale=1.0, offset=0.0)
    return _stretch_to_l(im, low, high)


def _stretch_to_l(im: Image.Image, low: float, high: float) -> Image.Image:
    if high == low:  # flat image: any grey is as right as another; use mid grey
        return Image.new("L", im.size, 128)
    scale = 255 / (high - low)
    return _scale_to_l(im, scale=scale, offset=-low * scale)


def _scale_to_l(im: Image.Image, scale: float, offset: float) -> Image.Image:
    # point() on "I"/"F" truncates, so +0.5 rounds; convert("L") then clips to 0..255.
    return im.point(lambda value: value * scale + offset + 0.5).convert("L")
