"""The command line as users run it: subprocesses, exit codes, --json output, no tracebacks."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from image_corpus import make_image_corpus

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file


def run_cli(*args, cwd=None, timeout=600):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "resnet_app", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def assert_no_traceback(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 2).state_dict(), "resnet18-cifar",
                                    ["cat", "dog"], 32, [0.5] * 3, [0.25] * 3))
    return path


def test_predict_json_lines_and_exit_1_when_some_files_fail(untrained_model, tmp_path):
    expected = make_image_corpus(tmp_path / "corpus")
    result = run_cli("predict", untrained_model, tmp_path / "corpus", "--json", "--top-k", "2",
                     "--csv", tmp_path / "out.csv")
    assert_no_traceback(result)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {os.path.basename(line["path"]) for line in lines} == {n for n in expected if not n.startswith(".")}
    for line in lines:
        if expected[os.path.basename(line["path"])]:
            assert line["error"] is None and len(line["top_k"]) == 2
            assert {"label", "probability"} == set(line["top_k"][0])
        else:
            assert line["error"] and line["top_k"] == []
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert len(rows) == len(lines) and {"path", "error", "label_1", "probability_1"} <= set(rows[0])


def test_predict_exit_0_when_all_files_classify(untrained_model, tmp_path):
    from PIL import Image

    Image.new("RGB", (10, 10), "red").save(tmp_path / "red.png")
    result = run_cli("predict", untrained_model, tmp_path / "red.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(tmp_path / "red.png") + ": ") and "%" in result.stdout


@pytest.mark.parametrize("content", [b"", b"definitely not a model", None])
def test_predict_exit_2_for_a_model_that_cannot_load(tmp_path, content):
    model = tmp_path / "model.safetensors"
    if content is not None:
        model.write_bytes(content)
    result = run_cli("predict", model, tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 2 and "resnet-app: error:" in result.stderr and str(model) in result.stderr


def test_usage_errors_exit_2(tmp_path):
    result = run_cli("predict")
    assert result.returncode == 2 and "usage:" in result.stderr
    result = run_cli("train", tmp_path / "missing", "--out", tmp_path / "run")
    assert_no_traceback(result)
    assert result.returncode == 2 and "missing" in result.stderr


def test_doctor_reports_problems(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8), "blue").save(tmp_path / name / "same.png")  # byte-identical across classes
    (tmp_path / "a" / "bad.jpg").write_text("hello")
    result = run_cli("doctor", tmp_path, "--json")
    assert_no_traceback(result)
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["classes"] == ["a", "b"]
    assert any("bad.jpg" in item["path"] for item in report["skipped"])
    assert len(report["duplicates"]) == 1
    text = run_cli("doctor", tmp_path)
    assert "bad.jpg" in text.stdout


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "predict", "eval", "doctor", "sample-data", "selftest"):
        assert command in result.stdout


@pytest.mark.timeout(900)
def test_end_to_end_sample_data_train_predict_eval(tmp_path):
    data, run = tmp_path / "shapes", tmp_path / "run"
    made = run_cli("sample-data", data)  # 4 classes x 60
    assert made.returncode == 0, made.stderr
    trained = run_cli("train", data, "--out", run, "--epochs", "6", "--image-size", "16", "--batch-size", "16",
                      "--json", "--log-every", "4")
    assert_no_traceback(trained)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout.splitlines()[-1])
    assert summary["epochs"] == 6 and summary["model"] == str(run / "model.safetensors")
    assert summary["best_val_accuracy"] > 0.6, summary  # 4 classes: chance is 0.25
    assert "[1,     4] loss:" in trained.stderr  # the article's running-loss line (on stderr with --json)
    for name in ("model.safetensors", "last.pt", "metrics.csv", "run.json"):
        assert (run / name).is_file()
    refused = run_cli("train", "--resume", run / "last.pt", "--epochs", "7", "--lr", "0.1", "--no-augment")
    assert refused.returncode == 2 and "--lr, --augment can't change when resuming" in refused.stderr

    predicted = run_cli("predict", run / "model.safetensors", data / "star", "--json", "--top-k", "1")
    assert predicted.returncode == 0, predicted.stderr
    labels = [json.loads(line)["top_k"][0]["label"] for line in predicted.stdout.splitlines()]
    assert len(labels) == 60 and labels.count("star") / len(labels) > 0.5

    evaluated = run_cli("eval", run / "model.safetensors", data, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert set(report) >= {"accuracy", "classes", "per_class", "confusion"}
    assert report["accuracy"] > 0.6 and sum(map(sum, report["confusion"])) == 240


def test_quick_transfer_from_a_weights_file_then_predict_and_eval(tmp_path):
    """`train --arch resnet18 --pretrained FILE --quick`, then predict and eval with its model."""
    data = tmp_path / "shapes"
    assert run_cli("sample-data", data, "--per-class", "10").returncode == 0
    weights = tmp_path / "resnet18-mine.pth"  # any ResNet18 in torchvision's layout: here random weights
    torch.save(build_model("resnet18", 1000).state_dict(), weights)
    trained = run_cli("train", data, "--out", tmp_path / "run", "--arch", "resnet18", "--pretrained", weights,
                      "--quick", "--image-size", "32", "--json")
    assert_no_traceback(trained)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout.splitlines()[-1])
    assert summary["status"] == "completed" and summary["model"] == str(tmp_path / "run" / "model.safetensors")
    not_the_release = "ImageNet-layout weights from resnet18-mine.pth, not torchvision's release"
    assert f"training the last layer only, on features of {not_the_release}" in trained.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["start"]["official"] is False and run["start"]["weights"] == weights.name
    with_weights = run_cli("predict", weights, data / "star", "--json")  # the weights themselves: ImageNet's labels
    assert with_weights.returncode == 0 and f"weights: {not_the_release}" in with_weights.stderr
    assert summary["unit"] == "pass" and "Training finished after 60 passes over the features" in trained.stderr
    predicted = run_cli("predict", summary["model"], data / "star", "--json")
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == 10
    evaluated = run_cli("eval", summary["model"], data, "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["images"] == 40


@pytest.mark.parametrize("settings, message", [
    (["--arch", "resnet18-cifar"], "resnet18 architecture only"),
    (["--arch", "resnet18", "--freeze-backbone", "--pretrained", "{damaged}"], "{damaged}: not a weights file"),
    (["--arch", "resnet18", "--pretrained", "{wrong}"], "{wrong}: not torchvision ResNet18 weights"),
])
def test_unusable_pretrained_weights_are_refused_with_the_file_named(tmp_path, settings, message):
    from resnet_app.core.data.sample_data import generate_sample_dataset

    data = generate_sample_dataset(tmp_path / "shapes", images_per_class=4, image_size=16)
    damaged, wrong = tmp_path / "damaged.pth", tmp_path / "wrong.pth"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    torch.save(build_model("resnet18-cifar", 10).state_dict(), wrong)
    names = {"damaged": damaged, "wrong": wrong}
    if "--pretrained" not in settings:
        settings = settings + ["--pretrained", str(wrong)]
    result = run_cli("train", data, "--out", tmp_path / "run", *[s.format(**names) for s in settings])
    assert_no_traceback(result)
    assert result.returncode == 2 and message.format(**names) in result.stderr, result.stderr


def test_predict_and_eval_list_what_they_skip_in_folders(untrained_model, tmp_path):
    from PIL import Image

    folder = tmp_path / "cat"
    folder.mkdir()
    Image.new("RGB", (10, 10), "red").save(folder / "red.ppm")  # an image format beyond the common few
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    predicted = run_cli("predict", untrained_model, folder, "--json")
    assert predicted.returncode == 0, predicted.stderr
    rows = {os.path.basename(row["path"]): row for row in map(json.loads, predicted.stdout.splitlines())}
    assert set(rows) == {"red.ppm", "notes.txt"} and rows["red.ppm"]["top_k"]
    assert rows["notes.txt"]["skipped"].startswith("not an image") and rows["notes.txt"]["error"] is None
    assert "1 file skipped as not images, 1 hidden file ignored" in predicted.stderr
    evaluated = run_cli("eval", untrained_model, tmp_path, "--json")
    report = json.loads(evaluated.stdout)
    assert report["images"] == 1 and [os.path.basename(s["path"]) for s in report["skipped"]] == ["notes.txt"]
