"""The Train tab driven through real widgets, training for real on tiny data (16 px, batches of 8)."""
import math
import shutil
from pathlib import Path

import pyqtgraph as pg
import torch
from PySide6.QtCore import QObject, QTimer, Slot
from ui_helpers import drop_on, message_boxes

from resnet_app.core.model.checkpoints import load_checkpoint


def _start(tab, qtbot, tiny_data, epochs):
    tab.apply_settings({"epochs": epochs})
    tab.set_data_folder(str(tiny_data))
    tab.start_button.click()
    assert tab.running


def _wait_points(tab, qtbot, n=1):
    qtbot.waitUntil(lambda: tab.plot.point_count >= n, timeout=60_000)


def _wait_done(tab, qtbot, timeout=60_000):
    qtbot.waitUntil(lambda: not tab.running, timeout=timeout)


def _pause(tab, qtbot) -> dict:
    """Press Pause; wait for the worker's `paused` signal and the tab's "Paused at ..."; return the
    signal's dict (epoch, batch, batches, checkpoint_path, where)."""
    with qtbot.waitSignal(tab.worker.paused, timeout=60_000) as paused:
        tab.pause_button.click()
        assert tab.resume_button.isEnabled() and not tab.pause_button.isEnabled()
    qtbot.waitUntil(lambda: "Paused at epoch" in tab.status_label.text(), timeout=30_000)
    return paused.args[0]


def _batches_before(pause: dict) -> int:
    """Batches a run started from scratch has trained when it pauses at `pause`."""
    return (pause["epoch"] - 1) * pause["batches"] + pause["batch"]


def test_dataset_report_appears_for_a_dropped_folder(window, qtbot, tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "star" / "notes.png").write_text("not really a png")
    tab = window.train_tab
    window.tabs.setCurrentWidget(tab)
    assert drop_on(tab.data_drop, [data])
    qtbot.waitUntil(lambda: tab.report is not None, timeout=30_000)
    text = tab.report_view.toPlainText()
    assert "4 classes, 32 images" in text
    assert "circle" in text and "notes.png" in text  # the skipped file, with its reason
    assert "Warning" in text  # 8 images per class is a tiny class
    assert tab.data_edit.text() == str(data)


def test_start_plots_losses_stop_ends_within_one_batch_and_saves_checkpoint(window, qtbot, tiny_data):
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=50)
    assert not tab.start_button.isEnabled() and tab.stop_button.isEnabled()
    _wait_points(tab, qtbot, 2)
    assert len(tab.plot.raw_curve.getData()[0]) >= 2  # drawn, not only stored
    tab.stop_button.click()
    _wait_done(tab, qtbot)
    result = tab.last_result
    assert result["status"] == "stopped"
    assert result["steps_after_stop"] is not None and result["steps_after_stop"] <= 1
    assert result["checkpoint_path"] and result["checkpoint_path"].endswith("last.pt")
    assert Path(result["checkpoint_path"]).is_file()
    items = [tab.checkpoint_list.item(i).text() for i in range(tab.checkpoint_list.count())]
    assert any("last.pt" in text for text in items)
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()


def test_pause_and_resume(window, qtbot, tiny_data):
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=50)
    _wait_points(tab, qtbot, 1)
    # The batch under way finishes; then the trainer saves its place and says it is paused.
    first = _pause(tab, qtbot)
    log = tab.log_view.toPlainText()
    assert "paused at epoch" in log and first["checkpoint_path"] in log and first["checkpoint_path"].endswith("last.pt")
    saved = load_checkpoint(first["checkpoint_path"])
    assert (saved["epoch"], saved["samples_done"]) == (first["epoch"] - 1, first["batch"] * saved["batch_size"])
    assert tab.plot.point_count == _batches_before(first)  # every batch before the pause is drawn, no later one
    tab.resume_button.click()
    qtbot.waitUntil(lambda: tab.plot.point_count > _batches_before(first), timeout=30_000)  # training goes on

    # Paused again, then stopped while paused: no batch is trained after the pause, and the checkpoint
    # the pause saved is the one the run ends with.
    second = _pause(tab, qtbot)
    assert tab.plot.point_count == _batches_before(second) > _batches_before(first)
    at_pause = load_checkpoint(second["checkpoint_path"])
    tab.stop_button.click()
    _wait_done(tab, qtbot)
    result = tab.last_result
    assert result["status"] == "stopped" and result["steps_after_stop"] == 0
    assert result["checkpoint_path"] == second["checkpoint_path"]
    assert tab.plot.point_count == _batches_before(second)
    at_end = load_checkpoint(result["checkpoint_path"])
    assert (at_end["epoch"], at_end["samples_done"]) == (at_pause["epoch"], at_pause["samples_done"])
    assert all(torch.equal(at_pause["model"][key], value) for key, value in at_end["model"].items())

    # Resume from checkpoint... up to the end of the paused epoch: the run carries on where it stopped,
    # with only that epoch's batches not yet trained, and completes.
    tab.resume_from_checkpoint(result["checkpoint_path"], epochs=second["epoch"])
    qtbot.waitUntil(lambda: "resuming from" in tab.log_view.toPlainText(), timeout=60_000)
    _wait_done(tab, qtbot)
    assert tab.last_result, tab.log_view.toPlainText()
    assert tab.last_result["status"] == "completed" and tab.last_result["epochs_completed"] == second["epoch"]
    assert tab.plot.point_count == second["batches"] - second["batch"]


def test_training_to_the_end_then_use_this_model(window, qtbot, tiny_data):
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=1)
    _wait_done(tab, qtbot, timeout=120_000)
    assert tab.last_result["status"] == "completed"
    assert len(tab.plot.epoch_x) == 1 and len(tab.plot.accuracy) == 1  # per-epoch points and accuracy
    assert "epoch 1/1" in tab.log_view.toPlainText()
    # The first model is loaded for the user straight away; "Use this model" does it on request.
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    window.classify_tab.classifier = None
    window.tabs.setCurrentWidget(tab)
    assert tab.use_model_button.isEnabled()
    tab.use_model_button.click()
    qtbot.waitUntil(lambda: window.classify_tab.classifier is not None, timeout=30_000)
    assert window.tabs.currentWidget() is window.classify_tab
    assert window.classify_tab.classifier.source == tab.model_path


class _Timeline(QObject):
    """Records, in the GUI thread, the order in which timer ticks and batch-loss deliveries arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    @Slot()
    def tick(self) -> None:
        self.events.append("tick")

    @Slot(object)
    def batches(self, _points) -> None:
        self.events.append("batches")

    def gaps_with_ticks(self) -> int:
        """How many gaps between two consecutive batch deliveries held at least one tick."""
        between = " ".join(self.events).split("batches")[1:-1]
        return sum("tick" in gap for gap in between)


def test_the_gui_keeps_processing_events_during_training(window, qtbot, tiny_data):
    # Functional only: the event loop runs while batches are trained (in the worker's thread). How long
    # it may stall is measured, not asserted: benchmarks/gui_latency.py.
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=50)
    _wait_points(tab, qtbot, 1)
    timeline = _Timeline()
    tab.worker.batch_losses.connect(timeline.batches)  # a GUI-thread receiver: delivered by its event loop
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(timeline.tick)
    timer.start()
    # Blocked by training, the loop would run no timer between two deliveries of batch losses.
    qtbot.waitUntil(lambda: timeline.gaps_with_ticks() >= 5, timeout=120_000)
    timer.stop()
    assert tab.running
    tab.stop_button.click()
    _wait_done(tab, qtbot)
    assert tab.last_result["status"] == "stopped"


def test_closing_during_training_asks_then_stops_cleanly(window, qtbot, tiny_data):
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=50)
    _wait_points(tab, qtbot, 1)
    assert not window.close()  # refused for now: the user is asked first
    qtbot.waitUntil(lambda: bool(message_boxes(window, "questionMessage")), timeout=5_000)
    box = message_boxes(window, "questionMessage")[0]
    stop_button = next(b for b in box.buttons() if b.text() == "Stop and quit")
    stop_button.click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not window.runner.busy and not tab.running
    assert tab.last_result["status"] == "stopped" and tab.last_result["checkpoint_path"]


def test_bad_settings_and_unusable_data_end_in_messages(window, qtbot, tmp_path):
    tab = window.train_tab
    tab.start_button.click()  # no data folder yet
    assert message_boxes(tab) and "data folder" in message_boxes(tab)[0].text()
    message_boxes(tab)[0].close()
    one_class = tmp_path / "one"
    (one_class / "cats").mkdir(parents=True)
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(one_class / "cats" / f"{i}.png")
    tab.set_data_folder(str(one_class))
    tab.start_button.click()
    qtbot.waitUntil(lambda: bool(message_boxes(tab)), timeout=60_000)
    assert "class" in message_boxes(tab)[0].text().lower()
    _wait_done(tab, qtbot, timeout=30_000)
    assert tab.last_result is None and not tab.running  # no run (Start waits for a usable folder now)
    assert "Traceback" not in tab.log_view.toPlainText()


def test_an_early_validation_loss_spike_does_not_flatten_the_plot(qtbot):
    from resnet_app.ui.plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.add_batch_losses([(0.1 * i, 1.5 - 0.05 * i) for i in range(10)])
    plot.add_epoch(1, train_loss=1.3, val_loss=45.0, val_accuracy=0.35)  # batch-norm statistics not settled
    low, high = plot.getPlotItem().vb.viewRange()[1]
    assert low == 0 and 1.5 <= high < 2.0
    plot.add_epoch(2, train_loss=1.0, val_loss=2.5, val_accuracy=0.6)  # a loss within 3x stays in view
    assert plot.getPlotItem().vb.viewRange()[1][1] >= 2.5


def test_the_plot_recolours_when_the_system_turns_dark(qtbot):
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from resnet_app.ui.plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    light = QApplication.palette()
    dark = QPalette(light)
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#eeeeee"))
    try:
        QApplication.setPalette(dark)  # what Qt does when the desktop switches to a dark scheme
        qtbot.waitUntil(lambda: plot.backgroundBrush().color() == QColor("#1e1e1e"), timeout=5_000)
        assert plot.getPlotItem().getAxis("left").textPen().color() == QColor("#eeeeee")
        assert plot.smooth_curve.opts["pen"].color() == QColor("#64b5f6")  # the dark scheme's blue
    finally:
        QApplication.setPalette(light)
    qtbot.waitUntil(lambda: plot.backgroundBrush().color() == light.color(QPalette.ColorRole.Base), timeout=5_000)


def test_the_plot_shows_plain_numbers_every_loss_and_a_legend_beside_the_data(qtbot):
    """No 'x0.001' axis scaling; a loss above the axis is marked with its value; log scale shows it."""
    from resnet_app.ui.plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    bar = plot.legend_bar()
    qtbot.addWidget(bar)
    plot.add_batch_losses([(0.01 * i, 0.002 + 0.0001 * i) for i in range(10)])  # tiny x and y values
    for name in ("left", "bottom"):
        axis = plot.getPlotItem().getAxis(name)
        assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
    plot.add_epoch(1, train_loss=0.003, val_loss=5.86, val_accuracy=0.3)  # far above the axis
    top = plot.getPlotItem().vb.viewRange()[1][1]
    assert top < 5.86 and [mark.toPlainText() for mark in plot.clipped_marks] == ["↑ 5.86"]
    plot.log_check.setChecked(True)
    assert plot.clipped_marks == [] and plot.getPlotItem().vb.viewRange()[1][1] >= math.log10(5.86)
    assert "val&nbsp;loss&nbsp;(epoch)" in " ".join(label.text() for label, *_ in plot.legend_labels)
    assert not any(isinstance(child, pg.LegendItem) for child in plot.getPlotItem().childItems())


def test_a_resumed_run_brings_back_its_plot_and_its_model(window, qtbot, tiny_data):
    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=2)
    qtbot.waitUntil(lambda: len(tab.plot.epoch_x) == 1, timeout=60_000)  # epoch 1 scored and saved
    tab.stop()
    _wait_done(tab, qtbot)
    checkpoint = tab.last_result["checkpoint_path"]
    tab.resume_from_checkpoint(checkpoint, epochs=3)
    qtbot.waitUntil(lambda: tab.use_model_button.isEnabled() and len(tab.plot.epoch_x) >= 1, timeout=60_000)
    assert tab.plot.epoch_x[0] == 1.0  # the past epoch, from the checkpoint, before any new one ends
    _wait_done(tab, qtbot)
    assert tab.plot.epoch_x == [1.0, 2.0, 3.0]


def test_settings_are_read_only_while_a_run_goes_and_menu_and_buttons_agree(window, qtbot, tiny_data):
    tab = window.train_tab
    menu = {action.text(): action for action in window.menuBar().actions()[1].menu().actions()}
    assert menu["&Start training"] is tab.start_action
    _start(tab, qtbot, tiny_data, epochs=50)
    assert not tab.settings_form.isEnabled() and not tab.start_box.isEnabled()
    assert not menu["&Start training"].isEnabled() and not tab.start_button.isEnabled()
    tab.pause_button.click()
    qtbot.waitUntil(lambda: "Paused at" in tab.status_label.text(), timeout=60_000)
    assert not tab.pause_action.isEnabled() and tab.resume_action.isEnabled()
    assert menu["S&top"].isEnabled()
    tab.stop_button.click()
    assert not tab.stop_action.isEnabled() and not tab.resume_action.isEnabled()  # stopping
    _wait_done(tab, qtbot)
    assert tab.settings_form.isEnabled() and tab.start_action.isEnabled()


def test_the_run_buttons_stay_in_view_at_800_by_600(window, qtbot):
    window.resize(800, 600)
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.waitUntil(lambda: window.width() <= 800, timeout=5_000)
    frame = window.rect()
    for button in (window.train_tab.start_button, window.train_tab.stop_button, window.train_tab.pause_button):
        top_left = button.mapTo(window, button.rect().topLeft())
        bottom_right = button.mapTo(window, button.rect().bottomRight())
        assert frame.contains(top_left) and frame.contains(bottom_right), button.text()
        assert button.width() >= button.minimumSizeHint().width(), f"{button.text()} is clipped"


def _wheel_up(widget) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_changes_a_setting_only_when_its_box_has_the_focus(window, qtbot):
    window.tabs.setCurrentWidget(window.train_tab)
    form = window.train_tab.settings_form
    epochs = form.editor("epochs")
    before = epochs.value()
    epochs.clearFocus()
    _wheel_up(epochs)  # passing over it while scrolling the panel
    assert epochs.value() == before
    epochs.setFocus()
    qtbot.waitUntil(epochs.hasFocus, timeout=5_000)
    _wheel_up(epochs)  # clicked into, the wheel is the user's choice
    assert epochs.value() == before + 1


def test_the_time_left_is_a_measured_figure_or_not_shown(window):
    tab = window.train_tab
    progress = {"epoch": 1, "epochs": 3, "batch": 1, "batches": 9, "step": 1, "loss": 2.3, "images_per_second": None}
    tab.show_progress({**progress, "eta_s": None})  # after a resume, before two batches are timed
    assert "left" not in tab.status_label.text() and "..." not in tab.status_label.text()
    tab.show_progress({**progress, "batch": 3, "eta_s": 95.0, "images_per_second": 40.0})
    assert "about 1 min 35 s left" in tab.status_label.text()


def test_a_finished_run_trains_more_only_to_a_new_total_the_user_chooses(window, qtbot, tiny_data):
    """Issue 21 item 4: Resume on a finished run trained nothing ("finished after 6 epochs") and wrote
    its model and run.json again."""
    from PySide6.QtWidgets import QInputDialog

    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=1)
    _wait_done(tab, qtbot)
    # Issue 21 item 13: the buttons keep their short names after a run (not the menu's "Start training").
    assert tab.start_button.text() == "Start" and tab.start_action.text() == "&Start training"
    view = tab.runs_view
    view.list.setCurrentRow(0)
    assert view.selected().status == "completed"
    assert view.resume_button.text() == "Train more…" and "finished its 1 epoch:" in view.resume_button.toolTip()
    model_file = view.selected().model
    written = model_file.stat().st_mtime_ns
    view.resume_button.click()
    assert not tab.running  # a question first
    [dialog] = [d for d in window.findChildren(QInputDialog) if d.objectName() == "numberQuestion" and d.isVisible()]
    assert dialog.intValue() == 2 and dialog.intMinimum() == 2  # more than it had
    dialog.reject()
    assert not tab.running and model_file.stat().st_mtime_ns == written  # cancelled: nothing touched
    view.resume_button.click()
    [dialog] = [d for d in window.findChildren(QInputDialog) if d.objectName() == "numberQuestion" and d.isVisible()]
    dialog.setIntValue(3)
    dialog.accept()
    assert tab.running
    _wait_done(tab, qtbot)
    assert tab.last_result["status"] == "completed" and tab.last_result["epochs_completed"] == 3
    assert view.runs[0].epochs_completed == 3 and view.runs[0].epochs == 3


def test_start_waits_for_a_usable_data_set_and_an_old_failure_clears(window, qtbot, tmp_path, tiny_data):
    """Issue 21 item 5: Start was enabled on a one-class folder ("Not usable until the errors above are
    fixed"), and "Training could not run" stayed after a good folder was chosen."""
    from PIL import Image

    tab = window.train_tab
    one_class = tmp_path / "one"
    (one_class / "cats").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(one_class / "cats" / f"{i}.png")
    tab.set_data_folder(str(one_class))
    tab.start_button.click()  # before the check has finished: the run itself refuses the folder
    qtbot.waitUntil(lambda: bool(message_boxes(tab)), timeout=60_000)
    message_boxes(tab)[0].close()
    _wait_done(tab, qtbot, timeout=30_000)
    assert tab.status_label.text() == "Training could not run. See the message."
    qtbot.waitUntil(lambda: tab.report is not None, timeout=30_000)
    assert "Not usable" in tab.report_view.toPlainText()
    assert not tab.start_button.isEnabled() and not tab.start_action.isEnabled()
    assert "can't be used" in tab.start_action.toolTip()
    tab.set_data_folder(str(tiny_data))
    assert tab.status_label.text() == "Not training."
    qtbot.waitUntil(lambda: tab.report is not None, timeout=30_000)
    assert tab.start_button.isEnabled() and tab.start_action.toolTip() == tab.START_TIP


def test_a_run_stopped_in_its_first_epoch_says_where_not_after_0_epochs(window, qtbot, tiny_data):
    """Stopped part-way through epoch 1: the status and the log say where it stopped, once, in a sentence."""
    import re

    tab = window.train_tab
    _start(tab, qtbot, tiny_data, epochs=50)
    qtbot.waitUntil(lambda: bool(tab.plot.batch_x), timeout=60_000)
    tab.stop()
    _wait_done(tab, qtbot)
    status = tab.status_label.text()
    assert re.fullmatch(r"Stopped (in epoch \d+ \(batch \d of 3\)|at the (start|end) of epoch \d+[^;]*); "
                        r"resume continues from there\.( Best validation accuracy so far: .*)?", status), status
    log = tab.log_view.toPlainText()
    assert "after 0 epochs" not in log and log.count(status.split(";")[0]) == 1, log
