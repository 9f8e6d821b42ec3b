"""The selected image, large, with a toggle that lays Grad-CAM's heat map over it ("why this class").

Shared by the Classify tab and the Evaluate view. The image and its map are made in a PreviewWorker;
while one runs, only the latest request waits (a quick run through a list never queues up work).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from resnet_app.core.use.classifier import Classifier
from resnet_app.ui.heatmap import legend_image
from resnet_app.ui.workers import PreviewWorker, TaskRunner

PREVIEW_PX = 256
PREDICTED = -1  # the class combo's data for "the predicted class"


MIN_PREVIEW_PX = 120  # how small the preview may get in a small window


class FittedImage(QLabel):
    """An image shown as large as it fits, up to its own size. Its minimum size never depends on the
    image, so a preview can't make the window grow (it once grew from 600 to 626 px high)."""

    def __init__(self, text: str, preferred_px: int) -> None:
        super().__init__(text)
        self.preferred_px = preferred_px
        self._image: QImage | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(self.preferred_px + 8, self.preferred_px + 8)

    def minimumSizeHint(self) -> QSize:
        return QSize(MIN_PREVIEW_PX, MIN_PREVIEW_PX)

    def hasHeightForWidth(self) -> bool:
        return False  # a word-wrapped QLabel's height follows its text, and an image has none

    def set_image(self, image: QImage) -> None:
        self._image = image
        self._fit()

    def clear(self) -> None:
        self._image = None
        super().clear()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._image is None or self._image.isNull():
            return
        room = self.contentsRect().size().boundedTo(self._image.size())
        self.setPixmap(QPixmap.fromImage(self._image).scaled(room, Qt.AspectRatioMode.KeepAspectRatio,
                                                             Qt.TransformationMode.SmoothTransformation))


class GradCamPanel(QWidget):
    shown = Signal(str, object)  # path, dict | None (class_index, class_name, probability, layer): on show now

    def __init__(self, runner: TaskRunner, preview_px: int = PREVIEW_PX, parent=None) -> None:
        super().__init__(parent)
        self.runner, self.preview_px = runner, preview_px
        self.classifier: Classifier | None = None
        self.path: str | None = None
        self.info: dict | None = None  # what the shown overlay explains; None when no overlay is shown
        self._token = 0
        self._worker: PreviewWorker | None = None
        self._queued: tuple | None = None

        self.toggle = QCheckBox("Grad-CAM: why this class")
        self.toggle.setObjectName("gradcamToggle")
        self.toggle.setToolTip("Colour the parts of the image that made the model choose the class: "
                               "red most, blue least (Grad-CAM).")
        self.toggle.toggled.connect(self._settings_changed)
        self.class_combo = QComboBox()
        self.class_combo.setAccessibleName("Class to explain")
        self.class_combo.addItem("Predicted class", PREDICTED)
        self.class_combo.setEnabled(False)
        self.class_combo.currentIndexChanged.connect(self._settings_changed)
        self.image_label = FittedImage("Select an image to see it here.", preview_px)
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setFrameShape(QFrame.Shape.StyledPanel)
        self.image_label.setWordWrap(True)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = QWidget()
        legend_row = QHBoxLayout(self.legend)
        legend_row.setContentsMargins(0, 0, 0, 0)
        bar = QLabel()
        bar.setPixmap(QPixmap.fromImage(legend_image(120, 10)))
        legend_row.addWidget(QLabel("least"))
        legend_row.addWidget(bar)
        legend_row.addWidget(QLabel("most"))
        legend_row.addStretch(1)
        self.legend.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.class_combo)
        layout.addWidget(self.image_label)
        layout.addWidget(self.legend)
        layout.addWidget(self.caption)
        layout.addStretch(1)

    # inputs -----------------------------------------------------------------------------------------

    def set_classifier(self, classifier: Classifier | None) -> None:
        if classifier is self.classifier:
            return
        self.classifier = classifier
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("Predicted class", PREDICTED)
        for i, name in enumerate(classifier.class_names if classifier else []):
            self.class_combo.addItem(name, i)
        self.class_combo.blockSignals(False)
        self._settings_changed()

    def set_image(self, path: str | Path | None) -> None:
        path = None if path is None else str(path)
        if path == self.path:
            return
        self.path = path
        self._refresh()

    def set_class(self, class_index: int | None) -> None:
        """Explain `class_index` (None: the predicted class)."""
        self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(PREDICTED if class_index is None
                                                                         else class_index)))

    @property
    def overlay_on(self) -> bool:
        return self.toggle.isChecked() and self.classifier is not None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    # the preview ------------------------------------------------------------------------------------

    def _settings_changed(self, *_signal_args) -> None:
        self.class_combo.setEnabled(self.toggle.isChecked() and self.classifier is not None)
        self._refresh()

    def _refresh(self) -> None:
        self._token += 1
        if self.path is None:
            self._queued = None
            self.info = None
            self.image_label.clear()
            self.image_label.setText("Select an image to see it here.")
            self.caption.clear()
            self.legend.hide()
            return
        chosen = self.class_combo.currentData()
        class_index = None if chosen in (None, PREDICTED) else int(chosen)
        request = (self._token, self.path, self.preview_px, self.classifier if self.overlay_on else None,
                   class_index)
        if self._worker is not None:
            self._queued = request  # the latest choice wins
            return
        self._start(request)

    def _start(self, request: tuple) -> None:
        worker = PreviewWorker(*request)
        worker.ready.connect(self._ready)
        worker.unreadable.connect(self._unreadable)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._done)
        if self.runner.start(worker) is None:
            return  # the window is closing
        self._worker = worker
        if request[3] is not None:
            self.caption.setText("Computing Grad-CAM…")

    def _ready(self, token: int, image, info: dict | None) -> None:
        if token != self._token:
            return
        self.image_label.set_image(image)
        self.info = info
        self.legend.setVisible(info is not None)
        name = Path(self.path).name if self.path else ""
        if info is None:
            self.caption.setText(name)
        else:
            self.caption.setText(f"{name}<br>Where the model sees <b>{info['class_name']}</b> "
                                 f"({info['probability']:.1%}); map from {info['layer']}.")
        self.shown.emit(self.path or "", info)

    def _unreadable(self, token: int, message: str) -> None:
        if token == self._token:
            self.info = None
            self.image_label.clear()
            self.image_label.setText(message)
            self.caption.clear()
            self.legend.hide()

    def _failed(self, message: str) -> None:
        if self._queued is None:  # else a newer request will replace what this one would show
            self.info = None
            self.caption.setText(f"Grad-CAM failed: {message}")

    def drop_queued_work(self) -> None:
        """The window is closing: the preview asked for last is not made."""
        self._queued = None
        if self._worker is not None:
            self._worker.request_stop()

    def _done(self) -> None:
        self._worker = None
        if self._queued is not None:
            request, self._queued = self._queued, None
            self._start(request)
