"""Issue 24: the files made to be sent elsewhere name no folder of the computer they were made on.

A run trains on a folder under a distinctive path (and validates on another, or starts from a weights
file there); its model file, a "Save model as" copy, the ONNX and TorchScript exports with their .json,
and predict_onnx.py must hold neither that path nor any folder above it, as raw bytes. The data folder's
own name (and the weights file's name) may stay: that is what a reader of the model needs. run.json
keeps the full path: it stays with the run, and Resume needs it.
"""
import json

import pytest
import torch

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import copy_model_file, describe_model_file, load_model_file
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.train.trainers import make_trainer
from resnet_app.core.use.export import export_model

pytestmark = pytest.mark.filterwarnings("ignore:.torch.jit.:FutureWarning")
pytest.importorskip("onnxruntime", reason='ONNX export tests need the export extra: pip install -e ".[export]"')
pytest.importorskip("onnxscript", reason='ONNX export tests need the export extra: pip install -e ".[export]"')

SECRET = "secret-clinic-2026-XYZ"
TINY = dict(epochs=1, batch_size=8, image_size=16, loader_processes=0, device="cpu", seed=0)


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """A folder whose path must never leave the computer: the data, weights and runs live in it."""
    return tmp_path_factory.mktemp(SECRET)


def forbidden(*paths):
    """Each path and every folder above it, down to two levels (/tmp alone could occur in the weights'
    bytes by chance), as bytes; and the distinctive folder name on its own."""
    found = {SECRET.encode()}
    for path in paths:
        for folder in (path, *path.parents):
            if len(folder.parts) >= 3:
                found.add(str(folder).encode())
    return found


def assert_names_no_path(files, *paths):
    assert files
    for file in files:
        content = file.read_bytes()
        leaked = [p.decode() for p in forbidden(*paths) if p in content]
        assert not leaked, f"{file.name} holds {leaked}"


def shared_files(model_path, out_folder):
    """The model file, a "Save model as" copy, and both exports with their .json and script."""
    out_folder.mkdir()
    copy = copy_model_file(model_path, out_folder / "my model.safetensors")
    onnx = export_model(model_path, "onnx", out_folder / "model.onnx", check_images=10)
    script = export_model(model_path, "torchscript", out_folder / "model.pt", check_images=10)
    files = [model_path, copy, onnx.path, onnx.metadata_path, onnx.script_path, script.path, script.metadata_path]
    return files, onnx


def test_a_trained_model_and_its_exports_name_no_folder_path(secret):
    data = generate_sample_dataset(secret / "patients", images_per_class=8, image_size=16)
    val = generate_sample_dataset(secret / "patients-validation", images_per_class=2, image_size=20)
    result = make_trainer(TrainConfig(arch="resnet18-cifar", val_dir=str(val), **TINY), data,
                          secret / "runs" / "run").fit()
    assert result.status == "completed", result.message

    files, onnx = shared_files(result.model_path, secret / "to-send")
    assert_names_no_path(files, data, val, result.model_path.parent)

    # What a reader needs is still there: the folders' names and the counts.
    model = load_model_file(result.model_path)
    assert model.extra["dataset"]["name"] == "patients" and model.extra["dataset"]["train_size"] == 32
    assert model.extra["dataset"]["val_size"] == 8 and "root" not in model.extra["dataset"]
    assert model.extra["config"]["val_dir"] == "patients-validation"
    assert describe_model_file(result.model_path).startswith("patients · 4 classes")
    assert describe_model_file(files[1]).startswith("my model · patients · 4 classes")
    # The export's check still found the training images (through the run's run.json) and names the folder.
    check = json.loads(onnx.metadata_path.read_text())["check"]
    assert check["from_dataset"] > 0 and check["dataset"] == "patients"
    # run.json stays with the run, and keeps the full path that Resume and the Runs list need.
    assert json.loads((result.model_path.parent / "run.json").read_text())["root"] == str(data)


def test_a_quick_last_layer_model_names_its_weights_file_not_its_folder(secret):
    data = generate_sample_dataset(secret / "quick-patients", images_per_class=8, image_size=16)
    weights = secret / "weights" / "resnet18-my-weights.pth"
    weights.parent.mkdir()
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 1000).state_dict(), weights)  # any ResNet18 passes as ImageNet's
    config = TrainConfig(arch="resnet18", pretrained=str(weights), quick=True,
                         **{**TINY, "image_size": 32})
    result = make_trainer(config, data, secret / "runs" / "quick").fit()
    assert result.status == "completed", result.message

    files, _ = shared_files(result.model_path, secret / "quick-to-send")
    assert_names_no_path(files, data, weights, result.model_path.parent)
    model = load_model_file(result.model_path)
    assert model.extra["start"]["weights"] == weights.name and model.extra["start"]["trained"] == "last layer"
    assert model.extra["config"]["pretrained"] == weights.name
    assert model.extra["dataset"]["name"] == "quick-patients"
