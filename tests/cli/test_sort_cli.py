"""`resnet-app sort` as users run it: copy or move into DEST, --json summary, --undo, exit codes, clear errors."""
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file


def run_cli(*args, timeout=600):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "resnet_app", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 2).state_dict(), "resnet18-cifar",
                                    ["cat", "dog"], 16, [0.5] * 3, [0.25] * 3))
    return path


def photos(folder, count=5):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (10, 10), (40 * i, 200 - 30 * i, 90)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"oops")
    (folder / "notes.txt").write_text("not an image")
    return {p: p.read_bytes() for p in folder.iterdir()}


def test_sort_move_json_then_undo(model, tmp_path):
    before = photos(tmp_path / "in")
    result = run_cli("sort", model, tmp_path / "in", "--into", tmp_path / "out", "--move", "--json",
                     "--device", "cpu")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr  # one file could not be read (it is in _unreadable/)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["sorted"] == 5 and summary["unreadable"] == 1 and summary["unsure"] == 0
    assert summary["summary"].startswith("5 sorted into ") and summary["summary"].endswith(", 0 unsure, 1 unreadable")
    assert (tmp_path / "out" / "_unreadable" / "broken.jpg").exists()
    assert {p.name for p in (tmp_path / "in").iterdir()} == {"notes.txt"}  # not an image: left where it was
    assert "not images were left where they are" in result.stderr
    undo = run_cli("sort", "--undo", tmp_path / "out" / "sort-log.jsonl")
    assert undo.returncode == 0, undo.stderr
    assert "restored 6 moved files" in undo.stdout
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before


def test_sort_copy_with_min_confidence_puts_everything_in_unsure(model, tmp_path):
    photos(tmp_path / "in")
    result = run_cli("sort", model, tmp_path / "in", "--into", tmp_path / "out", "--min-confidence", "1",
                     "--device", "cpu")
    assert result.returncode == 1 and "0 sorted into 0 classes, 5 unsure, 1 unreadable" in result.stdout
    assert len(list((tmp_path / "out" / "_unsure").iterdir())) == 5
    assert len(list((tmp_path / "in").iterdir())) == 7  # copies: the sources stay


@pytest.mark.parametrize("args, message", [
    (["--undo", "LOG", "MODEL"], "--undo takes only the log"),
    (["MODEL", "IN"], "give MODEL, SOURCE and --into DEST"),
    (["MODEL", "IN", "--into", "OUT", "--min-confidence", "2"], "must be from 0 to 1"),
])
def test_usage_errors_exit_2(model, tmp_path, args, message):
    (tmp_path / "IN").mkdir()
    names = {"MODEL": str(model), "IN": str(tmp_path / "IN"), "OUT": str(tmp_path / "OUT"),
             "LOG": str(tmp_path / "sort-log.jsonl")}
    result = run_cli("sort", *[names.get(a, a) for a in args])
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_unwritable_dest_is_a_clear_error_and_nothing_moves(model, tmp_path):
    before = photos(tmp_path / "in")
    (tmp_path / "out").write_text("a file where the folder should be")
    result = run_cli("sort", model, tmp_path / "in", "--into", tmp_path / "out", "--move", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "can't write into" in result.stderr and "nothing was copied or moved" in result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before


def test_sort_says_what_happened_to_links_taken_names_and_earlier_placed_files(model, tmp_path):
    photos(tmp_path / "in")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "elsewhere" / "far.png")
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "elsewhere" / "far.png")
    first = run_cli("sort", model, tmp_path / "in", "--into", tmp_path / "out", "--min-confidence", "1")
    assert "link.png: a link to" in first.stdout and "its content was copied" in first.stdout
    # The same name again (another folder), and the same sort again.
    (tmp_path / "in" / "more").mkdir()
    Image.new("RGB", (10, 10), (9, 9, 9)).save(tmp_path / "in" / "more" / "p0.png")
    second = run_cli("sort", model, tmp_path / "in", "--into", tmp_path / "out", "--min-confidence", "1")
    assert "an earlier sort into" in second.stdout and "got a numbered name" in second.stdout
