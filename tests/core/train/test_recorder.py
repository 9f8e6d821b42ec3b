"""How runs end (recorder.py): the same record for the full loop and the quick one, saying what really ran
and, for a stopped run, where it stopped; real tiny training on the CPU."""
from __future__ import annotations

import json

import pytest
import torch

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.train.run_files import read_run
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.train.trainers import make_trainer

STOPPED_AT_8_OF_12 = "Stopped in epoch 1 (batch 8 of 12); resume continues from there."


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    # 4 classes x 32 images, a quarter held out: 96 training images, 12 batches of 8.
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=32, image_size=16)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Any ResNet18 in torchvision's layout passes as ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(build_model("resnet18", 1000, generator=torch.Generator().manual_seed(0)).state_dict(), path)
    return path


def config(**overrides) -> TrainConfig:
    values = dict(arch="resnet18-cifar", epochs=6, batch_size=8, image_size=16, val_fraction=0.25,
                  loader_processes=0, device="cpu", seed=0)
    return TrainConfig(**{**values, **overrides})


def test_a_run_stopped_in_an_epoch_says_where_everywhere(shapes, tmp_path):
    """The issue's case: stopped at batch 8 of 12 in epoch 1 of 6."""
    trainer = make_trainer(config(), shapes, tmp_path / "run")
    ends = []
    trainer.add_callback("batch_end", lambda b: trainer.request_stop() if b.batch == 8 else None)
    trainer.add_callback("run_end", ends.append)
    result = trainer.fit()
    assert result.status == "stopped" and result.epochs_completed == 0
    assert ends[0].summary() == STOPPED_AT_8_OF_12
    assert (ends[0].stopped_epoch, ends[0].stopped_batch, ends[0].stopped_batches) == (1, 8, 12)
    assert result.message == STOPPED_AT_8_OF_12
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["stopped_in"] == {"epoch": 1, "batch": 8, "batches": 12}
    assert run["unit"] == "epoch" and run["epochs"] == 6 and run["epochs_completed"] == 0
    summary = read_run(tmp_path / "run")
    assert summary.unfinished and summary.stop_words() == STOPPED_AT_8_OF_12


def test_the_quick_run_records_its_passes_not_the_epoch_setting(shapes, weights, tmp_path):
    quick = config(arch="resnet18", image_size=32, pretrained=str(weights), quick=True, epochs=6)
    result = make_trainer(quick, shapes, tmp_path / "quick").fit()
    assert result.status == "completed", result.message
    run = json.loads((tmp_path / "quick" / "run.json").read_text())
    passes = len(run["history"])
    assert passes > 6 and run["unit"] == "pass"
    assert run["passes"] == passes and run["passes_completed"] == passes
    assert "epochs" not in run and "epochs_completed" not in run  # the epoch setting did not run
    assert "epochs" not in run["config"] and "batch_size" not in run["config"]
    assert run["not_used"]["epochs"] == 6 and run["not_used"]["batch_size"] == 8
    assert run["trained"] == "last layer"
    summary = read_run(tmp_path / "quick")
    assert summary.state() == f"completed, pass {passes} of {passes}"


def test_a_stopped_quick_run_says_how_many_passes_it_made(shapes, weights, tmp_path):
    quick = config(arch="resnet18", image_size=32, pretrained=str(weights), quick=True)
    trainer = make_trainer(quick, shapes, tmp_path / "quick")
    ends = []
    trainer.add_callback("epoch_end", lambda e: trainer.request_stop() if e.epoch == 1 else None)
    trainer.add_callback("run_end", ends.append)
    result = trainer.fit()
    assert result.status == "stopped" and result.epochs_completed == 1
    total = ends[0].total
    words = (f"Stopped after 1 of {total} passes over the features; resuming trains the last layer again "
             "(it takes seconds).")
    assert ends[0].summary().startswith(words) and result.message == words
    run = json.loads((tmp_path / "quick" / "run.json").read_text())
    assert run["passes_completed"] == 1 and run["stopped_in"]["pass"] == 2 and run["stopped_in"]["batch"] == 0
    assert read_run(tmp_path / "quick").stop_words() == words


def test_checkpoints_saved_with_the_old_name_of_quick_mode_still_resume_as_quick(shapes, weights, tmp_path):
    """Before quick mode had one name its setting was saved as "freeze_backbone": such files still load."""
    from resnet_app.core.model.checkpoints import load_checkpoint, save_checkpoint
    from resnet_app.core.train.quick import QuickTrainer
    from resnet_app.core.train.trainers import resume_trainer

    assert TrainConfig.from_dict({"arch": "resnet18", "pretrained": str(weights), "freeze_backbone": True}).quick
    quick = config(arch="resnet18", image_size=32, pretrained=str(weights), quick=True)
    result = make_trainer(quick, shapes, tmp_path / "quick").fit()
    state = load_checkpoint(result.checkpoint_path)
    state["config"]["freeze_backbone"] = state["config"].pop("quick")  # as an older version saved it
    save_checkpoint(result.checkpoint_path, state)
    resumed = resume_trainer(result.checkpoint_path)
    assert isinstance(resumed, QuickTrainer) and resumed.config.quick
    assert resumed.fit().status == "completed"
