"""The Classify tab driven through real widgets: drops, paste, errors, top-k, cancel, export."""
import csv

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from ui_helpers import drop_on, message_boxes, mime_with_paths

from resnet_app.core.data.sample_data import SAMPLE_CLASSES
from resnet_app.ui.models import PredictionRole, PredictionTableModel, TopKRole


def _wait_rows(qtbot, tab, n, timeout=60_000):
    qtbot.waitUntil(lambda: tab.results.rowCount() >= n and not tab.busy, timeout=timeout)


def test_first_run_shows_three_ways_to_start(window):
    tab = window.classify_tab
    assert tab.classifier is None
    assert tab.stack.currentWidget() is tab.welcome
    texts = [tab.welcome.sample_button.text(), tab.welcome.open_button.text(), tab.welcome.imagenet_button.text()]
    assert "sample data" in texts[0] and "model file" in texts[1] and "ImageNet" in texts[2]
    assert all(b.isVisible() and b.isEnabled() for b in
               (tab.welcome.sample_button, tab.welcome.open_button, tab.welcome.imagenet_button))
    assert window.model_status.text() == "No model" and window.device_status.text()


def test_drop_of_file_urls_produces_rows_with_top_k(loaded_window, qtbot, images):
    tab = loaded_window.classify_tab
    assert tab.stack.currentWidget() is tab.work_page
    assert drop_on(tab.drop_area, images[:3])
    _wait_rows(qtbot, tab, 3)
    assert tab.results.rowCount() == 3
    for row in range(3):
        index = tab.results.index(row, PredictionTableModel.TOP_K)
        top_k = tab.results.data(index, TopKRole)
        assert len(top_k) == tab.top_k_spin.value() == 3
        assert all(label in SAMPLE_CLASSES for label, _ in top_k)
        assert tab.proxy.rowCount() == 3
    assert tab.results.data(tab.results.index(0, PredictionTableModel.FILE)) == images[0].name
    thumb = tab.results.index(0, PredictionTableModel.THUMBNAIL)
    qtbot.waitUntil(lambda: tab.results.data(thumb, Qt.ItemDataRole.DecorationRole) is not None, timeout=30_000)
    thumbnail = tab.results.data(thumb, Qt.ItemDataRole.DecorationRole)
    assert isinstance(thumbnail, QImage) and not thumbnail.isNull()
    assert "tiny.safetensors" in loaded_window.model_status.text()


def test_bad_file_row_shows_its_error(loaded_window, qtbot, images, tmp_path):
    tab = loaded_window.classify_tab
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a jpeg")
    assert drop_on(tab.drop_area, [images[0], bad])
    _wait_rows(qtbot, tab, 2)
    good, broken = (tab.results.data(tab.results.index(r, 0), PredictionRole) for r in range(2))
    assert good.ok and broken.error
    shown = tab.results.data(tab.results.index(1, PredictionTableModel.TOP_K))
    assert shown == broken.error
    assert tab.results.data(tab.results.index(1, PredictionTableModel.LABEL)) == "Error"


def test_model_file_dropped_on_window_loads(window, qtbot, tiny_model, images):
    window.tabs.setCurrentIndex(1)  # even from the Train tab
    assert drop_on(window, [tiny_model])
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    assert window.classify_tab.classifier.class_names == list(SAMPLE_CLASSES)
    assert "tiny.safetensors" in window.classify_tab.model_label.text()
    assert window.settings.get("model/recent")[0] == str(tiny_model)
    # Images dropped on the window (not the drop area) go to the Classify tab.
    assert drop_on(window, [images[0]])
    _wait_rows(qtbot, window.classify_tab, 1)
    assert window.tabs.currentIndex() == 0


def test_broken_model_file_ends_in_a_message(window, qtbot, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    assert drop_on(window.classify_tab.drop_area, [broken])
    qtbot.waitUntil(lambda: bool(message_boxes(window.classify_tab)), timeout=30_000)
    box = message_boxes(window.classify_tab)[0]
    assert "broken.safetensors" in box.text()
    assert window.classify_tab.classifier is None
    box.close()


def test_folder_drop_is_recursive_first_results_arrive_while_running(loaded_window, qtbot, tiny_data):
    tab = loaded_window.classify_tab
    busy_at_first_rows = []
    tab.results.rowsInserted.connect(lambda *a: busy_at_first_rows.append(tab.busy))
    assert drop_on(tab.drop_area, [tiny_data])  # 4 class sub-folders x 8 images; batches of 16
    _wait_rows(qtbot, tab, 32)
    assert tab.results.rowCount() == 32
    assert busy_at_first_rows[0] is True  # rows were shown before the whole folder was done
    assert len(busy_at_first_rows) >= 2


def test_cancel_stops_classification_early(loaded_window, qtbot, tiny_data):
    tab = loaded_window.classify_tab
    tab.classify([tiny_data])
    assert tab.progress_row.isVisibleTo(tab)
    tab.cancel_button.click()
    qtbot.waitUntil(lambda: not tab.busy, timeout=60_000)
    assert tab.results.rowCount() < 32
    assert not tab.progress_row.isVisibleTo(tab)


def test_paste_top_k_filter_and_export(loaded_window, qtbot, images, tmp_path):
    tab = loaded_window.classify_tab
    clipboard = QGuiApplication.clipboard()
    clipboard.setMimeData(mime_with_paths(images[:4]))  # what a file manager's Copy puts there
    tab.paste()
    clipboard.clear()  # the clipboard owns the QMimeData; leaving it there crashes PySide at exit
    _wait_rows(qtbot, tab, 4)
    tab.top_k_spin.setValue(1)
    assert all(len(tab.results.data(tab.results.index(r, 0), TopKRole)) == 1 for r in range(4))
    assert loaded_window.settings.get("classify/top_k") == 1
    top_label = tab.results.data(tab.results.index(0, PredictionTableModel.LABEL))
    tab.filter_edit.setText(top_label)
    assert 1 <= tab.proxy.rowCount() <= 4
    tab.filter_edit.setText("no such label")
    assert tab.proxy.rowCount() == 0
    assert not tab.export_csv(str(tmp_path / "none.csv"))  # every row hidden: nothing to export, and said
    assert not (tmp_path / "none.csv").exists()
    for box in message_boxes(tab, ""):  # the information box that said so
        box.close()
    tab.filter_edit.clear()
    out = tmp_path / "out.csv"
    assert tab.export_csv(str(out))
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert len(rows) == 5 and rows[0][:4] == ["path", "error", "label_1", "probability_1"]
    # What is shown is what is exported (issue 21 item 11: 2 rows shown, 5 exported).
    tab.filter_edit.setText(top_label)
    shown = {str(tab.proxy.index(r, 0).data(PredictionRole).path) for r in range(tab.proxy.rowCount())}
    filtered = tmp_path / "filtered.csv"
    assert tab.export_csv(str(filtered))
    rows = list(csv.reader(filtered.open(encoding="utf-8")))
    assert {row[0] for row in rows[1:]} == shown and len(rows) - 1 == len(shown)


def test_pasting_an_image_copied_from_a_browser_classifies_it(loaded_window, qtbot):
    from PySide6.QtGui import QColor, QImage

    tab = loaded_window.classify_tab
    image = QImage(48, 40, QImage.Format.Format_RGB32)
    image.fill(QColor("crimson"))
    clipboard = QGuiApplication.clipboard()
    clipboard.setImage(image)  # raw pixels, no file: what "Copy image" in a browser gives
    tab.paste()
    tab.paste()  # twice in the same second: two files, two rows
    clipboard.clear()
    _wait_rows(qtbot, tab, 2)
    paths = [tab.results.data(tab.results.index(r, 0), PredictionRole).path for r in range(2)]
    assert len(set(paths)) == 2
    for path in paths:
        assert path.parent.name == "pasted images" and path.suffix == ".png" and path.is_file()
        prediction = tab.results.data(tab.results.index(paths.index(path), 0), PredictionRole)
        assert prediction.error is None and prediction.top_k[0][0] in SAMPLE_CLASSES


def test_result_rows_have_their_own_actions_and_tab_leaves_the_table(loaded_window, qtbot, images):
    from PySide6.QtGui import QGuiApplication

    tab = loaded_window.classify_tab
    tab.handle_paths(images[:3])
    qtbot.waitUntil(lambda: tab.results.rowCount() == 3 and not tab.busy, timeout=60_000)
    assert not tab.table.tabKeyNavigation()  # Tab moves on to the next control, arrows move in the table
    tab.table.selectRow(0)
    first = tab.selected_predictions()[0]
    tab.copy_selected_paths()
    assert QGuiApplication.clipboard().text() == str(first.path)
    tab.remove_selected()
    assert tab.results.rowCount() == 2 and first.path not in [p.path for p in tab.results.predictions()]
    assert first.path.exists()  # removed from the list only


def test_recent_models_are_named_by_their_run_and_a_model_can_be_saved_under_a_name(loaded_window, qtbot,
                                                                                   tmp_path, tiny_model):
    tab = loaded_window.classify_tab
    saved = tab.save_model_to(str(tmp_path / "my shapes model"))
    assert saved == tmp_path / "my shapes model.safetensors" and saved.read_bytes() == tiny_model.read_bytes()
    names = [action.text() for action in tab.recent_menu.actions()]
    assert names[0].startswith("my shapes model · ") and "4 classes" in names[0] and "50.0%" in names[0]
    assert all("/" not in name for name in names)  # names, not paths (the path is in the tooltip)


def test_save_model_as_leaves_an_old_model_files_folder_paths_out(window, qtbot, tmp_path):
    """Issue 24: a model file from an older version names its training folder's full path; the copy that
    "Save model as" makes (the one to send) names the folder only, and still opens."""
    import json

    import torch
    from safetensors.torch import save_file

    from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
    from resnet_app.core.model.checkpoints import ModelFile, load_model_file

    root = tmp_path / "secret-clinic-2026-XYZ" / "patients"
    torch.manual_seed(0)
    model = ModelFile(build_model("resnet18-cifar", 4).state_dict(), "resnet18-cifar", list(SAMPLE_CLASSES), 16,
                      list(IMAGENET_MEAN), list(IMAGENET_STD), metrics={"val_accuracy": 0.5})
    metadata = {**model.metadata(), "dataset": json.dumps({"root": str(root), "train_size": 24, "val_size": 8})}
    old = tmp_path / "old" / "model.safetensors"
    old.parent.mkdir()
    save_file(model.state_dict, str(old), metadata=metadata)  # as versions before issue 24 wrote it

    tab = window.classify_tab
    tab.load_model(old)
    qtbot.waitUntil(lambda: tab.classifier is not None, timeout=30_000)
    saved = tab.save_model_to(str(tmp_path / "to-send" / "patients model"))
    assert saved is not None and b"secret-clinic-2026-XYZ" not in saved.read_bytes()
    assert load_model_file(saved).extra["dataset"] == {"name": "patients", "train_size": 24, "val_size": 8}
    assert tab.recent_menu.actions()[0].text().startswith("patients model · patients · 4 classes")
