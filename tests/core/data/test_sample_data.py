"""The synthetic shapes dataset: layout, determinism, refusal, and that the engine can use it."""

from __future__ import annotations

import time

import pytest

from resnet_app.core.data.images import load_image
from resnet_app.core.data.sample_data import SAMPLE_CLASSES, generate_sample_dataset
from resnet_app.core.data.scan import scan_dataset


def file_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writes_the_requested_images_per_class(tmp_path):
    calls = []
    out = generate_sample_dataset(
        tmp_path / "shapes", images_per_class=5, image_size=32, progress=lambda d, t: calls.append((d, t))
    )

    assert out == tmp_path / "shapes"
    assert sorted(p.name for p in out.iterdir()) == sorted(SAMPLE_CLASSES)
    for name in SAMPLE_CLASSES:
        assert sorted(p.name for p in (out / name).iterdir()) == [f"{name}_{i:04d}.png" for i in range(5)]
    total = 5 * len(SAMPLE_CLASSES)
    assert calls[-1] == (total, total) and len(calls) == total


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    a = generate_sample_dataset(tmp_path / "a", images_per_class=4, seed=3)
    b = generate_sample_dataset(tmp_path / "b", images_per_class=4, seed=3)
    c = generate_sample_dataset(tmp_path / "c", images_per_class=4, seed=4)

    assert file_bytes(a) == file_bytes(b)
    assert file_bytes(a).keys() == file_bytes(c).keys()
    assert all(file_bytes(a)[k] != file_bytes(c)[k] for k in file_bytes(a))


def test_images_vary_within_a_class(tmp_path):
    out = generate_sample_dataset(tmp_path / "s", images_per_class=6)
    contents = [p.read_bytes() for p in (out / SAMPLE_CLASSES[0]).iterdir()]
    assert len(set(contents)) == len(contents)


def test_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "my_photo.jpg").write_bytes(b"precious")

    with pytest.raises(ValueError, match="not empty"):
        generate_sample_dataset(target, images_per_class=2)
    assert [p.name for p in target.iterdir()] == ["my_photo.jpg"]


def test_refuses_a_path_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        generate_sample_dataset(target, images_per_class=2)


def test_an_existing_empty_directory_is_fine(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    generate_sample_dataset(target, images_per_class=2)
    assert len(list(target.rglob("*.png"))) == 2 * len(SAMPLE_CLASSES)


@pytest.mark.parametrize("kwargs", [{"images_per_class": 0}, {"image_size": 4}])
def test_refuses_silly_sizes(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_sample_dataset(tmp_path / "s", **kwargs)


def test_images_load_at_the_requested_size(tmp_path):
    out = generate_sample_dataset(tmp_path / "s", images_per_class=2, image_size=48)
    for path in out.rglob("*.png"):
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (48, 48)
        assert len(image.getcolors(48 * 48)) > 20  # noise + shape, not a flat colour


def test_default_dataset_is_fast_and_scans_clean(tmp_path):
    start = time.perf_counter()
    out = generate_sample_dataset(tmp_path / "s")
    elapsed = time.perf_counter() - start

    report = scan_dataset(out)

    assert report.ok, report.errors
    assert report.classes == SAMPLE_CLASSES  # alphabetical: indices agree with scan_dataset's
    assert report.counts == {name: 60 for name in SAMPLE_CLASSES}
    assert report.skipped == [] and report.duplicates == [] and report.warnings == []
    assert elapsed < 5, f"writing {len(report.samples)} images took {elapsed:.1f}s"
