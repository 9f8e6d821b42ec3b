"""Export to ONNX and TorchScript (core/use/export.py), and prediction from the .onnx (core/use/onnx_model.py).

Two trained models, one per architecture: resnet18-cifar at 16 px (images squashed to a square), with a
temperature written into its model file, and resnet18 at 74 px (shorter side resized to 85, centre crop
from an 11 px margin: torchvision's half-to-even offset is 6, a floor would give 5). The exported files
must answer as the app does on real files, through predict_onnx.py run as a user would, and through
`Classifier.from_file("x.onnx")`.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from image_corpus import make_image_corpus
from PIL import Image

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.checkpoints import CheckpointError, load_model_file, save_model_file
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.use import export as export_module
from resnet_app.core.use.classifier import Classifier, OnnxClassifier
from resnet_app.core.use.export import (
    TOLERANCE,
    ExportCheckFailed,
    ExportError,
    export_model,
    read_torchscript_metadata,
)

pytestmark = pytest.mark.filterwarnings("ignore:.torch.jit.:FutureWarning")  # deprecated, and known
pytest.importorskip("onnxruntime", reason='ONNX export tests need the export extra: pip install -e ".[export]"')
pytest.importorskip("onnxscript", reason='ONNX export tests need the export extra: pip install -e ".[export]"')

TEMPERATURE = 2.5
ARCHS = {"resnet18-cifar": 16, "resnet18": 74}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=4, image_size=48)


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    """arch -> a model file trained one epoch on `data`; the cifar one with a temperature added."""
    paths = {}
    for arch, size in ARCHS.items():
        config = TrainConfig(arch=arch, epochs=1, batch_size=8, image_size=size, val_fraction=0.25,
                             loader_processes=0, device="cpu", seed=1)
        result = Trainer(config, data, tmp_path_factory.mktemp(arch) / "run").fit()
        assert result.model_path is not None, result.message
        paths[arch] = result.model_path
    with_temperature = load_model_file(paths["resnet18-cifar"])
    with_temperature.extra["calibration"] = {"temperature": TEMPERATURE, "unsure_below": 0.3}
    save_model_file(paths["resnet18-cifar"], with_temperature)
    return paths


@pytest.fixture(scope="module")
def onnx_exports(models):
    return {arch: export_model(path, "onnx", check_images=16) for arch, path in models.items()}


@pytest.fixture(scope="module")
def new_images(tmp_path_factory, data):
    """Files the check never saw: every readable file of the bad-image corpus (modes, EXIF, transparency,
    odd formats), photos of awkward shapes big enough for JPEG draft decoding, and dataset images."""
    folder = tmp_path_factory.mktemp("new")
    corpus = make_image_corpus(folder / "corpus")
    paths = [folder / "corpus" / name for name, ok in sorted(corpus.items()) if ok]
    rng = np.random.default_rng(7)
    for width, height in ((500, 375), (333, 517), (90, 91), (3, 2), (400, 60)):
        for suffix in ("jpg", "png"):
            path = folder / f"{width}x{height}.{suffix}"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=85)
            paths.append(path)
    return paths + sorted(data.rglob("*.png"))[::6]


def _by_path(predictions):
    return {str(p.path): p for p in predictions}


def test_onnx_metadata_round_trips_through_the_file_and_the_json(onnx_exports, models):
    import onnx

    for arch, result in onnx_exports.items():
        model_file = load_model_file(models[arch])
        stored = json.loads(result.metadata_path.read_text())
        graph = onnx.load(str(result.path), load_external_data=False)
        props = {p.key: json.loads(p.value) for p in graph.metadata_props}
        assert {k: v for k, v in stored.items() if k in props} == props
        assert props["class_names"] == model_file.class_names and props["image_size"] == ARCHS[arch]
        assert props["mean"] == model_file.mean and props["std"] == model_file.std
        assert props["arch"] == arch and props["app_version"] and props["opset"] == 18
        assert props["preprocessing"]["rule"] == ("squash" if arch == "resnet18-cifar" else "shorter_side")
        assert stored["check"]["passed"] and stored["check"]["pixels_identical"]
        assert stored["check"]["top1_identical"] == stored["check"]["images"] == 16
        assert stored["check"]["from_dataset"] > 0  # the model's own dataset was found and used
        assert stored["check"]["max_abs_difference"] <= TOLERANCE
        assert stored["file"] == result.path.name and stored["size_bytes"] == result.path.stat().st_size
    assert onnx_exports["resnet18-cifar"].metadata["temperature"] == TEMPERATURE
    assert onnx_exports["resnet18-cifar"].metadata["unsure_below"] == 0.3
    assert onnx_exports["resnet18"].metadata["temperature"] == 1.0


@pytest.mark.parametrize("arch", ARCHS)
def test_predict_onnx_script_and_predict_on_the_onnx_answer_as_the_app(onnx_exports, models, new_images, arch):
    result = onnx_exports[arch]
    app_classifier = Classifier.from_file(models[arch], device="cpu")
    app = _by_path(app_classifier.predict_paths(new_images, top_k=4))
    assert all(p.ok for p in app.values())

    run = subprocess.run([sys.executable, str(result.script_path), str(result.path), *map(str, new_images)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in new_images]
    onnx_classifier = Classifier.from_file(result.path, device="cpu")
    assert isinstance(onnx_classifier, OnnxClassifier) and onnx_classifier.class_names == app_classifier.class_names
    assert "ONNX Runtime" in onnx_classifier.describe()
    through_predict = _by_path(onnx_classifier.predict_paths(new_images, top_k=4))
    for line in lines:
        expected = dict(app[line["path"]].top_k)
        assert "error" not in line, line
        assert line["top_k"][0]["label"] == app[line["path"]].top_k[0][0], line["path"]
        assert line["unsure"] == app[line["path"]].unsure
        assert through_predict[line["path"]].top_k[0][0] == app[line["path"]].top_k[0][0], line["path"]
        for entry in line["top_k"]:
            assert abs(entry["probability"] - expected[entry["label"]]) <= TOLERANCE
        for label, probability in through_predict[line["path"]].top_k:
            assert abs(probability - expected[label]) <= TOLERANCE
        assert through_predict[line["path"]].unsure == app[line["path"]].unsure


def test_the_temperature_is_folded_into_the_graph(onnx_exports, models, new_images):
    classifier = Classifier.from_file(models["resnet18-cifar"], device="cpu")
    onnx_classifier = Classifier.from_file(onnx_exports["resnet18-cifar"].path, device="cpu")
    images = [Image.open(p).convert("RGB") for p in new_images[-4:]]
    inputs = torch.stack([classifier.transform(image) for image in images])
    with torch.no_grad():
        logits = classifier.model(inputs)
    got = onnx_classifier.probabilities(torch.stack([onnx_classifier.transform(image) for image in images]))
    assert torch.allclose(got, torch.softmax(logits / TEMPERATURE, dim=1), atol=TOLERANCE)
    assert not torch.allclose(got, torch.softmax(logits, dim=1), atol=1e-3)


def test_export_never_replaces_a_predict_onnx_py_already_there(models, tmp_path):
    """The user's own predict_onnx.py (edited, say) stays as it is; the export's script goes under the
    next free name, and the result says so. Exporting again reuses that identical script."""
    mine = tmp_path / "predict_onnx.py"
    mine.write_text("# my edited script\n")
    result = export_model(models["resnet18-cifar"], "onnx", tmp_path / "model.onnx", check_images=4)
    assert mine.read_text() == "# my edited script\n"
    assert result.script_path == tmp_path / "predict_onnx-2.py"
    assert result.script_path.read_text(encoding="utf-8") == export_module.PREDICT_SCRIPT
    assert any("predict_onnx-2.py" in line and "left as it is" in line for line in result.summary_lines())
    again = export_model(models["resnet18-cifar"], "onnx", tmp_path / "other.onnx", check_images=4)
    assert again.script_path == result.script_path and not (tmp_path / "predict_onnx-3.py").exists()


@pytest.mark.parametrize("arch", ARCHS)
def test_torchscript_export_runs_on_uint8_pixels_with_its_metadata(models, tmp_path, arch):
    out = tmp_path / "model.torchscript.pt"
    result = export_model(models[arch], "torchscript", out, check_images=8)
    assert result.check.passed and result.script_path is None
    metadata = read_torchscript_metadata(out)
    assert metadata == {k: v for k, v in json.loads(result.metadata_path.read_text()).items()
                        if k not in ("file", "sha256", "size_bytes", "check")}
    assert metadata["class_names"] == load_model_file(models[arch]).class_names
    module = torch.jit.load(str(out))
    size = ARCHS[arch]
    probabilities = module(torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8))
    assert probabilities.shape == (3, len(metadata["class_names"]))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(3))


def test_a_damaged_model_file_is_refused_with_its_name(models, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(models["resnet18-cifar"].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        export_model(broken, "torchscript")
    hot = load_model_file(models["resnet18-cifar"])
    hot.extra["calibration"] = {"temperature": "hot"}
    save_model_file(tmp_path / "hot.safetensors", hot)
    with pytest.raises(CheckpointError, match="temperature"):
        export_model(tmp_path / "hot.safetensors", "torchscript")
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.json"))


def test_an_export_that_does_not_answer_as_the_app_is_not_kept(models, tmp_path, monkeypatch):
    # A script that crops half a pixel off (floor instead of torchvision's half-to-even rounding):
    # the pixels differ, on the 74 px model, whose crop margin is 11 px.
    floor = export_module.PREDICT_SCRIPT.replace("int(round((side - image_size) / 2.0))", "(side - image_size) // 2")
    assert floor != export_module.PREDICT_SCRIPT
    monkeypatch.setattr(export_module, "PREDICT_SCRIPT", floor)
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier export")
    with pytest.raises(ExportCheckFailed, match="DIFFER"):
        export_model(models["resnet18"], "torchscript", out, check_images=4)
    assert out.read_bytes() == b"an earlier export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    monkeypatch.undo()

    # Probabilities further than the limit from the app's.
    exported = export_module._exported_probabilities
    monkeypatch.setattr(export_module, "_exported_probabilities",
                        lambda *args: exported(*args) + torch.tensor([3 * TOLERANCE, 0, 0, 0]))
    with pytest.raises(ExportCheckFailed, match="largest probability difference 3.0e-04"):
        export_model(models["resnet18-cifar"], "torchscript", tmp_path / "other.pt", check_images=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_missing_packages_and_foreign_files_get_clear_messages(models, tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    monkeypatch.setattr(export_module, "missing_packages", lambda fmt: ["onnxscript"])
    with pytest.raises(ExportError, match=r'needs onnxscript.*pip install "resnet-app\[export\]"'):
        export_model(models["resnet18"], "onnx", tmp_path / "m.onnx")
    monkeypatch.undo()
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_model(models["resnet18"], "onnx", tmp_path / "m.bin")

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="without ResNet App metadata"):
        Classifier.from_file(tmp_path / "foreign.onnx", device="cpu")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.onnx: not a readable ONNX model"):
        Classifier.from_file(tmp_path / "junk.onnx", device="cpu")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(CheckpointError, match=r'needs onnxruntime.*pip install "resnet-app\[export\]"'):
        Classifier.from_file(tmp_path / "foreign.onnx", device="cpu")
