"""Turning an image of any Pillow mode into 8-bit RGB, as the loader (images.py) returns every image."""
from __future__ import annotations

from PIL import Image

# Transparent pixels are shown on white: it is what image viewers and browsers do,
# so it is what the person labelling the images saw.
_BACKGROUND = (255, 255, 255)


def to_rgb(im: Image.Image) -> Image.Image:
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
