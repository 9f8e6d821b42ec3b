"""`resnet-app export` as users run it, then `predict` and predict_onnx.py on the .onnx it wrote."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.core.use.classifier import Classifier

pytest.importorskip("onnxruntime", reason='ONNX export tests need the export extra: pip install -e ".[export]"')
pytest.importorskip("onnxscript", reason='ONNX export tests need the export extra: pip install -e ".[export]"')

CLASSES = ["cat", "dog", "fox"]


def run(*args, timeout=300):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def assert_no_traceback(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained model whose file names no dataset: the export checks on generated images."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "pets.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", len(CLASSES)).state_dict(), "resnet18-cifar",
                                    CLASSES, 16, list(IMAGENET_MEAN), list(IMAGENET_STD)))
    return path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i, (width, height) in enumerate([(64, 48), (30, 70), (16, 16), (200, 150), (7, 5)]):
        path = tmp_path / "photos" / f"photo_{i}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def test_export_then_predict_on_the_onnx_gives_the_apps_answers(model, photos, tmp_path):
    out = tmp_path / "exported" / "pets.onnx"
    result = run("-m", "resnet_app", "export", model, "--format", "onnx", "--out", out, "--check-images", "8", "--json")
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])  # --json: human lines go to stderr
    assert summary["path"] == str(out) and summary["check"]["passed"] and summary["check"]["images"] == 8
    assert "checked on 8 images (generated): top-1 identical on 8 of 8" in result.stderr
    assert (out.parent / "pets.onnx.json").is_file() and (out.parent / "predict_onnx.py").is_file()

    from_onnx = run("-m", "resnet_app", "predict", out, *photos, "--json", "--top-k", "3")
    script = run(out.parent / "predict_onnx.py", out, *photos)
    for finished in (from_onnx, script):
        assert finished.returncode == 0, finished.stderr
    app = list(Classifier.from_file(model, device="cpu").predict_paths(photos, top_k=3))  # `predict MODEL`
    for answers in (from_onnx, script):
        got = [json.loads(line) for line in answers.stdout.splitlines()]
        assert [g["path"] for g in got] == [str(p.path) for p in app] == [str(p) for p in photos]
        for g, expected in zip(got, app, strict=True):
            assert g["top_k"][0]["label"] == expected.top_k[0][0], g["path"]
            wanted = dict(expected.top_k)
            for entry in g["top_k"]:
                # predict --json rounds to 6 decimals: 5e-7 on top of the export's own limit of 1e-4.
                assert abs(entry["probability"] - wanted[entry["label"]]) <= 1e-4 + 5e-7


def test_export_refuses_a_damaged_model_file(model, tmp_path, capsys):
    from resnet_app.cli import main  # in this process: the entry point itself was run above

    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    assert main(["export", str(damaged), "--format", "torchscript"]) == 2
    assert capsys.readouterr().err.startswith(f"resnet-app: error: {damaged}: not a valid .safetensors model file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.safetensors"]
    assert main(["export", str(model), "--out", str(tmp_path / "model.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
