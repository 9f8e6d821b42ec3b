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
    odd.ppm                 8x8 RGB PPM (P6), solid (60, 120, 180)
    odd.pgm                 8x8 grey PGM (P5), grey 77
    odd.ico                 16x16 ICO (a PNG inside), solid (200, 0, 200)
    odd.psd                 4x4 RGB Photoshop file, raw, solid (11, 22, 33) (crafted:
                            Pillow cannot write PSD)
    odd.dds                 8x8 uncompressed RGB DDS, solid (0, 200, 100)
    odd.qoi                 8x8 QOI, solid (123, 45, 67)
    odd.sgi                 8x8 RGB SGI, solid (90, 30, 150)
    odd.mpo                 8x8 two-picture MPO: red then blue
    tag_past_end.tif        8x8 raw TIFF, solid (40, 80, 120), whose ImageDescription
                            tag points past the end of the file: it loads, and Pillow
                            warns "Tag data larger than file. Skipping tag 270"

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

Valid files in variants this Pillow cannot decode (should fail as unsupported):
    webp_in.tif             8x8 RGB TIFF whose strip is a real lossless WebP
                            (compression 50001); Pillow's wheels build libtiff
                            without WebP, which then prints "tempfile.tif: WEBP
                            compression support is not configured."
    lerc.tif                8x8 TIFF with LERC compression (34887), which Pillow
                            does not know at all
    two_bit.bmp             4x4 BMP with 2 bits per pixel (Windows CE palette)
    argb4444.bmp            4x4 16-bit BMP with ARGB 4444 bit fields (V4 header)

Bombs and lying headers (should fail, before memory is spent):
    bomb.icns               ICNS whose 'ic10' icon is a PNG claiming 512000x512000
                            (2.6e11 pixels); found only when the icon is decoded
    liar.blp                148-byte BLP2 (header only) declaring 1 x 84,000,000
                            pixels, uncompressed: decoding it would allocate ~0.6 GB
    liar.ppm                P6 PPM declaring 9000 x 9000 pixels with 16 bytes of data
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
        **_odd_formats(),
        "tag_past_end.tif": _tiff_with_tag_past_end(),
    }
    bad = {
        "empty.jpg": b"",
        "text.jpg": b"This is a text file, not a JPEG.\n",
        "truncated.jpg": _truncated(_noise_image(), "JPEG", quality=90),
        "truncated.png": _truncated(_noise_image(), "PNG"),
        "broken_zlib.png": _png_with_broken_idat(),
        "bomb.png": _png_claiming_size(40000, 40000),
        "bomb_warning_band.png": _png_claiming_size(10000, 10000),
        **_unsupported_variants(),
        "bomb.icns": icns_with_png_claiming_size(512_000, 512_000),
        "liar.blp": _blp2_header_claiming_size(1, 84_000_000),
        "liar.ppm": b"P6\n9000 9000\n255\n" + bytes(16),
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


# --- formats other than the usual eight (issue 17) -----------------------------

ODD_FORMAT_COLOURS = {
    "odd.ppm": (60, 120, 180),
    "odd.pgm": (77, 77, 77),
    "odd.ico": (200, 0, 200),
    "odd.psd": (11, 22, 33),
    "odd.dds": (0, 200, 100),
    "odd.qoi": (123, 45, 67),
    "odd.sgi": (90, 30, 150),
    "odd.mpo": _RED,  # the first picture
}


def _odd_formats() -> dict[str, bytes]:
    colour = ODD_FORMAT_COLOURS
    return {
        "odd.ppm": _solid("RGB", (8, 8), colour["odd.ppm"], "PPM"),
        "odd.pgm": _solid("L", (8, 8), colour["odd.pgm"][0], "PPM"),
        "odd.ico": _solid("RGB", (16, 16), colour["odd.ico"], "ICO", sizes=[(16, 16)]),
        "odd.psd": _psd_rgb(4, 4, colour["odd.psd"]),
        "odd.dds": _solid("RGB", (8, 8), colour["odd.dds"], "DDS"),
        "odd.qoi": _solid("RGB", (8, 8), colour["odd.qoi"], "QOI"),
        "odd.sgi": _solid("RGB", (8, 8), colour["odd.sgi"], "SGI"),
        "odd.mpo": _animated("MPO", quality=95),
    }


def _psd_rgb(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """Photoshop 3 file: header, three empty sections, raw planar RGB."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)  # version 1, 3 channels, 8 bit, RGB
    empty_sections = struct.pack(">III", 0, 0, 0)  # colour mode data, image resources, layers
    planes = b"".join(bytes([value]) * (width * height) for value in colour)
    return header + empty_sections + struct.pack(">H", 0) + planes  # compression 0: raw


# --- hand-crafted TIFF files ---------------------------------------------------

_TIFF_SHORT, _TIFF_LONG, _TIFF_ASCII = 3, 4, 2


def _tiff_rgb(width: int, height: int, strip: bytes, compression: int, extra_tags=()) -> bytes:
    """A little-endian TIFF: 8-bit RGB in one strip, stored as given, with the compression tag given.

    ``extra_tags`` are ``(tag, type, count, value)`` entries written as they are (a value that
    does not fit in 4 bytes is an offset, which may point anywhere).
    """
    strip_at = 8
    bits_at = strip_at + len(strip) + len(strip) % 2  # values start on a word boundary
    ifd_at = bits_at + 6 + 2
    tags = sorted([
        (256, _TIFF_LONG, 1, width),
        (257, _TIFF_LONG, 1, height),
        (258, _TIFF_SHORT, 3, bits_at),  # BitsPerSample 8,8,8, stored at bits_at
        (259, _TIFF_SHORT, 1, compression),
        (262, _TIFF_SHORT, 1, 2),  # PhotometricInterpretation: RGB
        (273, _TIFF_LONG, 1, strip_at),
        (277, _TIFF_SHORT, 1, 3),  # SamplesPerPixel
        (278, _TIFF_LONG, 1, height),  # RowsPerStrip: all
        (279, _TIFF_LONG, 1, len(strip)),
        (284, _TIFF_SHORT, 1, 1),  # PlanarConfiguration: chunky
        *extra_tags,
    ])
    out = b"II*\x00" + struct.pack("<I", ifd_at) + strip + b"\x00" * (len(strip) % 2)
    out += struct.pack("<HHH", 8, 8, 8) + b"\x00\x00"
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        if kind == _TIFF_SHORT and count == 1:
            out += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, count, value)
    return out + struct.pack("<I", 0)  # no next IFD


def _raw_rgb(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    return Image.new("RGB", size, colour).tobytes()


def _tiff_with_tag_past_end() -> bytes:
    description_past_end = (270, _TIFF_ASCII, 4000, 1_000_000)  # 4000 characters at offset 1e6
    return _tiff_rgb(8, 8, _raw_rgb((8, 8), (40, 80, 120)), 1, extra_tags=[description_past_end])


# --- valid files in variants Pillow cannot decode (issue 18) ---------------------


def _unsupported_variants() -> dict[str, bytes]:
    webp = _solid("RGB", (8, 8), (10, 200, 30), "WEBP", lossless=True)
    return {
        "webp_in.tif": _tiff_rgb(8, 8, webp, 50001),  # 50001: WebP
        "lerc.tif": _tiff_rgb(8, 8, bytes(16), 34887),  # 34887: LERC; never decoded, so any data
        "two_bit.bmp": _bmp(4, 4, bits=2, compression=0, pixels=bytes(4 * 4),
                            palette=bytes([0, 0, 0, 0, 85, 85, 85, 0, 170, 170, 170, 0, 255, 255, 255, 0])),
        "argb4444.bmp": _bmp(4, 4, bits=16, compression=3, pixels=bytes(4 * 4 * 2), header_size=108,
                             masks=struct.pack("<IIII", 0x0F00, 0x00F0, 0x000F, 0xF000)),
    }


def _bmp(width: int, height: int, *, bits: int, compression: int, pixels: bytes, palette: bytes = b"",
         header_size: int = 40, masks: bytes = b"") -> bytes:
    """A BMP with a BITMAPINFOHEADER (40) or a longer one (108: V4, with bit-field masks)."""
    colours = len(palette) // 4
    info = struct.pack("<IiiHHIIiiII", header_size, width, height, 1, bits, compression, len(pixels),
                       2835, 2835, colours, 0)  # 2835 px/m = 72 dpi
    info = (info + masks).ljust(header_size, b"\x00")
    pixels_at = 14 + len(info) + len(palette)
    file_header = b"BM" + struct.pack("<IHHI", pixels_at + len(pixels), 0, 0, pixels_at)
    return file_header + info + palette + pixels


# --- bombs and lying headers (issues 18 and 20) --------------------------------------


def _png_header_claiming(width: int, height: int) -> bytes:
    """PNG signature, IHDR (8-bit RGBA), a tiny IDAT and IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def icns_with_png_claiming_size(width: int, height: int) -> bytes:
    """An ICNS whose one icon ('ic10', 1024x1024@2x) is a PNG claiming another, huge size."""
    png = _png_header_claiming(width, height)
    icon = b"ic10" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(icon)) + icon


def _blp2_header_claiming_size(width: int, height: int) -> bytes:
    """A BLP2 header (uncompressed, no alpha) and empty mipmap tables: 148 bytes, no pixels."""
    header = b"BLP2" + struct.pack("<i", 1) + struct.pack("<bbbb", 1, 0, 0, 0) + struct.pack("<II", width, height)
    offsets = [20 + 128] + [0] * 15  # the first mipmap would start right after these tables
    lengths = [0] * 16
    return header + struct.pack("<16I", *offsets) + struct.pack("<16I", *lengths)
