"""Batch size "auto": the activation-memory probe, the choice, the learning-rate scaling, and the trainer."""
import math
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model import architectures
from resnet_app.core.model.checkpoints import load_checkpoint
from resnet_app.core.train import batch_size as bs
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig

CPU = torch.device("cpu")


def test_probe_counts_exactly_what_autograd_saves_for_one_image():
    # Conv2d saves its input (3 channels) and ReLU its output (8 channels); the weights are shared by the
    # batch and drop out of the per-image figure. float32: 4 bytes.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    assert bs.activation_bytes_per_image(net, 16, CPU, nullcontext) == (3 + 8) * 16 * 16 * 4


def test_probe_grows_with_the_pixels_and_halves_under_bf16():
    model = architectures.build_model("resnet18-cifar", 10)
    at_32 = bs.activation_bytes_per_image(model, 32, CPU, nullcontext)
    at_64 = bs.activation_bytes_per_image(model, 64, CPU, nullcontext)
    assert at_64 / at_32 == pytest.approx(4.0, rel=0.05)
    assert 3 * 2**20 < at_32 < 6 * 2**20  # ~4.5 MiB for the article's network at 32 px in float32
    at_32_bf16 = bs.activation_bytes_per_image(
        model, 32, CPU, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert at_32_bf16 / at_32 == pytest.approx(0.5, rel=0.1)


def test_probe_leaves_the_model_and_the_random_streams_alone():
    model = architectures.build_model("resnet18-cifar", 4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    bs.activation_bytes_per_image(model, 16, CPU, nullcontext)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # batch-norm stats too
    assert torch.equal(rng, torch.get_rng_state())  # exact resume depends on it


@pytest.mark.parametrize("per_image, budget, train_size, device, expected", [
    (2**20, 2**40, 10**6, "cuda", (512, "device")),
    (2**20, 2**40, 10**6, "cpu", (128, "device")),
    (2**20, 100 * 2**20, 10**6, "cuda", (64, "memory")),  # 100 MiB / 1.5 MiB = 66 -> 64
    (2**20, 2**40, 1000, "cuda", (64, "dataset")),  # 1000 / 8 updates = 125 -> 64
    (2**20, 2**40, 20, "cuda", (8, "minimum")),
])
def test_the_choice_is_the_largest_power_of_two_within_every_limit(per_image, budget, train_size, device, expected):
    assert bs.choose_batch_size(per_image, budget, train_size, device) == expected


def test_default_learning_rates_scale_from_the_articles_batch():
    assert bs.scaled_learning_rate(1e-3, 128, "adam") == pytest.approx(1e-3)
    assert bs.scaled_learning_rate(1e-3, 512, "adam") == pytest.approx(2e-3)  # square root for Adam
    assert bs.scaled_learning_rate(0.05, 512, "sgd") == pytest.approx(0.2)  # linear for SGD
    assert bs.scaled_learning_rate(1e-3, 32, "adam") == pytest.approx(5e-4)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=24, image_size=16)


def run_events(config, data, out):
    trainer = Trainer(config, data, out)
    events = {"run_start": [], "message": []}
    for name, found in events.items():
        trainer.add_callback(name, found.append)
    result = trainer.fit()
    return result, events


def test_trainer_chooses_says_and_keeps_an_automatic_batch(shapes, tmp_path):
    # 96 images, a quarter held out: 72 to train on; 8 updates an epoch allow at most 9 -> batch 8.
    config = TrainConfig(epochs=1, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu", seed=1)
    assert config.batch_size == "auto"
    result, events = run_events(config, shapes, tmp_path / "run")
    start = events["run_start"][0]
    assert start.batch_size == 8 and start.batches_per_epoch == 9
    assert start.learning_rate == pytest.approx(1e-3 * math.sqrt(8 / 128))
    said = " ".join(m.text for m in events["message"])
    assert "batch size auto: 8" in said and "learning rate scaled" in said
    state = load_checkpoint(result.checkpoint_path)
    assert state["batch_size"] == 8 and state["base_lr"] == pytest.approx(start.learning_rate)

    # A resumed run keeps both, even on a machine where auto would choose otherwise.
    resumed = Trainer.from_checkpoint(result.checkpoint_path, epochs=2)
    starts = []
    resumed.add_callback("run_start", starts.append)
    resumed.fit()
    assert starts[0].batch_size == 8 and starts[0].learning_rate == pytest.approx(start.learning_rate)


def test_a_learning_rate_the_user_gives_is_not_scaled(shapes, tmp_path):
    config = TrainConfig(epochs=1, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu", lr=3e-4)
    _, events = run_events(config, shapes, tmp_path / "run")
    assert events["run_start"][0].learning_rate == pytest.approx(3e-4)
    assert "learning rate scaled" not in " ".join(m.text for m in events["message"])


def test_a_small_memory_budget_gives_a_smaller_batch(shapes, tmp_path, monkeypatch):
    # As on a small GPU: 16 px activations of the article's network are ~1.1 MiB an image in float32.
    monkeypatch.setattr(bs, "memory_budget_bytes", lambda device: 20 * 2**20)
    monkeypatch.setattr(bs, "MIN_STEPS_PER_EPOCH", 1)
    config = TrainConfig(epochs=1, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu")
    _, events = run_events(config, shapes, tmp_path / "run")
    assert events["run_start"][0].batch_size == 8  # 20 MiB / (1.1 MiB x 1.5) = 12 -> 8
    assert "fits 20.0 MiB, a share of" in " ".join(m.text for m in events["message"])


def test_config_refuses_a_batch_size_that_is_neither_a_count_nor_auto():
    for bad in (0, -4, "big", 2.5):
        with pytest.raises(ValueError, match="batch size"):
            TrainConfig(batch_size=bad)


def test_a_run_moved_to_another_device_chooses_its_batch_again(shapes, tmp_path):
    from resnet_app.core.model.checkpoints import save_checkpoint

    config = TrainConfig(epochs=1, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu", seed=1)
    result, _ = run_events(config, shapes, tmp_path / "run")
    state = load_checkpoint(result.checkpoint_path)
    assert state["device_type"] == "cpu"
    state.update(device_type="cuda", batch_size=512, base_lr=2e-3)  # as if it had started on a GPU
    state.pop("format"), state.pop("format_version")
    save_checkpoint(result.checkpoint_path, state)
    resumed = Trainer.from_checkpoint(result.checkpoint_path, epochs=2)
    starts, said = [], []
    resumed.add_callback("run_start", starts.append)
    resumed.add_callback("message", lambda m: said.append(m.text))
    resumed.fit()
    assert starts[0].batch_size == 8 and starts[0].learning_rate == pytest.approx(1e-3 * math.sqrt(8 / 128))
    assert any("trained on CUDA and goes on on CPU" in text for text in said)
