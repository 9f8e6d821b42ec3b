"""Features from a run's batch sources (issue 18 item 4): decoded or streamed, one batch at a time, in
every view, with unreadable files left out along with their labels, and cached with their labels."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from resnet_app.core.data.batches import shard_batches
from resnet_app.core.model.features import RECORD, load_or_compute_features
from resnet_app.core.train.events import EventHub
from resnet_app.core.train.run_data import SkippedFiles, make_batch_sources, prepare_run_data
from resnet_app.core.train.settings import TrainConfig

CPU = torch.device("cpu")


class MeanColours(nn.Module):
    """A stand-in for ResNet18's features that sees every pixel: the mean colour of each 4 x 4 block
    (3 x 16 numbers at 16 px), and a count of how often it was called."""

    calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        MeanColours.calls += 1
        return nn.functional.avg_pool2d(images, 4).flatten(1).repeat(1, 11)[:, :512]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """2 classes x 7 noise images of mixed sizes (16 px after resizing), and one file that is no image."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for i in range(7):
            side = int(rng.integers(20, 40))
            Image.fromarray(rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "dogs" / "3-broken.png").write_bytes(b"not a picture at all")
    return root


def sources(photos, mode, **settings):
    config = TrainConfig(image_size=16, val_fraction=0.0, device="cpu", loader_processes=0, data_loading=mode,
                         seed=0, **settings)
    events = EventHub()
    data = prepare_run_data(config, photos, events)
    return make_batch_sources(data, config, CPU, events, SkippedFiles(events), lambda: False), data


def features(source, samples, view, cache, **kwargs):
    return load_or_compute_features(MeanColours(), source, samples, "0" * 64, view, CPU, cache_dir=cache, **kwargs)


def test_decoded_and_streamed_features_agree_and_leave_unreadable_files_out_with_their_labels(photos, tmp_path):
    decoded, data = sources(photos, "decoded")
    streamed, _ = sources(photos, "streaming")
    assert (decoded.kind, streamed.kind) == ("decoded", "streaming")
    samples = data.train_samples
    failures = []
    (from_decoded, decoded_labels), _ = features(decoded.train, samples, "centre", tmp_path / "a")
    (from_files, streamed_labels), cached = features(streamed.train, samples, "centre", tmp_path / "a",
                                                      on_failures=failures.extend)
    readable = [label for path, label in samples if "broken" not in path.name]
    assert len(samples) == 15 and not cached
    assert decoded_labels.tolist() == streamed_labels.tolist() == readable
    assert [path for path, _ in failures] == [str(photos / "dogs" / "3-broken.png")]
    assert torch.allclose(from_decoded, from_files, atol=1e-2)
    # Each kind keeps its own entry: one for each, and each read back with its labels.
    assert len(list((tmp_path / "a").glob("features-v3-*.npy"))) == 2
    (again, labels), cached = features(streamed.train, samples, "centre", tmp_path / "a")
    assert cached and torch.equal(again, from_files) and torch.equal(labels, streamed_labels)


@pytest.mark.parametrize("mode", ["decoded", "streaming"])
def test_every_view_is_the_same_images_in_order_and_the_crops_are_the_same_every_time(photos, tmp_path, mode):
    source = sources(photos, mode)[0].train
    batches = {view: list(source.views(view, 4)) for view in ("centre", "mirrored", "crop")}
    centre, mirrored, crop = (torch.cat([b[0] for b in batches[view]]) for view in ("centre", "mirrored", "crop"))
    labels = {view: torch.cat([b[1] for b in batches[view]]).tolist() for view in batches}
    assert centre.shape == (14, 3, 16, 16) and labels["centre"] == labels["mirrored"] == labels["crop"]
    assert torch.equal(mirrored, centre.flip(3))
    assert not torch.equal(crop, centre)
    assert torch.equal(torch.cat([b[0] for b in source.views("crop", 4)]), crop)  # by position: a cache holds
    with pytest.raises(ValueError, match="unknown view"):
        source.views("sideways", 4)


@pytest.mark.parametrize("mode", ["decoded", "streaming"])
def test_a_ddp_shard_serves_its_own_images_once_not_its_wrapped_epoch(photos, mode):
    source = sources(photos, mode)[0].train
    shard_batches(source, 1, source.count + 5)  # a shorter shard wraps round to the longest one's length
    assert source.size == source.count + 5
    assert sum(len(labels) + len(failures) for _, labels, failures in source.views("centre", 4)) == source.count


def test_a_features_entry_whose_labels_are_not_the_images_is_computed_again(photos, tmp_path):
    decoded, data = sources(photos, "decoded")
    (first, labels), _ = features(decoded.train, data.train_samples, "centre", tmp_path)
    [path] = tmp_path.glob("features-*.npy")
    stored = np.load(path)
    assert stored.dtype == RECORD and stored["label"].tolist() == labels.tolist()
    stored["label"] = 1 - stored["label"]  # the classes swapped
    np.save(path, stored)
    MeanColours.calls = 0
    (again, again_labels), cached = features(decoded.train, data.train_samples, "centre", tmp_path)
    assert not cached and MeanColours.calls > 0
    assert torch.equal(again, first) and torch.equal(again_labels, labels)


def test_a_stop_while_computing_keeps_nothing(photos, tmp_path):
    streamed, data = sources(photos, "streaming")
    asked = itertools.chain([False], itertools.repeat(True))  # stopped as the first batch comes
    got, cached = features(streamed.train, data.train_samples, "centre", tmp_path, should_stop=lambda: next(asked))
    assert got is None and not cached and not list(tmp_path.glob("features-*"))
