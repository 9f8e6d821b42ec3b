"""A tiny, deterministic corpus of good and bad image files for tests.

``make_image_corpus(directory)`` writes the files below into ``directory`` and
returns ``{filename: should_load_ok}``. Everything is generated with Pillow (or
crafted byte by byte), so the corpus is the same on every run and the whole
thing is well under 200 KB. It deliberately does not import resnet_app: it is a
fixture maker, not a user of the code under test.

Good files (should load):
    good_rgb.jpg            16x16 RGB JPEG, solid (200, 30, 30)
    good.png                16x16 RGB PNG, solid (30, 160, 60)
    good.bmp                8x8 RGB BMP, solid (10, 20, 200)
    good.webp               8x8 RGB WebP (lossless), solid (250, 200, 0)
    good.gif                8x8 static GIF, solid (0, 128, 255)
    good.tiff               8x8 RGB TIFF, solid (90, 90, 90)
    grey.jpg                8x8 "L" JPEG, grey 100
    bilevel.png             8x8 "1" PNG, left half black, right half white
    cmyk.jpg                8x8 CMYK JPEG, pure red (0, 255, 255, 0) -> RGB ~(255, 0, 0)
    grey16.png              3x1 16-bit grey PNG ("I;16"), pixels 0, 32768, 65535
    int32.tif               3x1 32-bit int TIFF ("I"), pixels 0, 32768, 65535
    float.tif               3x1 float TIFF ("F"), pixels 0.0, 0.5, 1.0
    palette_transparent.png 4x1 "P" PNG: index 0 is black and fully transparent,
                            index 1 is opaque red; pixels 0, 1, 0, 1
    la.png                  2x1 "LA" PNG: (0, alpha 0) then (50, alpha 255)
    rgba.png                2x1 "RGBA" PNG: (0, 0, 0, 0) then (255, 0, 0, 255)
    rgb_trns.png            2x1 RGB PNG with a tRNS colour key: black is transparent,
                            pixels black then green (0, 255, 0)
    animated.gif            8x8, 2 frames: red (255, 0, 0) then blue (0, 0, 255)
    animated.png            8x8 APNG, 2 frames: red then blue
    animated.webp           8x8 animated WebP, 2 frames: red then blue
    exif_rotated.jpg        40x20 JPEG with EXIF Orientation 6; left half red, right
                            half blue, so upright it is 20x40, red on top
    one_pixel.png           1x1 RGB PNG, (1, 2, 3)
    café_日本.png            4x4 RGB PNG, solid (7, 77, 177)
    UPPER.JPG               8x8 RGB JPEG with an upper-case extension

Bad files (should fail):
    empty.jpg               0 bytes
    text.jpg                a text file named .jpg
    truncated.jpg           a 64x64 noise JPEG cut in the middle of its scan data
    truncated.png           a 64x64 noise PNG cut in the middle of its IDAT data
    broken_zlib.png         a 4x4 PNG with valid chunks and CRCs whose IDAT holds
                            garbage instead of a deflate stream
    bomb.png                crafted PNG whose IHDR claims 40000x40000 (1.6e9 pixels,
                            over Pillow's hard limit); the data is a tiny IDAT
    bomb_warning_band.png   crafted PNG whose IHDR claims 10000x10000 (1e8 pixels:
                            over MAX_IMAGE_PIXELS but under twice it, where Pillow
                            only warns)
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

_RED = (255, 0, 0)
_BLUE = (0, 0, 255)


def make_image_corpus(directory: Path) -> dict[str, bool]:
    """Write the corpus into ``directory``; return ``{filename: should_load_ok}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected: dict[str, bool] = {}
    for name, (data, ok) in _corpus_files().items():
        (directory / name).write_bytes(data)
        expected[name] = ok
    return expected


def _corpus_files() -> dict[str, tuple[bytes, bool]]:
    good = {
        "good_rgb.jpg": _solid("RGB", (16, 16), (200, 30, 30), "JPEG", quality=95),
        "good.png": _solid("RGB", (16, 16), (30, 160, 60), "PNG"),
        "good.bmp": _solid("RGB", (8, 8), (10, 20, 200), "BMP"),
        "good.webp": _solid("RGB", (8, 8), (250, 200, 0), "WEBP", lossless=True),
        "good.gif": _solid("RGB", (8, 8), (0, 128, 255), "GIF"),
        "good.tiff": _solid("RGB", (8, 8), (90, 90, 90), "TIFF"),
        "grey.jpg": _solid("L", (8, 8), 100, "JPEG", quality=95),
        "bilevel.png": _bilevel_png(),
        "cmyk.jpg": _solid("CMYK", (8, 8), (0, 255, 255, 0), "JPEG", quality=95),
        "grey16.png": _pixels("I;16", [0, 32768, 65535], "PNG"),
        "int32.tif": _pixels("I", [0, 32768, 65535], "TIFF"),
        "float.tif": _pixels("F", [0.0, 0.5, 1.0], "TIFF"),
        "palette_transparent.png": _palette_transparent_png(),
        "la.png": _pixels("LA", [(0, 0), (50, 255)], "PNG"),
        "rgba.png": _pixels("RGBA", [(0, 0, 0, 0), (255, 0, 0, 255)], "PNG"),
        "rgb_trns.png": _pixels("RGB", [(0, 0, 0), (0, 255, 0)], "PNG", transparency=(0, 0, 0)),
        "animated.gif": _animated("GIF", duration=100, loop=0),
        "animated.png": _animated("PNG", duration=100, loop=0),
        "animated.webp": _animated("WEBP", duration=100, loop=0, lossless=True),
        "exif_rotated.jpg": _exif_rotated_jpeg(),
        "one_pixel.png": _solid("RGB", (1, 1), (1, 2, 3), "PNG"),
        "café_日本.png": _solid("RGB", (4, 4), (7, 77, 177), "PNG"),
        "UPPER.JPG": _solid("RGB", (8, 8), (120, 60, 30), "JPEG", quality=95),
    }
    bad = {
        "empty.jpg": b"",
        "text.jpg": b"This is a text file, not a JPEG.\n",
        "truncated.jpg": _truncated(_noise_image(), "JPEG", quality=90),
        "truncated.png": _truncated(_noise_image(), "PNG"),
        "broken_zlib.png": _png_with_broken_idat(),
        "bomb.png": _png_claiming_size(40000, 40000),
        "bomb_warning_band.png": _png_claiming_size(10000, 10000),
    }
    files = {name: (data, True) for name, data in good.items()}
    files.update({name: (data, False) for name, data in bad.items()})
    return files


# --- Pillow-made files -------------------------------------------------------


def _encode(im: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def _solid(mode: str, size: tuple[int, int], colour, fmt: str, **params) -> bytes:
    return _encode(Image.new(mode, size, colour), fmt, **params)


def _pixels(mode: str, values: list, fmt: str, **params) -> bytes:
    """A one-row image with exactly these pixel values."""
    im = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        im.putpixel((x, 0), value)
    return _encode(im, fmt, **params)


def _bilevel_png() -> bytes:
    im = Image.new("1", (8, 8), 0)
    im.paste(1, (4, 0, 8, 8))
    return _encode(im, "PNG")


def _palette_transparent_png() -> bytes:
    # Index 0 is black *and* transparent: composited on black it would stay black,
    # so a white result proves the loader used a white background.
    im = Image.new("P", (4, 1))
    im.putpalette([0, 0, 0, 255, 0, 0])
    for x, index in enumerate([0, 1, 0, 1]):
        im.putpixel((x, 0), index)
    return _encode(im, "PNG", transparency=0)


def _animated(fmt: str, **params) -> bytes:
    first = Image.new("RGB", (8, 8), _RED)
    second = Image.new("RGB", (8, 8), _BLUE)
    return _encode(first, fmt, save_all=True, append_images=[second], **params)


def _exif_rotated_jpeg() -> bytes:
    im = Image.new("RGB", (40, 20), _RED)
    im.paste(_BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored rotated 90 degrees counter-clockwise
    return _encode(im, "JPEG", quality=95, exif=exif.tobytes())


def _noise_image() -> Image.Image:
    """64x64 seeded noise: incompressible, so cutting the file lands in pixel data."""
    rng = random.Random(1234)
    return Image.frombytes("RGB", (64, 64), bytes(rng.randrange(256) for _ in range(64 * 64 * 3)))


def _truncated(im: Image.Image, fmt: str, **params) -> bytes:
    data = _encode(im, fmt, **params)
    return data[: len(data) // 2]


# --- hand-crafted PNG files --------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header parses but claims a huge size: a decompression bomb."""
    # 8-bit greyscale, deflate, no filter set, no interlace.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # a few bytes of real data, nowhere near enough
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_with_broken_idat() -> bytes:
    """Well-formed chunks (CRCs right) around pixel data that is not deflate data."""
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    garbage = b"not a zlib stream" * 2
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", garbage)
        + _png_chunk(b"IEND", b"")
    )
