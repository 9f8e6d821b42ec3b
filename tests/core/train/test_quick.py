"""Transfer from pretrained weights, with a stand-in for ImageNet's (tests/standin_weights.py): a
ResNet18 pretrained here on some letters, then taught other letters from 20 images a class.
Quick (last layer only) and full (all layers) transfer must clearly beat training from scratch."""
from __future__ import annotations

import pytest
import torch
from standin_weights import IMAGE_PX, TRANSFER_KINDS, make_standin_weights, write_letters

from resnet_app.core.model.checkpoints import load_model_file
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.train.trainers import make_trainer
from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.evaluation import evaluate_folder

FEW = 20  # images a class, as a new user brings (16 train, 4 validate)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return make_standin_weights(tmp_path_factory.mktemp("standin"), per_class=40, epochs=6)


@pytest.fixture(scope="module")
def few_letters(tmp_path_factory):
    root = tmp_path_factory.mktemp("few")
    return (write_letters(root / "train", TRANSFER_KINDS, FEW, seed=2),
            write_letters(root / "test", TRANSFER_KINDS, 40, seed=3))


def config(**settings) -> TrainConfig:
    base = dict(arch="resnet18", image_size=IMAGE_PX, device="cpu", loader_processes=0, seed=0, epochs=5,
                batch_size=16, schedule="onecycle")
    return TrainConfig(**{**base, **settings})


def test_quick_and_full_transfer_beat_scratch_and_quick_keeps_the_pretrained_layers(standin, few_letters, tmp_path):
    """Quick and full transfer beat scratch; quick leaves the pretrained layers as they were."""
    train, test = few_letters
    accuracy, runs = {}, {}
    for name, settings in (("scratch", {}), ("quick", {"pretrained": str(standin), "quick": True}),
                           ("full", {"pretrained": str(standin)})):
        result = make_trainer(config(**settings), train, tmp_path / name).fit()
        assert result.status == "completed", result.message
        runs[name] = result
        accuracy[name] = evaluate_folder(Classifier.from_file(result.model_path, device="cpu"), test).accuracy
    print(accuracy)  # shown with -s; measured: scratch 0.29, quick 0.58, full 0.64
    assert accuracy["quick"] >= accuracy["scratch"] + 0.15, accuracy
    assert accuracy["full"] >= accuracy["scratch"] + 0.15, accuracy

    pretrained = torch.load(standin, weights_only=True)
    quick = load_model_file(runs["quick"].model_path)
    frozen = [key for key in pretrained if not key.startswith("fc.")]
    assert all(torch.equal(quick.state_dict[key], pretrained[key]) for key in frozen), "a frozen layer changed"
    assert quick.extra["start"] == {"from": "pretrained", "weights": standin.name, "official": False,
                                    "weights_sha256": quick.extra["start"]["weights_sha256"], "trained": "last layer"}
    assert load_model_file(runs["full"].model_path).extra["start"]["trained"] == "all layers"
    assert load_model_file(runs["scratch"].model_path).extra["start"] == {"from": "scratch", "trained": "all layers"}


def test_quick_run_reads_its_features_from_the_cache_the_second_time(standin, few_letters, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_APP_CACHE_DIR", str(tmp_path / "cache"))  # not the one other tests filled
    train, _ = few_letters
    said = []
    for run in ("first", "second"):
        trainer = make_trainer(config(pretrained=str(standin), quick=True, augment=False), train,
                               tmp_path / run)
        trainer.add_callback("message", lambda m, run=run: said.append((run, m.text)))
        trainer.fit()
    assert any(run == "first" and "training features (centre) computed" in text for run, text in said)
    assert any(run == "second" and "training features (centre) from the cache" in text for run, text in said)
    first, second = (load_model_file(tmp_path / run / "model.safetensors").state_dict["fc.weight"]
                     for run in ("first", "second"))
    assert torch.equal(first, second)  # the cached features are the ones the first run used


def test_quick_run_stops_between_passes(standin, few_letters, tmp_path):
    train, _ = few_letters
    trainer = make_trainer(config(pretrained=str(standin), quick=True), train, tmp_path / "run")
    trainer.add_callback("epoch_end", lambda e: trainer.request_stop() if e.epoch == 3 else None)
    result = trainer.fit()
    assert result.status == "stopped" and result.epochs_completed == 3
    assert result.model_path is not None  # the best of the passes done is kept
