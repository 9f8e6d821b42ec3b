"""Classify's thumbnails: loaded for the rows on show, from a bounded cache, never upscaled (issue 23
item 7: they were kept for every row, 64x64 each, small images upscaled: +132 MB for 5,000 rows)."""
from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt

from resnet_app.core.use.classifier import Prediction
from resnet_app.ui import thumbnails
from resnet_app.ui.models import PredictionTableModel
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import THUMBNAIL_PX, TaskRunner, load_thumbnail


def test_a_small_image_keeps_its_size_and_a_large_one_is_scaled_down(tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.jpg"
    Image.new("RGB", (16, 12), "red").save(small)
    Image.new("RGB", (640, 320), "blue").save(large)
    assert load_thumbnail(small).size().toTuple() == (16, 12)
    assert load_thumbnail(large).size().toTuple() == (THUMBNAIL_PX, THUMBNAIL_PX // 2)


def _decoration(model: PredictionTableModel, row: int):
    return model.data(model.index(row, PredictionTableModel.THUMBNAIL), Qt.ItemDataRole.DecorationRole)


def test_the_table_holds_at_most_the_caches_share_of_thumbnails(qtbot, tmp_path, images, monkeypatch):
    monkeypatch.setattr(thumbnails, "KEEP", 10)
    files = []
    for n in range(40):
        files.append(Path(shutil.copyfile(images[n % len(images)], tmp_path / f"{n}.png")))
    runner = TaskRunner()
    cache = ThumbnailCache(runner)
    model = PredictionTableModel(top_k=1, thumbnails=cache)
    model.append([Prediction(path, [("circle", 1.0)]) for path in files])
    arrived = []
    model.dataChanged.connect(lambda first, last, roles: arrived.append((first.row(), last.row(), list(roles))))
    for row in range(40):  # as a view scrolling through every row asks for them
        assert _decoration(model, row) is None  # not loaded yet: asked for
        qtbot.waitUntil(lambda row=row: _decoration(model, row) is not None, timeout=30_000)
        assert len(cache) <= 10
    assert arrived and all(roles == [Qt.ItemDataRole.DecorationRole] for *_rows, roles in arrived)
    assert _decoration(model, 0) is None  # long since dropped from the cache: asked for again when shown
    qtbot.waitUntil(lambda: _decoration(model, 0) is not None, timeout=30_000)
    runner.stop_all()
    qtbot.waitUntil(lambda: not runner.busy, timeout=30_000)
