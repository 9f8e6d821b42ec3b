"""Grad-CAM in the Classify tab, and Classify following the model: a new model classifies the rows again."""
import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from ui_helpers import drop_on

from resnet_app.core.data.sample_data import SAMPLE_CLASSES
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.ui.heatmap import blend_heatmap, image_to_array, jet
from resnet_app.ui.models import PredictionRole, PredictionTableModel

OTHER_CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    torch.manual_seed(1)
    model = build_model("resnet18-cifar", len(OTHER_CLASSES))
    path = tmp_path_factory.mktemp("other") / "pets.safetensors"
    save_model_file(path, ModelFile(model.state_dict(), "resnet18-cifar", OTHER_CLASSES, 16,
                                    list(IMAGENET_MEAN), list(IMAGENET_STD)))
    return path


def classified(tab, qtbot, images):
    assert drop_on(tab.drop_area, images)
    qtbot.waitUntil(lambda: tab.results.rowCount() == len(images) and not tab.busy, timeout=60_000)


def labels(tab) -> list[str]:
    return [tab.results.data(tab.results.index(r, PredictionTableModel.LABEL)) for r in range(tab.results.rowCount())]


def test_gradcam_toggle_on_a_row(loaded_window, qtbot, images):
    tab = loaded_window.classify_tab
    classified(tab, qtbot, images[:3])
    with qtbot.waitSignal(tab.gradcam.shown, timeout=30_000):
        tab.table.selectRow(1)
    path = str(tab.proxy.index(1, 0).data(PredictionRole).path)
    plain = tab.gradcam.image_label.pixmap().toImage()
    assert tab.gradcam.path == path and tab.gradcam.info is None and not tab.gradcam.legend.isVisible()
    with qtbot.waitSignal(tab.gradcam.shown, timeout=60_000) as shown:
        qtbot.mouseClick(tab.gradcam.toggle, Qt.MouseButton.LeftButton)
    prediction = tab.proxy.index(1, 0).data(PredictionRole)
    info = shown.args[1]
    assert shown.args[0] == path and info["class_name"] == prediction.top_k[0][0]  # the predicted class
    assert info["probability"] == pytest.approx(prediction.top_k[0][1], abs=1e-4)
    overlay = tab.gradcam.image_label.pixmap().toImage()
    assert overlay.size() == plain.size() and overlay != plain  # the heat map is over the image
    assert tab.gradcam.legend.isVisible() and info["class_name"] in tab.gradcam.caption.text()
    # Any class the user picks.
    with qtbot.waitSignal(tab.gradcam.shown, timeout=60_000) as shown:
        tab.gradcam.class_combo.setCurrentIndex(tab.gradcam.class_combo.findText("star"))
    assert shown.args[1]["class_index"] == SAMPLE_CLASSES.index("star")
    # Another row: its map, for the class still chosen.
    with qtbot.waitSignal(tab.gradcam.shown, timeout=60_000) as shown:
        tab.table.selectRow(2)
    assert shown.args[0] == str(tab.proxy.index(2, 0).data(PredictionRole).path)
    assert shown.args[1]["class_name"] == "star"
    with qtbot.waitSignal(tab.gradcam.shown, timeout=30_000) as shown:
        tab.gradcam.toggle.setChecked(False)
    assert shown.args[1] is None and tab.gradcam.info is None


def test_switching_model_classifies_the_rows_again_and_the_header_names_it(loaded_window, qtbot, images,
                                                                          other_model, tiny_model):
    tab = loaded_window.classify_tab
    classified(tab, qtbot, images[:4])
    header = tab.proxy.headerData(PredictionTableModel.TOP_K, Qt.Orientation.Horizontal)
    assert "tiny.safetensors" in header
    assert set(labels(tab)) <= set(SAMPLE_CLASSES)
    tab.load_model(other_model)
    qtbot.waitUntil(lambda: "pets.safetensors" in tab.proxy.headerData(PredictionTableModel.TOP_K,
                                                                      Qt.Orientation.Horizontal), timeout=30_000)
    qtbot.waitUntil(lambda: tab.results.rowCount() == 4 and not tab.busy, timeout=60_000)
    assert set(labels(tab)) <= set(OTHER_CLASSES)  # every row is the new model's
    assert [tab.results.data(tab.results.index(r, 0), PredictionRole).path for r in range(4)] == images[:4]
    assert tab.gradcam.class_combo.findText("cat") > 0  # Grad-CAM offers the new model's classes


def test_switching_model_during_classification_leaves_only_the_new_models_rows(loaded_window, qtbot, tiny_data,
                                                                               other_model):
    from resnet_app.core.use.classifier import Classifier

    tab = loaded_window.classify_tab
    total = len(list(tiny_data.rglob("*.png")))
    other = Classifier.from_file(other_model, device="cpu")
    assert drop_on(tab.drop_area, [tiny_data])
    assert tab.busy
    # The loader's slot, called while the folder is being classified with the first model (through
    # load_model the first job may finish before the new model has loaded).
    tab.use_loaded_model(other, str(other_model))
    qtbot.waitUntil(lambda: tab.results.rowCount() == total and not tab.busy, timeout=120_000)
    assert set(labels(tab)) <= set(OTHER_CLASSES)
    assert "pets.safetensors" in tab.proxy.headerData(PredictionTableModel.TOP_K, Qt.Orientation.Horizontal)


def test_clear_forgets_the_rows_for_the_next_model(loaded_window, qtbot, images, other_model):
    tab = loaded_window.classify_tab
    classified(tab, qtbot, images[:2])
    tab.clear_button.click()
    tab.load_model(other_model)
    qtbot.waitUntil(lambda: tab.classifier.class_names == OTHER_CLASSES, timeout=30_000)
    assert tab.results.rowCount() == 0 and not tab.busy


def test_jet_colours_and_blend():
    colours = jet(np.array([0.0, 0.5, 1.0]))
    assert colours[0, 2] > 100 and colours[0, 0] == 0  # low: blue
    assert colours[2, 0] > 100 and colours[2, 2] == 0  # high: red
    assert colours[1, 1] == 255  # the middle: green at full
    image = QImage(5, 4, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.white)
    heat = np.zeros((4, 5), dtype=np.float32)
    heat[0, 0] = 1.0
    blended = image_to_array(blend_heatmap(image, heat))
    assert blended.shape == (4, 5, 3)
    assert blended[0, 0, 0] > blended[0, 0, 2]  # hot: reddish
    assert blended[3, 4, 2] > blended[3, 4, 0]  # cold: bluish, but the photo shows through
    assert blended[3, 4].min() > 100
    with pytest.raises(ValueError):
        blend_heatmap(image, np.zeros((3, 3)))
