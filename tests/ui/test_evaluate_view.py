"""The Evaluate view with real widgets on a really trained tiny model: figures, the confusion matrix's
cells, most wrong first, open / show / move with undo, cancel, and Grad-CAM on a cell's image."""
import math
import shutil
from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import Qt, QUrl

from resnet_app.core.data.sample_data import SAMPLE_CLASSES, generate_sample_dataset
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.evaluation import EvalReport, EvalRow, report_with_rows
from resnet_app.ui.evaluate_models import (
    ConfusionMatrixModel,
    CountRole,
    DiagonalRole,
    EvalRowsModel,
    ShareRole,
    classes_in_play,
)
from resnet_app.ui.settings import Settings
from resnet_app.ui.workers import TaskRunner


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet18-cifar trained for 2 epochs on the 16 px shapes (4 classes x 8 images)."""
    root = tmp_path_factory.mktemp("trained")
    data = generate_sample_dataset(root / "data", images_per_class=8, image_size=16)
    config = TrainConfig(epochs=2, batch_size=8, image_size=16, loader_processes=0, device="cpu")
    result = Trainer(config, data, root / "run").fit()
    return Path(result.model_path), data


@pytest.fixture
def data(trained, tmp_path) -> Path:
    """A copy of the data for this test: moves change it."""
    return Path(shutil.copytree(trained[1], tmp_path / "data"))


@pytest.fixture
def view(qtbot):
    from resnet_app.ui.evaluate_view import EvaluateView

    runner = TaskRunner()
    widget = EvaluateView(Settings(), runner)
    widget.opened: list[QUrl] = []
    widget.open_url = widget.opened.append  # nothing is launched in tests
    widget.resize(1280, 760)
    widget.show()
    yield widget
    # No thread may outlive its test: stop, wait, then close (see the window fixture in conftest.py).
    runner.stop_all()
    qtbot.waitUntil(lambda: not runner.busy, timeout=60_000)
    if shiboken6.isValid(widget):
        widget.close()
        widget.deleteLater()


def evaluated(view, qtbot, model: Path, data: Path) -> EvalReport:
    with qtbot.waitSignal(view.report_changed, timeout=120_000):
        view.evaluate(str(model), str(data))
    qtbot.waitUntil(lambda: not view.busy, timeout=30_000)
    return view.report


def expected_cells(model: Path, data: Path) -> dict[tuple[int, int], set[str]]:
    """Each (true, predicted) cell's files, worked out here with the Classifier alone."""
    classifier = Classifier.from_file(model, device="cpu")
    paths = sorted(data.rglob("*.png"))
    cells: dict[tuple[int, int], set[str]] = {}
    for prediction in classifier.predict_paths(paths, top_k=1):
        cell = (classifier.class_names.index(prediction.path.parent.name),
                classifier.class_names.index(prediction.top_k[0][0]))
        cells.setdefault(cell, set()).add(str(prediction.path))
    return cells


def click_cell(view, qtbot, true_index: int, predicted_index: int) -> None:
    index = view.confusion.index_of_cell(true_index, predicted_index)
    view.matrix.scrollTo(index)
    qtbot.mouseClick(view.matrix.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.matrix.visualRect(index).center())


def test_figures_and_a_click_on_a_cell_shows_exactly_its_images(view, qtbot, trained, data):
    model, _ = trained
    report = evaluated(view, qtbot, model, data)
    assert report.images == 32 and len(report.rows) == 32
    assert view.stack.currentWidget() is view.splitter
    assert f"{report.accuracy:.1%}" in view.summary.text() and model.name in view.summary.text()
    assert view.per_class.rowCount() == 4 and view.confusion.rowCount() == view.confusion.columnCount() == 4
    cells = expected_cells(model, data)
    for true_index in range(4):
        for predicted_index in range(4):
            click_cell(view, qtbot, true_index, predicted_index)
            assert view.image_tabs.currentIndex() == 1
            assert set(view.grid.paths()) == cells.get((true_index, predicted_index), set())
            assert view.grid_view.model().rowCount() == len(cells.get((true_index, predicted_index), ()))
            assert f": {view.grid.rowCount()} image" in view.grid_title.text()
    # Most wrong first: highest loss at the top, the loss being the true class's cross-entropy.
    losses = [view.rows.row_at(i).loss for i in range(view.rows.rowCount())]
    assert losses == sorted(losses, reverse=True)
    top = view.rows.row_at(0)
    assert top.loss == pytest.approx(-math.log(max(top.probabilities[top.true_index], 1e-12)))
    assert view.rows.data(view.rows.index(0, EvalRowsModel.TRUE)) == SAMPLE_CLASSES[top.true_index]
    # Thumbnails arrive from the worker for the rows on screen.
    qtbot.waitUntil(lambda: view.rows.data(view.rows.index(0, 0), Qt.ItemDataRole.DecorationRole) is not None,
                    timeout=30_000)


def test_move_to_another_class_and_undo_moves_the_file_and_the_figures(view, qtbot, trained, data):
    model, _ = trained
    report = evaluated(view, qtbot, model, data)
    view.select_row(view.rows.row_indices()[0])  # the most wrong image
    row_index, next_index = view.rows.row_indices()[:2]
    assert view.current_row == row_index
    row = report.rows[row_index]
    source = Path(row.path)
    target_class = row.predicted_index if not row.correct else (row.true_index + 1) % 4
    old_cell, new_cell = (row.true_index, row.predicted_index), (target_class, row.predicted_index)
    counts = {cell: report.confusion[cell[0]][cell[1]] for cell in (old_cell, new_cell)}
    click_cell(view, qtbot, *old_cell)
    assert str(source) in view.grid.paths()
    view.image_tabs.setCurrentIndex(0)  # working down the most-wrong list
    # The menu the "Move to class" button opens: pick the class.
    view.move_menu.aboutToShow.emit()
    [action] = [a for a in view.move_menu.actions() if a.data() == target_class]
    assert not [a for a in view.move_menu.actions() if a.data() == row.true_index][0].isEnabled()
    action.trigger()

    moved = data / SAMPLE_CLASSES[target_class] / source.name
    assert moved.is_file() and not source.exists()
    after = view.report
    assert after.rows[row_index].path == str(moved) and after.rows[row_index].true_index == target_class
    assert after.confusion[old_cell[0]][old_cell[1]] == counts[old_cell] - 1
    assert after.confusion[new_cell[0]][new_cell[1]] == counts[new_cell] + 1
    assert after.per_class[SAMPLE_CLASSES[target_class]]["support"] == 9
    assert str(source) not in view.grid.paths() and str(moved) not in view.grid.paths()  # left the cell
    assert view.current_row == next_index  # on to the next most wrong image
    assert view.undo_stack.count() == 1 and view.undo_button.isEnabled() and source.name in view.undo_button.toolTip()

    view.undo_button.click()
    assert source.is_file() and not moved.exists()
    assert view.report.confusion == report.confusion and view.report.accuracy == report.accuracy
    assert view.report.rows[row_index].path == str(source) and view.current_row == row_index  # back, selected
    assert str(source) in view.grid.paths()
    view.redo_action.trigger()
    assert moved.is_file() and not source.exists()
    view.undo_action.trigger()
    assert source.is_file() and sorted(p.name for p in data.rglob("*.png")) == \
        sorted(p.name for p in trained[1].rglob("*.png"))


def test_a_move_never_overwrites_and_undo_restores_the_name(view, qtbot, trained, data):
    model, _ = trained
    report = evaluated(view, qtbot, model, data)
    view.select_row(0)
    source = Path(report.rows[0].path)
    target = (report.rows[0].true_index + 1) % 4
    taken = data / SAMPLE_CLASSES[target] / source.name
    shutil.copy(source, taken)  # a file of the same name is already in the target folder
    view.move_current_to(target)
    renamed = taken.with_name(f"{source.stem}-2{source.suffix}")  # the one naming rule (files.numbered_name)
    assert renamed.is_file() and taken.is_file() and not source.exists()
    view.undo_action.trigger()
    assert source.is_file() and not renamed.exists() and taken.is_file()


def test_a_move_never_overwrites_a_file_that_appears_after_the_name_is_chosen(tmp_path, monkeypatch):
    """Another program writes a file under the chosen name between the check and the move: that file
    stays as it was, and the moved image takes the next free name."""
    from types import SimpleNamespace

    from resnet_app.ui.move_to_class import MoveImageCommand

    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    source = tmp_path / "cat" / "a.png"
    source.write_bytes(b"the photo")
    appears = tmp_path / "dog" / "a.png"
    appears.write_bytes(b"written by another program just now")
    # Every existence check says the name is free, as it was at the moment it was checked.
    real_exists, real_lexists = Path.exists, __import__("os").path.lexists
    monkeypatch.setattr(Path, "exists", lambda self, *a, **k: False if self == appears else real_exists(self, *a, **k))
    monkeypatch.setattr("os.path.lexists", lambda p: False if Path(p) == appears else real_lexists(p))
    moves, failures = [], []
    host = SimpleNamespace(report=SimpleNamespace(classes=["cat", "dog"]),
                           file_moved=lambda old, new, index, advance=False: moves.append(new),
                           move_failed=failures.append)
    command = MoveImageCommand(host, str(source), 0, 1, tmp_path)
    command.redo()
    monkeypatch.undo()
    assert appears.read_bytes() == b"written by another program just now"
    assert not failures and moves == [str(tmp_path / "dog" / "a-2.png")]
    assert (tmp_path / "dog" / "a-2.png").read_bytes() == b"the photo" and not source.exists()
    command.undo()
    assert source.read_bytes() == b"the photo" and appears.read_bytes() == b"written by another program just now"


def test_a_failed_move_says_why_and_is_not_recorded(view, qtbot, trained, data):
    from ui_helpers import message_boxes

    report = evaluated(view, qtbot, trained[0], data)
    view.select_row(0)
    source = Path(report.rows[0].path)
    source.unlink()  # gone since the evaluation (deleted in the file manager, say)
    view.move_current_to((report.rows[0].true_index + 1) % 4)
    [box] = message_boxes(view)
    assert source.name in box.text()
    box.close()
    assert view.undo_stack.count() == 0 and not view.undo_button.isEnabled()
    assert view.report.confusion == report.confusion


def test_open_and_show_in_folder(view, qtbot, trained, data):
    report = evaluated(view, qtbot, trained[0], data)
    assert not view.open_button.isEnabled()
    view.select_row(3)
    path = Path(report.rows[3].path)
    view.open_button.click()
    view.folder_show_button.click()
    assert view.opened == [QUrl.fromLocalFile(str(path)), QUrl.fromLocalFile(str(path.parent))]


def test_evaluation_can_be_cancelled(view, qtbot, trained, data):
    view.set_model_path(str(trained[0]))
    view.set_data_folder(str(data))
    view.start()
    worker = view.worker
    assert view.progress_row.isVisible() and not view.evaluate_button.isEnabled()
    with qtbot.waitSignal(worker.cancelled, timeout=60_000):
        view.cancel_button.click()
    qtbot.waitUntil(lambda: not view.busy, timeout=30_000)
    assert view.report is None and not view.progress_row.isVisible() and view.evaluate_button.isEnabled()


def test_gradcam_on_an_image_of_the_grid(view, qtbot, trained, data):
    report = evaluated(view, qtbot, trained[0], data)
    cell = next((r.true_index, r.predicted_index) for r in report.rows)
    click_cell(view, qtbot, *cell)
    first = view.grid.index(0, 0)
    with qtbot.waitSignal(view.gradcam.shown, timeout=30_000):
        view.grid_view.setCurrentIndex(first)
    path = view.grid.row_at(0).path
    assert view.gradcam.path == path and view.gradcam.info is None  # the plain image first
    with qtbot.waitSignal(view.gradcam.shown, timeout=60_000) as shown:
        view.gradcam.toggle.setChecked(True)
    assert shown.args[0] == path and shown.args[1]["class_index"] == cell[1]  # the predicted class
    other = (cell[1] + 1) % 4
    with qtbot.waitSignal(view.gradcam.shown, timeout=60_000) as shown:
        view.gradcam.set_class(other)
    assert shown.args[1]["class_index"] == other and shown.args[1]["class_name"] == SAMPLE_CLASSES[other]
    assert SAMPLE_CLASSES[other] in view.gradcam.caption.text()


def test_the_models_show_a_report_without_widgets(qtbot):
    from array import array

    def row(path, true, predicted):
        probabilities = array("f", [0.1, 0.1, 0.1])
        probabilities[predicted] = 0.8
        return EvalRow(path, true, predicted, probabilities)

    rows = [row("a1", 0, 0), row("a2", 0, 1), row("b1", 1, 1)]
    base = EvalReport(0.0, ["a", "b", "c"], {}, [[0] * 3 for _ in range(3)], 0, rows=[])
    report = report_with_rows(base, rows)
    assert report.confusion == [[1, 1, 0], [0, 1, 0], [0, 0, 0]] and report.accuracy == pytest.approx(2 / 3)
    assert report.per_class["b"]["precision"] == 0.5 and report.per_class["c"]["recall"] is None
    assert classes_in_play(report) == [0, 1]  # "c": no images, never predicted
    model = ConfusionMatrixModel()
    changes = []
    model.modelReset.connect(lambda: changes.append("reset"))
    model.dataChanged.connect(lambda *args: changes.append("data"))
    model.set_report(report)
    assert (model.rowCount(), model.columnCount()) == (2, 2)
    cell = model.index(0, 1)
    assert model.data(cell, CountRole) == 1 and model.data(cell, ShareRole) == 0.5
    assert model.data(cell, DiagonalRole) is False and model.data(model.index(1, 1), DiagonalRole) is True
    assert model.headerData(0, Qt.Orientation.Vertical) == "a"
    relabelled = report_with_rows(report, [rows[0], row("a2", 1, 1), rows[2]])
    model.set_report(relabelled)  # the same cells: dataChanged, and the selection stays
    assert changes == ["reset", "data"] and model.data(model.index(1, 1), CountRole) == 2
    assert relabelled.rows[1].loss == pytest.approx(-math.log(0.8))


def test_undo_and_redo_wait_while_an_evaluation_reads_the_files(view, qtbot, trained, data):
    """Issue 23, suspected: Undo/Redo stayed enabled during an evaluation, so files could move under it."""
    model, _ = trained
    evaluated(view, qtbot, model, data)
    view.select_row(view.rows.row_indices()[0])
    row = view.report.rows[view.current_row]
    view.move_menu.aboutToShow.emit()
    [action] = [a for a in view.move_menu.actions() if a.data() == (row.true_index + 1) % 4]
    action.trigger()
    assert view.undo_button.isEnabled() and view.undo_action.isEnabled()
    view.undo_button.click()
    assert view.redo_button.isEnabled() and view.redo_action.isEnabled()
    view.start()  # evaluate again
    assert view.busy
    for widget in (view.undo_button, view.undo_action, view.redo_button, view.redo_action):
        assert not widget.isEnabled()
    qtbot.waitUntil(lambda: not view.busy, timeout=120_000)
    assert view.redo_button.isEnabled() and view.redo_action.isEnabled()


def test_cell_images_are_full_sized_before_their_thumbnails_load_and_the_preview_follows(view, qtbot, trained,
                                                                                         data):
    """Issue 21 item 2: the cell's images showed as thin strips (no name, no percentage) until a refresh,
    and the preview kept the previous cell's image."""
    from resnet_app.ui.workers import THUMBNAIL_PX

    model, _ = trained
    report = evaluated(view, qtbot, model, data)
    cells = [(t, p) for t in range(4) for p in range(4) if report.confusion[t][p]]
    empty = [(t, p) for t in range(4) for p in range(4) if not report.confusion[t][p]]
    view.thumbnails.clear()  # as on a first look: no thumbnail loaded yet
    click_cell(view, qtbot, *cells[0])
    first = view.grid.index(0, 0)
    rect = view.grid_view.visualRect(first)
    assert rect.height() >= THUMBNAIL_PX + 20 and rect.width() >= THUMBNAIL_PX, rect
    assert view.gradcam.path == view.grid.paths()[0]
    if len(cells) > 1:
        click_cell(view, qtbot, *cells[1])
        assert view.gradcam.path == view.grid.paths()[0]
    if empty:
        click_cell(view, qtbot, *empty[0])
        assert view.gradcam.path is None and view.current_row is None
