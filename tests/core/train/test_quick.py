"""Transfer from pretrained weights, with a stand-in for ImageNet's (tests/standin_weights.py): a
ResNet18 pretrained here on some letters, then taught other letters from 20 images a class.
Quick (last layer only) and full (all layers) transfer must clearly beat training from scratch."""
from __future__ import annotations

import pytest
import torch
from standin_weights import IMAGE_PX, TRANSFER_KINDS, make_standin_weights, write_letters

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import load_model_file
from resnet_app.core.train import run_data
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
    assert quick.extra["start"] == {"from": "pretrained", "weights": standin.name,
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


# --- issue 18 item 4: features from the run's batch sources, within the memory budget ---------------

@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Any ResNet18 in torchvision's layout passes as ImageNet weights (no training needed here)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(build_model("resnet18", 1000, generator=torch.Generator().manual_seed(0)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    # 4 classes x 6 drawn shapes, 16 px, 2 of each held out: 16 training images, 8 validation images.
    return generate_sample_dataset(tmp_path_factory.mktemp("shapes") / "shapes", images_per_class=6, image_size=16)


def small(**settings) -> TrainConfig:
    base = dict(arch="resnet18", image_size=16, device="cpu", loader_processes=0, seed=0, epochs=1, batch_size=8,
                val_fraction=0.25)
    return TrainConfig(**{**base, **settings})


def run_saying(trainer) -> tuple[object, list[str], list]:
    texts, starts = [], []
    trainer.add_callback("message", lambda m: texts.append(m.text))
    trainer.add_callback("run_start", starts.append)
    return trainer.fit(), texts, starts


def test_a_fine_tune_over_the_memory_budget_computes_its_features_without_decoding_the_set(
        shapes, random_weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_APP_CACHE_DIR", str(cache))
    # A machine whose memory budget holds no decoded set: 'auto' streams the images every epoch.
    monkeypatch.setattr(run_data, "memory_budget_bytes", lambda device: 4096)
    monkeypatch.setattr(run_data, "host_budget_bytes", lambda: 4096)
    result, texts, starts = run_saying(make_trainer(small(pretrained=str(random_weights)), shapes, tmp_path / "run"))
    assert result.status == "completed", result.message
    assert starts[0].data_loading == "streaming"
    assert any("budget: decoding them every epoch instead" in t for t in texts), texts
    assert any(t.startswith("16 training features (centre) computed") for t in texts), texts
    assert "trained the last layer first, on features of the pretrained layers; now all layers learn" in texts
    # Nothing was decoded whole (no decoded images in the cache, no line about them), and the validation
    # images' features, which the fine-tune does not use, were not computed.
    assert not any("images decoded" in t or "validation features" in t for t in texts), texts
    assert not list(cache.glob("decoded-*")) and len(list(cache.glob("features-*"))) == 2  # centre, crop


def test_quick_mode_streams_as_configured_gives_the_decoded_features_and_reads_them_back(
        shapes, random_weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_APP_CACHE_DIR", str(cache))
    said = {}
    for run, loading in (("streamed", "streaming"), ("again", "streaming"), ("decoded", "decoded")):
        settings = small(pretrained=str(random_weights), quick=True, flip=True, augment=False,
                         data_loading=loading)
        result, said[run], starts = run_saying(make_trainer(settings, shapes, tmp_path / run))
        assert result.status == "completed", result.message
        assert (starts[0].train_size, starts[0].val_size) == (16, 8)
        if run == "streamed":
            assert not list(cache.glob("decoded-*"))  # streamed: no decoded set made
    assert any(t.startswith("16 training features (centre) computed") for t in said["streamed"])
    assert any(t.startswith("8 validation features (centre) computed") for t in said["streamed"])
    assert any(t.startswith("16 training features (mirrored) from the cache") for t in said["again"])
    assert any(t.startswith("8 validation features (centre) from the cache") for t in said["again"])
    assert any(t.startswith("16 training images decoded") for t in said["decoded"])
    heads = {run: load_model_file(tmp_path / run / "model.safetensors").state_dict["fc.weight"] for run in said}
    assert torch.equal(heads["streamed"], heads["again"])  # the cached features are the ones computed
    assert torch.allclose(heads["streamed"], heads["decoded"], atol=1e-4)
