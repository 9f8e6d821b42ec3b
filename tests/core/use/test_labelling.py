"""Labelling into a data set folder (core.use.labelling): copies and moves land in the class folder,
never over anything; every label is logged before it is placed and undone from the log, also after a
restart; the user's only copy is never deleted; what a crash leaves is finished when the log is opened."""
import json
import os

import pytest

from resnet_app.core.use.labelling import (
    LOG_FOLDER,
    PLACED,
    LabelError,
    LabelLog,
    classes_offered,
    label_log_path,
    read_label_log,
    undo_last,
)


@pytest.fixture
def folders(tmp_path):
    source, data = tmp_path / "unlabelled", tmp_path / "data"
    source.mkdir()
    (data / "cat").mkdir(parents=True)
    (data / "dog").mkdir()
    for i in range(4):
        (source / f"p{i}.jpg").write_bytes(f"photo {i}".encode())
    return source, data


def records(data):
    return [json.loads(line) for line in label_log_path(data).read_text().splitlines()]


def test_a_copy_lands_in_its_class_folder_and_undo_deletes_only_the_copy(folders):
    source, data = folders
    log = LabelLog(data)
    action = log.label(source / "p0.jpg", "cat")
    assert action.destination == data / "cat" / "p0.jpg"
    assert (data / "cat" / "p0.jpg").read_bytes() == b"photo 0" and (source / "p0.jpg").is_file()
    assert records(data)[0] == {"label-log": 1}
    assert records(data)[1]["op"] == "label" and records(data)[1]["action"] == "copied"
    assert log.labelled_sources(source) == {source / "p0.jpg"}
    outcome = log.undo(action.id)
    assert outcome.done, outcome.message
    assert not (data / "cat" / "p0.jpg").exists() and (source / "p0.jpg").read_bytes() == b"photo 0"
    assert (data / "cat").is_dir()  # the class folder was there before: it stays
    assert log.labelled() == []


def test_a_move_goes_back_on_undo_and_a_new_class_folder_goes_with_it(folders):
    source, data = folders
    log = LabelLog(data)
    action = log.label(source / "p1.jpg", "Fox: red", move=True)
    assert action.folder == "Fox_ red" and action.new_folder
    assert (data / "Fox_ red" / "p1.jpg").read_bytes() == b"photo 1" and not (source / "p1.jpg").exists()
    assert "Fox_ red" in log.class_folders()
    assert undo_last(log).done
    assert (source / "p1.jpg").read_bytes() == b"photo 1"
    assert not (data / "Fox_ red").exists()
    assert not undo_last(log).done  # nothing left


def test_a_taken_name_gets_a_numbered_one_and_nothing_is_overwritten(folders):
    source, data = folders
    (data / "dog" / "p2.jpg").write_bytes(b"an older dog")
    action = LabelLog(data).label(source / "p2.jpg", "dog", move=True)
    assert action.destination.name == "p2-2.jpg"
    assert (data / "dog" / "p2.jpg").read_bytes() == b"an older dog"
    assert (data / "dog" / "p2-2.jpg").read_bytes() == b"photo 2"


def test_labels_survive_a_restart_and_are_undone_newest_first(folders):
    source, data = folders
    log = LabelLog(data)
    log.label(source / "p0.jpg", "cat", move=True)
    log.label(source / "p1.jpg", "dog")
    again = LabelLog(data)  # a restart: everything from the log and the disk
    assert [a.source.name for a in again.labelled(source)] == ["p0.jpg", "p1.jpg"]
    assert undo_last(data).done  # p1's copy
    assert not (data / "dog" / "p1.jpg").exists()
    assert undo_last(data).done  # p0 moved back
    assert sorted(p.name for p in source.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert LabelLog(data).labelled() == []


def test_the_only_copy_is_never_deleted(folders):
    source, data = folders
    log = LabelLog(data)
    gone = log.label(source / "p0.jpg", "cat")
    changed = log.label(source / "p1.jpg", "cat")
    (source / "p0.jpg").unlink()  # the user deleted the original: the copy is the only one left
    (data / "cat" / "p1.jpg").write_bytes(b"photo X")  # same size, edited since
    outcome = log.undo(gone.id)
    assert not outcome.done and "only one" in outcome.message
    assert (data / "cat" / "p0.jpg").read_bytes() == b"photo 0"
    outcome = log.undo(changed.id)
    assert not outcome.done and "changed" in outcome.message
    assert (data / "cat" / "p1.jpg").read_bytes() == b"photo X"
    assert "undo" not in [r.get("op") for r in records(data)]  # refused before anything was logged


def test_undo_of_a_move_leaves_a_new_file_at_the_old_name_alone(folders):
    source, data = folders
    log = LabelLog(data)
    action = log.label(source / "p3.jpg", "cat", move=True)
    (source / "p3.jpg").write_bytes(b"a new photo")
    outcome = log.undo(action.id)
    assert not outcome.done and "another file" in outcome.message
    assert (source / "p3.jpg").read_bytes() == b"a new photo"
    assert (data / "cat" / "p3.jpg").read_bytes() == b"photo 3"


def test_a_torn_last_line_is_skipped_and_the_next_line_starts_fresh(folders):
    source, data = folders
    log = LabelLog(data)
    log.label(source / "p0.jpg", "cat")
    with open(label_log_path(data), "a") as f:
        f.write('{"op": "label", "id": "x", "sou')  # killed mid-line
    again = LabelLog(data)
    assert again.torn == 1 and len(again.actions) == 1
    again.label(source / "p1.jpg", "dog")
    contents = read_label_log(label_log_path(data))
    assert contents.torn == 1 and [a.source.name for a in contents.actions] == ["p0.jpg", "p1.jpg"]


def test_a_torn_header_counts_as_an_empty_log(folders):
    source, data = folders
    label_log_path(data).parent.mkdir()
    label_log_path(data).write_text('{"label-l')
    log = LabelLog(data)
    log.label(source / "p0.jpg", "cat")
    assert records(data)[0] == {"label-log": 1} and len(LabelLog(data).labelled()) == 1


def test_a_file_that_is_not_a_label_log_is_refused(folders):
    _source, data = folders
    label_log_path(data).parent.mkdir()
    label_log_path(data).write_text("name,class\n")
    with pytest.raises(LabelError, match="not a label log"):
        LabelLog(data)


def test_opening_the_log_finishes_what_a_crash_interrupted(folders):
    source, data = folders
    log = LabelLog(data)
    # 1. a move killed between link and unlink: the same file in both places
    half = log.label(source / "p0.jpg", "cat", move=True)
    os.link(half.destination, source / "p0.jpg")
    # 2. an undo logged, then killed before the file went back
    undone = log.label(source / "p1.jpg", "dog", move=True)
    log._write({"op": "undo", "id": undone.id})
    # 3. a label into a new class logged and its folder made, then killed before the file was placed
    never = log.label(source / "p2.jpg", "bird", move=True)
    os.link(never.destination, source / "p2.jpg")
    os.unlink(never.destination)
    (never.destination.parent / ".p2.jpg.abc.placing.tmp").write_bytes(b"half")
    again = LabelLog(data)
    assert again.recovery.finished_moves == 1 and again.recovery.finished_undos == 1
    assert not (source / "p0.jpg").exists() and (data / "cat" / "p0.jpg").is_file()
    assert (source / "p1.jpg").read_bytes() == b"photo 1" and not (data / "dog" / "p1.jpg").exists()
    assert (source / "p2.jpg").read_bytes() == b"photo 2" and not (data / "bird").exists()
    assert [a.source.name for a in again.labelled()] == ["p0.jpg"]
    assert again.state(half) == PLACED


def test_the_log_lives_in_a_hidden_folder_and_classes_are_offered_once():
    assert LOG_FOLDER.startswith(".")
    assert classes_offered(["dog", "zebra", "cat"], ["cat", "dog", "a/b"]) == ["cat", "dog", "a_b", "zebra"]
