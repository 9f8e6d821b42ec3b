"""Item models and settings tested with no widget (napari test_qt_list habit)."""
import csv
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from resnet_app.core.use.classifier import Prediction, write_predictions_csv
from resnet_app.ui.models import PredictionFilterProxy, PredictionRole, PredictionTableModel, SortRole, TopKRole
from resnet_app.ui.settings import DEFAULTS, Settings


def _predictions():
    return [
        Prediction(Path("/x/cat.png"), [("cat", 0.9), ("dog", 0.07), ("fox", 0.03)]),
        Prediction(Path("/x/dog.png"), [("dog", 0.55), ("cat", 0.4), ("fox", 0.05)]),
        Prediction(Path("/x/broken.png"), [], "not an image: the file is empty"),
    ]


def test_prediction_model_rows_roles_and_top_k(qtmodeltester):
    model = PredictionTableModel(top_k=2)
    inserted = []
    model.rowsInserted.connect(lambda parent, first, last: inserted.append((first, last)))
    model.append(_predictions()[:2])
    model.append(_predictions()[2:])
    assert inserted == [(0, 1), (2, 2)]
    assert model.rowCount() == 3 and model.columnCount() == 5
    qtmodeltester.check(model)

    file_index = model.index(0, PredictionTableModel.FILE)
    assert model.data(file_index) == "cat.png"
    assert model.data(model.index(0, PredictionTableModel.LABEL)) == "cat"
    assert model.data(model.index(0, PredictionTableModel.CONFIDENCE)) == "90.0%"
    assert model.data(model.index(0, PredictionTableModel.TOP_K), TopKRole) == [("cat", 0.9), ("dog", 0.07)]
    # No thumbnail cache given: no thumbnails (the Classify tab gives one: test_classify_thumbnails.py).
    assert model.data(model.index(0, PredictionTableModel.THUMBNAIL), Qt.ItemDataRole.DecorationRole) is None

    # A bad file's row carries its error, in red, and sorts last by label.
    assert model.data(model.index(2, PredictionTableModel.TOP_K)) == "not an image: the file is empty"
    assert model.data(model.index(2, PredictionTableModel.LABEL)) == "Error"
    assert model.data(model.index(2, PredictionTableModel.LABEL), Qt.ItemDataRole.ForegroundRole) is not None
    assert model.data(model.index(2, PredictionTableModel.CONFIDENCE), SortRole) == -1.0

    changed = []
    model.dataChanged.connect(lambda tl, br, roles: changed.append((tl.column(), br.row(), list(roles))))
    model.set_top_k(3)
    assert changed and changed[0][0] == PredictionTableModel.TOP_K and TopKRole in changed[0][2]
    assert len(model.data(model.index(0, 0), TopKRole)) == 3
    assert model.data(model.index(1, 0), PredictionRole).path.name == "dog.png"
    model.clear()
    assert model.rowCount() == 0


def test_filter_proxy_by_label_and_confidence_and_sort():
    model = PredictionTableModel(top_k=1)
    model.append(_predictions())
    proxy = PredictionFilterProxy()
    proxy.setSourceModel(model)
    assert proxy.rowCount() == 3
    proxy.set_label_filter("DOG")  # case-insensitive, on the shown (top-1) labels
    assert [proxy.data(proxy.index(r, 1)) for r in range(proxy.rowCount())] == ["dog.png"]
    proxy.set_label_filter("")
    proxy.set_min_confidence(0.6)
    assert [proxy.data(proxy.index(r, 1)) for r in range(proxy.rowCount())] == ["cat.png"]
    proxy.set_min_confidence(0.0)
    proxy.sort(PredictionTableModel.CONFIDENCE, Qt.SortOrder.AscendingOrder)
    assert [proxy.data(proxy.index(r, 1)) for r in range(3)] == ["broken.png", "dog.png", "cat.png"]


def test_csv_export_writes_top_k_and_errors(tmp_path):
    out = tmp_path / "results.csv"
    assert write_predictions_csv(out, _predictions(), 2) == 3
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["path", "error", "label_1", "probability_1", "label_2", "probability_2", "unsure"]
    assert rows[1][2:] == ["cat", "0.900000", "dog", "0.070000", "no"]
    assert rows[3][1] == "not an image: the file is empty" and rows[3][2:6] == ["", "", "", ""]


def test_settings_typed_defaults_round_trip_and_bad_values(temp_settings):
    settings = Settings()
    assert settings.get("train/epochs") == DEFAULTS["train/epochs"][1]
    assert settings.get("train/augment") is True
    assert settings.get("model/recent") == []
    settings.set("train/epochs", 7)
    settings.set("train/augment", False)
    settings.add_recent_model("/a.safetensors")
    settings.add_recent_model("/b.safetensors")
    settings.add_recent_model("/a.safetensors")
    settings.sync()
    again = Settings()  # a new QSettings reads back the INI file in the temp folder
    assert again.get("train/epochs") == 7 and isinstance(again.get("train/epochs"), int)
    assert again.get("train/augment") is False
    assert again.get("model/recent") == ["/a.safetensors", "/b.safetensors"]
    [ini] = Path(temp_settings).rglob("*.ini")  # the settings landed in the temp folder, in one file
    # Edited by hand, as a user might: one value changed, one that no longer parses.
    text = ini.read_text()
    assert "epochs=7" in text and "[train]" in text and "batch_size" not in text
    ini.write_text(text.replace("epochs=7", "epochs=9").replace("[train]", "[train]\nbatch_size=not a number"))
    edited = Settings()
    assert edited.get("train/epochs") == 9  # the edited file is what was read
    assert edited.get("train/batch_size") == DEFAULTS["train/batch_size"][1]


def test_probability_bars_keep_their_meaning_on_a_selected_row(qtbot):
    """Painted for real: on a selected row the filled part of a 90 % bar must stand out from the row's
    highlight colour, as it stands out from the base colour on an unselected row."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtGui import QColor, QPainter, QPalette
    from PySide6.QtWidgets import QStyle, QStyleOptionViewItem, QTableView

    from resnet_app.ui.delegates import LABEL_SHARE, TopKDelegate

    model = PredictionTableModel(top_k=1)
    model.append([Prediction(Path("a.png"), top_k=[("cat", 0.9)])])
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    delegate = TopKDelegate(view)
    index = model.index(0, PredictionTableModel.TOP_K)

    def paint(selected: bool) -> tuple[QImage, QColor]:
        option = QStyleOptionViewItem()
        option.initFrom(view)
        option.rect = QRect(0, 0, 400, 30)
        if selected:
            option.state |= QStyle.StateFlag.State_Selected
        background = QColor(option.palette.color(QPalette.ColorRole.Highlight if selected
                                                 else QPalette.ColorRole.Base))
        image = QImage(400, 30, QImage.Format.Format_RGB32)
        image.fill(background)
        painter = QPainter(image)
        delegate.paint(painter, option, index)
        painter.end()
        return image, background

    for selected in (False, True):
        image, background = paint(selected)
        bar_left = 6 + int((400 - 12) * LABEL_SHARE) + 4
        filled = image.pixelColor(QPoint(bar_left + 20, 15))  # inside the 90 % filled part
        distance = sum(abs(a - b) for a, b in zip(filled.getRgb()[:3], background.getRgb()[:3], strict=True))
        assert distance > 150, f"the filled bar hardly differs from the background (selected={selected})"
