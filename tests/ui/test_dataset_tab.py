"""The Data set tab on real widgets and real files: make a data set, add classes and images (drop, paste),
rename and remove, remove an image and undo, use it in Train."""
from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QMessageBox
from ui_helpers import drop_on, message_boxes

from resnet_app.ui.main_window import DATASET


@pytest.fixture
def tab(window, qtbot, tmp_path):
    (tmp_path / "xdg-data").mkdir(exist_ok=True)  # the trash lives under XDG_DATA_HOME (conftest)
    window.tabs.setCurrentIndex(DATASET)
    tab = window.dataset_tab
    tab.new_dataset(tmp_path / "my-set")
    return tab


def wait_idle(qtbot, window):
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=20_000)


def class_names(tab):
    from resnet_app.ui.dataset_tab import NameRole
    return [tab.class_list.item(i).data(NameRole) for i in range(tab.class_list.count())]


def test_make_a_data_set_add_images_by_drop_and_paste(window, tab, qtbot, tmp_path, images):
    assert tab.add_class("cats") and tab.add_class("dogs")
    wait_idle(qtbot, window)
    assert class_names(tab) == ["cats", "dogs"] and (tmp_path / "my-set" / "cats").is_dir()
    tab.class_list.setCurrentRow(0)
    wait_idle(qtbot, window)
    note = tmp_path / "notes.txt"
    note.write_text("not an image")
    source_folder = tmp_path / "more"
    source_folder.mkdir()
    shutil.copy(images[1], source_folder / "b.png")
    assert drop_on(tab.grid.viewport(), [images[0], note, source_folder])
    qtbot.waitUntil(lambda: tab.images.rowCount() == 2 and not tab.copying, timeout=20_000)
    assert images[0].exists() and (source_folder / "b.png").exists()  # copied, never moved
    assert sorted(p.name for p in (tmp_path / "my-set" / "cats").iterdir()) == sorted([images[0].name, "b.png"])
    texts = [box.text() for box in tab.findChildren(QMessageBox) if box.isVisible()]
    assert any("notes.txt" in text for text in texts), texts
    assert "2 images" in tab.class_list.item(0).text()

    # The same name again: name-2, and the first copy is untouched.
    before = (tmp_path / "my-set" / "cats" / images[0].name).read_bytes()
    assert drop_on(tab, [images[0]])
    qtbot.waitUntil(lambda: tab.images.rowCount() == 3 and not tab.copying, timeout=20_000)
    second = tmp_path / "my-set" / "cats" / f"{images[0].stem}-2{images[0].suffix}"
    assert second.is_file() and (tmp_path / "my-set" / "cats" / images[0].name).read_bytes() == before

    # Paste: file URLs, then an image itself (saved as PNG).
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(images[2]))])
    QApplication.clipboard().setMimeData(mime)
    tab.paste_action.trigger()
    qtbot.waitUntil(lambda: tab.images.rowCount() == 4 and not tab.copying, timeout=20_000)
    picture = QImage(20, 10, QImage.Format.Format_RGB32)
    picture.fill(QColor("red"))
    QApplication.clipboard().setImage(picture)
    tab.paste_action.trigger()
    qtbot.waitUntil(lambda: tab.images.rowCount() == 5, timeout=20_000)
    pasted = tmp_path / "my-set" / "cats" / "pasted.png"
    assert pasted.is_file() and QImage(str(pasted)).size() == picture.size()


def test_class_names_rename_and_collisions(window, tab, qtbot, tmp_path):
    root = tmp_path / "my-set"
    assert tab.add_class("a/b")  # separators become "_"
    assert (root / "a_b").is_dir()
    assert not tab.add_class("A_B")  # collides (ignoring case): refused, named
    assert any("a_b" in box.text() for box in message_boxes(tab))
    assert tab.add_class("dogs")
    wait_idle(qtbot, window)
    (root / "dogs" / "x.png").write_bytes(b"keep")
    assert not tab.rename_class("a_b", "dogs")  # taken: refused, nothing moved
    assert (root / "a_b").is_dir() and (root / "dogs" / "x.png").read_bytes() == b"keep"
    assert tab.rename_class("a_b", "birds")
    wait_idle(qtbot, window)
    assert (root / "birds").is_dir() and not (root / "a_b").exists()
    assert sorted(class_names(tab)) == ["birds", "dogs"]


def test_remove_a_class_to_the_trash(window, tab, qtbot, tmp_path):
    assert tab.add_class("dogs")
    wait_idle(qtbot, window)
    (tmp_path / "my-set" / "dogs" / "x.png").write_bytes(b"x")
    if not tab.remove_class("dogs"):
        pytest.skip("QFile.moveToTrash has no trash in this container")
    wait_idle(qtbot, window)
    assert not (tmp_path / "my-set" / "dogs").exists() and class_names(tab) == []
    assert (tmp_path / "xdg-data" / "Trash" / "files" / "dogs" / "x.png").is_file()


def test_remove_an_image_and_undo(window, tab, qtbot, tmp_path, images):
    assert tab.add_class("cats")
    wait_idle(qtbot, window)
    tab.add_paths(images[:2])
    qtbot.waitUntil(lambda: tab.images.rowCount() == 2 and not tab.copying, timeout=20_000)
    target = tmp_path / "my-set" / "cats" / images[0].name
    content = target.read_bytes()
    tab.grid.setCurrentIndex(tab.images.index(tab.images.names.index(images[0].name)))
    assert tab.selected_paths() == [target]
    tab.remove_selected_images()
    if target.exists():
        pytest.skip("QFile.moveToTrash has no trash in this container")
    qtbot.waitUntil(lambda: tab.images.rowCount() == 1, timeout=20_000)
    assert tab.undo_button.isEnabled()
    tab.undo_button.click()
    qtbot.waitUntil(lambda: tab.images.rowCount() == 2, timeout=20_000)
    assert target.read_bytes() == content
    assert not list((tmp_path / "xdg-data" / "Trash" / "info").iterdir())  # the trash forgot it


def test_use_in_train_and_edits_recheck_the_train_tab(window, tab, qtbot, tmp_path, images, monkeypatch):
    from resnet_app.ui import main_window
    assert tab.add_class("cats")
    wait_idle(qtbot, window)
    tab.train_button.click()
    assert window.train_tab.data_edit.text() == str(tmp_path / "my-set")
    assert window.tabs.currentWidget() is window.train_tab
    calls = []
    monkeypatch.setattr(window.train_tab, "set_data_folder", calls.append)
    window._rescan_timer.setInterval(50)
    assert main_window.RESCAN_AFTER_MS == 2000
    tab.add_paths(images[:1])
    qtbot.waitUntil(lambda: calls == [str(tmp_path / "my-set")], timeout=20_000)
