"""At 800x600 (a small laptop screen, a window not maximised) what matters stays in view (issue 21 item 7:
Evaluate showed 2 of 4 matrix columns and no True/Predicted/Confidence, Classify's top predictions were
off screen, the legend wrapped mid-name, and the window grew by itself to 800x626)."""
from __future__ import annotations

from PySide6.QtCore import QSize

from resnet_app.ui.evaluate_models import EvalRowsModel
from resnet_app.ui.models import PredictionTableModel

SMALL = QSize(800, 600)


def _fully_visible(view, column: int) -> bool:
    header = view.horizontalHeader()
    start = header.sectionViewportPosition(column)
    return start >= 0 and start + header.sectionSize(column) <= view.viewport().width()


def test_classify_at_800_by_600_shows_the_top_predictions_and_keeps_its_size(loaded_window, qtbot, tiny_data):
    window = loaded_window
    window.resize(SMALL)
    qtbot.waitUntil(lambda: window.size() == SMALL, timeout=5_000)
    tab = window.classify_tab
    tab.handle_paths([tiny_data])
    qtbot.waitUntil(lambda: not tab.busy and tab.results.rowCount() == 32, timeout=60_000)
    with qtbot.waitSignal(tab.gradcam.shown, timeout=30_000):
        tab.table.selectRow(0)  # the preview shows a large image
    qtbot.wait(200)
    assert window.size() == SMALL
    header = tab.table.horizontalHeader()
    for column in (PredictionTableModel.FILE, PredictionTableModel.LABEL, PredictionTableModel.CONFIDENCE):
        assert _fully_visible(tab.table, column), column
    top_k_start = header.sectionViewportPosition(PredictionTableModel.TOP_K)
    assert tab.table.viewport().width() - top_k_start >= 150  # room for "triangle ▮▮ 27.6%"


def test_evaluate_at_800_by_600_shows_every_matrix_column_and_the_lists_columns(loaded_window, qtbot, tiny_data,
                                                                                 tiny_model):
    window = loaded_window
    window.resize(SMALL)
    window.tabs.setCurrentIndex(2)
    view = window.evaluate_view
    view.evaluate(str(tiny_model), str(tiny_data))
    qtbot.waitUntil(lambda: view.report is not None and not view.busy, timeout=120_000)
    view.select_row(view.rows.row_indices()[0])
    qtbot.wait(200)
    assert window.size() == SMALL
    for column in range(view.confusion.columnCount()):
        assert _fully_visible(view.matrix, column), column
    for column in (EvalRowsModel.TRUE, EvalRowsModel.PREDICTED, EvalRowsModel.CONFIDENCE):
        assert _fully_visible(view.wrong_table, column), column
    assert view.gradcam.image_label.height() >= 100 and view.gradcam.image_label.width() >= 100
    # Wide again: the image goes back beside the lists.
    window.resize(1400, 820)
    qtbot.waitUntil(lambda: view.image_pane.parent() is view.splitter, timeout=5_000)


def test_the_legend_wraps_between_entries_never_inside_a_name(window):
    text = window.train_tab.plot.legend_label.text()
    assert "train&nbsp;loss&nbsp;(epoch)" in text and "val&nbsp;accuracy" in text
