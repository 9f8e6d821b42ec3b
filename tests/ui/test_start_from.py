"""The Train tab's "Start from" panel: ImageNet weights (a stand-in file here) or nothing, quick or full,
driven through its widgets and trained for real."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ui_helpers import message_boxes

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import load_model_file


def weights_file(tmp_path):
    """Any ResNet18 in torchvision's layout passes as ImageNet weights to the app's checks."""
    path = tmp_path / "resnet18-my-weights.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), path)
    return path


def train_and_wait(tab, qtbot, data):
    tab.set_data_folder(str(data))
    tab.start_button.click()
    assert tab.running
    qtbot.waitUntil(lambda: not tab.running, timeout=180_000)
    assert tab.last_result and tab.last_result["status"] == "completed", tab.log_view.toPlainText()
    return load_model_file(tab.last_result["model_path"])


def test_without_weights_it_trains_from_scratch_and_says_how_to_get_them(window):
    box = window.train_tab.start_box
    assert box.start_combo.setting_value() == "imagenet"  # the default, when the weights are at hand
    assert box.pretrained() is None  # ...which they are not in a fresh home folder
    assert "not on this computer" in box.weights_label.text()
    assert box.download_button.isVisibleTo(box) and box.choose_button.isVisibleTo(box)
    assert window.train_tab.build_config().pretrained is None


def test_quick_transfer_from_a_chosen_weights_file(window, qtbot, tiny_data, tmp_path):
    tab, box = window.train_tab, window.train_tab.start_box
    weights = weights_file(tmp_path)
    assert box.use_file(str(weights))
    assert box.pretrained() == str(weights)
    not_the_release = f"ImageNet-layout weights from {weights.name}, not torchvision's release"
    assert box.weights_label.text().startswith(f"Starting from {not_the_release}")
    assert str(weights) in box.weights_label.text()
    # On this CPU the automatic choice is quick, and the panel says why.
    assert box.mode() == "quick" and "training runs on the CPU" in box.mode_label.text()
    assert not tab.settings_form.editor("arch").isEnabled()  # ImageNet weights fix the architecture
    assert not tab.settings_form.editor("epochs").isEnabled()  # not used by a quick run
    tab.apply_settings({"image_size": 32})
    model = train_and_wait(tab, qtbot, tiny_data)
    assert model.arch == "resnet18" and model.extra["start"]["trained"] == "last layer"
    assert model.extra["start"]["weights"] == weights.name and model.extra["start"]["official"] is False
    run = json.loads((Path(tab.last_result["model_path"]).parent / "run.json").read_text())
    assert run["start"] == model.extra["start"]
    assert f"training the last layer only, on features of {not_the_release}" in tab.log_view.toPlainText()
    assert tab.settings.get("train/imagenet_weights_file") == str(weights)  # remembered


def test_full_transfer_when_the_user_switches(window, qtbot, tiny_data, tmp_path):
    tab, box = window.train_tab, window.train_tab.start_box
    assert box.use_file(str(weights_file(tmp_path)))
    box.mode_combo.set_setting_value("full")
    assert box.mode() == "full" and tab.settings_form.editor("epochs").isEnabled()
    tab.apply_settings({"image_size": 32, "epochs": 1})
    model = train_and_wait(tab, qtbot, tiny_data)
    assert model.extra["start"]["trained"] == "all layers" and model.extra["start"]["official"] is False
    run = json.loads((Path(tab.last_result["model_path"]).parent / "run.json").read_text())
    assert run["start"] == model.extra["start"]
    assert "trained the last layer first" in tab.log_view.toPlainText()
    assert ("starting from pretrained weights: ImageNet-layout weights from resnet18-my-weights.pth, not "
            "torchvision's release") in tab.log_view.toPlainText()


def test_a_wrong_weights_file_is_refused_with_its_name(window, qtbot, tmp_path):
    box = window.train_tab.start_box
    wrong = tmp_path / "not-resnet18.pth"
    torch.save(build_model("resnet18-cifar", 10).state_dict(), wrong)
    assert not box.use_file(str(wrong))
    qtbot.waitUntil(lambda: bool(message_boxes(box)), timeout=5_000)
    assert str(wrong) in message_boxes(box)[0].text() and "not torchvision ResNet18" in message_boxes(box)[0].text()
    assert box.pretrained() is None


def test_weights_opened_in_classify_are_remembered_for_training(window, qtbot, tmp_path):
    """Issue 21 item 3: after the welcome screen's "Open weights file...", the Train tab still said the
    weights were not on this computer and wanted the same file again."""
    box = window.train_tab.start_box
    assert box.pretrained() is None
    weights = weights_file(tmp_path)
    window.classify_tab.load_imagenet(str(weights))  # what "Open weights file..." does with the chosen file
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=60_000)
    qtbot.waitUntil(lambda: box.pretrained() == str(weights), timeout=10_000)
    assert "not on this computer" not in box.weights_label.text()
    # Named for what they are in Classify too (issue 19 item 7).
    assert (f"ImageNet-layout weights from {weights.name}, not torchvision's release"
            in window.classify_tab.model_label.text())
    assert window.settings.get("train/imagenet_weights_file") == str(weights)


def test_quick_mode_says_why_epochs_and_batch_size_are_greyed_and_records_its_passes(window, qtbot, tiny_data,
                                                                                     tmp_path):
    """Quick greys Epochs and Batch size; the tab says what it does instead, and the run is recorded
    in the passes it made, not in epochs it did not run."""
    from resnet_app.core.train.quick import QUICK_PASSES

    tab, box = window.train_tab, window.train_tab.start_box
    note = (f"Quick trains the last layer for {QUICK_PASSES} passes over features computed once; epochs, "
            "batch size and the learning-rate settings don't apply.")
    assert not tab.quick_note.isVisibleTo(tab)  # no weights yet: training from scratch, every setting used
    assert box.use_file(str(weights_file(tmp_path)))
    assert box.quick() and tab.quick_note.isVisibleTo(tab) and tab.quick_note.text() == note
    for name in ("epochs", "batch_size"):
        editor = tab.settings_form.editor(name)
        assert not editor.isEnabled() and editor.toolTip() == note
    tab.apply_settings({"image_size": 32, "epochs": 6, "batch_size": 16})
    train_and_wait(tab, qtbot, tiny_data)
    assert tab.status_label.text().startswith(f"Training finished after {QUICK_PASSES} passes over the features")
    assert tab.runs_view.runs[0].state() == f"completed, pass {QUICK_PASSES} of {QUICK_PASSES}"
    box.mode_combo.set_setting_value("full")
    assert not tab.quick_note.isVisibleTo(tab) and tab.settings_form.editor("epochs").isEnabled()


def test_other_bytes_under_the_release_name_in_torchs_cache_are_refused_and_said(tmp_path, monkeypatch, request):
    """Issue 19 item 7: random weights saved as torchvision's release in its cache passed as ImageNet's
    own weights. The panel now says they can't be used and why, and offers the download and a file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(build_model("resnet18", 1000).state_dict(), cached)
    box = request.getfixturevalue("window").train_tab.start_box
    assert box.pretrained() is None and not box.quick()
    text = box.weights_label.text()
    assert "can't be used, so training starts from scratch" in text
    assert str(cached) in text and "not its content" in text and "Delete it and download the weights again" in text
    assert box.download_button.isVisibleTo(box) and box.choose_button.isVisibleTo(box)


@pytest.mark.parametrize("official", [True, False])
def test_the_panel_names_the_release_or_other_weights(tmp_path, monkeypatch, request, official):
    """The release is known by its content, whatever the file's name; anything else is named as not it."""
    from resnet_app.core.model import release

    weights = weights_file(tmp_path)
    if official:  # the real file can't be downloaded here: the release's hash is set to this file's
        monkeypatch.setattr(release, "RELEASE_SHA256", release.file_sha256(weights))
    box = request.getfixturevalue("window").train_tab.start_box
    assert box.use_file(str(weights))
    expected = (f"torchvision's ImageNet release {weights.name}" if official
                else f"ImageNet-layout weights from {weights.name}, not torchvision's release")
    assert box.weights_label.text().startswith(f"Starting from {expected} (SHA-256 ")
