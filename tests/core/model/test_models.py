"""Model registry: the article's ResNet18 key for key, torchvision's ResNet18, ImageNet weights."""
import importlib.util
import time
from pathlib import Path

import pytest
import torch

from resnet_app.core.model import pretrained
from resnet_app.core.model.architectures import ModelError, build_model

SEED_FILE = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "seed_resnet18.py"


def _seed_module():
    if not SEED_FILE.is_file():
        pytest.skip(f"the article's reference code is not at {SEED_FILE} (../shared is absent)")
    spec = importlib.util.spec_from_file_location("seed_resnet18", SEED_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar_resnet18_matches_the_article_key_for_key():
    seed = _seed_module().ResNet18(num_classes=10).state_dict()
    ours = build_model("resnet18-cifar", 10).state_dict()
    assert list(ours) == list(seed)
    for key in seed:
        assert ours[key].shape == seed[key].shape, key
        assert ours[key].dtype == seed[key].dtype, key


def test_article_weights_load_and_give_identical_logits():
    torch.manual_seed(0)
    seed_model = _seed_module().ResNet18(num_classes=7)
    # Make the BN statistics non-trivial so the comparison covers them.
    seed_model.train()
    with torch.no_grad():
        seed_model(torch.randn(8, 3, 32, 32))
    ours = build_model("resnet18-cifar", 7)
    ours.load_state_dict(seed_model.state_dict(), strict=True)
    seed_model.eval(), ours.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(seed_model(x), ours(x))


@pytest.mark.parametrize("size", [16, 40, 64, 96])
def test_cifar_resnet18_accepts_other_sizes(size):
    model = build_model("resnet18-cifar", 3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 3)


def test_torchvision_resnet18_layout():
    model = build_model("resnet18", 5)
    keys = model.state_dict().keys()
    assert "fc.weight" in keys and "layer4.1.bn2.running_var" in keys
    assert model.fc.out_features == 5


def test_unknown_architecture_and_bad_class_count():
    with pytest.raises(ModelError, match="unknown architecture 'resnet50'"):
        build_model("resnet50", 10)
    with pytest.raises(ModelError, match="at least 1"):
        build_model("resnet18", 0)


def test_local_imagenet_weights_file(tmp_path):
    # A torchvision-format .pth (a plain state_dict) stands in for the real download.
    reference = build_model("resnet18", 1000)
    path = tmp_path / "resnet18-stand-in.pth"  # torchvision's name would be checked against its hash
    torch.save(reference.state_dict(), path)
    weights = pretrained.load_pretrained(path)
    assert len(weights.class_names) == 1000 and weights.class_names[0] == "tench"
    fine_tune = build_model("resnet18", 3)
    assert pretrained.apply_pretrained(fine_tune, weights, 3) is False  # new head for 3 classes
    assert torch.equal(fine_tune.conv1.weight, reference.conv1.weight)
    full = build_model("resnet18", 1000)
    assert pretrained.apply_pretrained(full, weights, 1000) is True
    assert torch.equal(full.fc.weight, reference.fc.weight)


def test_wrong_weights_file_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_model("resnet18-cifar", 10).state_dict(), path)
    with pytest.raises(ModelError, match="not torchvision ResNet18 weights"):
        pretrained.load_pretrained(path)
    with pytest.raises(ModelError, match="file not found"):
        pretrained.load_pretrained(tmp_path / "missing.pth")


def test_weights_of_another_architecture_name_the_file_and_the_first_difference(tmp_path):
    import torchvision

    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)  # same keys at the top, more blocks
    with pytest.raises(ModelError) as refused:
        pretrained.load_pretrained(path)
    assert str(path) in str(refused.value) and "not torchvision ResNet18 weights" in str(refused.value)


def test_a_file_named_as_torch_hub_names_downloads_must_match_the_hash_in_it(tmp_path):
    # (The release's own name on other bytes: test_release.py.)
    path = tmp_path / "resnet18-0123abcd.pth"  # a hub-style name, other bytes
    torch.save(build_model("resnet18", 1000).state_dict(), path)
    with pytest.raises(ModelError, match="damaged or incomplete.*starts with 0123abcd"):
        pretrained.load_pretrained(path)
    matching = tmp_path / f"resnet18-{pretrained.file_sha256(path)[:8]}.pth"
    path.rename(matching)
    assert pretrained.load_pretrained(matching).sha256.startswith(matching.stem.split("-")[1])


def test_a_truncated_weights_file_is_refused_not_crashed_on(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelError, match="damaged") as refused:
        pretrained.load_pretrained(cut)
    assert str(cut) in str(refused.value)


def test_the_chosen_file_comes_before_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert pretrained.available_imagenet_weights() is None
    cached = pretrained.imagenet_cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    chosen = tmp_path / "mine.pth"
    chosen.write_bytes(b"y")
    assert pretrained.available_imagenet_weights() == cached
    assert pretrained.available_imagenet_weights(chosen) == chosen
    assert pretrained.available_imagenet_weights(tmp_path / "gone.pth") == cached


def test_offline_app_download_fails_fast_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    started = time.monotonic()
    try:
        pretrained.fetch_imagenet_weights_file(report=lambda done, total: None, should_stop=lambda: False)
    except ModelError as exc:
        assert "offline" in str(exc) or "could not download" in str(exc)
    else:
        pytest.skip("this machine can reach the weights server; the offline path can't be tested here")
    assert time.monotonic() - started < pretrained.DOWNLOAD_CONNECT_TIMEOUT_S + 5
    leftovers = list((tmp_path / "hub").rglob("*")) if (tmp_path / "hub").exists() else []
    assert not [p for p in leftovers if p.is_file()]


def test_offline_download_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    # No network here: the real download path must say so within seconds, not hang.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    started = time.monotonic()
    try:
        pretrained.download_imagenet_weights()
    except ModelError as exc:
        message = str(exc)
    else:
        pytest.skip("this machine can reach the weights server; the offline path can't be tested here")
    assert time.monotonic() - started < pretrained.DOWNLOAD_CONNECT_TIMEOUT_S + 5
    assert "offline" in message or "could not download" in message
    assert str(tmp_path / "hub") in message  # tells the user where to put the file
