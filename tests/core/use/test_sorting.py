"""Sorting a folder with a model: copy and move, clashes, unreadable and unsure files, the log and undo,
a second run, SOURCE and DEST inside each other, an unwritable DEST, failures and stops part-way."""
import errno
import os
import random

import pytest
import torch
from PIL import Image

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.core.use import sorting
from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.sorting import (
    LOG_NAME,
    UNREADABLE_FOLDER,
    UNSURE_FOLDER,
    SortError,
    class_folder_name,
    read_log,
    sort_folder,
    undo_sort,
)

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 2).state_dict(), "resnet18-cifar", CLASSES, 16,
                                    [0.5] * 3, [0.25] * 3))
    return Classifier.from_file(path, device="cpu")


def make_photos(folder, count=6, prefix="photo", seed=0):
    """`count` small PNGs with different colours; returns {path: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    contents = {}
    for i in range(count):
        path = folder / f"{prefix}{i}.png"
        Image.new("RGB", (12, 12), tuple(rng.randrange(256) for _ in range(3))).save(path)
        contents[path] = path.read_bytes()
    return contents


def files_under(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def predicted(classifier, paths):
    return {p.path: p.top_k[0][0] for p in classifier.predict_paths(sorted(paths))}


def test_copy_sorts_each_image_into_its_class_and_logs_it(classifier, tmp_path):
    photos = make_photos(tmp_path / "in")
    labels = predicted(classifier, photos)
    seen = []
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
    assert files_under(tmp_path / "in") == photos  # copying leaves the sources as they were
    for path, content in photos.items():
        assert (tmp_path / "out" / labels[path] / path.name).read_bytes() == content
    assert summary.sorted == 6 and summary.unsure == 0 and summary.unreadable == 0 and not summary.stopped
    classes = len(set(labels.values()))
    plural = "es" if classes > 1 else ""
    assert summary.summary_line() == f"6 sorted into {classes} class{plural}, 0 unsure, 0 unreadable"
    assert seen[-1] == (6, 6)
    rows = read_log(tmp_path / "out" / LOG_NAME).rows
    assert len(rows) == 6
    for row in rows:
        assert row["class"] == labels[type(tmp_path)(row["source"])] and 0 < float(row["confidence"]) <= 1
        assert row["action"] == "copied" and os.path.exists(row["destination"])


def test_move_then_undo_restores_every_file(classifier, tmp_path):
    photos = make_photos(tmp_path / "in" / "2023")
    photos.update(make_photos(tmp_path / "in" / "2024", prefix="other"))
    (tmp_path / "in" / "2024" / "broken.jpg").write_bytes(b"not a jpeg")
    photos[tmp_path / "in" / "2024" / "broken.jpg"] = b"not a jpeg"
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    assert summary.sorted == 12 and summary.unreadable == 1
    assert not any(p.exists() for p in photos)  # all moved
    assert (tmp_path / "out" / UNREADABLE_FOLDER / "broken.jpg").read_bytes() == b"not a jpeg"
    undone = undo_sort(tmp_path / "out" / LOG_NAME)
    assert undone.restored == 13 and not undone.problems
    assert files_under(tmp_path / "in") == photos
    # The folders the sort made are gone again; the log stays, and a second undo changes nothing.
    assert {p.name for p in (tmp_path / "out").iterdir()} == {LOG_NAME}
    again = undo_sort(tmp_path / "out" / LOG_NAME)
    assert again.restored == 0 and again.already_back == 13 and files_under(tmp_path / "in") == photos


def test_name_clashes_get_a_suffix_and_nothing_is_overwritten(classifier, tmp_path):
    first = make_photos(tmp_path / "in" / "a", count=1, seed=1)
    second = make_photos(tmp_path / "in" / "b", count=1, seed=2)  # the same name, other pixels
    sort_folder(classifier, tmp_path / "in", tmp_path / "out", min_confidence=1.0)  # all unsure: one folder
    unsure = tmp_path / "out" / UNSURE_FOLDER
    assert sorted(p.name for p in unsure.iterdir()) == ["photo0-2.png", "photo0.png"]
    assert {p.read_bytes() for p in unsure.iterdir()} == set(first.values()) | set(second.values())
    mine = unsure / "photo0-3.png"
    mine.write_bytes(b"the user's own file")
    # Sorting `a` again places nothing twice (an earlier sort placed it); a new photo0 gets photo0-4.
    again = sort_folder(classifier, tmp_path / "in" / "a", tmp_path / "out", min_confidence=1.0)
    assert again.earlier_placed == 1 and again.done == 0
    third = make_photos(tmp_path / "in" / "c", count=1, seed=3)
    summary = sort_folder(classifier, tmp_path / "in" / "c", tmp_path / "out", min_confidence=1.0)
    assert mine.read_bytes() == b"the user's own file" and summary.renamed == 1
    assert (unsure / "photo0-4.png").read_bytes() == next(iter(third.values()))
    # A model file may hold any class name: folders stay inside DEST, visible, apart from the special ones.
    assert class_folder_name("../../etc") == "_class .._.._etc" and class_folder_name("a/b") == "a_b"
    assert class_folder_name(UNSURE_FOLDER) != UNSURE_FOLDER and class_folder_name("") == "_class"


def test_unsure_follows_the_model_threshold_or_the_given_one(classifier, tmp_path):
    photos = make_photos(tmp_path / "in")
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "all-unsure", min_confidence=1.0)
    assert summary.unsure == 6 and summary.sorted == 0
    assert {p.name for p in (tmp_path / "all-unsure" / UNSURE_FOLDER).iterdir()} == {p.name for p in photos}
    rows = read_log(tmp_path / "all-unsure" / LOG_NAME).rows
    assert all(row["class"] in CLASSES for row in rows)  # the model's guess is still logged
    classifier.unsure_below = 1.0
    try:
        assert sort_folder(classifier, tmp_path / "in", tmp_path / "model-threshold").unsure == 6
        assert sort_folder(classifier, tmp_path / "in", tmp_path / "given", min_confidence=0.0).unsure == 0
    finally:
        classifier.unsure_below = 0.0


def test_a_second_run_into_the_same_dest_appends_and_undo_covers_both(classifier, tmp_path):
    first = make_photos(tmp_path / "in1")
    second = make_photos(tmp_path / "in2")  # the same names as the first
    sort_folder(classifier, tmp_path / "in1", tmp_path / "out", move=True)
    sort_folder(classifier, tmp_path / "in2", tmp_path / "out", move=True)
    log = tmp_path / "out" / LOG_NAME
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"sort-log": 1}' and len(lines) == 1 + 2 + 12  # one header, a line per sort, 12 rows
    assert len(files_under(tmp_path / "out")) == 13  # 12 images (names suffixed) and the log
    assert undo_sort(log).restored == 12
    assert files_under(tmp_path / "in1") == first and files_under(tmp_path / "in2") == second


def test_source_inside_dest_does_not_sort_the_output_again(classifier, tmp_path):
    dest = tmp_path / "photos"
    make_photos(dest / "incoming")
    sort_folder(classifier, dest / "incoming", dest, move=True)
    sorted_before = {p for p in files_under(dest) if p.name != LOG_NAME}
    # New photos arrive, loose in DEST itself: sorting DEST sorts them and leaves the sorted ones alone.
    make_photos(dest, count=2, prefix="new")
    summary = sort_folder(classifier, dest, dest, move=True)
    assert summary.total == 2 and summary.already_sorted == 6
    assert sorted_before <= set(files_under(dest))
    assert not (dest / "new0.png").exists() and len(read_log(dest / LOG_NAME).rows) == 8
    # A SOURCE inside one of DEST's sort folders is refused.
    with pytest.raises(SortError, match="a folder a sort into .* writes into"):
        sort_folder(classifier, next(p for p in sorted_before).parent, dest)
    # DEST inside SOURCE: the output is not sorted again either.
    with pytest.raises(SortError, match="already sorted"):
        sort_folder(classifier, tmp_path, dest)
    make_photos(tmp_path / "camera", count=1, prefix="later")
    summary = sort_folder(classifier, tmp_path, dest)
    assert summary.total == 1 and summary.already_sorted == 8


def read_only(monkeypatch, folder):
    """Make writes inside `folder` fail as on a read-only file system (tests run as root, which
    chmod can't stop)."""
    folder = str(folder)

    def inside(path):
        return os.path.abspath(os.fspath(path)).startswith(folder)

    def refuse(real):
        def wrapper(path, *args, **kwargs):
            if inside(path):
                raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
            return real(path, *args, **kwargs)
        return wrapper

    real_open, real_link = open, os.link
    monkeypatch.setattr(os, "mkdir", refuse(os.mkdir))
    monkeypatch.setattr(os, "open", refuse(os.open))
    monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: (
        refuse(real_open)(path, mode, *a, **k) if any(c in mode for c in "wax+") else real_open(path, mode, *a, **k)))
    monkeypatch.setattr(os, "link", lambda src, dst, *a, **k: refuse(lambda d: real_link(src, d, *a, **k))(dst))


def test_read_only_dest_is_refused_before_anything_moves(classifier, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in")
    (tmp_path / "out").mkdir()
    read_only(monkeypatch, tmp_path / "out")
    with pytest.raises(SortError, match="can't write into .*Read-only file system.*nothing was copied or moved"):
        sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    monkeypatch.undo()
    assert files_under(tmp_path / "in") == photos and not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_dest_by_permissions(classifier, tmp_path):
    photos = make_photos(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    try:
        with pytest.raises(SortError, match="can't write into"):
            sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    finally:
        (tmp_path / "out").chmod(0o755)
    assert files_under(tmp_path / "in") == photos


def test_a_write_failing_part_way_stops_the_sort_and_undo_restores_what_moved(classifier, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", count=8)
    real_place, placed = sorting.place_file, []

    def fail_after_three(target, **kwargs):
        if len(placed) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        placed.append(target)
        return real_place(target, **kwargs)

    monkeypatch.setattr(sorting, "place_file", fail_after_three)
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True, batch_size=2)
    assert summary.error and "No space left on device" in summary.error and summary.done == 3
    assert sum(p.exists() for p in photos) == 5  # the others were not touched
    assert len(read_log(tmp_path / "out" / LOG_NAME).rows) == 4  # the 4th: its intent, never placed
    monkeypatch.undo()
    assert undo_sort(tmp_path / "out" / LOG_NAME).restored == 3
    assert files_under(tmp_path / "in") == photos


def test_a_crash_between_placing_and_removing_and_a_torn_row_still_undo(classifier, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", count=3)
    # The process dies after the first file is placed, before its source is removed.
    class Crash(BaseException):
        pass

    def crash(path):
        raise Crash

    monkeypatch.setattr(sorting.os, "unlink", crash)
    with pytest.raises(Crash):
        sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    monkeypatch.undo()
    log = tmp_path / "out" / LOG_NAME
    assert len(read_log(log).rows) == 1 and files_under(tmp_path / "in") == photos
    with open(log, "a", encoding="utf-8") as f:
        f.write(f'{{"op": "place", "source": "{tmp_path / "in" / "photo9.png"}", "dest')  # a row torn by the crash
    undone = undo_sort(log)
    assert undone.already_back == 1 and not undone.problems and undone.torn_rows == 1  # the extra copy goes
    assert files_under(tmp_path / "in") == photos
    assert {p.name for p in files_under(tmp_path / "out")} == {LOG_NAME}
    # A later sort appends after the torn row, on a line of its own.
    sort_folder(classifier, tmp_path / "in", tmp_path / "out")
    assert len(read_log(log).rows) == 4


def test_stop_request_finishes_the_file_in_hand_and_logs_what_was_sorted(classifier, tmp_path):
    photos = make_photos(tmp_path / "in", count=10)
    done = []
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True, batch_size=4,
                          progress=lambda d, t: done.append(d), should_stop=lambda: len(done) >= 3)
    assert summary.stopped and summary.done == 3 and summary.summary_line().startswith("stopped after 3 of 10")
    assert sum(p.exists() for p in photos) == 7 and len(read_log(tmp_path / "out" / LOG_NAME).rows) == 3
    undo_sort(tmp_path / "out" / LOG_NAME)
    assert files_under(tmp_path / "in") == photos


def test_undo_never_overwrites_a_file_that_took_the_old_place(classifier, tmp_path):
    photos = make_photos(tmp_path / "in", count=2)
    sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    first = sorted(photos)[0]
    first.write_bytes(b"a new file with the old name")
    undone = undo_sort(tmp_path / "out" / LOG_NAME)
    assert undone.restored == 1 and len(undone.problems) == 1 and "another file is there now" in \
        undone.problems[0]["problem"]
    assert first.read_bytes() == b"a new file with the old name"


def test_not_a_sort_log_is_refused(tmp_path):
    (tmp_path / LOG_NAME).write_text("name,size\nx,1\n")
    with pytest.raises(SortError, match="not a sort log"):
        undo_sort(tmp_path / LOG_NAME)
    with pytest.raises(SortError, match="no such sort log"):
        undo_sort(tmp_path / "missing.csv")
