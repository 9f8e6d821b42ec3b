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
put it in the file's row, JSON or log (library_messages.py says how).

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

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from resnet_app.core.data.image_modes import to_rgb
from resnet_app.core.data.library_messages import collecting_library_messages

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
    with collecting_library_messages() as messages:
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
            return to_rgb(_apply_exif_orientation(im))
        except ImageLoadError:
            raise
        except Exception as exc:  # any decoder failure: say which kind it is
            raise _failure_error(path, im.format, exc, messages) from exc


def _unique(messages: list[str]) -> tuple[str, ...]:
    # libtiff repeats itself (the same error for each strip it tries); say it once.
    return tuple(dict.fromkeys(messages))


_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A DataLoader worker forked while another thread held the lock would otherwise wait for ever.
    global _logged_lock
    _logged_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _log_warnings(path: Path, messages: Sequence[str]) -> None:
    # Once per file and message: a streaming training run decodes every file every epoch.
    for message in messages:
        key = (str(path), message)
        with _logged_lock:
            if key in _logged:
                continue
            _logged.add(key)
        logger.warning("%s: %s", path, message)



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
