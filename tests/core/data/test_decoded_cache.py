"""The disk cache of decoded images (and of features, kept in the same folder): shared by every split,
capped with least-recently-used eviction, clean of stale temp files, robust to odd names, damaged
entries and files changed in place, and quick to stop."""

import json
import logging
import os
import random
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from resnet_app.core.data import decoded_cache as dc
from resnet_app.core.data.batch_augment import BatchAugmenter
from resnet_app.core.data.batches import DecodedBatches
from resnet_app.core.data.decode_worker import decode_stored
from resnet_app.core.data.decoded_cache import dataset_bytes, load_or_decode
from resnet_app.core.data.splits import stratified_split
from resnet_app.core.model.features import load_or_compute_features

CACHE_LOGGER = "resnet_app.core.data.decoded_cache"


@pytest.fixture(autouse=True)
def no_limit_set_by_another_test():
    yield
    if hasattr(dc, "set_cache_size_limit"):
        dc.set_cache_size_limit(None)


def _images(folder: Path, count: int, first: int = 0, size: int = 12) -> list[tuple[Path, int]]:
    """`count` small noise PNGs named first..first+count-1, labelled alternately 0 and 1."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    samples = []
    for i in range(first, first + count):
        path = folder / f"image{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        samples.append((path, i % 2))
    return samples


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _decode(samples, cache, image_size=16, processes=1, **kwargs):
    return load_or_decode(samples, image_size, processes=processes, cache_dir=cache, **kwargs)


class MeanColourFeatures(nn.Module):
    """A stand-in for ResNet18's features: 512 numbers per image from its mean colour."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3)).repeat(1, 171)[:, :512]


def _features(decoded, samples, cache):
    """(features, from the cache?) of decoded 16 px images."""
    source = DecodedBatches(decoded, BatchAugmenter(16, (0.5,) * 3, (0.25,) * 3, small=True), torch.device("cpu"))
    features, from_cache = load_or_compute_features(MeanColourFeatures(), source, samples, "0" * 64, "centre",
                                                    torch.device("cpu"), cache_dir=cache)
    return features[0], from_cache


# --- issue 10, defect 2: one copy per folder, capped, evicted, cleaned, cleared ----------------------

def test_every_seed_and_validation_share_reads_one_decoded_copy(tmp_path):
    samples = _images(tmp_path / "data", 40)
    cache = tmp_path / "cache"
    for image_size in (16, 24):
        for seed, share in ((0, 0.2), (1, 0.25), (2, 0.3)):
            for side in stratified_split(samples, share, seed):
                decoded = _decode(side, cache, image_size)
                assert decoded.from_disk_cache == (seed > 0)  # the first split decodes; the others read
                assert len(decoded.labels) == len(side)
    one_copy = dataset_bytes(len(samples), 16) + dataset_bytes(len(samples), 24)
    assert _folder_bytes(cache) < 1.2 * one_copy  # (headers: the files' keys); was 3 copies


def test_an_added_file_is_the_only_one_decoded(tmp_path):
    samples = _images(tmp_path / "data", 20)
    cache = tmp_path / "cache"
    _decode(samples, cache)
    decoded = _decode(samples + _images(tmp_path / "data", 1, first=20), cache)
    assert (decoded.cached, decoded.from_disk_cache, len(decoded.labels)) == (20, False, 21)


def test_least_recently_used_entries_go_when_the_cache_is_over_its_limit(tmp_path, monkeypatch):
    sets = [_images(tmp_path / name, 20, first=100 * i) for i, name in enumerate("abc")]
    cache = tmp_path / "cache"
    _decode(sets[0], cache)
    one_set = _folder_bytes(cache)
    monkeypatch.setenv("RESNET_APP_CACHE_LIMIT", str(int(2.5 * one_set)))
    _decode(sets[1], cache)
    time.sleep(0.05)  # file times can be a few milliseconds coarse: keep the order of use unambiguous
    assert _decode(sets[0], cache).from_disk_cache  # read: "a" is now used more recently than "b"
    time.sleep(0.05)
    _decode(sets[2], cache)  # three sets don't fit: "b", the least recently used, goes
    assert _folder_bytes(cache) <= 2.5 * one_set
    assert _decode(sets[0], cache).from_disk_cache and _decode(sets[2], cache).from_disk_cache
    assert not _decode(sets[1], cache).from_disk_cache


def test_the_limit_is_the_setting_else_the_environment_else_a_share_of_the_disk(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("RESNET_APP_CACHE_LIMIT", raising=False)
    share_of_disk = int(shutil.disk_usage(tmp_path).total * dc.DISK_SHARE)
    assert dc.cache_size_limit_bytes(tmp_path / "not made yet") == share_of_disk
    monkeypatch.setenv("RESNET_APP_CACHE_LIMIT", "1.5G")
    assert dc.cache_size_limit_bytes(tmp_path) == int(1.5 * 2**30)
    dc.set_cache_size_limit(1000)  # the app's setting wins
    assert dc.cache_size_limit_bytes(tmp_path) == 1000
    dc.set_cache_size_limit(None)
    assert dc.cache_size_limit_bytes(tmp_path) == int(1.5 * 2**30)
    monkeypatch.setenv("RESNET_APP_CACHE_LIMIT", "lots")
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert dc.cache_size_limit_bytes(tmp_path) == share_of_disk
    assert "RESNET_APP_CACHE_LIMIT='lots' is not a size" in caplog.text
    sizes = {"123": 123, "1k": 1024, "500MB": 500 * 2**20, "20 GiB": 20 * 2**30, "2t": 2 * 2**40, "-5": None}
    assert {text: dc.parse_size(text) for text in sizes} == sizes


def test_stale_temp_files_of_ours_go_and_nothing_else(tmp_path):
    cache = tmp_path / "cache"
    (cache / "pasted images").mkdir(parents=True)
    stale = [cache / ".decoded-v2-16s-0a1b.chunk.k2j3.tmp", cache / ".features-v2-0a1b.npy.x9y8.tmp",
             cache / f".decoded-{'0' * 32}.npy.ab12.tmp",  # the 27 MB left by a kill -9 in issue 10
             cache / f"decoded-{'0' * 32}.npy", cache / f"decoded-{'0' * 32}.json"]  # the first format's
    writing = cache / ".decoded-v2-16s-0c1d.chunk.m4n5.tmp"  # another process's write in progress
    others = [cache / ".other.tmp", cache / "notes.txt", cache / "pasted images" / "photo.png"]
    hour_ago = time.time() - 3600
    for path in stale + [writing] + others:
        path.write_bytes(b"x" * 100)
        if path != writing:
            os.utime(path, (hour_ago, hour_ago))
    _decode(_images(tmp_path / "data", 2), cache)
    assert [p.name for p in stale if p.exists()] == []
    assert writing.exists() and all(p.exists() for p in others)


def test_cache_size_and_clear_cache_cover_decoded_images_and_features_only(tmp_path):
    samples = _images(tmp_path / "data", 8)
    cache = tmp_path / "cache"
    _, from_cache = _features(_decode(samples, cache), samples, cache)
    assert not from_cache and _features(_decode(samples, cache), samples, cache)[1]
    [features_file] = cache.glob("features-*")
    ours = _folder_bytes(cache)
    pasted = cache / "pasted images" / "photo.png"  # kept in the cache folder, but not a cache
    pasted.parent.mkdir()
    pasted.write_bytes(b"x" * 1000)
    assert dc.cache_size_bytes(cache) == ours > features_file.stat().st_size > 0
    # Eviction counts the features too: the least recently used entry (the decoded chunk) goes first.
    decoded = _decode(samples, cache)
    time.sleep(0.05)  # file times can be a few milliseconds coarse: keep the order of use unambiguous
    _features(decoded, samples, cache)  # the features are read last
    features_size = features_file.stat().st_size
    assert dc.evict_to_limit(cache, limit_bytes=features_size) == ours - features_size
    assert [p.name for p in cache.iterdir() if p.is_file()] == [features_file.name]
    assert dc.clear_cache(cache) == features_size
    assert dc.cache_size_bytes(cache) == 0 and pasted.exists()


# --- defect 3: file names that are not UTF-8 ---------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_decoded_and_cached(tmp_path):
    folder = os.fsencode(tmp_path / "data")
    os.mkdir(folder)
    latin1 = os.path.join(folder, b"caf\xe9.png")  # as unzipped from a Windows archive
    try:
        with open(latin1, "wb") as file:
            Image.new("RGB", (12, 12), "red").save(file, format="PNG")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    samples = [(Path(os.fsdecode(latin1)), 0)] + _images(tmp_path / "data", 1)
    first = _decode(samples, tmp_path / "cache")
    second = _decode(samples, tmp_path / "cache")
    assert first.failures == [] and second.from_disk_cache
    assert torch.equal(first.images, second.images) and first.images[0, 0].min() > 200  # red
    assert dc.cache_key(samples, 16) != dc.cache_key(samples[1:], 16)


# --- defect 7: damaged entries -----------------------------------------------------------------------

def _change_metadata(path: Path, change) -> None:
    """Apply `change` to an entry's metadata: a .json file (the first format), or the JSON header of a
    chunk file (padded to its old length, so that only the header is wrong)."""
    data = path.read_bytes()
    if path.suffix == ".json":
        path.write_text(json.dumps(change(json.loads(data))))
    elif data.startswith(getattr(dc, "MAGIC", b"\0\0")):
        start = len(dc.MAGIC) + 8
        (length,) = struct.unpack_from("<Q", data, len(dc.MAGIC))
        text = json.dumps(change(json.loads(data[start:start + length]))).encode().ljust(length)
        path.write_bytes(data[:start] + text + data[start + length:])


def _without(*names):
    return lambda meta: {key: value for key, value in meta.items() if key not in names}


DAMAGES = {
    "empty": lambda path: path.write_bytes(b""),
    "pixels emptied": lambda path: path.suffix != ".json" and path.write_bytes(b""),  # the 0-byte .npy
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "garbage": lambda path: path.write_bytes(random.Random(0).randbytes(path.stat().st_size)),
    "metadata is a list": lambda path: _change_metadata(path, lambda meta: []),
    "metadata lacks the rows": lambda path: _change_metadata(path, _without("keys", "labels")),
    "wrong shape": lambda path: np.save(path, np.zeros((2, 3))) if path.suffix == ".npy" else None,
}


@pytest.mark.parametrize("damage", ["empty", "pixels emptied", "truncated", "garbage", "metadata is a list",
                                    "metadata lacks the rows"])
def test_a_damaged_decoded_entry_is_deleted_with_one_warning_and_rebuilt(tmp_path, caplog, damage):
    samples = _images(tmp_path / "data", 12)
    cache = tmp_path / "cache"
    first = _decode(samples, cache)
    for path in cache.iterdir():
        DAMAGES[damage](path)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again = _decode(samples, cache)  # was: EOFError, KeyError or TypeError, every run
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert not again.from_disk_cache
    assert len([r for r in caplog.records if "damaged" in r.getMessage()]) == 1
    assert _decode(samples, cache).from_disk_cache  # rebuilt


@pytest.mark.parametrize("damage", ["empty", "pixels emptied", "truncated", "garbage", "wrong shape"])
def test_a_damaged_features_entry_is_deleted_with_one_warning_and_computed_again(tmp_path, caplog, damage):
    samples = _images(tmp_path / "data", 6)
    cache = tmp_path / "cache"
    decoded = _decode(samples, cache)
    first, _ = _features(decoded, samples, cache)
    for path in cache.glob("features-*"):
        DAMAGES[damage](path)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again, from_cache = _features(decoded, samples, cache)
    assert not from_cache and torch.equal(again, first)
    assert len([r for r in caplog.records if "damaged" in r.getMessage()]) == 1
    assert _features(decoded, samples, cache)[1]  # rebuilt


# --- defect 10: stopping the first decode of a large set ---------------------------------------------

@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> list[tuple[Path, int]]:
    """4,096 names of one 160 px noise PNG: hard links are made in a blink, and each is a file of its
    own to the cache. Each decodes in about a millisecond: the set takes seconds, a chunk a fraction."""
    folder = tmp_path_factory.mktemp("many")
    first = folder / "0000.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(first)
    for i in range(1, 4096):
        try:
            os.link(first, folder / f"{i:04d}.png")
        except OSError:  # a file system without hard links
            shutil.copyfile(first, folder / f"{i:04d}.png")
    return [(folder / f"{i:04d}.png", i % 2) for i in range(4096)]


def test_a_stop_while_processes_decode_acts_at_once_and_keeps_the_chunks_done(many_files, tmp_path):
    cache = tmp_path / "cache"
    asked_at: list[float] = []

    def stop_after_the_first_chunk(done: int, total: int) -> None:
        if done >= 256 and not asked_at:
            asked_at.append(time.perf_counter())

    result = load_or_decode(many_files, 16, processes=2, cache_dir=cache, progress=stop_after_the_first_chunk,
                            should_stop=lambda: bool(asked_at))
    latency = time.perf_counter() - asked_at[0]
    assert result is None
    assert latency < 1.0, f"stopping took {latency:.1f} s"  # was the rest of the decode: 2 s here, 15 s in the issue
    # A restarted run reads the chunks done before the stop (progress counts them first) and decodes the rest.
    counts: list[int] = []
    load_or_decode(many_files, 16, processes=2, cache_dir=cache, progress=lambda done, total: counts.append(done),
                   should_stop=lambda: bool(counts))
    assert counts[0] >= 256


def test_a_stop_while_this_process_decodes_acts_within_a_few_images(many_files, tmp_path):
    asked_at: list[float] = []
    timer = threading.Timer(0.3, lambda: asked_at.append(time.perf_counter()))
    timer.start()
    result = load_or_decode(many_files, 16, processes=1, cache_dir=tmp_path / "cache",
                            should_stop=lambda: bool(asked_at))
    latency = time.perf_counter() - asked_at[0]
    assert result is None and latency < 1.0, f"stopping took {latency:.1f} s"


# --- defect 21: a file changed in place with the same size and time ----------------------------------

def test_a_file_rewritten_with_the_same_size_and_time_is_decoded_again(tmp_path):
    samples = _images(tmp_path / "data", 3)
    path = samples[1][0]
    Image.new("RGB", (12, 12), "black").save(path, compress_level=0)  # stored, not compressed: size fixed by shape
    stat = path.stat()
    first = _decode(samples, tmp_path / "cache")
    Image.new("RGB", (12, 12), "white").save(path, compress_level=0)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as a restore or `rsync --times` leaves it
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    again = _decode(samples, tmp_path / "cache")
    assert first.images[1].max() == 0 and again.images[1].min() == 255
    assert torch.equal(again.images[[0, 2]], first.images[[0, 2]])


# --- rows in the samples' order, whichever chunks hold them ------------------------------------------

@pytest.mark.parametrize("processes", [1, 2])
def test_rows_come_out_in_the_samples_order_from_any_mix_of_chunks(tmp_path, monkeypatch, processes):
    monkeypatch.setattr(dc, "CHUNK", 4)  # many chunks (and decode tasks, finishing in any order) from a few files
    samples = _images(tmp_path / "data", 14)
    samples[5][0].write_bytes(b"plain text where pixels should be")
    cache = tmp_path / "cache"
    _decode(samples[::2], cache, processes=processes)  # every other file cached, in chunks of 4
    shuffled = random.Random(1).sample(samples, len(samples))
    decoded = _decode(shuffled, cache, processes=processes)  # some rows from chunks, the others decoded now
    readable = [(path, label) for path, label in shuffled if path != samples[5][0]]
    assert decoded.cached == 7 and decoded.failures == [(str(samples[5][0]), decoded.failures[0][1])]
    assert decoded.labels.tolist() == [label for _, label in readable]
    expected = np.stack([decode_stored(path, 16, True) for path, _ in readable])
    assert np.array_equal(decoded.images.numpy(), expected)
    again = _decode(shuffled, cache)  # the unreadable file's failure is cached too
    assert again.from_disk_cache and again.failures == decoded.failures
    assert torch.equal(again.images, decoded.images)
