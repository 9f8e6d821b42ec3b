"""The app's worker for several processes (ui/distributed_worker.py): 2 CPU processes, offscreen.

It gives the Train tab the signals a one-process run gives, from the first process's event stream,
while the GUI thread goes on serving its event loop; and the Device box's "All N GPUs" maps to a
device and a process count.
"""
from __future__ import annotations

from PySide6.QtCore import QTimer

from resnet_app.core.train.settings import TrainConfig
from resnet_app.ui.distributed_worker import (
    ALL_GPUS,
    DistributedTrainWorker,
    distributed_device_choices,
    split_device_choice,
    train_worker_for,
)
from resnet_app.ui.workers import TaskRunner, TrainWorker


def test_the_device_box_offers_all_gpus_only_when_there_are_several():
    assert distributed_device_choices(gpus=1) == [] and distributed_device_choices(gpus=0) == []
    assert distributed_device_choices(gpus=4) == [(ALL_GPUS, "All 4 GPUs")]
    assert split_device_choice(ALL_GPUS) == ("cuda", "auto") and split_device_choice("cpu") == ("cpu", None)
    assert type(train_worker_for(None, config=TrainConfig())) is TrainWorker
    assert isinstance(train_worker_for("auto", config=TrainConfig()), DistributedTrainWorker)


def test_two_processes_feed_the_train_tabs_signals_without_blocking_it(qtbot, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_APP_DDP_TIMEOUT_S", "60")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = TrainConfig(epochs=1, batch_size=8, image_size=16, val_fraction=0.25, loader_processes=0,
                         device="cpu", seed=2)
    worker = DistributedTrainWorker(nproc=2, config=config, data_dir=str(tiny_data), out_dir=str(tmp_path / "run"))
    seen: dict[str, list] = {"started": [], "losses": [], "epochs": [], "messages": [], "failed": []}
    worker.run_started.connect(seen["started"].append)
    worker.batch_losses.connect(seen["losses"].extend)
    worker.epoch_ended.connect(seen["epochs"].append)
    worker.message.connect(lambda text, level: seen["messages"].append(text))
    worker.failed.connect(seen["failed"].append)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(50)
    runner = TaskRunner()
    with qtbot.waitSignal(worker.run_ended, timeout=240_000) as ended:
        runner.start(worker)
    qtbot.waitUntil(lambda: not runner.busy, timeout=30_000)
    timer.stop()
    assert not seen["failed"], seen["failed"]
    assert ended.args[0]["status"] == "completed"
    assert seen["started"][0]["device"].startswith("2 × CPU") and seen["started"][0]["batch_size"] == 8
    assert len(seen["losses"]) == 3 and len(seen["epochs"]) == 1  # 24 training images, a global batch of 8
    assert any("distributed training: 2 processes" in text for text in seen["messages"])
    # The GUI thread's event loop ran all along: the launcher waits in the worker's thread.
    assert len(ticks) >= 20
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_refused_plan_is_the_runs_failure(qtbot, tiny_data, tmp_path):
    worker = DistributedTrainWorker(nproc=2, config=TrainConfig(device="mps"), data_dir=str(tiny_data),
                                    out_dir=str(tmp_path / "run"))
    runner = TaskRunner()
    with qtbot.waitSignal(worker.failed, timeout=30_000) as failed:
        runner.start(worker)
    qtbot.waitUntil(lambda: not runner.busy, timeout=30_000)
    assert "Apple's GPU" in failed.args[0]
