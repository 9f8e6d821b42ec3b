"""`resnet-app review MODEL SOURCE`: a folder's images least sure first, its JSON contract and exit codes."""
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig


def run_cli(*args, timeout=600):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "resnet_app", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def review(capsys, *args):
    """`resnet-app review ...` in this process (quicker than a child: torch is imported already);
    (exit code, stdout, stderr). The trained-model test below runs the real command line."""
    from types import SimpleNamespace

    from resnet_app import cli

    code = cli.main(["review", *map(str, args)])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 4).state_dict(), "resnet18-cifar",
                                    ["cat", "dog", "fish", "bird"], 16, [0.5] * 3, [0.25] * 3))
    return path


def photos(folder, count=6):
    (folder / "deeper").mkdir(parents=True)
    for i in range(count):
        where = folder / "deeper" if i % 2 else folder
        Image.new("RGB", (12, 12), (40 * i, 200 - 30 * i, 90 + 10 * i)).save(where / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"oops")
    (folder / "notes.txt").write_text("not an image")


def test_json_lists_every_image_least_sure_first_and_unreadable_last(untrained_model, tmp_path, capsys):
    photos(tmp_path / "unlabelled")
    done = review(capsys, untrained_model, tmp_path / "unlabelled", "--json", "--device", "cpu")
    assert done.returncode == 1, done.stderr  # a file could not be read
    lines = json_lines(done.stdout)
    ranked = [line for line in lines if "skipped" not in line]
    assert [line["error"] is None for line in ranked] == [True] * 6 + [False]
    assert ranked[-1]["path"].endswith("broken.jpg") and ranked[-1]["error"] and ranked[-1]["top_k"] == []
    readable = ranked[:-1]
    assert {os.path.basename(line["path"]) for line in readable} == {f"p{i}.png" for i in range(6)}  # recursive
    margins = [line["margin"] for line in readable]
    assert margins == sorted(margins)
    for line in readable:
        assert set(line) == {"path", "top_k", "margin", "error"}
        assert len(line["top_k"]) == 3
        (first, p1), (_, p2), _ = line["top_k"]
        assert first in {"cat", "dog", "fish", "bird"} and p1 >= p2
        assert line["margin"] == pytest.approx(p1 - p2)
    skipped = [line for line in lines if "skipped" in line]
    assert [os.path.basename(line["path"]) for line in skipped] == ["notes.txt"]
    assert skipped[0]["skipped"] == "not an image (extension .txt)"
    assert "6 images ranked, least sure first; 1 could not be read" in done.stderr


def test_top_limits_the_readable_list_and_a_clean_folder_exits_zero(untrained_model, tmp_path, capsys):
    folder = tmp_path / "clean"
    photos(folder)
    (folder / "broken.jpg").unlink()
    (folder / "notes.txt").unlink()
    done = review(capsys, untrained_model, folder, "--top", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(": margin " in line for line in lines)
    assert "4 more not listed (--top 2)" in done.stderr


def test_a_folder_without_images_or_a_missing_model_is_a_clear_error(untrained_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    done = review(capsys, untrained_model, tmp_path / "empty", "--device", "cpu")
    assert done.returncode == 2 and "no image files found" in done.stderr and "Traceback" not in done.stderr
    done = review(capsys, tmp_path / "nope.safetensors", tmp_path / "empty")
    assert done.returncode == 2 and "nope.safetensors" in done.stderr and "Traceback" not in done.stderr


def test_on_a_trained_model_the_first_listed_are_wrong_more_often_than_the_last(tmp_path):
    """Labelled images reviewed as if unlabelled: the model's answer is wrong more often among the
    least sure third than among the surest third."""
    data = generate_sample_dataset(tmp_path / "data", images_per_class=30, image_size=32)
    result = Trainer(TrainConfig(epochs=3, batch_size=16, image_size=16, loader_processes=0, device="cpu"),
                     data, tmp_path / "run").fit()
    unseen = generate_sample_dataset(tmp_path / "unseen", images_per_class=20, image_size=32, seed=7)
    done = run_cli("review", result.model_path, unseen, "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    ranked = json_lines(done.stdout)
    wrong = [line["top_k"][0][0] != os.path.basename(os.path.dirname(line["path"])) for line in ranked]
    third = len(wrong) // 3
    first, last = sum(wrong[:third]) / third, sum(wrong[-third:]) / third
    assert 0 < sum(wrong) < len(wrong), "the model should be neither perfect nor useless for this check"
    print(f"wrong among the first third {first:.0%}, the last third {last:.0%}")
    assert first > last, (first, last)
