"""UI fixtures: settings in a temp folder, tiny data and model files, a main window.

Helpers the tests call (drops, message boxes) are in ui_helpers.py: tests import them from there.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import shiboken6
import torch
from PySide6.QtCore import QSettings

from resnet_app.core.data.sample_data import SAMPLE_CLASSES, generate_sample_dataset
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file

TINY_TRAIN = {"arch": "resnet18-cifar", "epochs": 1, "batch_size": 8, "image_size": 16, "lr": None,
              "optimizer": "adam", "val_fraction": 0.25, "device": "cpu"}


@pytest.fixture(autouse=True)
def temp_settings(tmp_path, monkeypatch):
    """Every test gets empty QSettings in its own folder; the user's settings are never touched."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield tmp_path / "settings"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """4 classes x 8 images of 16 px (the shapes dataset)."""
    return generate_sample_dataset(tmp_path_factory.mktemp("tiny") / "data", images_per_class=8, image_size=16)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet18-cifar", len(SAMPLE_CLASSES))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model_file(path, ModelFile(model.state_dict(), "resnet18-cifar", list(SAMPLE_CLASSES), 16,
                                    list(IMAGENET_MEAN), list(IMAGENET_STD), metrics={"val_accuracy": 0.5}))
    return path


@pytest.fixture
def images(tiny_data) -> list[Path]:
    return sorted(tiny_data.rglob("*.png"))


@pytest.fixture
def window(qtbot, tmp_path):
    from resnet_app.ui.main_window import MainWindow
    from resnet_app.ui.settings import Settings

    win = MainWindow(Settings())
    win.train_tab.apply_settings({**TINY_TRAIN, "output_folder": str(tmp_path / "runs")})
    win.train_tab.config_overrides = {"loader_processes": 0}
    win.show()
    yield win
    # Not qtbot.addWidget: pytest-qt would close and delete the window before this teardown, while its
    # threads may still run. No thread may outlive its test: stop everything, wait, then close (with no
    # training left, the window closes without asking) and delete.
    if shiboken6.isValid(win):
        win.runner.stop_all()
        qtbot.waitUntil(lambda: not win.runner.busy and not win.train_tab.running, timeout=60_000)
        win.close()
        win.deleteLater()


@pytest.fixture
def loaded_window(window, qtbot, tiny_model):
    window.classify_tab.load_model(tiny_model)
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    return window
