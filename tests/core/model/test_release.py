"""torchvision's ImageNet release known by its content (issue 19 item 7): the release's name on other bytes
is refused wherever the file lies, other ImageNet-layout weights are used and named for what they are,
and each file is hashed once (its SHA-256 remembered in memory and in the cache folder)."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from resnet_app.core.model import pretrained, release
from resnet_app.core.model.architectures import ModelError, build_model
from resnet_app.core.use.classifier import Classifier


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """torch's hub folder and the app's cache folder of this test alone; nothing remembered from others."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("RESNET_APP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RESNET_APP_FALLBACK_WEIGHTS", raising=False)
    release.forget_in_memory()
    yield
    release.forget_in_memory()


def random_weights(path, seed: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_model("resnet18", 1000, generator=torch.Generator().manual_seed(seed)).state_dict(), path)
    return path


def count_hashing(monkeypatch) -> list[str]:
    hashed: list[str] = []
    real = release.file_sha256

    def counting(path):
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(release, "file_sha256", counting)
    return hashed


def test_the_release_constants_agree_with_torchvision():
    assert release.RELEASE_NAME == "resnet18-f37072fd.pth"
    assert release.RELEASE_SHA256.startswith(pretrained.IMAGENET_WEIGHTS.url.rsplit("-", 1)[1].split(".")[0])
    assert pretrained.imagenet_cache_path().name == release.RELEASE_NAME


def test_random_weights_under_the_release_name_in_the_cache_are_refused():
    """They were taken for ImageNet's own weights ("imagenet" read torch's cache without a check)."""
    cached = random_weights(pretrained.imagenet_cache_path())
    for source in ("imagenet", cached):
        with pytest.raises(ModelError) as refused:
            pretrained.load_pretrained(source)
        message = str(refused.value)
        assert str(cached) in message and "not its content" in message
        assert "Delete it and download the weights again" in message
    with pytest.raises(ModelError, match="not its content"):
        Classifier.imagenet("imagenet", device="cpu")


def test_the_same_weights_under_another_name_are_used_and_named_for_what_they_are(tmp_path):
    mine = random_weights(tmp_path / "mine.pth")
    weights = pretrained.load_pretrained(mine)
    assert weights.official is False and weights.sha256 == release.file_sha256(mine)
    assert weights.describe().startswith("ImageNet-layout weights from mine.pth, not torchvision's release")
    assert weights.start_record("last layer") == {
        "from": "pretrained", "weights": "mine.pth", "weights_sha256": weights.sha256, "official": False,
        "trained": "last layer"}
    classifier = Classifier.imagenet(mine, device="cpu")
    assert "ImageNet-layout weights from mine.pth, not torchvision's release" in classifier.describe()


def test_a_file_whose_hash_is_the_release_is_the_release_under_any_name(tmp_path, monkeypatch):
    """The real file can't be downloaded here: the release's hash is set to a test file's."""
    mine = random_weights(tmp_path / "a copy" / "weights.pth")
    monkeypatch.setattr(release, "RELEASE_SHA256", release.file_sha256(mine))
    weights = pretrained.load_pretrained(mine)
    assert weights.official is True
    assert weights.describe().startswith("torchvision's ImageNet release weights.pth (SHA-256 ")
    assert weights.start_record("all layers")["official"] is True
    # In torch's cache under the release's name: "imagenet" takes it, and the app's download keeps it.
    cached = pretrained.imagenet_cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(mine.read_bytes())
    assert pretrained.load_pretrained("imagenet").official is True
    assert Classifier.imagenet("imagenet", device="cpu").weights.startswith("torchvision's ImageNet release")
    monkeypatch.setattr(pretrained, "_check_reachable", lambda url: pytest.fail("downloaded the release again"))
    assert pretrained.fetch_imagenet_weights_file() == cached


def test_the_apps_download_replaces_other_bytes_under_the_release_name(monkeypatch):
    random_weights(pretrained.imagenet_cache_path())

    def would_download(url):
        raise ModelError("would download")

    monkeypatch.setattr(pretrained, "_check_reachable", would_download)
    with pytest.raises(ModelError, match="would download"):
        pretrained.fetch_imagenet_weights_file()


def test_a_weights_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    hashed = count_hashing(monkeypatch)
    mine = random_weights(tmp_path / "mine.pth")
    first = pretrained.load_pretrained(mine)
    assert pretrained.load_pretrained(mine).sha256 == first.sha256
    assert len(hashed) == 1
    # Remembered in the cache folder too, for the next start of the app.
    record = json.loads((tmp_path / "cache" / release.HASHES_FILE).read_text())
    entry = record["files"][str(mine.resolve())]
    assert entry["sha256"] == first.sha256 and entry["size"] == mine.stat().st_size
    release.forget_in_memory()
    assert pretrained.load_pretrained(mine).sha256 == first.sha256
    assert len(hashed) == 1
    # A changed file (here only its time) is hashed again.
    later = mine.stat().st_mtime_ns + 5_000_000_000
    os.utime(mine, ns=(later, later))
    pretrained.load_pretrained(mine)
    assert len(hashed) == 2
    random_weights(mine, seed=1)  # other weights, the same size
    assert pretrained.load_pretrained(mine).sha256 != first.sha256
    assert len(hashed) == 3


def test_a_damaged_record_of_hashes_is_ignored_and_written_again(tmp_path, monkeypatch):
    mine = random_weights(tmp_path / "mine.pth")
    sha256 = hashlib.sha256(mine.read_bytes()).hexdigest()
    hashed = count_hashing(monkeypatch)
    record = tmp_path / "cache" / release.HASHES_FILE
    record.parent.mkdir(parents=True)
    for damage in ("{not json", '{"format": 1, "files": {"x": 3}}', "[]", "\x00" * 10):
        record.write_text(damage)
        release.forget_in_memory()
        assert pretrained.load_pretrained(mine).sha256 == sha256
    assert len(hashed) == 4
    assert json.loads(record.read_text())["files"][str(mine.resolve())]["sha256"] == sha256
    # The record is believed only for the file's exact size, time and inode.
    release.forget_in_memory()
    data = json.loads(record.read_text())
    data["files"][str(mine.resolve())]["size"] += 1
    record.write_text(json.dumps(data))
    pretrained.load_pretrained(mine)
    assert len(hashed) == 5
