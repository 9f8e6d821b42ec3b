"""The Train tab's "Start from" panel: ImageNet weights or nothing, and how much of the network learns.

People bring tens to a few hundred photos a class; from scratch, ResNet18 learns little from that.
Starting from ImageNet weights it learns from a few dozen, and training only the last layer takes
seconds even on a CPU. So ImageNet is the default whenever the weights are at hand (bundled with the
installer, in torchvision's cache, or a file the user chose once, remembered), and the panel says
which they are (torchvision's release, or other ImageNet-layout weights, known by their content) and
where, or why not and how to get them (download with progress and cancel, or a file).

Quick (last layer only) is chosen on a CPU and full (all layers) on a GPU; the panel says which and
why, and the user may switch.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
)

from resnet_app.core.model.architectures import ModelError
from resnet_app.core.model.pretrained import available_imagenet_weights, imagenet_cache_path, load_pretrained
from resnet_app.core.model.release import WeightsIdentity, identify_weights
from resnet_app.ui.messages import show_error
from resnet_app.ui.settings import Settings
from resnet_app.ui.settings_form import ChoiceEditor
from resnet_app.ui.workers import DownloadWeightsWorker, TaskRunner

IMAGENET, SCRATCH = "imagenet", "scratch"
QUICK, FULL, AUTOMATIC = "quick", "full", "auto"
WEIGHTS_FILTER = "ResNet18 weights (*.pth *.pt);;All files (*)"


class StartFromBox(QGroupBox):
    """Where training starts and what it trains; `pretrained()` and `quick()` feed TrainConfig."""

    changed = Signal()

    def __init__(self, settings: Settings, runner: TaskRunner, parent=None) -> None:
        super().__init__("Start from", parent)
        self.settings, self.runner = settings, runner
        self.download_worker: DownloadWeightsWorker | None = None
        self.on_gpu = False  # where training would run now (the tab says, from the Device setting)
        self.start_combo = ChoiceEditor([
            (IMAGENET, "ImageNet weights (recommended for photos)"), (SCRATCH, "Nothing: train from scratch")])
        self.start_combo.setAccessibleName("Start from")
        self.start_combo.setToolTip(
            "ImageNet weights: a ResNet18 that learned 1,000 everyday things; it learns your classes from a "
            "few dozen photos each. From scratch: every weight starts random; needs many more images.")
        self.mode_combo = ChoiceEditor([
            (AUTOMATIC, "Automatic"), (QUICK, "Quick: the last layer only (seconds)"),
            (FULL, "Full: all layers (slower, can learn more)")])
        self.mode_combo.setAccessibleName("What learns")
        self.mode_combo.setToolTip(
            "Quick trains only the last layer, on features of your images computed once: seconds, even on a "
            "CPU. Full lets every layer adapt to your images: better with many images, slow without a GPU.")
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.weights_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.mode_label = QLabel()
        self.mode_label.setWordWrap(True)
        self.download_button = QPushButton("Download (45 MB)")
        self.download_button.clicked.connect(self.download)
        self.choose_button = QPushButton("Choose file…")
        self.choose_button.clicked.connect(self.choose_file)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_download)
        self.download_progress = QProgressBar()
        self.download_progress.setFormat("%p %")
        buttons = QHBoxLayout()
        for widget in (self.download_button, self.choose_button, self.download_progress, self.cancel_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        form = QFormLayout(self)
        form.addRow("Start from:", self.start_combo)
        form.addRow(self.weights_label)
        form.addRow(buttons)
        form.addRow("What learns:", self.mode_combo)
        form.addRow(self.mode_label)
        self._load()
        self.start_combo.currentIndexChanged.connect(self._changed)
        self.mode_combo.currentIndexChanged.connect(self._changed)
        self._refresh()

    # state ------------------------------------------------------------------------------------------

    def weights_file(self) -> Path | None:
        """The ImageNet weights file training starts from, or None (none at hand, or one refused)."""
        found, identity, _ = self._weights()
        return found if identity is not None else None

    def _weights(self) -> tuple[Path | None, WeightsIdentity | None, str]:
        """The weights file at hand, what it is (torchvision's release or not), and why it can't be used
        ("" when it can). Hashed once per file (release.py remembers), so this is cheap to ask again."""
        found = available_imagenet_weights(self.settings.get("train/imagenet_weights_file") or None)
        if found is None:
            return None, None, ""
        try:
            return found, identify_weights(found), ""
        except (ModelError, OSError) as exc:  # the release's name on other bytes; gone meanwhile
            return found, None, str(exc)

    def starts_from_imagenet(self) -> bool:
        return self.start_combo.setting_value() == IMAGENET and self.weights_file() is not None

    def pretrained(self) -> str | None:
        """TrainConfig.pretrained: the weights file, or None to train from scratch."""
        return str(self.weights_file()) if self.starts_from_imagenet() else None

    def mode(self) -> str:
        """QUICK or FULL: the user's choice, or the automatic one for where training runs."""
        chosen = self.mode_combo.setting_value()
        return chosen if chosen != AUTOMATIC else (FULL if self.on_gpu else QUICK)

    def quick(self) -> bool:
        return self.starts_from_imagenet() and self.mode() == QUICK

    def choose_start(self, start: str) -> None:
        """IMAGENET or SCRATCH, as if the user picked it."""
        self.start_combo.set_setting_value(start)

    def set_on_gpu(self, on_gpu: bool) -> None:
        self.on_gpu = on_gpu
        self._refresh()

    def _load(self) -> None:
        self.start_combo.set_setting_value(self.settings.get("train/start_from"))
        self.mode_combo.set_setting_value(self.settings.get("train/what_learns"))

    def start_choice(self) -> str:
        """IMAGENET or SCRATCH, as chosen (whether or not the weights are at hand)."""
        return self.start_combo.setting_value()

    def save(self, start: str | None = None) -> None:
        """Remember the choices shown, or `start` in place of the Start-from one (a sample run's)."""
        self.settings.set("train/start_from", start or self.start_combo.setting_value())
        self.settings.set("train/what_learns", self.mode_combo.setting_value())

    def _changed(self) -> None:
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        found, identity, problem = self._weights()
        weights = found if identity is not None else None
        downloading = self.download_worker is not None
        wants_imagenet = self.start_combo.setting_value() == IMAGENET
        if identity is not None:
            self.weights_label.setText(f"Starting from {identity.describe()}.\nFile: {found}")
        elif downloading:
            self.weights_label.setText("Downloading the ImageNet weights…")
        elif problem:
            self.weights_label.setText(f"The ImageNet weights at hand can't be used, so training starts from "
                                       f"scratch. {problem}")
        else:
            self.weights_label.setText(
                "The ImageNet weights are not on this computer yet, so training starts from scratch. "
                "Download them once (45 MB), or choose the file if you have it.")
        self.weights_label.setVisible(wants_imagenet)
        for widget in (self.download_button, self.choose_button):
            widget.setVisible(wants_imagenet and weights is None and not downloading)
        self.download_progress.setVisible(downloading)
        self.cancel_button.setVisible(downloading)
        self.mode_combo.setEnabled(self.starts_from_imagenet())
        self.mode_label.setVisible(self.starts_from_imagenet())
        self.mode_label.setText(self._mode_reason())

    def _mode_reason(self) -> str:
        if self.mode_combo.setting_value() != AUTOMATIC:
            return ""
        if self.on_gpu:
            return "Full: training runs on a GPU, where letting every layer learn takes minutes and learns most."
        return ("Quick: training runs on the CPU, where only the last layer trains in seconds; full training "
                "of every layer would take much longer here.")

    # getting the weights ----------------------------------------------------------------------------

    def choose_file(self) -> None:
        start = str(Path(self.settings.get("train/imagenet_weights_file") or imagenet_cache_path()).parent)
        path, _ = QFileDialog.getOpenFileName(self, "Choose ResNet18 weights", start, WEIGHTS_FILTER)
        if path:
            self.use_file(path)

    def use_file(self, path: str) -> bool:
        """Check a chosen weights file (hash, keys and shapes) and remember it; False with a message if
        it can't be used. (Reads and hashes 45 MB: a fraction of a second.)"""
        try:
            load_pretrained(path)
        except ModelError as exc:
            show_error(self, "These weights can't be used", str(exc))
            return False
        self.settings.set("train/imagenet_weights_file", str(path))
        self.start_combo.set_setting_value(IMAGENET)
        self._changed()
        return True

    def weights_loaded_elsewhere(self, source: str) -> None:
        """ImageNet weights opened in the Classify tab (a file, or "imagenet" downloaded into
        torchvision's cache): remembered here too, so they are chosen once for both tabs."""
        if source != IMAGENET and Path(source).is_file():
            self.settings.set("train/imagenet_weights_file", str(source))
        self._changed()

    def download(self) -> None:
        if self.download_worker is not None:
            return
        worker = DownloadWeightsWorker()
        worker.progress.connect(self._download_progress)
        worker.downloaded.connect(self._downloaded)
        worker.cancelled.connect(self._download_ended)
        worker.failed.connect(self._download_failed)
        self.download_worker = worker
        self.download_progress.setRange(0, 0)  # busy until the size is known
        self.runner.start(worker)
        self._refresh()

    def cancel_download(self) -> None:
        if self.download_worker is not None:
            self.download_worker.request_stop()

    def _download_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.download_progress.setRange(0, total)
            self.download_progress.setValue(done)

    def _downloaded(self, path: str) -> None:
        self._download_ended()
        self._changed()

    def _download_failed(self, message: str) -> None:
        self._download_ended()
        show_error(self, "Download failed", message)

    def _download_ended(self) -> None:
        self.download_worker = None
        self._refresh()
