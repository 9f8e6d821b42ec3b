"""File > Export model…: the dialog exports in a worker thread with progress and a result line."""
import json

import pytest
import torch
from PySide6.QtWidgets import QMainWindow

from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.ui.export_dialog import add_export_action
from resnet_app.ui.workers import TaskRunner

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.filterwarnings("ignore:.torch.jit.:FutureWarning")


class Window(QMainWindow):
    """What add_export_action needs of the main window: a runner, and a Classify tab with a model."""

    def __init__(self, model):
        super().__init__()
        self.runner = TaskRunner(self)
        self.classify_tab = type("Tab", (), {"classifier": type("C", (), {"source": str(model)})()})()


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 2).state_dict(), "resnet18-cifar", ["a", "b"], 16,
                                    list(IMAGENET_MEAN), list(IMAGENET_STD)))
    return path


def test_the_menu_item_exports_the_loaded_model_with_progress_and_a_result_line(qtbot, model, tmp_path):
    window = Window(model)
    qtbot.addWidget(window)
    menu = window.menuBar().addMenu("&File")
    action = add_export_action(menu, window)
    assert menu.actions() == [action] and action in window.actions() and action.text() == "E&xport model…"

    action.trigger()
    dialog = action.dialog
    assert dialog.isVisible() and dialog.model_edit.text() == str(model)
    assert dialog.out_edit.text() == str(tmp_path / "tiny.onnx")
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("torchscript"))
    assert dialog.out_edit.text() == str(tmp_path / "tiny.torchscript.pt")
    with qtbot.waitSignal(dialog.finished_export, timeout=120_000) as done:
        dialog.export_button.click()
        assert dialog.running and not dialog.export_button.isEnabled() and dialog.progress_bar.isVisible()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    assert done.args[0]["check"]["passed"]
    assert (tmp_path / "tiny.torchscript.pt").is_file()
    assert json.loads((tmp_path / "tiny.torchscript.pt.json").read_text())["check"]["passed"]
    assert "top-1 identical on" in dialog.result_label.text() and dialog.progress_bar.format() == "Done"
    assert dialog.export_button.isEnabled()

    # A failure is shown in the dialog in the core's words, and nothing is written.
    dialog.out_edit.setText(str(tmp_path / "wrong.onnx"))
    with qtbot.waitSignal(dialog.finished_export, timeout=60_000) as failed:
        dialog.export_button.click()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    assert failed.args == [None]
    assert dialog.result_label.text().startswith("Export failed:") and "wrong.onnx" in dialog.result_label.text()
    assert not (tmp_path / "wrong.onnx").exists()
    dialog.close()


def test_it_fits_the_real_main_window(qtbot, model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    from resnet_app.ui.main_window import MainWindow
    from resnet_app.ui.settings import Settings

    window = MainWindow(Settings())
    qtbot.addWidget(window)
    file_menu = window.menuBar().actions()[0].menu()
    action = add_export_action(file_menu, window)
    window.settings.set("model/last", str(model))
    action.trigger()
    assert action.dialog.model_edit.text() == str(model) and action.dialog.parent() is window
    action.dialog.close()


def test_the_default_format_is_one_this_install_can_export(qtbot, model, monkeypatch):
    """Issue 21 item 6: ONNX was the default even where its packages were missing, so the first export
    after README's first command failed. They come with the app now; where they are missing anyway, the
    dialog starts on TorchScript and says what ONNX needs."""
    from resnet_app.ui import export_dialog

    window = Window(model)
    qtbot.addWidget(window)
    action = add_export_action(window.menuBar().addMenu("&File"), window)
    action.trigger()
    assert action.dialog.fmt == "onnx"  # this install has the ONNX packages
    action.dialog.close()

    monkeypatch.setattr(export_dialog, "missing_packages", lambda fmt: ["onnxruntime"] if fmt == "onnx" else [])
    dialog = export_dialog.ExportDialog(window, window.runner, str(model))
    qtbot.addWidget(dialog)
    assert dialog.fmt == "torchscript"
    assert "needs onnxruntime" in dialog.format_combo.itemText(dialog.format_combo.findData("onnx"))


def test_a_plain_install_brings_the_onnx_packages():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    required = {dependency.split(">")[0].split("=")[0].split(";")[0].strip() for dependency in project["dependencies"]}
    assert {"onnx", "onnxscript", "onnxruntime"} <= required
