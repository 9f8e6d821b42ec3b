"""File > Sort a folder with this model…: the dialog sorts in a worker thread with the Classify tab's model,
shows the result, undoes a move, explains when it can't sort, and stops on Cancel without losing a file."""
import shutil

from PIL import Image

from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.sorting import LOG_NAME, UNREADABLE_FOLDER, UNSURE_FOLDER
from resnet_app.ui.sort_dialog import NO_MODEL_TEXT, SortDialog

TIMEOUT_MS = 60_000


def files_with_bytes(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def open_dialog(window) -> SortDialog:
    file_menu = window.menuBar().actions()[0].menu()
    action = window.sort_folder_action  # the File menu's (add_sort_action, in MainWindow)
    assert action in file_menu.actions() and action in window.actions() and action.isEnabled()
    assert action.text() == "&Sort a folder with this model…"
    action.trigger()
    dialog = action.dialog
    assert dialog.isVisible() and dialog.parent() is window
    return dialog


def choose(dialog: SortDialog, source, dest, move: bool) -> None:
    dialog.source_edit.setText(str(source))
    assert dialog.dest_edit.text() == f"{source}-sorted"  # the default destination, beside the source
    dialog.dest_edit.setText(str(dest))
    (dialog.move_radio if move else dialog.copy_radio).setChecked(True)


def wait_done(qtbot, dialog: SortDialog) -> None:
    qtbot.waitUntil(lambda: not dialog.running, timeout=TIMEOUT_MS)


def test_move_a_folder_by_class_then_undo_puts_every_file_back(qtbot, loaded_window, tiny_data, tmp_path):
    source, dest = tmp_path / "photos", tmp_path / "sorted"
    shutil.copytree(tiny_data, source)
    (source / "x.png").write_bytes(b"broken")
    before = files_with_bytes(source)
    dialog = open_dialog(loaded_window)
    assert dialog.classifier is loaded_window.classify_tab.classifier and not dialog.no_model_label.isVisible()
    assert dialog.copy_radio.isChecked() and dialog.min_confidence is None  # copy and the model's own threshold
    assert "_unsure" in dialog.confidence_spin.toolTip() and "Undo" in dialog.move_radio.toolTip()
    choose(dialog, source, dest, move=True)

    dialog.sort_button.click()
    assert dialog.running and not dialog.sort_button.isEnabled() and dialog.cancel_button.isEnabled()
    wait_done(qtbot, dialog)

    summary = dialog.last_summary
    assert summary.done == summary.total == len(before) and summary.unreadable == 1 and not summary.stopped
    assert not [p for p in source.rglob("*") if p.is_file()]  # every image left the source
    classes = {*loaded_window.classify_tab.classifier.class_names, UNSURE_FOLDER, UNREADABLE_FOLDER}
    placed = [p for p in dest.rglob("*") if p.is_file() and p.name != LOG_NAME]
    assert len(placed) == len(before) and all(p.parent.parent == dest and p.parent.name in classes for p in placed)
    assert (dest / UNREADABLE_FOLDER / "x.png").read_bytes() == b"broken"
    text = dialog.result_label.text()
    assert f"{summary.sorted} sorted into" in text and f"{summary.unsure} unsure, 1 unreadable" in text
    assert str(dest) in text and "color" not in dialog.result_label.styleSheet()
    n = len(before)
    assert dialog.progress_bar.value() == n and dialog.progress_bar.text() == f"{n} of {n} images"
    assert dialog.undo_button.isEnabled() and dialog.show_button.isEnabled() and dialog.sort_button.isEnabled()

    dialog.undo_button.click()
    wait_done(qtbot, dialog)
    assert dialog.last_undo.restored == len(before) and not dialog.last_undo.problems
    assert f"estored {len(before)} moved files" in dialog.result_label.text()
    assert files_with_bytes(source) == before  # the same paths, the same bytes
    assert not dialog.undo_button.isEnabled()  # done once
    dialog.close()


def test_without_a_model_sort_is_disabled_and_the_dialog_says_why(qtbot, window, tiny_model, tmp_path):
    dialog = open_dialog(window)
    dialog.source_edit.setText(str(tmp_path))
    assert dialog.classifier is None and not dialog.sort_button.isEnabled()
    assert dialog.no_model_label.isVisible() and dialog.no_model_label.text() == NO_MODEL_TEXT
    assert "load" in NO_MODEL_TEXT.lower() and "train" in NO_MODEL_TEXT.lower()

    # A model loaded while the dialog is open is the one that sorts.
    classifier = Classifier.from_file(tiny_model, device="cpu")
    window.classify_tab.use_loaded_model(classifier, str(tiny_model))
    assert dialog.classifier is classifier and dialog.sort_button.isEnabled()
    assert not dialog.no_model_label.isVisible() and "tiny.safetensors" in dialog.model_label.text()
    dialog.close()


def test_a_destination_that_cannot_be_written_is_a_clear_error_and_nothing_moves(qtbot, loaded_window, tiny_data,
                                                                                tmp_path):
    source = tmp_path / "photos"
    shutil.copytree(tiny_data / "circle", source)
    before = files_with_bytes(source)
    (tmp_path / "a-file").write_text("a file where a folder should be")
    dialog = open_dialog(loaded_window)
    choose(dialog, source, tmp_path / "a-file" / "sorted", move=True)

    dialog.sort_button.click()
    wait_done(qtbot, dialog)
    text = dialog.result_label.text()
    assert text.startswith("Could not sort:") and "can't write into" in text and "nothing was copied or moved" in text
    assert "color" in dialog.result_label.styleSheet()
    assert dialog.last_summary is None and not dialog.undo_button.isEnabled() and not dialog.show_button.isEnabled()
    assert files_with_bytes(source) == before
    assert dialog.sort_button.isEnabled()  # fix the destination and try again
    dialog.close()


def test_cancel_stops_the_sort_and_every_file_is_in_the_source_or_the_destination(qtbot, loaded_window, tmp_path):
    source, dest = tmp_path / "photos", tmp_path / "sorted"
    source.mkdir()
    for i in range(200):
        Image.new("RGB", (8, 8), (i, 255 - i, (7 * i) % 256)).save(source / f"p{i:03d}.png")
    before = files_with_bytes(source)
    dialog = open_dialog(loaded_window)
    choose(dialog, source, dest, move=True)

    dialog.sort_button.click()
    with qtbot.waitSignal(dialog.worker.progress, timeout=TIMEOUT_MS):  # the first image is sorted
        pass
    dialog.cancel_button.click()
    assert not dialog.cancel_button.isEnabled()
    wait_done(qtbot, dialog)

    summary = dialog.last_summary
    assert summary.stopped and 0 < summary.done < 200 and not dialog.running
    assert dialog.result_label.text().startswith(f"Stopped after {summary.done} of 200 images")
    left = {p.name: p.read_bytes() for p in source.iterdir()}
    placed = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file() and p.name != LOG_NAME}
    assert len(placed) == summary.done and not left.keys() & placed.keys()  # in one place, not both
    assert {**left, **placed} == {p.name: data for p, data in before.items()}  # none lost, none changed
    assert dialog.undo_button.isEnabled()  # a stopped move can be put back too
    dialog.close()


def test_closing_the_dialog_while_sorting_stops_the_sort(qtbot, loaded_window, tiny_data, tmp_path):
    source = tmp_path / "photos"
    shutil.copytree(tiny_data, source)
    dialog = open_dialog(loaded_window)
    choose(dialog, source, tmp_path / "sorted", move=False)
    dialog.sort_button.click()
    dialog.close()
    assert dialog.worker is None or dialog.worker.stop_requested
    wait_done(qtbot, dialog)
    assert dialog.last_summary is not None and dialog.last_summary.stopped
    assert len(files_with_bytes(source)) == 32  # copying never touches the source


def test_undoing_a_long_log_sends_few_progress_signals(qtbot, tmp_path):
    """Issue 23 item 2: one progress signal per log row once stalled the GUI thread for seconds (and, with
    a leaking Qt binding, aborted the app). 20,000 rows must reach the GUI as a handful of updates."""
    import csv

    from resnet_app.core.use.sorting import LEGACY_COLUMNS
    from resnet_app.ui.sort_dialog import UndoWorker
    from resnet_app.ui.workers import TaskRunner

    log = tmp_path / "dest" / "sort-log.csv"  # a log of an earlier version: still undone
    log.parent.mkdir()
    with open(log, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LEGACY_COLUMNS)
        for n in range(20_000):  # copies: undo counts them and leaves them, so the test is quick
            writer.writerow([str(tmp_path / "src" / f"{n}.png"), str(log.parent / "a" / f"{n}.png"), "a", "0.9",
                             "copied", ""])
    runner = TaskRunner()
    worker = UndoWorker(str(log))
    updates, summaries = [], []
    worker.progress.connect(lambda done, total: updates.append((done, total)))
    worker.undone.connect(summaries.append)
    runner.start(worker)
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT_MS)
    assert summaries and summaries[0].copies_left == 20_000
    assert updates[-1] == (20_000, 20_000)
    assert len(updates) < 200, f"{len(updates)} progress signals for 20,000 rows"
