"""The one safe image loader used by training and prediction.

Every image the app reads goes through :func:`load_image`, which always returns a
fully decoded ``"RGB"`` image with its EXIF orientation applied, or raises an
:class:`ImageLoadError` subclass whose message names the file and says in plain
words what is wrong. Raw Pillow / OS errors never escape, so callers (dataset
scanning, the training loop, the CLI, the UI) only have to handle one family of
exceptions.

Plain Python + Pillow; no Qt, no global Pillow settings are changed (in
particular ``Image.MAX_IMAGE_PIXELS`` and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are
left alone), so this module is safe to call from several threads and from
DataLoader worker processes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "ImageLoadError",
    "ImageTooLargeError",
    "NotAnImageError",
    "check_image",
    "is_image_file",
    "load_image",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

# Transparent pixels are shown on white: it is what image viewers and browsers do,
# so it is what the person labelling the images saw.
_BACKGROUND = (255, 255, 255)

# check_image only needs to know the file decodes; 1 lets JPEG decode at 1/8 scale.
_CHECK_SIZE_HINT = 1


class ImageLoadError(Exception):
    """An image file could not be loaded. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        # Both values go to Exception.args so the error survives pickling, which
        # is how DataLoader worker processes hand errors back.
        super().__init__(Path(path), reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class NotAnImageError(ImageLoadError):
    """The file is not an image at all (empty, text, unknown format)."""


class CorruptImageError(ImageLoadError):
    """The file looks like an image but its data is truncated or broken."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than Pillow's decompression-bomb limit allows."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the file name has an image extension. Looks at the name only."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | os.PathLike[str], size_hint: int | None = None) -> Image.Image:
    """Load ``path`` as a fully decoded RGB image with EXIF orientation applied.

    ``size_hint`` is the shorter side the caller needs. JPEGs are then decoded
    at the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still at
    least ``size_hint``; nothing else is resized, the caller's transforms do that.

    Raises :class:`ImageLoadError` (or a subclass) for any file that cannot be
    loaded.
    """
    if size_hint is not None and size_hint < 1:
        raise ValueError(f"size_hint must be a positive number of pixels, got {size_hint}")
    path = Path(path)
    im = _open(path)
    # Closing the file as soon as decoding ends matters when scanning thousands of
    # images; the returned image is always a new, fully loaded object.
    with im:
        _refuse_if_too_large(path, im)
        try:
            _decode(im, size_hint)
            return _to_rgb(_apply_exif_orientation(im))
        except ImageLoadError:
            raise
        except Exception as exc:  # any decoder failure means the data is bad
            raise _decode_error(path, exc) from exc


def check_image(path: str | os.PathLike[str]) -> str | None:
    """Return None if ``path`` loads as an image, else the reason it does not.

    Decodes the whole file (at the smallest JPEG draft scale, to stay cheap),
    because only decoding finds truncated or corrupt data.
    """
    try:
        load_image(path, size_hint=_CHECK_SIZE_HINT)
    except ImageLoadError as err:
        return err.reason
    return None


# --- opening -----------------------------------------------------------------


def _open(path: Path) -> Image.Image:
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
        raise NotAnImageError(path, _unidentified_reason(path)) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning arrives as an exception only when warnings are turned into
        # errors (python -W error); either way the image is refused.
        raise ImageTooLargeError(path, _too_large_reason_from_message(str(exc))) from exc
    except OSError as exc:
        if exc.errno is not None:  # a real I/O problem, not a format problem
            raise ImageLoadError(path, f"cannot read file: {exc.strerror or exc}") from exc
        raise CorruptImageError(path, f"file is truncated or corrupt: {exc}") from exc
    except Exception as exc:  # a plugin choked on a malformed header
        raise CorruptImageError(path, f"file is truncated or corrupt: {exc}") from exc


def _unidentified_reason(path: Path) -> str:
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return "not an image file (file is empty)"
    return "not an image file (cannot identify image format)"


def _refuse_if_too_large(path: Path, im: Image.Image) -> None:
    """Refuse images over Pillow's pixel limit, using only the parsed header.

    Image.open raises only above twice the limit and merely warns between 1x and
    2x; an image in that band is just as expensive, so it is refused too. Checking
    the size ourselves avoids warnings.catch_warnings, which is not thread-safe,
    and avoids changing Image.MAX_IMAGE_PIXELS for the whole process.
    """
    limit = Image.MAX_IMAGE_PIXELS  # read at call time: the user may have changed it
    if limit is None:
        return
    pixels = im.width * im.height
    if pixels > limit:
        raise ImageTooLargeError(path, _too_large_reason(pixels, limit))


def _too_large_reason(pixels: int, limit: int) -> str:
    return f"image is too large: {pixels} pixels exceeds the limit of {limit}"


def _too_large_reason_from_message(message: str) -> str:
    # Pillow raised before we could see the size; its message carries the count.
    match = re.search(r"\((\d+) pixels\)", message)
    limit = Image.MAX_IMAGE_PIXELS
    if match and limit is not None:
        return _too_large_reason(int(match.group(1)), limit)
    return f"image is too large: {message}"


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


def _decode_error(path: Path, exc: Exception) -> ImageLoadError:
    if isinstance(exc, MemoryError):
        return ImageTooLargeError(path, "image is too large: not enough memory to decode it")
    if isinstance(exc, OSError) and exc.errno is not None:
        return ImageLoadError(path, f"cannot read file: {exc.strerror or exc}")
    message = str(exc) or type(exc).__name__
    return CorruptImageError(path, f"file is truncated or corrupt: {message}")


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
