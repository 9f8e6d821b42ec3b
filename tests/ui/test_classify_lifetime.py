"""Classify's queued work around closing and model switches (issue 23 items 3 and 4)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from resnet_app.ui.workers import ClassifyWorker, LoadModelWorker


@pytest.fixture
def folders(tmp_path, images) -> tuple[Path, Path]:
    """Two folders of copies of the tiny images: 320 and 160 files."""
    made = []
    for name, copies in (("first", 10), ("second", 5)):
        folder = tmp_path / name
        folder.mkdir()
        for n in range(copies):
            for image in images:
                shutil.copyfile(image, folder / f"{n}-{image.parent.name}-{image.name}")
        made.append(folder)
    return made[0], made[1]


def _record_starts(window) -> list:
    """Every worker the window's runner is asked to start from now on (the real runner still runs it)."""
    started = []
    start = window.runner.start

    def recording_start(worker):
        started.append(worker)
        return start(worker)

    window.runner.start = recording_start
    return started


def _classified_paths(window) -> list[str]:
    return [str(p.path) for p in window.classify_tab.results.predictions()]


def test_closing_drops_queued_images_and_starts_nothing(loaded_window, qtbot, folders):
    window, (first, second) = loaded_window, folders
    tab = window.classify_tab
    tab.handle_paths([first])
    tab.handle_paths([second])  # queued behind the first folder
    assert tab.busy
    started = _record_starts(window)
    window.close()  # busy: the window waits for its threads, without blocking
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.runner.busy
    assert [w for w in started if isinstance(w, ClassifyWorker)] == []
    assert not any(str(second) in path for path in _classified_paths(window))
    assert len(_classified_paths(window)) < 320  # the running job stopped early, too


def test_closing_with_a_model_load_in_flight_classifies_nothing_again(loaded_window, qtbot, folders, tiny_model):
    window, (first, _second) = loaded_window, folders
    tab = window.classify_tab
    tab.handle_paths([first])
    tab.load_model(tiny_model)  # a new model: the rows would be classified again when it has loaded
    tab.load_model(tiny_model)  # and another choice queued behind it
    started = _record_starts(window)
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.runner.busy
    assert [w for w in started if isinstance(w, (ClassifyWorker, LoadModelWorker))] == []


def test_a_model_switch_with_drops_queued_classifies_each_input_once(loaded_window, qtbot, folders, tiny_model):
    window, (first, second) = loaded_window, folders
    tab = window.classify_tab
    tab.handle_paths([first])
    tab.handle_paths([second])  # dropped while the first folder is classified
    assert tab.busy
    tab.load_model(tiny_model)  # model B: every input is classified again with it
    qtbot.waitUntil(lambda: not tab.busy and not window.runner.busy and tab.results.rowCount() == 480,
                    timeout=120_000)
    paths = _classified_paths(window)
    assert len(paths) == len(set(paths)) == 480
    tab.load_model(tiny_model)  # and again, with nothing queued: still once each
    qtbot.waitUntil(lambda: not window.runner.busy and tab.results.rowCount() == 480, timeout=120_000)
    paths = _classified_paths(window)
    assert len(paths) == len(set(paths)) == 480
