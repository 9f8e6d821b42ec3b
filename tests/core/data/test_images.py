"""Tests for resnet_app.core.data.images: the one safe image loader."""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from image_corpus import ODD_FORMAT_COLOURS, icns_with_png_claiming_size, make_image_corpus
from PIL import Image, ImageFile

from resnet_app.core.data.image_modes import to_rgb
from resnet_app.core.data.images import (
    IMAGE_EXTENSIONS,
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
    check_image,
    check_image_with_warnings,
    is_image_file,
    load_image,
    load_image_with_warnings,
    not_an_image_reason,
)

WHITE = (255, 255, 255)
RED = (255, 0, 0)
BLUE = (0, 0, 255)

# Pillow warns (but does not raise) for images between 1x and 2x its pixel limit;
# the loader refuses them anyway, so the warning is expected noise here.
ignore_bomb_warning = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

EXPECTED_ERRORS = {
    "empty.jpg": NotAnImageError,
    "text.jpg": NotAnImageError,
    "truncated.jpg": CorruptImageError,
    "truncated.png": CorruptImageError,
    "broken_zlib.png": CorruptImageError,
    "bomb.png": ImageTooLargeError,
    "bomb_warning_band.png": ImageTooLargeError,
    "webp_in.tif": UnsupportedImageError,
    "lerc.tif": UnsupportedImageError,
    "two_bit.bmp": UnsupportedImageError,
    "argb4444.bmp": UnsupportedImageError,
    "bomb.icns": ImageTooLargeError,
    "liar.blp": CorruptImageError,
    "liar.ppm": CorruptImageError,
}

# What libtiff says about webp_in.tif; Pillow's wheels build libtiff without WebP.
LIBTIFF_NO_WEBP = "libtiff: WEBP compression support is not configured"
TAG_PAST_END = "Tag data larger than file. Skipping tag 270"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    directory = tmp_path_factory.mktemp("corpus")
    return directory, make_image_corpus(directory)


@pytest.fixture(scope="module")
def corpus_dir(corpus) -> Path:
    return corpus[0]


def close_to(actual, expected, tolerance=6) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- the corpus itself ---------------------------------------------------------


def test_corpus_is_small_and_complete(corpus):
    directory, expected = corpus
    total = sum((directory / name).stat().st_size for name in expected)
    assert total < 200_000
    assert set(ODD_FORMAT_COLOURS) <= {name for name, ok in expected.items() if ok}
    assert set(EXPECTED_ERRORS) == {name for name, ok in expected.items() if not ok}
    assert (directory / "empty.jpg").stat().st_size == 0
    assert "café_日本.png" in expected


def test_corpus_is_deterministic(tmp_path, corpus):
    directory, expected = corpus
    make_image_corpus(tmp_path)
    for name in expected:
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes(), name


# --- every corpus file, good and bad --------------------------------------------


@ignore_bomb_warning
def test_every_corpus_file_loads_or_fails_as_expected(corpus):
    directory, expected = corpus
    for name, should_load in expected.items():
        path = directory / name
        if should_load:
            im = load_image(path)
            assert im.mode == "RGB", name
            im.getpixel((0, 0))  # usable after the file was closed
            assert check_image(path) is None, name
        else:
            with pytest.raises(EXPECTED_ERRORS[name]) as info:
                load_image(path)
            err = info.value
            assert err.path == path
            assert name in str(err)
            assert str(err) == f"{path}: {err.reason}"
            assert check_image(path) == err.reason


@ignore_bomb_warning
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.jpg", "not an image file (file is empty)"),
        ("text.jpg", "not an image file (cannot identify image format)"),
        ("truncated.jpg", "file is truncated or corrupt: image file is truncated"),
        ("truncated.png", "file is truncated or corrupt: image file is truncated"),
        ("broken_zlib.png", "file is truncated or corrupt: "),
        ("bomb.png", f"image is too large: 1600000000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS}"),
        ("bomb_warning_band.png",
         f"image is too large: 100000000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS}"),
    ],
)
def test_bad_file_reasons_are_human(corpus_dir, name, reason):
    assert check_image(corpus_dir / name).startswith(reason)


# --- issue 18: a valid file in a variant Pillow can't decode says so; bombs say "too large" ------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("webp_in.tif", "unsupported variant of TIFF (WEBP compression)"),
        ("lerc.tif", "unsupported variant of TIFF (LERC compression, code 34887)"),
        ("two_bit.bmp", "unsupported variant of BMP (pixel depth 2)"),
        ("argb4444.bmp", "unsupported variant of BMP (bitfields layout)"),
    ],
)
def test_unsupported_variants_are_named_not_called_corrupt(corpus_dir, name, reason):
    with pytest.raises(UnsupportedImageError) as info:
        load_image(corpus_dir / name)
    assert info.value.reason == reason
    assert str(info.value) == f"{corpus_dir / name}: {reason}"


def test_bomb_found_while_decoding_is_too_large(corpus_dir):
    # The ICNS header declares a 1024x1024 icon; the 2.6e11 pixels show only when the PNG
    # inside is opened, during decoding.
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as info:
        load_image(corpus_dir / "bomb.icns")
    assert info.value.reason == (
        f"image is too large: 262144000000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS}"
    )
    assert time.perf_counter() - start < 0.5


def test_bomb_in_the_warning_band_inside_another_file_is_refused_before_decoding(tmp_path):
    # Pillow only *warns* for a nested PNG between 1x and 2x the limit, then decodes it;
    # the loader turns that warning into a refusal (pytest's ignore filter notwithstanding).
    path = tmp_path / "band.icns"
    path.write_bytes(icns_with_png_claiming_size(10_000, 10_000))
    with pytest.raises(ImageTooLargeError, match="100000000 pixels exceeds the limit"):
        load_image(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert type(info.value) is ImageLoadError
    assert info.value.reason == "file not found"
    assert str(info.value) == f"{path}: file not found"
    assert check_image(path) == "file not found"


def test_directory_is_not_an_image(tmp_path):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError, match="folder.jpg: is a directory"):
        load_image(folder)


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root (and Windows) ignore file modes"
)
def test_permission_denied(corpus_dir, tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes((corpus_dir / "good.png").read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert info.value.reason == "permission denied"
    finally:
        path.chmod(0o600)


def test_errors_are_one_family_and_pickle(tmp_path):
    for cls in (NotAnImageError, CorruptImageError, ImageTooLargeError):
        assert issubclass(cls, ImageLoadError)
    err = CorruptImageError(tmp_path / "a.jpg", "file is truncated or corrupt: x")
    copy = pickle.loads(pickle.dumps(err))  # DataLoader workers pickle errors
    assert type(copy) is CorruptImageError
    assert copy.path == err.path and copy.reason == err.reason and str(copy) == str(err)


# --- mode conversion -----------------------------------------------------------


def test_good_colours_survive(corpus_dir):
    assert close_to(load_image(corpus_dir / "good_rgb.jpg").getpixel((5, 5)), (200, 30, 30))
    assert load_image(corpus_dir / "good.png").getpixel((5, 5)) == (30, 160, 60)
    assert load_image(corpus_dir / "good.bmp").getpixel((0, 0)) == (10, 20, 200)
    assert load_image(corpus_dir / "good.webp").getpixel((0, 0)) == (250, 200, 0)
    assert load_image(corpus_dir / "good.gif").getpixel((0, 0)) == (0, 128, 255)
    assert load_image(corpus_dir / "good.tiff").getpixel((0, 0)) == (90, 90, 90)
    assert close_to(load_image(corpus_dir / "grey.jpg").getpixel((0, 0)), (100, 100, 100), 2)


def test_bilevel(corpus_dir):
    im = load_image(corpus_dir / "bilevel.png")
    assert im.getpixel((0, 0)) == (0, 0, 0)
    assert im.getpixel((7, 7)) == WHITE


def test_cmyk_colours_are_roughly_right(corpus_dir):
    im = load_image(corpus_dir / "cmyk.jpg")
    assert close_to(im.getpixel((3, 3)), RED, 10)


@pytest.mark.parametrize("name", ["grey16.png", "int32.tif"])
def test_16_bit_grey_is_divided_not_clipped(corpus_dir, name):
    im = load_image(corpus_dir / name)
    assert [im.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


def test_float_grey_is_rescaled(corpus_dir):
    im = load_image(corpus_dir / "float.tif")
    assert [im.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_transparent_pixels_become_white(corpus_dir):
    palette = load_image(corpus_dir / "palette_transparent.png")
    assert [palette.getpixel((x, 0)) for x in range(4)] == [WHITE, RED, WHITE, RED]
    rgba = load_image(corpus_dir / "rgba.png")
    assert [rgba.getpixel((x, 0)) for x in range(2)] == [WHITE, RED]
    la = load_image(corpus_dir / "la.png")
    assert [la.getpixel((x, 0)) for x in range(2)] == [WHITE, (50, 50, 50)]
    keyed = load_image(corpus_dir / "rgb_trns.png")
    assert [keyed.getpixel((x, 0)) for x in range(2)] == [WHITE, (0, 255, 0)]


@pytest.mark.parametrize("name", ["animated.gif", "animated.png", "animated.webp"])
def test_animated_images_use_the_first_frame(corpus_dir, name):
    with Image.open(corpus_dir / name) as raw:
        assert getattr(raw, "n_frames", 1) >= 2  # the corpus really is animated
    im = load_image(corpus_dir / name)
    assert im.size == (8, 8)
    assert close_to(im.getpixel((4, 4)), RED, 2)


def test_exif_orientation_is_applied(corpus_dir):
    im = load_image(corpus_dir / "exif_rotated.jpg")
    assert im.size == (20, 40)
    # Stored left half red / right half blue; upright, red is on top.
    assert close_to(im.getpixel((10, 5)), RED, 10)
    assert close_to(im.getpixel((10, 35)), BLUE, 10)


def test_tiny_and_unicode_files(corpus_dir):
    one = load_image(corpus_dir / "one_pixel.png")
    assert one.size == (1, 1) and one.getpixel((0, 0)) == (1, 2, 3)
    unicode = load_image(corpus_dir / "café_日本.png")
    assert unicode.getpixel((0, 0)) == (7, 77, 177)
    assert load_image(str(corpus_dir / "café_日本.png")).size == (4, 4)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("PA", None, WHITE),  # palette + alpha, fully transparent
        ("LA", (0, 0), WHITE),
        ("La", (0, 0), WHITE),
        ("RGBa", (0, 0, 0, 0), WHITE),
        ("I;16B", 65535, WHITE),
        ("I;16B", 32768, (128, 128, 128)),
        ("I;16", 32768, (128, 128, 128)),
        ("I", 32768, (128, 128, 128)),
        ("I", -5, (128, 128, 128)),  # flat image outside 16-bit range: mid grey
        ("F", 0.5, (128, 128, 128)),
        ("F", 200.0, (200, 200, 200)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
    ],
)
def test_in_memory_modes_convertto_rgb(mode, value, expected):
    # Modes no file format in the corpus can store are checked on the converter.
    if mode == "PA":
        im = Image.new("PA", (2, 2))
        im.putpalette([0, 0, 0] * 256)
    else:
        im = Image.new(mode, (2, 2), value)
    rgb = to_rgb(im)
    assert rgb.mode == "RGB"
    assert close_to(rgb.getpixel((1, 1)), expected, 1)


# --- decompression bombs -------------------------------------------------------


@ignore_bomb_warning
@pytest.mark.parametrize("name", ["bomb.png", "bomb_warning_band.png"])
def test_bombs_are_refused_before_decoding(corpus_dir, name):
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        load_image(corpus_dir / name)
    # Decoding (or even allocating) 1e8+ pixels would take far longer than this.
    assert time.perf_counter() - start < 0.5


def test_pixel_limit_is_read_at_call_time(corpus_dir, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageTooLargeError, match="256 pixels exceeds the limit of 100"):
        load_image(corpus_dir / "good.png")


@ignore_bomb_warning
def test_global_pillow_settings_are_left_alone(corpus):
    directory, expected = corpus
    limit, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    for name in expected:
        check_image(directory / name)
    assert Image.MAX_IMAGE_PIXELS == limit
    assert ImageFile.LOAD_TRUNCATED_IMAGES == truncated


def test_file_handles_are_closed(corpus):
    # An unclosed file only shows up when it is garbage collected, as a
    # ResourceWarning; fd counting would miss it because CPython frees it at once.
    directory, expected = corpus
    said = []  # a ResourceWarning raised during a load is collected as that file's warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", ResourceWarning)
        for name, should_load in expected.items():
            said += check_image_with_warnings(directory / name).warnings
            if should_load:
                said += load_image_with_warnings(directory / name, size_hint=4).warnings
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [message for message in said if "unclosed" in message] == []


# --- draft mode ----------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "photo_4000x3000.jpg"
    Image.new("RGB", (4000, 3000), (40, 120, 200)).save(path, quality=80)
    return path


@pytest.mark.parametrize("size_hint", [32, 224, 256, 1000])
def test_size_hint_decodes_jpeg_at_a_smaller_scale(big_jpeg, size_hint):
    im = load_image(big_jpeg, size_hint=size_hint)
    assert im.mode == "RGB"
    assert size_hint <= min(im.size) < 3000 // 2 + 1
    assert im.width * 3 == im.height * 4  # aspect ratio kept, nothing else resized
    assert close_to(im.getpixel((10, 10)), (40, 120, 200), 3)


def test_size_hint_224_uses_eighth_scale(big_jpeg):
    # 3000 / 8 = 375 is the smallest DCT scale whose shorter side is still >= 224.
    assert load_image(big_jpeg, size_hint=224).size == (500, 375)
    assert load_image(big_jpeg, size_hint=400).size == (1000, 750)


def test_no_size_hint_decodes_full_size(big_jpeg):
    assert load_image(big_jpeg).size == (4000, 3000)
    assert load_image(big_jpeg, size_hint=3000).size == (4000, 3000)


def test_size_hint_leaves_other_formats_alone(corpus_dir):
    assert load_image(corpus_dir / "good.png", size_hint=4).size == (16, 16)


def test_size_hint_must_be_positive(corpus_dir):
    with pytest.raises(ValueError):
        load_image(corpus_dir / "good.png", size_hint=0)


def test_check_image_is_cheap_on_big_jpeg(big_jpeg):
    start = time.perf_counter()
    assert check_image(big_jpeg) is None
    assert time.perf_counter() - start < 1.0


def test_check_image_catches_truncation_at_draft_scale(big_jpeg, tmp_path):
    data = big_jpeg.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    reason = check_image(cut)
    assert reason is not None and reason.startswith("file is truncated or corrupt")


# --- is_image_file -------------------------------------------------------------


# --- issue 17: the extensions are the formats Pillow can open ------------------------


def test_image_extensions_are_pillows_openable_formats():
    registry = Image.registered_extensions()
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert {".ppm", ".pgm", ".ico", ".psd", ".dds", ".qoi", ".sgi", ".mpo"} <= IMAGE_EXTENSIONS
    # MPO has no opener of its own: Pillow's JPEG opener returns MPO images.
    assert all(registry[ext] in Image.OPEN or registry[ext] == "MPO" for ext in IMAGE_EXTENSIONS)
    # Save-only formats, and those the app deliberately leaves out (see images._UNUSED_FORMATS).
    assert not {".pdf", ".palm", ".eps", ".ps", ".mpg", ".mpeg", ".wmf", ".emf", ".h5", ".grib",
                ".bufr"} & IMAGE_EXTENSIONS


@pytest.mark.parametrize("name", sorted(ODD_FORMAT_COLOURS))
def test_odd_formats_load_with_their_colours(corpus_dir, name):
    assert is_image_file(name)
    image = load_image(corpus_dir / name)
    assert close_to(image.getpixel((2, 2)), ODD_FORMAT_COLOURS[name], 3)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("notes.txt", "not an image (extension .txt)"),
        ("LICENSE", "not an image (no extension)"),
        ("report.pdf", "not an image (extension .pdf)"),  # Pillow can only write PDF
        ("figure.EPS", "not used (EPS file): PostScript is drawn only by running Ghostscript, "
                       "which the app does not do"),
        ("clip.mpg", "not used (MPEG file): it is video; Pillow reads only its header, not its frames"),
        ("data.h5", "not used (HDF5 file): Pillow reads only the header of this format, not its pixels"),
    ],
)
def test_not_an_image_reason(name, reason):
    assert not is_image_file(name)
    assert not_an_image_reason(name) == reason


def test_a_named_eps_file_is_refused_without_running_ghostscript(tmp_path):
    path = tmp_path / "figure.eps"
    Image.new("RGB", (8, 8), RED).save(path, "EPS")  # writing EPS needs no Ghostscript
    with pytest.raises(UnsupportedImageError) as info:
        load_image(path)
    assert info.value.reason.startswith("unsupported format EPS: PostScript is drawn only by running Ghostscript")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", True),
        ("A.JPEG", True),
        ("dir/b.Png", True),
        ("c.tif", True),
        ("d.TIFF", True),
        ("e.webp", True),
        ("f.gif", True),
        ("g.bmp", True),
        ("café_日本.png", True),
        ("notes.txt", False),
        ("archive.jpg.zip", False),
        ("jpg", False),
        (".png", False),  # a hidden file named ".png" has no extension
        ("model.safetensors", False),
    ],
)
def test_is_image_file(name, expected):
    assert is_image_file(name) is expected
    assert is_image_file(Path(name)) is expected


def test_is_image_file_does_not_touch_the_disk(tmp_path):
    assert is_image_file(tmp_path / "does_not_exist.jpg")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    assert is_image_file(text)  # by extension only; check_image finds the lie
    assert check_image(text) is not None


# --- issue 19: what the libraries say is attached to the file, not printed ----------------


def test_libtiff_errors_are_attached_to_the_file_not_printed(corpus_dir, capfd):
    path = corpus_dir / "webp_in.tif"
    with pytest.raises(UnsupportedImageError) as info:
        load_image_with_warnings(path)
    assert info.value.warnings == (LIBTIFF_NO_WEBP,)  # once, though libtiff says it per attempt
    assert check_image_with_warnings(path).warnings == (LIBTIFF_NO_WEBP,)
    assert capfd.readouterr().err == ""  # C-level stderr included


def fresh_copy(corpus_dir: Path, name: str, tmp_path: Path) -> Path:
    # A path no other test has loaded: the plain API logs a file's warning once per process.
    path = tmp_path / name
    path.write_bytes((corpus_dir / name).read_bytes())
    return path


def test_libtiff_errors_from_the_plain_api_are_logged_with_the_file_name(corpus_dir, tmp_path, capfd, caplog):
    path = fresh_copy(corpus_dir, "webp_in.tif", tmp_path)
    with caplog.at_level(logging.WARNING, logger="resnet_app.core.data.images"):
        assert check_image(path) == "unsupported variant of TIFF (WEBP compression)"
    assert "tempfile.tif" not in capfd.readouterr().err  # the name of a file that does not exist
    assert f"{path}: {LIBTIFF_NO_WEBP}" in caplog.messages


def test_python_warnings_are_attached_to_the_file_not_emitted(corpus_dir, recwarn):
    loaded = load_image_with_warnings(corpus_dir / "tag_past_end.tif")
    assert loaded.image.getpixel((0, 0)) == (40, 80, 120)
    assert loaded.warnings == (TAG_PAST_END,)
    assert load_image_with_warnings(corpus_dir / "good.png").warnings == ()
    assert [str(w.message) for w in recwarn] == []


def test_python_warnings_from_the_plain_api_are_logged_with_the_file_name(corpus_dir, tmp_path, recwarn, caplog):
    path = fresh_copy(corpus_dir, "tag_past_end.tif", tmp_path)
    with caplog.at_level(logging.WARNING, logger="resnet_app.core.data.images"):
        load_image(path)
        load_image(path)
    assert [str(w.message) for w in recwarn] == []
    assert caplog.messages == [f"{path}: {TAG_PAST_END}"]  # once, not once per load


def test_warnings_stay_with_their_file_across_threads(corpus_dir):
    expected = {"tag_past_end.tif": (TAG_PAST_END,), "good.png": (), "webp_in.tif": (LIBTIFF_NO_WEBP,),
                "good_rgb.jpg": ()}
    names = list(expected) * 40

    def warnings_of(name: str) -> tuple[str, ...]:
        try:
            return load_image_with_warnings(corpus_dir / name).warnings
        except ImageLoadError as err:
            return err.warnings

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(warnings_of, names))
    assert [(name, got) for name, got in zip(names, results, strict=True) if got != expected[name]] == []


def test_warnings_elsewhere_are_left_to_the_normal_filters(corpus_dir):
    load_image(corpus_dir / "tag_past_end.tif")  # the loader's filters are in place
    with pytest.warns(UserWarning, match="not from a decode"):
        warnings.warn("not from a decode", UserWarning, stacklevel=1)


def test_libtiff_errors_outside_the_loader_still_print(corpus_dir, capfd):
    # Only the loader's own decodes are collected; Pillow used directly prints as it always did.
    check_image(corpus_dir / "webp_in.tif")  # makes sure the handler is installed
    capfd.readouterr()
    with pytest.raises(OSError):
        with Image.open(corpus_dir / "webp_in.tif") as raw:
            raw.load()
    assert "WEBP compression support is not configured" in capfd.readouterr().err


def test_errors_carry_their_warnings_through_pickling(tmp_path):
    err = UnsupportedImageError(tmp_path / "a.tif", "unsupported variant of TIFF (x)", ["libtiff: x"])
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is UnsupportedImageError and copy.warnings == ("libtiff: x",)


# --- issue 20: headers that lie about their size are refused before memory is spent ------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("liar.blp", "file is truncated or corrupt: declares 1 x 84000000 pixels but the file is only "
                     "148 bytes (too small for a BLP image that size)"),
        ("liar.ppm", "file is truncated or corrupt: declares 9000 x 9000 pixels but the file is only "
                     "33 bytes (too small for a PPM image that size)"),
    ],
)
def test_header_declaring_more_pixels_than_the_file_holds_is_refused(corpus_dir, name, reason):
    start = time.perf_counter()
    assert check_image(corpus_dir / name) == reason
    assert time.perf_counter() - start < 0.5


MEASURE_PEAK_RSS = """
import json, resource, sys
from resnet_app.core.data.images import ImageLoadError, check_image, load_image
good, liar = sys.argv[1:3]
load_image(good)  # imports, plugins and hooks are in place before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reasons = [check_image(liar)]
try:
    load_image(liar)
except ImageLoadError as err:
    reasons.append(err.reason)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"reasons": reasons, "growth": growth * (1 if sys.platform == "darwin" else 1024)}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX")
@pytest.mark.parametrize("name", ["liar.blp", "liar.ppm"])
def test_lying_header_does_not_spike_memory(corpus_dir, name):
    # Measured in a fresh process: peak RSS only ever grows, so it must start low.
    result = subprocess.run([sys.executable, "-c", MEASURE_PEAK_RSS, str(corpus_dir / "good.png"),
                             str(corpus_dir / name)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    # Before the check, liar.blp took ~640 MB (a pointer per row for 84M rows, then the pixels).
    assert measured["growth"] < 32 * 2**20, measured
    assert all(reason.startswith("file is truncated or corrupt: declares") for reason in measured["reasons"])


def test_narrow_image_rows_count_against_the_pixel_limit(tmp_path, monkeypatch):
    tall = tmp_path / "tall.png"
    Image.new("L", (1, 120), 9).save(tall)
    wide = tmp_path / "wide.png"
    Image.new("L", (120, 1), 9).save(wide)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(tall)
    assert info.value.reason == (
        "image is too large: 1 x 120 pixels in 120 rows take as much memory as 360 pixels, "
        "over the limit of 300"
    )
    assert load_image(wide).size == (120, 1)  # 120 pixels + 1 row: within the limit


@pytest.mark.parametrize(
    ("mode", "fmt", "params"),
    [
        ("1", "PNG", {"compress_level": 9}),
        ("L", "GIF", {}),
        ("1", "TIFF", {"compression": "packbits"}),
        ("1", "TIFF", {"compression": "tiff_lzw"}),
        ("1", "TIFF", {"compression": "tiff_adobe_deflate"}),
        ("L", "TGA", {"compression": "tga_rle"}),
        ("1", "PCX", {}),
        ("RGB", "QOI", {}),
        ("L", "JPEG", {"quality": 10, "progressive": True, "optimize": True}),
        ("RGB", "WEBP", {"lossless": True}),
    ],
)
def test_honest_highly_compressed_files_are_not_refused(tmp_path, mode, fmt, params):
    # Flat images are the best case for every compressor: the size bounds must leave them alone.
    path = tmp_path / f"flat.{fmt.lower()}"
    Image.new(mode, (3000, 3000), 0).save(path, fmt, **params)
    assert check_image(path) is None
