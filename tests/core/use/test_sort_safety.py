"""Issue 19: a sort and its undo can't lose or duplicate a photo: real copies, intent-first log, earlier
sorts' folders, torn rows, links, class-name clashes, syncs before an original goes."""
import errno
import os

import pytest
import torch
from test_sorting import files_under, make_photos

from resnet_app.core import files
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.core.use import sorting
from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.sort_names import class_folder_name
from resnet_app.core.use.sorting import LOG_NAME, SortError, read_log, sort_folder, undo_sort


def model(folder, classes):
    torch.manual_seed(0)
    path = folder / "model.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    save_model_file(path, ModelFile(build_model("resnet18-cifar", len(classes)).state_dict(), "resnet18-cifar",
                                    classes, 16, [0.5] * 3, [0.25] * 3))
    return Classifier.from_file(path, device="cpu")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return model(tmp_path_factory.mktemp("model"), ["cat", "dog"])


def placed(dest):
    return {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and p.name != LOG_NAME}


def test_1_a_copy_is_a_copy_never_a_hard_link(classifier, tmp_path):
    photos = make_photos(tmp_path / "in", count=4)
    sort_folder(classifier, tmp_path / "in", tmp_path / "out")
    copies = placed(tmp_path / "out")
    assert len(copies) == 4
    for path in photos:
        copy = next(p for p in copies if p.name == path.name)
        assert path.stat().st_nlink == 1 and copy.stat().st_nlink == 1
        assert path.stat().st_ino != copy.stat().st_ino
        copy.write_bytes(b"edited in DEST")
        assert path.read_bytes() == photos[path]  # the original is untouched


def test_2_the_intent_is_logged_and_synced_before_the_file_is_placed(classifier, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", count=5)
    log = tmp_path / "out" / LOG_NAME
    seen = []
    real_place = sorting.place_file

    def check_then_place(target, **kwargs):
        # Read from the disk as a crash would leave it: the row naming this target is already there.
        seen.append(any(row["destination"] == str(target) for row in read_log(log).rows))
        return real_place(target, **kwargs)

    monkeypatch.setattr(sorting, "place_file", check_then_place)

    sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True, batch_size=32)
    monkeypatch.undo()
    assert seen == [True] * 5
    # A crash right after an intent, before its file is placed (the state the first placed file was in
    # at that moment): the re-run places every file once, and undo puts all back.
    assert undo_sort(log).restored == 5 and files_under(tmp_path / "in") == photos
    with open(log, "a", encoding="ascii") as f:  # intent written, file never placed
        f.write('{"op": "place", "source": "%s", "destination": "%s", "action": "moved", "size": 1}\n'
                % (sorted(photos)[0], tmp_path / "out" / "cat" / sorted(photos)[0].name))
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    assert summary.done == 5 and len(placed(tmp_path / "out")) == 5 and not any(p.exists() for p in photos)
    assert undo_sort(log).problems == [] and files_under(tmp_path / "in") == photos
    assert not placed(tmp_path / "out")


def test_3_an_earlier_sorts_folders_are_sorted_for_every_later_model(classifier, tmp_path):
    dest = tmp_path / "photos"
    make_photos(dest / "incoming", count=4)
    sort_folder(classifier, dest / "incoming", dest, move=True)
    first = placed(dest)
    other = model(tmp_path / "other-model", ["bird", "fish"])
    make_photos(dest, count=2, prefix="new")
    summary = sort_folder(other, dest, dest, move=True)  # DEST holds the first sort's cat/ and dog/
    assert summary.total == 2 and summary.already_sorted == 4
    assert set(first) <= set(placed(dest))


def test_4_a_row_torn_inside_a_quoted_field_hides_nothing(classifier, tmp_path):
    source = tmp_path / "in, with a comma"
    photos = make_photos(source, count=3, prefix='a "quoted", name')
    log = tmp_path / "out" / LOG_NAME
    sort_folder(classifier, source, tmp_path / "out", move=True)
    more = make_photos(tmp_path / "in2", count=2, prefix="b")
    text = log.read_bytes()
    last = text.rstrip(b"\n").rsplit(b"\n", 1)[1]
    log.write_bytes(text + last[: len(last) // 2])  # a row cut by a crash in the middle of its source
    sort_folder(classifier, tmp_path / "in2", tmp_path / "out", move=True)
    undone = undo_sort(log)
    assert undone.restored == 5 and undone.torn_rows == 1 and not undone.problems
    assert files_under(source) == photos and files_under(tmp_path / "in2") == more


def test_4_an_old_csv_log_with_a_torn_quoted_row_still_undoes_the_rows_after_it(tmp_path):
    dest = tmp_path / "out"
    (dest / "a").mkdir(parents=True)
    (tmp_path / "in").mkdir()
    for n in range(3):
        (dest / "a" / f"{n}.png").write_bytes(b"x%d" % n)
    rows = [f'"{tmp_path}/in/{n}, x.png",{dest}/a/{n}.png,a,0.9,moved,' for n in range(3)]
    torn = f'"{tmp_path}/in/torn, y.png",{dest}/a/torn'  # cut inside nothing quoted, then a new line
    text = "source,destination,class,confidence,action,note\n" + rows[0] + "\n" + '"' + torn + "\n" + \
        rows[1] + "\n" + rows[2] + "\n"
    (dest / "sort-log.csv").write_text(text)
    assert undo_sort(dest / "sort-log.csv").restored == 3
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["0, x.png", "1, x.png", "2, x.png"]


def test_5_a_link_in_source_places_its_targets_content(classifier, tmp_path):
    outside = make_photos(tmp_path / "elsewhere", count=1, prefix="far")
    photos = make_photos(tmp_path / "in", count=2)
    far = next(iter(outside))
    (tmp_path / "in" / "link-far.png").symlink_to(far)
    (tmp_path / "in" / "link-near.png").symlink_to(sorted(photos)[0])
    summary = sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    copies = placed(tmp_path / "out")
    assert not any(p.is_symlink() for p in copies)
    assert sorted(copies.values()) == sorted([outside[far], *photos.values()])  # each content once
    assert far.read_bytes() == outside[far]  # outside SOURCE: copied, never moved
    assert any("link-far.png" in line and "copied" in line for line in summary.detail_lines())
    undo_sort(tmp_path / "out" / LOG_NAME)
    assert {p: p.read_bytes() for p in photos} == photos


@pytest.mark.parametrize("classes, clash", [(["cat", "cat."], "cat"), (["cat", " cat "], "cat"),
                                            (["a:b", "a_b"], "a_b"), (["Cat", "cat"], "Cat")])
def test_6_two_classes_sharing_a_folder_refuse_the_sort_up_front(tmp_path, classes, clash):
    clashing = model(tmp_path / "model", classes)
    photos = make_photos(tmp_path / "in", count=1)
    with pytest.raises(SortError, match=f"{classes[0]!r} and {classes[1]!r} would share"):
        sort_folder(clashing, tmp_path / "in", tmp_path / "out", move=True)
    assert files_under(tmp_path / "in") == photos and not (tmp_path / "out").exists()


def test_6_one_folder_rule_safe_on_every_system():
    assert class_folder_name("CON") == "_CON" and class_folder_name("nul.txt") == "_nul.txt"
    assert class_folder_name("com1") == "_com1" and class_folder_name("console") == "console"
    assert class_folder_name("cat. ") == "cat" and class_folder_name("a/b\\c") == "a_b_c"
    assert class_folder_name("e\u0301") == "\u00e9"  # one form, as macOS stores it


def test_10_a_move_across_file_systems_syncs_the_copy_before_the_original_goes(tmp_path, monkeypatch):
    source = tmp_path / "a" / "photo.png"
    source.parent.mkdir()
    source.write_bytes(b"the only copy")
    events = []
    real_fsync, real_unlink, real_link = os.fsync, os.unlink, os.link

    def link(src, dst, *args, **kwargs):
        if os.fspath(src) == os.fspath(source):
            raise OSError(errno.EXDEV, "Invalid cross-device link")  # as between two drives
        return real_link(src, dst, *args, **kwargs)

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def unlink(path, *args, **kwargs):
        events.append(("unlink", os.fspath(path)))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    target = files.place_file(tmp_path / "b" / "photo.png", source=source, move=True)
    monkeypatch.undo()
    gone = events.index(("unlink", str(source)))
    synced = [path for kind, path in events[:gone] if kind == "fsync"]
    assert str(tmp_path / "b") in synced  # the folder holding the new name
    assert any(os.path.basename(p).startswith(".photo.png.") for p in synced)  # the copy's bytes
    assert target.read_bytes() == b"the only copy" and not source.exists()


def test_10_undo_across_file_systems_syncs_before_the_sorted_file_goes(classifier, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "in", count=2)
    sort_folder(classifier, tmp_path / "in", tmp_path / "out", move=True)
    events = []
    real_fsync, real_unlink, real_link = os.fsync, os.unlink, os.link

    def link(src, dst, *args, **kwargs):
        if str(tmp_path / "out") in os.fspath(src) and "placing" not in os.fspath(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync " + os.path.realpath(f"/proc/self/fd/{fd}")),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: (events.append("unlink " + os.fspath(p)),
                                                          real_unlink(p, *a, **k))[1])
    assert undo_sort(tmp_path / "out" / LOG_NAME).restored == 2
    monkeypatch.undo()
    assert files_under(tmp_path / "in") == photos
    for index, event in enumerate(events):
        if event.startswith("unlink ") and str(tmp_path / "out") in event and "placing" not in event:
            assert f"fsync {tmp_path / 'in'}" in events[:index]
