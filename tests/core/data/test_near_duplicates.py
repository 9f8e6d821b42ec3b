"""Near-duplicates by difference hash: resized, re-encoded and brightened copies are found and joined into
groups (across classes too); different pictures are not; the search stays linear however alike the images."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from resnet_app.core.data.near_duplicates import (
    DEFAULT_MAX_DISTANCE,
    REPRESENTATIVES,
    SAMPLE_GROUPS,
    SAMPLE_PATHS,
    ImageHash,
    difference_hash,
    find_groups,
    hash_images,
    summarise_groups,
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


def test_resized_reencoded_and_brightened_copies_are_grouped_across_classes(tmp_path):
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
    # Picture 7 again, 10 % brighter, in its own class.
    ImageEnhance.Brightness(photo_like(7)).enhance(1.1).save(tmp_path / "dogs" / "bright-7.png")
    samples.append((tmp_path / "dogs" / "bright-7.png", 1))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    samples.append((tmp_path / "dogs" / "broken.png", 1))
    progress = []
    hashes = hash_images([path for path, _ in samples], progress=lambda d, t: progress.append((d, t)))
    assert hashes[-1] is None and progress[-1] == (15, 15)
    groups = find_groups(hashes)
    assert {frozenset(samples[i][0].name for i in g) for g in groups} == {
        frozenset(("0.png", "copy-of-0.jpg")), frozenset(("7.png", "bright-7.png"))}
    summary = summarise_groups(groups, samples)
    assert (summary.groups, summary.images, summary.largest, summary.across_classes) == (2, 4, 2, 1)
    first = summary.to_dict(["cats", "dogs"])["sample"][0]  # the group across classes comes first
    assert first["across_classes"] and first["classes"] == {"cats": 1, "dogs": 1}


def test_flat_images_are_not_compared(tmp_path):
    """A flat colour shows no picture: its hash is all zeros whatever the colour, and pairing flat
    images of close colours (as a folder of placeholder images has) would tell the user nothing."""
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 0, 200), (201, 1, 1)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    assert find_groups(hash_images(paths)) == []


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
    near = report.near_duplicates
    assert (near.groups, near.across_classes) == (1, 1)
    assert {p.name for p in near.sample[0].paths} == {"picture_3.png", "resaved.jpg"}
    assert report.to_dict()["near_duplicate_groups"]["sample"][0]["classes"] == {"cats": 1, "dogs": 1}
    assert any("near-duplicate" in warning and "different classes" in warning for warning in report.warnings)
    assert any("1 group of 2 images" in line for line in report.summary_lines())


def test_the_sample_shapes_have_no_false_pairs(tmp_path):
    data = generate_sample_dataset(tmp_path / "data", images_per_class=30, image_size=64)
    samples = [(p, SAMPLE_CLASSES.index(p.parent.name)) for p in sorted(data.rglob("*.png"))]
    assert find_groups(hash_images([path for path, _ in samples])) == []


def hashes_of(values, colour=(100.0, 100.0, 100.0)) -> list[ImageHash]:
    return [ImageHash(int(v), colour) for v in values]


def brute_force_groups(values, max_distance):
    """Connected sets of the all-pairs graph, the slow way."""
    parent = list(range(len(values)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(len(values)):
        for b in range(a + 1, len(values)):
            if bin(int(values[a]) ^ int(values[b])).count("1") <= max_distance:
                parent[root(b)] = root(a)
    groups = {}
    for i in range(len(values)):
        groups.setdefault(root(i), []).append(i)
    return sorted(sorted(g) for g in groups.values() if len(g) >= 2)


def flipped(value: int, bits) -> int:
    for bit in bits:
        value ^= 1 << int(bit)
    return value


def test_chains_of_close_pairs_make_one_group():
    """a ~ b ~ c ~ d, each 4 bits from the next, a and d 12 bits apart: one group of four."""
    a = 0x0F0F_3C3C_5A5A_A5A5
    b, c, d = flipped(a, range(0, 4)), flipped(a, range(0, 8)), flipped(a, range(0, 12))
    far = flipped(a, range(20, 52))
    assert bin(a ^ d).count("1") == 12 > DEFAULT_MAX_DISTANCE
    assert find_groups(hashes_of([a, far, b, c, d])) == [[0, 2, 3, 4]]
    # The colour check splits what the hash alone would join.
    coloured = hashes_of([a, b]) + [ImageHash(c, (250.0, 0.0, 0.0))]
    assert find_groups(coloured) == [[0, 1]]


def test_block_search_finds_the_same_groups_as_comparing_all():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    # Near copies: a few bits flipped.
    flips = rng.integers(0, 64, (100, 3))
    copies = values[:100] ^ np.bitwise_or.reduce(np.left_shift(np.uint64(1), flips.astype(np.uint64)), axis=1)
    values = np.concatenate([values, copies])
    brute = brute_force_groups(values, 4)
    assert sorted(find_groups(hashes_of(values), max_distance=4)) == brute and len(brute) >= 100


def test_a_big_bucket_of_frames_is_grouped_through_representatives():
    """3,000 frames of 3 clips (each frame 0-3 bits from its clip's picture): every block bucket is far
    over the all-pairs size, yet each clip comes out whole, and 100 more distinct pictures than there are
    representatives do not make anything wrong."""
    rng = np.random.default_rng(1)
    clips = [int(v) for v in rng.integers(0, 2**63, 3, dtype=np.int64)]
    frames = [flipped(clips[i % 3], rng.choice(64, rng.integers(0, 4), replace=False)) for i in range(3000)]
    groups = find_groups(hashes_of(frames))
    assert sorted(len(g) for g in groups) == [1000, 1000, 1000]
    assert all(len({i % 3 for i in g}) == 1 for g in groups)
    # Many distinct pictures sharing one block value (the bucket holds more than REPRESENTATIVES pictures).
    pictures = [(int(v) & ~0xFF) | 0x5A for v in rng.integers(0, 2**63, REPRESENTATIVES + 100, dtype=np.int64)]
    assert brute_force_groups(pictures, DEFAULT_MAX_DISTANCE) == find_groups(hashes_of(pictures)) == []


def test_the_report_of_groups_is_bounded():
    samples = [(Path(f"/data/c{i // 500 % 2}/{i}.png"), i // 500 % 2) for i in range(10_000)]
    groups = [list(range(start, 10_000, 500)) for start in range(500)]  # 500 groups of 20, both classes
    summary = summarise_groups(groups, samples)
    assert (summary.groups, summary.images, summary.largest, summary.across_classes) == (500, 10_000, 20, 500)
    assert len(summary.sample) == SAMPLE_GROUPS
    assert all(len(group.paths) == SAMPLE_PATHS for group in summary.sample)


def test_stop_and_bad_settings():
    assert hash_images([], should_stop=lambda: True) == []
    assert find_groups(hashes_of([1, 2]), should_stop=lambda: True) is None
    with pytest.raises(ValueError):
        find_groups([], max_distance=64)


def test_doctor_json_stays_bounded_for_thousands_of_alike_images(tmp_path):
    """5,000 images that look the same (two pictures, each with a grain of noise so that no two files
    are byte-identical): 6 million near-duplicate pairs, reported as two groups in a few lines."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        picture = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
            (16, 16), Image.Resampling.BICUBIC), dtype=np.int16)
        noise = rng.integers(-1, 2, (2500, 16, 16, 3))
        for i in range(2500):
            Image.fromarray(np.clip(picture + noise[i], 0, 255).astype(np.uint8)).save(
                tmp_path / name / f"{i:04d}.png", compress_level=1)
    from resnet_app.core.data.scan import scan_dataset

    checked = scan_dataset(tmp_path)  # what `doctor --json` prints is its to_dict()
    text = json.dumps(checked.to_dict())
    report = json.loads(text)
    near = report["near_duplicate_groups"]
    assert (near["groups"], near["images"], near["largest"], near["across_classes"]) == (2, 5000, 2500, 0)
    assert all(len(group["paths"]) <= 5 for group in near["sample"])
    assert len(text) - len(json.dumps(report["samples"])) < 20_000  # all but the list of samples is small
    assert any("Class 'a': 2500 of its 2500 images are near-duplicates" in w for w in report["warnings"])
    assert len(checked.summary_lines()) < 40
