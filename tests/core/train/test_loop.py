"""Trainer: events, checkpoints, exact resume, stop/pause, NaN and out-of-memory handling, on tiny CPU data."""
import math
import queue
import threading

import pytest
import torch

from resnet_app.core.data.batches import EpochSampler
from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.checkpoints import load_checkpoint, load_model_file
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig, lr_factor


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # 4 classes x 6 drawn shapes, 16 px: enough for real training steps in well under a second each.
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=6, image_size=16)


def tiny_config(**overrides):
    values = dict(epochs=1, batch_size=8, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu", seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def record_events(trainer):
    events = []
    for name in ("run_start", "batch_end", "epoch_end", "checkpoint_saved", "message", "run_end"):
        trainer.add_callback(name, lambda payload, name=name: events.append((name, payload)))
    return events


def test_fit_writes_model_checkpoint_metrics_and_run_json(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(epochs=2), tiny_data, tmp_path / "run")
    events = record_events(trainer)
    result = trainer.fit()
    assert result.status == "completed" and result.epochs_completed == 2
    names = [name for name, _ in events if name != "message"]  # dataset warnings come before the start
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert names.count("epoch_end") == 2
    batches = [p for n, p in events if n == "batch_end"]
    assert len(trainer.train_samples) == 16 and len(trainer.val_samples) == 8  # 2 of 6 per class held out
    assert len(batches) == 2 * math.ceil(16 / 8) and all(math.isfinite(b.loss) for b in batches)
    epoch = [p for n, p in events if n == "epoch_end"][-1]
    assert 0.0 <= epoch.val_accuracy <= 1.0 and epoch.images_per_second > 0
    run = tmp_path / "run"
    assert {"model.safetensors", "last.pt", "metrics.csv", "run.json"} <= {p.name for p in run.iterdir()}
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,val_loss,val_accuracy")
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    model = load_model_file(run / "model.safetensors")
    assert model.class_names == ["circle", "square", "star", "triangle"] and model.image_size == 16
    assert model.extra["config"]["epochs"] == 2
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["samples_done"] == 0


def test_a_run_stopped_between_epochs_resumes_exactly(tiny_data, tmp_path):
    straight = Trainer(tiny_config(epochs=2), tiny_data, tmp_path / "straight")  # the default one-cycle rate
    straight.fit()
    first = Trainer(tiny_config(epochs=2), tiny_data, tmp_path / "split")
    first.add_callback("epoch_end", lambda e: first.request_stop())
    assert first.fit().status == "stopped"
    resumed = Trainer.from_checkpoint(tmp_path / "split" / "last.pt")
    assert resumed.fit().epochs_completed == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a), "the resumed run differs from the unbroken one"


def test_a_finished_run_extended_is_exact_with_a_constant_rate(tiny_data, tmp_path):
    # (With one cycle, more epochs stretch the cycle, so an extended run differs by design.)
    straight = Trainer(tiny_config(epochs=2, schedule="none"), tiny_data, tmp_path / "straight")
    straight.fit()
    first = Trainer(tiny_config(epochs=1, schedule="none"), tiny_data, tmp_path / "split")
    first.fit()
    resumed = Trainer.from_checkpoint(tmp_path / "split" / "last.pt", epochs=2)
    result = resumed.fit()
    assert result.epochs_completed == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert [round(h["train_loss"], 6) for h in straight.history] == [round(h["train_loss"], 6) for h in resumed.history]


def test_resume_from_the_middle_of_an_epoch_is_exact(tiny_data, tmp_path):
    straight = Trainer(tiny_config(epochs=2, batch_size=4), tiny_data, tmp_path / "straight")
    straight.fit()
    first = Trainer(tiny_config(epochs=2, batch_size=4), tiny_data, tmp_path / "split")
    first.add_callback("batch_end", lambda e: first.request_stop() if e.step == 6 else None)  # epoch 2, batch 2
    assert first.fit().status == "stopped"
    assert load_checkpoint(tmp_path / "split" / "last.pt")["samples_done"] == 8
    resumed = Trainer.from_checkpoint(tmp_path / "split" / "last.pt")
    assert resumed.fit().status == "completed"
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a), "crops, flips or order differ after the resume"


def test_stop_ends_within_one_batch_and_saves_a_resumable_checkpoint(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(epochs=3), tiny_data, tmp_path / "run")
    events = record_events(trainer)
    trainer.add_callback("batch_end", lambda e: trainer.request_stop())
    result = trainer.fit()
    assert result.status == "stopped"
    assert [n for n, _ in events].count("batch_end") == 1  # the batch in flight finished, no more began
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and state["samples_done"] == 8
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "last.pt", epochs=1)
    resumed_events = record_events(resumed)
    assert resumed.fit().status == "completed"
    # it carried on with the 8 images of the epoch not yet seen: 1 batch, not 2
    assert [n for n, _ in resumed_events].count("batch_end") == 1


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tiny_data, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        trainer = Trainer(tiny_config(seed=seed), tiny_data, tmp_path / name)
        trainer.fit()
        runs[name] = trainer.model.state_dict()
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not torch.equal(runs["a"]["conv1.weight"], runs["c"]["conv1.weight"])


def test_a_pause_holds_between_batches_saves_its_place_and_leaves_the_run_unchanged(tiny_data, tmp_path):
    # 16 training images in batches of 4; a pause requested after the 2nd batch. The paused event comes
    # once training waits, with last.pt already holding that point; nothing trains until another thread
    # (as the app's) resumes it; and the resumed run is exactly the unpaused one.
    straight = Trainer(tiny_config(epochs=2, batch_size=4), tiny_data, tmp_path / "straight")
    straight.fit()
    trainer = Trainer(tiny_config(epochs=2, batch_size=4), tiny_data, tmp_path / "run")
    steps = []
    trainer.add_callback("batch_end", lambda e: steps.append(e.step))
    trainer.add_callback("batch_end", lambda e: trainer.request_pause() if e.step == 2 else None)
    paused = queue.Queue()
    trainer.add_callback("paused", paused.put)
    results = []
    runner = threading.Thread(target=lambda: results.append(trainer.fit()), daemon=True)
    runner.start()
    try:
        event = paused.get(timeout=60)
        state = load_checkpoint(event.checkpoint_path)
        assert (event.epoch, event.batch, event.batches, state["epoch"], state["samples_done"]) == (1, 2, 4, 0, 8)
        # Nothing has trained since the pause: the model is still the one the pause saved, and no batch
        # has ended between the paused event and the resume request below.
        now = trainer.model.state_dict()
        assert all(torch.equal(state["model"][key], now[key]) for key in now), "trained on while paused"
        assert trainer.paused and steps == [1, 2]
    finally:
        trainer.request_resume()
    runner.join(60)
    assert not runner.is_alive() and results[0].status == "completed"
    assert steps == list(range(1, 9))  # every batch of both epochs once, none lost or repeated
    a, b = straight.model.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_stop_while_paused_wakes_up_and_stops(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(), tiny_data, tmp_path / "run")
    trainer.add_callback("batch_end", lambda e: trainer.request_pause())
    paused = threading.Event()
    trainer.add_callback("paused", lambda e: paused.set())
    results = []
    runner = threading.Thread(target=lambda: results.append(trainer.fit()), daemon=True)
    runner.start()
    assert paused.wait(60)
    trainer.request_stop()
    runner.join(30)
    assert not runner.is_alive() and results and results[0].status == "stopped"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["samples_done"] == 8  # the place the pause saved


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(epochs=3), tiny_data, tmp_path / "run")
    events = record_events(trainer)

    def poison_after_first_epoch(event):
        if event.epoch == 1:
            with torch.no_grad():
                trainer.model.linear.weight.fill_(float("nan"))

    trainer.add_callback("epoch_end", poison_after_first_epoch)
    result = trainer.fit()
    assert result.status == "diverged" and result.epochs_completed == 1
    assert "loss became nan" in result.message and "lower learning rate" in result.message
    assert any(n == "message" and p.level == "error" for n, p in events)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("out_of_memory", [
    lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"),
    # how cuBLAS reports a failed workspace allocation
    lambda: RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
], ids=["cuda-allocator", "cublas-workspace"])
def test_out_of_memory_halves_the_batch_size_and_continues(tiny_data, tmp_path, out_of_memory):
    trainer = Trainer(tiny_config(batch_size=16), tiny_data, tmp_path / "run")
    events = record_events(trainer)
    trained = []  # sizes of the training batches the model took

    def gpu_that_holds_four_images(model, inputs):  # the model raises what a full GPU raises
        if model.training:
            if len(inputs[0]) > 4:
                raise out_of_memory()
            trained.append(len(inputs[0]))

    trainer.add_callback("run_start", lambda e: trainer.model.register_forward_pre_hook(gpu_that_holds_four_images))
    result = trainer.fit()
    assert result.status == "completed"
    warnings = [p.text for n, p in events if n == "message" and "ran out of memory" in p.text]
    assert warnings == [
        "the GPU ran out of memory at batch size 16; continuing with batch size 8",
        "the GPU ran out of memory at batch size 8; continuing with batch size 4",
    ]
    assert trained == [4, 4, 4, 4]  # every training image once, none lost or repeated
    assert load_checkpoint(tmp_path / "run" / "last.pt")["batch_size"] == 4


def test_a_file_that_breaks_mid_run_is_reported_not_fatal(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    # Streaming decodes every epoch, so a file can break between the scan and its use.
    trainer = Trainer(tiny_config(data_loading="streaming"), data, tmp_path / "run")
    events = record_events(trainer)
    victim = sorted((data / "circle").iterdir())[0]
    # Break the file after the scan has passed it (as a disk error or a sync client might).
    trainer.add_callback("run_start", lambda e: victim.write_bytes(b"garbage"))
    result = trainer.fit()
    assert result.status == "completed"
    assert any(n == "message" and str(victim) in p.text and p.level == "warning" for n, p in events)


def test_refuses_unusable_data_with_a_clear_message(tmp_path):
    from resnet_app.core.data.scan import DatasetError

    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="class"):
        Trainer(tiny_config(), tmp_path, tmp_path / "run").fit()


def test_config_validation_messages():
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="validation share must be at most 90 %"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="resnet18 architecture only"):
        TrainConfig(arch="resnet18-cifar", pretrained="imagenet")
    assert TrainConfig(optimizer="sgd").learning_rate == 0.05 and TrainConfig().learning_rate == 1e-3


def test_sgd_cosine_and_onecycle_train(tiny_data, tmp_path):
    for schedule in ("cosine", "onecycle"):
        result = Trainer(tiny_config(optimizer="sgd", schedule=schedule, val_fraction=0.0),
                         tiny_data, tmp_path / schedule).fit()
        assert result.status == "completed" and result.best_val_accuracy is None


def test_lr_schedules_shape():
    assert lr_factor("none", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("onecycle", 0.0) == pytest.approx(0.04) and lr_factor("onecycle", 0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0) == pytest.approx(0.0)


def test_epoch_sampler_is_a_seeded_permutation_that_can_start_part_way():
    full = list(EpochSampler(20, seed=1, epoch=0))
    assert sorted(full) == list(range(20))
    assert full == list(EpochSampler(20, seed=1, epoch=0))
    assert full != list(EpochSampler(20, seed=1, epoch=1))
    assert list(EpochSampler(20, seed=1, epoch=0, start=7)) == full[7:]


def test_a_class_whose_images_are_all_unreadable_is_refused_by_name(tmp_path):
    from resnet_app.core.errors import TrainingError

    data = generate_sample_dataset(tmp_path / "data", images_per_class=4, image_size=16)
    for path in (data / "star").iterdir():
        path.write_bytes(b"not an image")
    trainer = Trainer(tiny_config(), data, tmp_path / "run")
    messages = []
    trainer.add_callback("message", lambda m: messages.append(m.text))
    with pytest.raises(TrainingError, match="'star'"):
        trainer.fit()
    assert sum("skipped" in m and "star" in m for m in messages) == 4


def test_second_run_reads_the_decoded_images_from_the_cache(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_APP_CACHE_DIR", str(tmp_path / "cache"))
    texts = []
    for run in ("first", "second"):
        trainer = Trainer(tiny_config(), tiny_data, tmp_path / run)
        trainer.add_callback("message", lambda m: texts.append(m.text))
        trainer.fit()
    assert [t.split(" in ")[0] for t in texts if "training images" in t] == [
        "16 training images decoded", "16 training images from the cache"]


def test_stop_on_the_last_batch_of_an_epoch_validates_that_epoch_when_resumed(tiny_data, tmp_path):
    """A stop in an epoch's last batch keeps the epoch as trained but not validated; the resumed run
    scores it first (it may be the best), then trains the next: no epoch goes unscored."""
    trainer = Trainer(tiny_config(epochs=2), tiny_data, tmp_path / "run")
    trainer.add_callback("batch_end", lambda e: trainer.request_stop() if e.batch == e.batches else None)
    assert trainer.fit().status == "stopped"
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["samples_done"], state["epoch_images"]) == (0, 16, 16)
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing scored yet
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "last.pt")
    result = resumed.fit()
    assert result.status == "completed" and result.epochs_completed == 2
    assert [h["epoch"] for h in result.history] == [1, 2] and result.history[0]["val_accuracy"] is not None
    best = max(result.history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert load_model_file(tmp_path / "run" / "model.safetensors").metrics["epoch"] == best["epoch"]
