"""Checkpoints and model files: atomic under SIGKILL, and loading never runs code from the file."""
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from resnet_app.core.files import atomic_write
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import (
    CheckpointError,
    ModelFile,
    copy_model_file,
    describe_model_file,
    load_checkpoint,
    load_model_file,
    save_checkpoint,
    save_model_file,
)
from resnet_app.core.use.classifier import Classifier


def _model_file(num_classes=3):
    return ModelFile(state_dict=build_model("resnet18-cifar", num_classes).state_dict(), arch="resnet18-cifar",
                     class_names=["cat", "dog", "émeu"][:num_classes], image_size=32,
                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], metrics={"val_accuracy": 0.75},
                     extra={"config": {"epochs": 3}})


def test_checkpoint_round_trip(tmp_path):
    model = build_model("resnet18-cifar", 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                 "epoch": 4, "config": {"arch": "resnet18-cifar"},
                                                 "rng": {"torch": torch.get_rng_state()}})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4 and loaded["format_version"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temp file left behind"


def test_model_file_round_trip_keeps_metadata_types(tmp_path):
    original = _model_file()
    save_model_file(tmp_path / "model.safetensors", original)
    loaded = load_model_file(tmp_path / "model.safetensors")
    assert loaded.class_names == ["cat", "dog", "émeu"]
    assert loaded.image_size == 32 and loaded.mean == [0.5, 0.5, 0.5]
    assert loaded.metrics == {"val_accuracy": 0.75} and loaded.extra["config"] == {"epochs": 3}
    for key, value in original.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value)


def _old_model_file(path, root):
    """A model file as versions before issue 24 wrote it: folder paths in its metadata."""
    from safetensors.torch import save_file

    model = _model_file()
    extra = {"dataset": {"root": root, "train_size": 30, "val_size": 8, "unreadable": 0,
                         "train_files": "0123456789abcdef"},
             "config": {"epochs": 3, "val_dir": "/home/ann/secret-clinic/flowers-val",
                        "pretrained": "C:\\Users\\ann\\weights\\resnet18-mine.pth"},
             "start": {"from": "pretrained", "weights": "resnet18-mine.pth", "trained": "all layers"},
             "created": "2026-01-02T03:04:05+0000"}
    metadata = {"format": "resnet-app-model", "format_version": 1, "arch": model.arch,
                "class_names": model.class_names, "image_size": model.image_size, "mean": model.mean,
                "std": model.std, "metrics": model.metrics, **extra}
    save_file(model.state_dict, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})
    return model


@pytest.mark.parametrize("root", ["/home/ann/secret-clinic/flowers", "C:\\Users\\ann\\secret-clinic\\flowers"])
def test_an_old_model_file_with_folder_paths_loads_is_named_by_its_folder_and_copies_without_them(tmp_path, root):
    """Issue 24: old files (the training folder's full path in their metadata) still load, read as
    before; the app names them by the folder's name, and "Save model as" leaves the paths out."""
    old = tmp_path / "model.safetensors"
    original = _old_model_file(old, root)
    loaded = load_model_file(old)
    assert loaded.extra["dataset"]["root"] == root  # read as before
    assert Classifier.from_file(old, device="cpu").class_names == ["cat", "dog", "émeu"]
    assert describe_model_file(old) == "flowers · 3 classes · 75.0% · 2026-01-02"

    copy = copy_model_file(old, tmp_path / "shared" / "flowers model.safetensors")
    raw = copy.read_bytes()
    header = raw[8:8 + int.from_bytes(raw[:8], "little")]  # safetensors: its length, then JSON
    assert b"secret-clinic" not in raw and b"ann" not in header
    shared = load_model_file(copy)
    assert shared.extra["dataset"] == {"name": "flowers", "train_size": 30, "val_size": 8, "unreadable": 0}
    assert shared.extra["config"] == {"epochs": 3, "val_dir": "flowers-val", "pretrained": "resnet18-mine.pth"}
    assert shared.extra["start"] == loaded.extra["start"] and shared.metrics == loaded.metrics
    assert all(torch.equal(shared.state_dict[k], v) for k, v in original.state_dict.items())
    assert describe_model_file(copy) == "flowers model · flowers · 3 classes · 75.0% · 2026-01-02"
    # A file that names no path is copied as it is, byte for byte.
    again = copy_model_file(copy, tmp_path / "again.safetensors")
    assert again.read_bytes() == copy.read_bytes()


def test_foreign_and_broken_model_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not saved by ResNet App"):
        load_model_file(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 this is not a model")
    with pytest.raises(CheckpointError, match="garbage.safetensors: not a valid"):
        load_model_file(garbage)
    with pytest.raises(CheckpointError, match="file not found"):
        load_model_file(tmp_path / "missing.safetensors")


class _Payload:
    """Unpickling this runs a shell command: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "last.pt"
    torch.save({"format": "resnet-app-checkpoint", "model": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        Classifier.from_file(evil, device="cpu")
    assert not marker.exists(), "the payload ran"


def test_the_malicious_payload_is_live(tmp_path):
    # Guards the test above: proves the file would have run code if loaded unsafely.
    marker = tmp_path / "payload-ran"
    data = pickle.dumps(_Payload(marker))
    pickle.loads(data)
    assert marker.exists()


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


SAVER = textwrap.dedent("""
    import sys, torch
    from resnet_app.core.model.checkpoints import save_checkpoint
    path = sys.argv[1]
    state = {"weights": torch.randn(4_000_000)}  # 16 MB: each save takes a while, so kills land mid-write
    i = 0
    while True:
        i += 1
        state["weights"].fill_(float(i))
        save_checkpoint(path, {"step": i, "model": state})
        print(i, flush=True)
""")


@pytest.mark.timeout(120)
def test_sigkill_during_saving_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.05, 0.13, 0.29, 0.41):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # at least one complete save exists
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        loaded = load_checkpoint(path)
        step = loaded["step"]
        weights = loaded["model"]["weights"]
        assert torch.all(weights == float(step)), "checkpoint torn: weights don't match its step"
