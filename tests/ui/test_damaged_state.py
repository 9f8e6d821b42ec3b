"""The app opens whatever its settings file and runs folder hold (issue 23 items 5 and 6)."""
from __future__ import annotations

import json

import pytest
import shiboken6
from PySide6.QtCore import QByteArray, QSettings

from resnet_app.ui.settings import APPLICATION, DEFAULTS, ORGANIZATION, Settings

BAD_VALUES = ["300000000", "99999999999", "-5", "2.5", "garbage", "", ["a", "b"], "1e400", "nan", "None"]


def _raw_settings() -> QSettings:
    return QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _allowed(key: str):
    return DEFAULTS[key][2] if len(DEFAULTS[key]) > 2 else None


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_every_key_reads_a_usable_value_whatever_the_file_holds(bad):
    raw = _raw_settings()
    for key in DEFAULTS:
        raw.setValue(key, bad)
    raw.sync()
    settings = Settings()
    for key in DEFAULTS:
        value = settings.get(key)
        kind, default = DEFAULTS[key][:2]
        allowed = _allowed(key)
        if kind is int:
            assert isinstance(value, int) and allowed[0] <= value <= allowed[1], (key, bad, value)
        elif kind is str:
            assert isinstance(value, str), (key, bad, value)
            if allowed is not None:
                assert value in allowed, (key, bad, value)
        elif kind is list:
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), (key, bad, value)
        elif kind is QByteArray:
            assert isinstance(value, QByteArray)
        elif kind is bool:
            assert isinstance(value, bool), (key, bad, value)
        else:  # a training setting: checked by its row of the settings table
            assert kind.problem(value) is None, (key, bad, value)


def test_out_of_range_numbers_fall_back_to_the_default():
    raw = _raw_settings()
    raw.setValue("classify/top_k", "500")
    raw.setValue("window/tab", "5")  # five tabs: 0-4
    raw.sync()
    settings = Settings()
    assert settings.get("classify/top_k") == DEFAULTS["classify/top_k"][1]
    assert settings.get("window/tab") == DEFAULTS["window/tab"][1]
    raw.setValue("classify/top_k", "7")
    raw.sync()
    assert Settings().get("classify/top_k") == 7  # in range: kept


def _write_run(folder, **fields) -> None:
    folder.mkdir(parents=True)
    run = {"status": "stopped", "root": "/data/flowers", "classes": ["a", "b"], "epochs_completed": 2,
           "epochs": 6, "best_val_accuracy": 0.5, "started": "2026-12-01T10:00:00", **fields}
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")


def test_the_window_opens_with_a_damaged_settings_file_and_damaged_runs(qtbot, tmp_path):
    """The issue's case: classify/top_k=300000000 and a run.json with "epochs_completed": "2.5"."""
    from resnet_app.ui.main_window import MainWindow

    runs = tmp_path / "runs"
    _write_run(runs / "run-a", epochs_completed="2.5")
    _write_run(runs / "run-b", classes=5)
    _write_run(runs / "run-c", best_val_accuracy="high")
    (runs / "run-d").mkdir()
    (runs / "run-d" / "run.json").write_bytes(b'{"status": "comp')  # cut short by a crash
    _write_run(runs / "run-ok")
    raw = _raw_settings()
    raw.setValue("classify/top_k", "300000000")
    raw.setValue("window/tab", "99999999999")
    raw.setValue("train/output_folder", str(runs))
    raw.setValue("train/epochs", "1e400")
    raw.sync()

    window = MainWindow(Settings())
    try:
        window.show()
        assert window.isVisible()
        assert window.classify_tab.top_k_spin.value() == DEFAULTS["classify/top_k"][1]
        assert window.tabs.currentIndex() == 0
        view = window.train_tab.runs_view
        states = {run.folder.name: run.state() for run in view.runs}
        assert set(states) == {"run-a", "run-b", "run-c", "run-d", "run-ok"}
        assert states["run-ok"] == "stopped, epoch 2 of 6"
        for name, field in (("run-a", "epochs_completed"), ("run-b", "classes"), ("run-c", "best_val_accuracy"),
                            ("run-d", "run.json")):
            assert states[name].startswith("damaged (") and field in states[name], states[name]
        texts = [view.list.item(i).text() for i in range(view.list.count())]
        assert sum("damaged" in text for text in texts) == 4
        # Only the sound stopped run is offered to resume.
        assert window.train_tab.runs_view.latest_unfinished() is None  # no last.pt in any of them
    finally:
        if shiboken6.isValid(window):
            window.runner.stop_all()
            qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
            window.close()
            window.deleteLater()
