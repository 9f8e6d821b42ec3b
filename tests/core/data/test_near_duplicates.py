"""Near-duplicates by difference hash: resized, re-encoded and brightened copies are found, across classes
and across the split; different pictures are not."""
import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from resnet_app.core.data.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    NearDuplicate,
    _close_pairs,
    difference_hash,
    find_near_duplicates,
    hash_images,
    near_duplicate_groups,
    without_identical,
)
from resnet_app.core.data.sample_data import SAMPLE_CLASSES, generate_sample_dataset


def photo_like(seed: int, size: int = 160) -> Image.Image:
    """A smooth field of colours with a little grain, like an out-of-focus photo."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size),
                                                                                     Image.Resampling.BICUBIC)
    grain = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return Image.blend(field, grain, 0.1)


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_the_hash_survives_resize_reencode_and_brightness_but_not_another_picture():
    for seed in range(20):
        image = photo_like(seed)
        h = difference_hash(image)
        for variant in (image.resize((60, 60), Image.Resampling.BILINEAR), reencoded(image, 60),
                        ImageEnhance.Brightness(image).enhance(1.1), ImageEnhance.Brightness(image).enhance(0.85)):
            assert bin(h ^ difference_hash(variant)).count("1") <= DEFAULT_MAX_DISTANCE
        other = difference_hash(photo_like(seed + 100))
        assert bin(h ^ other).count("1") > DEFAULT_MAX_DISTANCE


def test_pairs_across_classes_and_across_the_split_are_listed(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    samples = []
    for i in range(12):  # twelve different pictures, six a class
        path = tmp_path / ("cats" if i < 6 else "dogs") / f"{i}.png"
        photo_like(i).save(path)
        samples.append((path, int(i >= 6)))
    # Picture 0 again, resized and re-encoded, in the other class.
    reencoded(photo_like(0).resize((90, 90)), 70).save(tmp_path / "dogs" / "copy-of-0.jpg")
    samples.append((tmp_path / "dogs" / "copy-of-0.jpg", 1))
    # Picture 7 again, 10 % brighter, in its own class, on the other side of the split.
    ImageEnhance.Brightness(photo_like(7)).enhance(1.1).save(tmp_path / "dogs" / "bright-7.png")
    samples.append((tmp_path / "dogs" / "bright-7.png", 1))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    samples.append((tmp_path / "dogs" / "broken.png", 1))
    val = [tmp_path / "dogs" / "bright-7.png", tmp_path / "cats" / "1.png"]
    progress = []
    pairs = find_near_duplicates(samples, val_paths=val, progress=lambda d, t: progress.append((d, t)))
    found = {frozenset((p.first.name, p.second.name)): p for p in pairs}
    assert set(found) == {frozenset(("0.png", "copy-of-0.jpg")), frozenset(("7.png", "bright-7.png"))}
    across = found[frozenset(("0.png", "copy-of-0.jpg"))]
    assert across.across_classes and not across.across_split
    leak = found[frozenset(("7.png", "bright-7.png"))]
    assert leak.across_split and not leak.across_classes
    assert leak.to_dict(["cats", "dogs"])["first_class"] == "dogs"
    assert progress[-1] == (15, 15)
    # Plain paths work too (no labels: nothing is "across classes").
    assert len(find_near_duplicates([path for path, _ in samples])) == 2


def test_flat_images_are_not_compared(tmp_path):
    """A flat colour shows no picture: its hash is all zeros whatever the colour, and pairing flat
    images of close colours (as a folder of placeholder images has) would tell the user nothing."""
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 0, 200), (201, 1, 1)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    assert find_near_duplicates(paths) == []


def test_a_checked_scan_reports_near_duplicates_across_classes(tmp_path):
    from PIL import ImageDraw

    from resnet_app.core.data.scan import scan_dataset

    data = tmp_path / "data"
    for label in ("cats", "dogs"):
        (data / label).mkdir(parents=True)
    for i in range(6):  # pictures with structure: a gradient and a few discs, different in each
        picture = Image.linear_gradient("L").rotate(60 * i).resize((96, 96)).convert("RGB")
        draw = ImageDraw.Draw(picture)
        for k in range(3):
            x, y = (17 * (i + 1) * (k + 2)) % 80, (29 * (i + 3) * (k + 1)) % 80
            draw.ellipse([x, y, x + 16, y + 16], fill=((50 * i) % 256, 80 * k % 256, 200))
        picture.save(data / ("cats" if i % 2 else "dogs") / f"picture_{i}.png")
    original = Image.open(data / "cats" / "picture_3.png")
    original.resize((80, 80)).save(data / "dogs" / "resaved.jpg", quality=70)  # a cat filed as a dog
    report = scan_dataset(data)
    across = {frozenset((pair.first.name, pair.second.name)) for pair in report.near_duplicates
              if pair.across_classes}
    assert across == {frozenset(("picture_3.png", "resaved.jpg"))}
    assert any("near-duplicate" in warning and "different classes" in warning for warning in report.warnings)


def test_the_sample_shapes_have_no_false_pairs(tmp_path):
    data = generate_sample_dataset(tmp_path / "data", images_per_class=30, image_size=64)
    samples = [(p, SAMPLE_CLASSES.index(p.parent.name)) for p in sorted(data.rglob("*.png"))]
    assert find_near_duplicates(samples) == []


def test_block_search_finds_the_same_pairs_as_comparing_all():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    # Near copies: a few bits flipped.
    flips = rng.integers(0, 64, (100, 3))
    copies = values[:100] ^ np.bitwise_or.reduce(np.left_shift(np.uint64(1), flips.astype(np.uint64)), axis=1)
    values = np.concatenate([values, copies])
    brute = {(a, b) for a in range(len(values)) for b in range(a + 1, len(values))
             if bin(int(values[a]) ^ int(values[b])).count("1") <= 4}
    assert {(a, b) for a, b, _ in _close_pairs(values, 4)} == brute and len(brute) >= 100


def test_stop_and_bad_settings():
    assert hash_images([], should_stop=lambda: True) == []
    assert find_near_duplicates([("x.png", 0)], should_stop=lambda: True) is None
    with pytest.raises(ValueError):
        find_near_duplicates([], max_distance=64)


def test_groups_for_the_split_and_leaving_out_byte_identical_pairs(tmp_path):
    a, b, c, d, e = (tmp_path / name for name in "abcde")
    pairs = [NearDuplicate(a, b, 1), NearDuplicate(b, c, 2), NearDuplicate(d, e, 0)]
    assert near_duplicate_groups(pairs) == [[a, b, c], [d, e]]
    assert without_identical(pairs, [[d, e]]) == pairs[:2]
