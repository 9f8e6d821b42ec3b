"""The Review tab with real widgets and real tiny models: rank a folder least sure first, label with the
number keys (files land in their class folders), skip, undo, N for a new class, labels read back from the
log after a restart, cancel the ranking, Retrain through the Train tab, and Sort's "Review the unsure…"."""
import shutil
from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QInputDialog
from ui_helpers import message_boxes

from resnet_app.core.data.sample_data import SAMPLE_CLASSES
from resnet_app.core.use.labelling import LOG_FOLDER, LOG_NAME
from resnet_app.core.use.sort_log import HEADER as SORT_HEADER
from resnet_app.core.use.sort_log import LOG_NAME as SORT_LOG
from resnet_app.ui.settings import Settings
from resnet_app.ui.workers import TaskRunner

TIMEOUT_MS = 60_000
CLASSES = list(SAMPLE_CLASSES)  # circle, square, star, triangle: the tiny model's, in its order


@pytest.fixture
def folders(tiny_data, tmp_path):
    """12 unlabelled images (the shapes, flattened, names made unique) and a data set with 2 images a class."""
    unlabelled, data = tmp_path / "unlabelled", tmp_path / "data"
    unlabelled.mkdir()
    for name in CLASSES:
        images = sorted((tiny_data / name).glob("*.png"))
        (data / name).mkdir(parents=True)
        for image in images[:2]:
            shutil.copy(image, data / name / image.name)
        for image in images[2:5]:
            shutil.copy(image, unlabelled / f"{name}-{image.name}")
    return unlabelled, data


def make_view(qtbot):
    from resnet_app.ui.review_view import ReviewView

    runner = TaskRunner()
    view = ReviewView(Settings(), runner)
    view.resize(1100, 720)
    view.show()
    view.activateWindow()
    qtbot.waitExposed(view)
    return view, runner


def close_view(qtbot, view, runner):
    runner.stop_all()  # no thread may outlive its test
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT_MS)
    if shiboken6.isValid(view):
        view.close()
        view.deleteLater()


@pytest.fixture
def view(qtbot):
    view, runner = make_view(qtbot)
    yield view
    close_view(qtbot, view, runner)


def rank(qtbot, view, model, images, data):
    view.model_edit.setText(str(model))
    view.set_images_folder(images)
    view.data_edit.setText(str(data))
    view.start()
    qtbot.waitUntil(lambda: not view.busy, timeout=TIMEOUT_MS)
    assert view.queue is not None and view.stack.currentWidget() is view.splitter


def key(qtbot, view, text: str, modifier=Qt.KeyboardModifier.NoModifier):
    """A key pressed where the focus is, as a user would: the view puts it in the tab (on its class list)
    after ranking and when the tab is shown, with no click first."""
    if not view.window().isActiveWindow():
        view.window().activateWindow()
        qtbot.waitUntil(view.window().isActiveWindow, timeout=5_000)
    focus = QApplication.focusWidget()
    assert focus is not None and view.isAncestorOf(focus), focus
    qtbot.keyClick(focus, text if len(text) == 1 else getattr(Qt.Key, f"Key_{text}"), modifier)


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and LOG_FOLDER not in p.parts}


def test_label_five_with_the_number_keys_skip_and_undo_twice(qtbot, view, tiny_model, folders):
    unlabelled, data = folders
    before = files_under(unlabelled)
    rank(qtbot, view, tiny_model, unlabelled, data)
    assert not view.move_box.isChecked() and not view.move  # not a sort's _unsure: copies
    assert view.classes == CLASSES
    texts = [view.class_list.item(i).text() for i in range(4)]
    assert [t.split("      model")[0] for t in texts] == [f"{i + 1}   {c}" for i, c in enumerate(CLASSES)]
    assert view.counter.text() == "Labelled 0, 12 to go"
    first = view.current()
    margins = [entry.item.margin for entry in view.queue.entries.values()]
    assert first.item.margin == min(margins) and margins == sorted(margins)  # least sure first
    assert [bar.format().split(":")[0] for bar in view.top_bars] == [label for label, _ in first.item.top_k]
    assert all(bar.isVisibleTo(view) for bar in view.top_bars)
    guess, p = first.item.top_k[0]
    item = view.class_list.item(CLASSES.index(guess))
    assert item.text().endswith(f"model: {p:.1%}") and item.font().bold()  # the model's choice, at hand
    assert view.preview.path == str(first.path)

    labelled = []
    for n in (1, 2, 1, 3, 4):
        entry = view.current()
        key(qtbot, view, str(n))
        labelled.append((entry.path, CLASSES[n - 1]))
        assert view.current() is not entry
    for path, folder in labelled:
        assert (data / folder / path.name).read_bytes() == before[path]  # a copy in its class folder
    assert files_under(unlabelled) == before  # copies: the folder is as it was
    assert view.counter.text() == "Labelled 5, 7 to go"
    assert (data / LOG_FOLDER / LOG_NAME).is_file()

    skipped = view.current()
    key(qtbot, view, "S")
    assert view.current() is not skipped and view.counter.text() == "Labelled 5, 7 to go (1 skipped)"
    key(qtbot, view, "0")
    assert view.counter.text() == "Labelled 5, 7 to go (2 skipped)"

    for _ in range(3):  # two skips, then the fifth label
        key(qtbot, view, "Z", Qt.KeyboardModifier.ControlModifier)
    assert view.current().path == labelled[-1][0] and view.counter.text() == "Labelled 4, 8 to go"
    assert not (data / "triangle" / labelled[-1][0].name).exists()  # the copy went, the original stays
    key(qtbot, view, "Z", Qt.KeyboardModifier.ControlModifier)
    assert view.current().path == labelled[-2][0]
    assert not (data / "star" / labelled[-2][0].name).exists()
    assert files_under(unlabelled) == before
    assert view.redo_button.isEnabled()
    view.redo_button.click()  # labels it again
    assert (data / "star" / labelled[-2][0].name).is_file()
    assert not message_boxes(view)


def test_n_makes_a_new_class_from_the_image(qtbot, view, tiny_model, folders):
    unlabelled, data = folders
    rank(qtbot, view, tiny_model, unlabelled, data)
    entry = view.current()
    key(qtbot, view, "N")
    dialog = next(d for d in view.findChildren(QInputDialog) if d.objectName() == "textQuestion" and d.isVisible())
    dialog.setTextValue("hexagon: odd")
    dialog.accept()
    assert (data / "hexagon_ odd" / entry.path.name).is_file()
    assert view.classes[-1] == "hexagon_ odd" and view.class_list.item(4).text().startswith("5   hexagon_ odd")
    following = view.current()
    key(qtbot, view, "5")  # the new class has its key now
    assert (data / "hexagon_ odd" / following.path.name).is_file()
    key(qtbot, view, "Z", Qt.KeyboardModifier.ControlModifier)
    key(qtbot, view, "Z", Qt.KeyboardModifier.ControlModifier)
    assert not (data / "hexagon_ odd").exists()  # the folder made for the new class goes with its last image


def test_labels_are_read_back_after_a_restart_and_can_still_be_undone(qtbot, tiny_model, folders, tmp_path):
    unlabelled, data = folders
    sort_dest = tmp_path / "sorted"
    unsure = sort_dest / "_unsure"
    shutil.copytree(unlabelled, unsure)  # a sort's _unsure: labels move its files
    (sort_dest / SORT_LOG).write_text(f'{{"sort-log": {SORT_HEADER["sort-log"]}}}\n')
    view, runner = make_view(qtbot)
    rank(qtbot, view, tiny_model, unsure, data)
    assert view.move_box.isChecked() and view.move
    moved = []
    for n in (2, 3):
        moved.append((view.current().path, CLASSES[n - 1]))
        key(qtbot, view, str(n))
    for path, folder in moved:
        assert (data / folder / path.name).is_file() and not path.exists()
    close_view(qtbot, view, runner)

    again, runner = make_view(qtbot)  # a restart: the folders come back from the settings
    assert again.images_edit.text() == str(unsure) and again.data_edit.text() == str(data)
    assert again.move_box.isChecked()
    again.model_edit.setText(str(tiny_model))
    again.start()
    qtbot.waitUntil(lambda: not again.busy and again.queue is not None, timeout=TIMEOUT_MS)
    assert again.counter.text() == "Labelled 2, 10 to go"
    assert again.undo_button.isEnabled() and again.undo_stack.count() == 2
    key(qtbot, again, "Z", Qt.KeyboardModifier.ControlModifier)  # the second label, from the log
    path, folder = moved[-1]
    assert path.is_file() and not (data / folder / path.name).exists()  # moved back into _unsure
    assert again.current().path == path and again.counter.text() == "Labelled 1, 11 to go"
    assert "Not ranked" in again.top_title.text()  # it was gone when the images were ranked
    key(qtbot, again, "1")  # labelled again, as another class
    assert (data / CLASSES[0] / path.name).is_file() and not path.exists()
    close_view(qtbot, again, runner)


def test_cancel_stops_the_ranking_and_nothing_is_shown(qtbot, view, tiny_model, folders):
    unlabelled, data = folders
    for i in range(6):  # ~80 images: several batches to stop between
        shutil.copytree(unlabelled, unlabelled.parent / "more" / str(i))
    shutil.move(str(unlabelled.parent / "more"), str(unlabelled / "more"))
    view.model_edit.setText(str(tiny_model))
    view.set_images_folder(unlabelled)
    view.data_edit.setText(str(data))
    view.start()
    assert view.busy and view.progress_row.isVisible() and not view.rank_button.isEnabled()
    view.cancel_button.click()
    qtbot.waitUntil(lambda: not view.busy, timeout=TIMEOUT_MS)
    assert view.queue is None and view.stack.currentWidget() is view.placeholder
    assert not view.progress_row.isVisible() and view.rank_button.isEnabled()
    assert not view.skip_button.isEnabled()


def test_folders_inside_each_other_are_refused(qtbot, view, tiny_model, folders):
    unlabelled, data = folders
    view.model_edit.setText(str(tiny_model))
    view.set_images_folder(data / "circle")
    view.data_edit.setText(str(data))
    view.start()
    assert not view.busy and "separate folders" in message_boxes(view)[0].text()


def test_sort_offers_to_review_its_unsure_images(qtbot, loaded_window, folders, tmp_path):
    unlabelled, data = folders
    review = loaded_window.review_view
    review.data_edit.setText(str(data))
    from resnet_app.ui.sort_dialog import SortDialog

    loaded_window.sort_folder_action.trigger()
    dialog: SortDialog = loaded_window.sort_folder_action.dialog
    dialog.source_edit.setText(str(unlabelled))
    dialog.dest_edit.setText(str(tmp_path / "sorted"))
    dialog.confidence_spin.setValue(100)  # every image is unsure
    assert not dialog.review_button.isEnabled()
    dialog.sort_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT_MS)
    assert dialog.last_summary.unsure == 12 and dialog.review_button.isEnabled()
    dialog.review_button.click()
    assert not dialog.isVisible() and loaded_window.tabs.currentWidget() is review
    assert review.images_edit.text() == str(tmp_path / "sorted" / "_unsure") and review.move_box.isChecked()
    qtbot.waitUntil(lambda: not review.busy and review.queue is not None, timeout=TIMEOUT_MS)
    assert review.counter.text() == "Labelled 0, 12 to go"
    assert review.classifier is loaded_window.classify_tab.classifier  # the sort's model, not loaded again


def test_retrain_trains_on_the_data_set_and_ranks_again_with_the_new_model(qtbot, window, tiny_model, folders):
    unlabelled, data = folders
    review = window.review_view
    window.tabs.setCurrentWidget(review)
    rank(qtbot, review, tiny_model, unlabelled, data)
    order = [entry.path for entry in review.queue.entries.values()]
    for n in (1, 2, 3, 4):
        key(qtbot, review, str(n))
    assert review.counter.text() == "Labelled 4, 8 to go"
    assert review.retrain_button.isEnabled() and not review.classify_button.isEnabled()
    review.retrain_button.click()
    assert window.train_tab.running and review.retraining and not review.retrain_button.isEnabled()
    assert window.train_tab.data_edit.text() == str(data)
    key(qtbot, review, "1")  # labelling goes on while it trains
    qtbot.waitUntil(lambda: not window.train_tab.running, timeout=120_000)
    qtbot.waitUntil(lambda: not review.retraining and not review.busy, timeout=TIMEOUT_MS)
    new_model = window.train_tab.last_result["model_path"]
    assert new_model and review.model_edit.text() == new_model and review.retrained_model == new_model
    assert str(review.classifier.source) == new_model  # ranked with the new model
    assert review.counter.text() == "Labelled 5, 7 to go"  # the labels carried over from the log
    new_order = [entry.path for entry in review.queue.entries.values()]
    assert set(new_order) == set(order)
    assert "Retrained" in review.retrain_label.text()
    assert review.classify_button.isEnabled()
    review.classify_button.click()
    assert window.tabs.currentIndex() == 0
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None
                    and str(window.classify_tab.classifier.source) == new_model, timeout=TIMEOUT_MS)


def test_the_tab_fits_an_800_by_600_window(qtbot, window, tiny_model, folders):
    unlabelled, data = folders
    window.resize(800, 600)
    window.tabs.setCurrentWidget(window.review_view)
    rank(qtbot, window.review_view, tiny_model, unlabelled, data)
    qtbot.wait(50)
    assert (window.width(), window.height()) == (800, 600)
    assert window.review_view.class_list.isVisible() and window.review_view.retrain_button.isVisible()
