"""Dataset scanning, splitting and loading, on real (tiny) image files in tmp_path."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from resnet_app.core.data.datasets import ImageFileDataset, collate_skipping_failures
from resnet_app.core.data.scan import DatasetError, scan_dataset
from resnet_app.core.data.splits import stratified_split

_colours = itertools.count()


def unique_colour() -> tuple[int, int, int]:
    """A colour no other test image has, so no two images are byte-identical by accident."""
    n = next(_colours)
    return (n % 256, (n // 256) % 256, 7 + (n // 65536) % 200)


def make_image(path: Path, colour: tuple[int, int, int] | None = None, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour or unique_colour()).save(path)
    return path


def make_dataset(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            make_image(root / name / f"{name}_{i:03d}{ext}")
    return root


def skipped_reasons(report) -> dict[str, str]:
    """Skipped files by path relative to the root, for readable assertions."""
    return {s.path.relative_to(report.root).as_posix(): s.reason for s in report.skipped}


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


# ---------------------------------------------------------------------- scanning


def test_classes_counts_and_samples_including_nested_folders(tmp_path):
    root = make_dataset(tmp_path / "data", {"dog": 12, "cat": 10})
    make_image(root / "cat" / "indoor" / "deeper" / "nested.jpg")

    report = scan_dataset(root)

    assert report.ok, report.errors
    assert report.classes == ["cat", "dog"]
    assert report.counts == {"cat": 11, "dog": 12}
    assert len(report.samples) == 23
    assert (root / "cat" / "indoor" / "deeper" / "nested.jpg", 0) in report.samples
    assert report.samples == sorted(report.samples, key=lambda s: (s[1], str(s[0])))
    assert {label for path, label in report.samples if path.parent.name == "dog"} == {1}
    assert report.skipped == [] and report.duplicates == [] and report.warnings == []


def test_scan_is_deterministic(tmp_path):
    root = make_dataset(tmp_path / "data", {"a": 10, "b": 10, "c": 10})
    assert scan_dataset(root).to_dict() == scan_dataset(root).to_dict()


def test_hidden_files_and_folders_are_skipped_and_reported(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    make_image(root / "cat" / "._photo.jpg")  # macOS resource fork: hidden even though it has an image name
    make_image(root / "dog" / ".ipynb_checkpoints" / "dog_000-checkpoint.png")
    make_image(root / ".hidden_class" / "x.png")

    report = scan_dataset(root)

    assert report.ok and report.classes == ["cat", "dog"]
    assert report.counts == {"cat": 10, "dog": 10}
    assert skipped_reasons(report) == {
        ".DS_Store": "hidden file",
        ".hidden_class": "hidden folder",
        "cat/.DS_Store": "hidden file",
        "cat/._photo.jpg": "hidden file",
        "dog/.ipynb_checkpoints": "hidden folder",
    }


def test_non_images_and_loose_files_are_skipped_with_reason(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / "cat" / "notes.txt").write_text("good cats")
    (root / "dog" / "LICENSE").write_text("MIT")
    make_image(root / "cat" / "UPPER.JPG")  # extensions are case-insensitive
    make_image(root / "loose.png")

    report = scan_dataset(root)

    assert report.counts == {"cat": 11, "dog": 10}
    assert skipped_reasons(report) == {
        "cat/notes.txt": "not an image (extension .txt)",
        "dog/LICENSE": "not an image (no extension)",
        "loose.png": "not inside a class folder",
    }


def test_unreadable_images_are_reported_and_excluded(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / "cat" / "really_text.jpg").write_text("this is not a JPEG")
    good = make_image(tmp_path / "whole.png", size=32)
    (root / "dog" / "truncated.png").write_bytes(good.read_bytes()[:60])

    report = scan_dataset(root)

    reasons = skipped_reasons(report)
    assert reasons["cat/really_text.jpg"].startswith("unreadable: ")
    assert "not an image" in reasons["cat/really_text.jpg"]
    assert reasons["dog/truncated.png"].startswith("unreadable: ")
    sample_paths = {path for path, _ in report.samples}
    assert root / "cat" / "really_text.jpg" not in sample_paths
    assert root / "dog" / "truncated.png" not in sample_paths
    assert report.counts == {"cat": 10, "dog": 10}
    assert report.ok
    assert any("could not be read" in w for w in report.warnings)


def test_check_images_false_keeps_files_it_did_not_decode(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / "cat" / "really_text.jpg").write_text("this is not a JPEG")

    report = scan_dataset(root, check_images=False)

    assert report.counts == {"cat": 11, "dog": 10}


def test_progress_reports_every_checked_image(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 12})
    calls = []

    scan_dataset(root, progress=lambda done, total: calls.append((done, total)))

    assert calls[0] == (0, 22) and calls[-1] == (22, 22)
    assert [done for done, _ in calls] == list(range(23))


def test_progress_can_cancel_the_scan(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})

    def cancel(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_dataset(root, progress=cancel)


@needs_symlinks
@pytest.mark.timeout(20)
def test_symlink_loops_do_not_hang_and_are_reported(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / "cat" / "sub").mkdir()
    os.symlink(root / "cat", root / "cat" / "sub" / "back_to_class")
    os.symlink(root, root / "dog" / "back_to_root")
    os.symlink(root, root / "root_again")
    os.symlink(root / "cat", root / "dog" / "into_cat")

    report = scan_dataset(root)

    assert report.counts == {"cat": 10, "dog": 10}
    reasons = skipped_reasons(report)
    assert reasons["cat/sub/back_to_class"].startswith("symlink loop")
    assert reasons["dog/back_to_root"].startswith("symlink loop")
    assert reasons["root_again"].startswith("symlink loop")
    assert reasons["dog/into_cat"] == "links to a folder that is already scanned"


@needs_symlinks
def test_symlinked_files_and_class_folders_are_followed_once(tmp_path):
    outside = tmp_path / "elsewhere"
    make_dataset(outside, {"birds": 10})
    root = make_dataset(tmp_path / "data", {"cat": 10})
    os.symlink(outside / "birds", root / "birds")
    os.symlink(outside / "birds" / "birds_000.png", root / "cat" / "linked.png")
    os.symlink(root / "cat" / "cat_000.png", root / "cat" / "z_again.png")  # found after its target
    os.symlink(tmp_path / "gone.png", root / "cat" / "dangling.png")

    report = scan_dataset(root)

    assert report.classes == ["birds", "cat"]
    assert report.counts == {"birds": 10, "cat": 11}
    reasons = skipped_reasons(report)
    assert reasons["cat/z_again.png"] == f"same file as {root / 'cat' / 'cat_000.png'} (link)"
    assert reasons["cat/dangling.png"].startswith("broken symlink")
    # the linked bird sits in two classes: that is worth telling the user
    assert report.duplicates == [[root / "birds" / "birds_000.png", root / "cat" / "linked.png"]]


# ------------------------------------------------------------------------ errors


def test_missing_root_is_an_error(tmp_path):
    report = scan_dataset(tmp_path / "nope")
    assert not report.ok
    assert report.errors == [f"Dataset folder not found: {tmp_path / 'nope'}"]
    with pytest.raises(DatasetError, match="not found"):
        report.raise_if_unusable()


def test_root_that_is_a_file_is_an_error(tmp_path):
    file = make_image(tmp_path / "one.png")
    report = scan_dataset(file)
    assert not report.ok and "Not a folder" in report.errors[0]


def test_no_class_folders_is_an_error(tmp_path):
    root = tmp_path / "data"
    make_image(root / "a.png")
    make_image(root / "b.png")

    report = scan_dataset(root)

    assert not report.ok
    assert len(report.errors) == 1 and "No class folders" in report.errors[0]
    assert skipped_reasons(report) == {"a.png": "not inside a class folder", "b.png": "not inside a class folder"}


def test_only_one_class_is_an_error(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10})
    report = scan_dataset(root)
    assert not report.ok
    assert "Only one class ('cat')" in report.errors[0]


@pytest.mark.parametrize("contents", ["nothing", "only non-images", "only broken images"])
def test_a_class_without_usable_images_is_an_error_naming_it(tmp_path, contents):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10})
    (root / "empty_one").mkdir()
    if contents == "only non-images":
        (root / "empty_one" / "readme.txt").write_text("todo")
    elif contents == "only broken images":
        (root / "empty_one" / "x.png").write_bytes(b"\x89PNG garbage")

    report = scan_dataset(root)

    assert not report.ok
    assert report.errors == [f"Class 'empty_one' has no usable images (folder {root / 'empty_one'})."]
    with pytest.raises(DatasetError, match="'empty_one'"):
        report.raise_if_unusable()


# ----------------------------------------------------------- duplicates, warnings


def test_duplicates_across_classes_are_found_but_not_within_one_class(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 10}, ext=".bmp")  # all the same file size
    same = (1, 2, 3)
    make_image(root / "cat" / "dup.bmp", same)
    make_image(root / "dog" / "dup_in_dog.bmp", same)
    twin = (9, 9, 9)
    make_image(root / "cat" / "twin_a.bmp", twin)
    make_image(root / "cat" / "twin_b.bmp", twin)

    report = scan_dataset(root)

    assert report.duplicates == [[root / "cat" / "dup.bmp", root / "dog" / "dup_in_dog.bmp"]]
    assert any("more than one class" in w for w in report.warnings)
    assert report.ok  # a warning, not a refusal


def test_imbalance_and_tiny_class_warnings(tmp_path):
    root = make_dataset(tmp_path / "data", {"many": 40, "few": 5, "ten": 10})

    report = scan_dataset(root)

    assert report.ok
    imbalance = [w for w in report.warnings if "imbalanced" in w]
    assert len(imbalance) == 1 and "'many'" in imbalance[0] and "'few'" in imbalance[0]
    tiny = [w for w in report.warnings if "only" in w and "recommended" in w]
    assert tiny == ["Class 'few' has only 5 images; at least 10 are recommended."]


def test_balanced_classes_give_no_imbalance_warning(tmp_path):
    root = make_dataset(tmp_path / "data", {"a": 30, "b": 10})  # exactly 3x is still fine
    assert scan_dataset(root).warnings == []


# -------------------------------------------------------------------- class_names


def test_class_names_forces_order_and_labels(tmp_path):
    root = make_dataset(tmp_path / "val", {"cat": 3, "dog": 4})

    report = scan_dataset(root, class_names=["dog", "cat"])

    assert report.ok
    assert report.classes == ["dog", "cat"]
    assert report.counts == {"dog": 4, "cat": 3}
    assert {label for path, label in report.samples if path.parent.name == "dog"} == {0}
    assert {label for path, label in report.samples if path.parent.name == "cat"} == {1}


def test_class_names_missing_folder_is_a_warning(tmp_path):
    root = make_dataset(tmp_path / "val", {"cat": 10, "dog": 10})

    report = scan_dataset(root, class_names=["bird", "cat", "dog"])

    assert report.ok
    assert report.counts == {"bird": 0, "cat": 10, "dog": 10}
    assert {label for _, label in report.samples} == {1, 2}
    assert any("'bird'" in w and "no folder" in w for w in report.warnings)


def test_class_names_extra_folder_is_an_error(tmp_path):
    root = make_dataset(tmp_path / "val", {"cat": 10, "dog": 10, "horse": 10})

    report = scan_dataset(root, class_names=["cat", "dog"])

    assert not report.ok
    assert len(report.errors) == 1 and "'horse'" in report.errors[0]
    assert report.counts == {"cat": 10, "dog": 10}


# ------------------------------------------------------------------------ reports


def test_to_dict_is_json_serialisable_and_complete(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 10, "dog": 3}, ext=".bmp")
    (root / "cat" / "x.txt").write_text("x")
    make_image(root / "cat" / "d.bmp", (5, 5, 5))
    make_image(root / "dog" / "d.bmp", (5, 5, 5))

    data = json.loads(json.dumps(scan_dataset(root).to_dict()))

    assert data["root"] == str(root)
    assert data["ok"] is True
    assert data["classes"] == ["cat", "dog"]
    assert data["counts"] == {"cat": 11, "dog": 4}
    assert data["num_samples"] == 15 and len(data["samples"]) == 15
    assert data["skipped"] == [{"path": str(root / "cat" / "x.txt"), "reason": "not an image (extension .txt)"}]
    assert data["duplicates"] == [[str(root / "cat" / "d.bmp"), str(root / "dog" / "d.bmp")]]
    assert data["warnings"] and data["errors"] == []


def test_summary_lines_show_counts_skips_warnings_and_errors(tmp_path):
    root = make_dataset(tmp_path / "data", {"cat": 12, "dog": 2})
    (root / "cat" / "x.txt").write_text("x")
    (root / "empty").mkdir()

    text = "\n".join(scan_dataset(root).summary_lines())

    assert str(root) in text
    assert re.search(r"^  cat +12$", text, re.M) and re.search(r"^  dog +2$", text, re.M)
    assert "cat/x.txt: not an image (extension .txt)" in text.replace(os.sep, "/")
    assert "Warning: Class 'dog' has only 2 images" in text
    assert "Error: Class 'empty' has no usable images" in text


# -------------------------------------------------------------------------- split


def fake_samples(counts: list[int]) -> list[tuple[Path, int]]:
    return [(Path(f"c{label}/img_{i:03d}.png"), label) for label, n in enumerate(counts) for i in range(n)]


def test_split_is_reproducible_and_depends_on_the_seed():
    samples = fake_samples([50, 30, 20])
    assert stratified_split(samples, 0.2, seed=1) == stratified_split(samples, 0.2, seed=1)
    assert stratified_split(samples, 0.2, seed=1)[1] != stratified_split(samples, 0.2, seed=2)[1]


def test_split_is_the_same_on_every_platform():
    # Pinned: random.Random with a string seed is specified by Python, not the OS.
    # If this changes, saved runs would no longer reproduce their validation set.
    _, val = stratified_split(fake_samples([10, 10]), 0.2, seed=0)
    assert [p.as_posix() for p, _ in val] == ["c0/img_005.png", "c0/img_007.png", "c1/img_007.png", "c1/img_009.png"]


def test_split_is_disjoint_covers_everything_and_keeps_proportions():
    samples = fake_samples([50, 30, 20, 2, 1])
    train, val = stratified_split(samples, 0.2, seed=0)

    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(samples)
    val_counts = Counter(label for _, label in val)
    assert val_counts == {0: 10, 1: 6, 2: 4, 3: 1}  # class of 2 gives 1; class of 1 gives none
    assert train == [s for s in samples if s in set(train)]  # input order kept


def test_split_with_zero_fraction_puts_everything_in_train():
    samples = fake_samples([5, 5])
    assert stratified_split(samples, 0.0, seed=0) == (samples, [])


def test_split_keeps_at_least_one_training_image_per_class():
    train, val = stratified_split(fake_samples([2, 3]), 0.9, seed=0)
    assert Counter(label for _, label in train) == {0: 1, 1: 1}
    assert Counter(label for _, label in val) == {0: 1, 1: 2}


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, float("nan")])
def test_split_refuses_a_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction must be at least 0 and less than 1"):
        stratified_split(fake_samples([5, 5]), fraction, seed=0)


# ---------------------------------------------------------- dataset and collate


TO_TENSOR = T.Compose([T.Resize((8, 8)), T.ToTensor()])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_file_corrupted_after_scan_is_reported_not_raised(tmp_path, num_workers):
    root = make_dataset(tmp_path / "data", {"cat": 5, "dog": 5})
    report = scan_dataset(root)
    assert report.ok
    broken = root / "dog" / "dog_002.png"
    broken.write_bytes(b"garbage, not a PNG any more")

    loader = DataLoader(
        ImageFileDataset(report.samples, TO_TENSOR, size_hint=8),
        batch_size=4,
        num_workers=num_workers,
        collate_fn=collate_skipping_failures,
    )
    images_seen, labels_seen, failures = 0, [], []
    for images, labels, batch_failures in loader:
        assert images.shape == (len(labels), 3, 8, 8) and labels.dtype == torch.long
        images_seen += len(images)
        labels_seen += labels.tolist()
        failures += batch_failures

    assert images_seen == 9
    assert Counter(labels_seen) == {0: 5, 1: 4}
    assert len(failures) == 1
    path, reason = failures[0]
    assert path == str(broken) and "not an image" in reason


def test_dataset_item_shapes(tmp_path):
    path = make_image(tmp_path / "a" / "x.png", size=12)
    ok = ImageFileDataset([(path, 3)], TO_TENSOR)[0]
    assert ok[0].shape == (3, 8, 8) and ok[1:] == (3, str(path))

    path.unlink()
    image, label, failure = ImageFileDataset([(path, 3)], TO_TENSOR)[0]
    assert image is None and label == 3
    assert tuple(failure) == (str(path), "file not found")


def test_collate_when_every_sample_failed():
    batch = [(None, 0, ("a.png", "broken")), (None, 1, ("b.png", "file not found"))]
    images, labels, failures = collate_skipping_failures(batch)
    assert images.shape == (0,)
    assert labels.shape == (0,) and labels.dtype == torch.long
    assert failures == [("a.png", "broken"), ("b.png", "file not found")]
