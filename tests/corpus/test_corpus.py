"""The whole app against a folder of awkward files (issue 10, defects 17-20), as users run it.

One class-folder dataset holds good images, images in less common formats, valid files in variants
Pillow cannot decode, decompression bombs and tiny files whose headers declare huge images. Then
`resnet-app doctor --json` and `resnet-app predict --json` go through it as subprocesses, and a
one-epoch training run in this process, and must:

- finish without a traceback;
- name every bad file, with the reason that fits it (not "truncated or corrupt" for a valid file,
  not "not an image" for a format Pillow reads);
- use the images in the less common formats;
- keep memory bounded: a command's peak RSS on this folder may exceed its peak on a folder of
  just the usable files by only a little (before the size checks, one 148-byte .blp cost ~640 MB).
  Each pair of runs goes side by side, to keep the test short.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from image_corpus import make_image_corpus
from PIL import Image

from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="peak memory is read with os.wait4 (POSIX)")

CLASSES = ("cat", "dog")
GOOD_PER_CLASS = 8

# Corpus files placed in each class folder. Every one must be used (the readable odd formats)
# or named with its reason (the rest).
READABLE = {
    "cat": ["odd.ppm", "odd.psd", "odd.qoi", "odd.mpo", "tag_past_end.tif"],
    "dog": ["odd.pgm", "odd.ico", "odd.dds", "odd.sgi"],
}
BOMB_PNG = f"image is too large: 1600000000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS}"
UNREADABLE = {  # file -> the reason it can't be loaded
    "cat/webp_in.tif": "unsupported variant of TIFF (WEBP compression)",
    "cat/two_bit.bmp": "unsupported variant of BMP (pixel depth 2)",
    "cat/liar.blp": "file is truncated or corrupt: declares 1 x 84000000 pixels but the file is only 148 bytes "
                    "(too small for a BLP image that size)",
    "cat/bomb.icns": f"image is too large: 262144000000 pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS}",
    "dog/lerc.tif": "unsupported variant of TIFF (LERC compression, code 34887)",
    "dog/argb4444.bmp": "unsupported variant of BMP (bitfields layout)",
    "dog/liar.ppm": "file is truncated or corrupt: declares 9000 x 9000 pixels but the file is only 33 bytes "
                    "(too small for a PPM image that size)",
    "dog/bomb.png": BOMB_PNG,
}
NOT_IMAGES = {  # file -> why a folder scan leaves it out
    "cat/notes.pdf": "not an image (extension .pdf)",
    "dog/figure.eps": "not used (EPS file): PostScript is drawn only by running Ghostscript, which the app does not do",
}
# How much more memory a command may take on the awkward folder than on its usable files alone.
# Decoding the bad files costs next to nothing once they are refused from their headers; before
# the size checks, liar.blp alone added ~640 MB.
EXTRA_PEAK_RSS_LIMIT = 150 * 2**20


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    staging = tmp_path_factory.mktemp("staging")
    make_image_corpus(staging)
    root = tmp_path_factory.mktemp("awkward") / "data"
    for name, colour in zip(CLASSES, [(200, 40, 40), (40, 40, 200)], strict=True):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(GOOD_PER_CLASS):
            Image.new("RGB", (16, 16), tuple(min(255, c + 5 * i) for c in colour)).save(folder / f"good_{i}.png")
        for corpus_name in READABLE[name]:
            shutil.copy(staging / corpus_name, folder / corpus_name)
    for relative in UNREADABLE:
        shutil.copy(staging / Path(relative).name, root / relative)
    (root / "cat" / "notes.pdf").write_bytes(b"%PDF-1.4\n% not an image\n")
    Image.new("RGB", (8, 8), "red").save(root / "dog" / "figure.eps", "EPS")
    return root


@pytest.fixture(scope="module")
def usable_only(dataset, tmp_path_factory) -> Path:
    """The same dataset without its bad files: the memory baseline."""
    root = tmp_path_factory.mktemp("usable") / "data"
    for name in usable_files(dataset):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset / name, root / name)
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", len(CLASSES)).state_dict(), "resnet18-cifar",
                                    list(CLASSES), 16, list(IMAGENET_MEAN), list(IMAGENET_STD)))
    return path


def usable_files(root: Path) -> set[str]:
    good = {f"{name}/good_{i}.png" for name in CLASSES for i in range(GOOD_PER_CLASS)}
    return good | {f"{name}/{file}" for name, files in READABLE.items() for file in files}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes, of the process and any it waited for


def run_cli_side_by_side(*commands: list, timeout: float = 180) -> list[Run]:
    """Run `resnet-app COMMAND...` for each command at once; their outputs and peak memories."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    with tempfile.TemporaryDirectory() as folder:
        started = []
        for i, command in enumerate(commands):
            out, err = open(Path(folder) / f"{i}.out", "w+b"), open(Path(folder) / f"{i}.err", "w+b")
            process = subprocess.Popen([sys.executable, "-m", "resnet_app", *map(str, command)],
                                       stdout=out, stderr=err, env=env)
            started.append((process, out, err))
        return [_finish(process, out, err, timeout) for process, out, err in started]


def _finish(process: subprocess.Popen, out, err, timeout: float) -> Run:
    """Wait for the process with wait4, whose rusage holds the peak RSS of that process alone."""
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    texts = []
    for stream in (out, err):
        with stream:
            stream.seek(0)
            texts.append(stream.read().decode("utf-8"))
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Run(process.returncode, texts[0], texts[1], usage.ru_maxrss * scale)


def assert_clean(run: Run, baseline: Run) -> None:
    """No traceback, no libtiff line naming Pillow's placeholder file, memory close to the baseline's."""
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    assert "tempfile.tif" not in run.stderr, run.stderr
    assert baseline.returncode == 0, baseline.stderr
    extra = run.peak_rss - baseline.peak_rss
    assert extra < EXTRA_PEAK_RSS_LIMIT, (
        f"peak RSS {run.peak_rss / 2**20:.0f} MB, {extra / 2**20:.0f} MB over the usable files' alone"
    )


def relative(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def test_doctor_names_every_bad_file_and_uses_the_odd_formats(dataset, usable_only):
    run, baseline = run_cli_side_by_side(["doctor", dataset, "--json"], ["doctor", usable_only, "--json"])
    assert_clean(run, baseline)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert {relative(dataset, path) for path, _ in report["samples"]} == usable_files(dataset)
    skipped = {relative(dataset, item["path"]): item["reason"] for item in report["skipped"]}
    assert skipped == {**{name: f"unreadable: {reason}" for name, reason in UNREADABLE.items()}, **NOT_IMAGES}
    # What libtiff said about webp_in.tif comes with the file's name, not as a bare line.
    for line in run.stderr.splitlines():
        if "WEBP compression support" in line:
            assert line.startswith(str(dataset / "cat" / "webp_in.tif") + ": libtiff: "), line


def test_predict_names_every_bad_file_and_classifies_the_odd_formats(dataset, usable_only, tiny_model):
    run, baseline = run_cli_side_by_side(["predict", tiny_model, dataset, "--json", "--top-k", "1"],
                                         ["predict", tiny_model, usable_only, "--json", "--top-k", "1"])
    assert_clean(run, baseline)
    assert run.returncode == 1  # some files could not be classified
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    errors = {relative(dataset, line["path"]): line["error"] for line in lines if "skipped" not in line}
    assert {name: error for name, error in errors.items() if error} == UNREADABLE
    assert {name for name, error in errors.items() if not error} == usable_files(dataset)
    skipped = {relative(dataset, line["path"]): line["skipped"] for line in lines if "skipped" in line}
    assert skipped == {name: reason for name, reason in NOT_IMAGES.items() if not reason.startswith("hidden")}


def test_predict_folder_search_lists_what_it_skips(dataset):
    from resnet_app.core.use.classifier import expand_paths, find_images

    found, skipped = find_images([dataset])
    assert {relative(dataset, str(p)) for p in found} == usable_files(dataset) | set(UNREADABLE)
    assert {relative(dataset, str(s.path)): s.reason for s in skipped} == NOT_IMAGES
    assert expand_paths([dataset]) == found


def test_predict_folder_search_gives_a_reason_for_everything_it_leaves_out(tmp_path):
    from resnet_app.core.use.classifier import find_images

    (tmp_path / "photos" / ".thumbnails").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for name in ["photos/a.qoi", "photos/.DS_Store", "photos/.thumbnails/a.png", "photos/readme.md",
                 "elsewhere/b.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "photos" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found, skipped = find_images([tmp_path / "photos", tmp_path / "photos" / "readme.md"])
    assert found == [tmp_path / "photos" / "a.qoi", tmp_path / "photos" / "readme.md"]  # named: kept
    assert {s.path.relative_to(tmp_path).as_posix(): s.reason for s in skipped} == {
        "photos/.DS_Store": "hidden file",
        "photos/.thumbnails": "hidden folder",
        "photos/linked": "link to a folder (not followed)",
        "photos/readme.md": "not an image (extension .md)",
    }


def tiny_config():
    from resnet_app.core.train.settings import TrainConfig

    return TrainConfig(epochs=1, batch_size=8, image_size=16, device="cpu", loader_processes=0)


def test_training_skips_every_bad_file_with_its_reason_and_trains_on_the_rest(dataset, tmp_path, capfd):
    from resnet_app.core.train.loop import Trainer

    trainer = Trainer(tiny_config(), dataset, tmp_path / "run")
    said, sizes = [], {}
    trainer.add_callback("message", lambda e: said.append((e.level, e.text)))
    trainer.add_callback("run_start", lambda e: sizes.update(train=e.train_size, val=e.val_size))
    result = trainer.fit()
    assert result.status == "completed", result.message
    # The run skips exactly the bad files, each once, with its reason, and counts only the images it
    # uses: so the odd formats were trained on, and the unreadable ones are in no count.
    assert sizes["train"] + sizes["val"] == len(usable_files(dataset))
    skipped = [text.removeprefix("skipped ").split(": ", 1) for level, text in said
               if level == "warning" and text.startswith("skipped ")]
    assert sorted((relative(dataset, path), reason) for path, reason in skipped) == sorted(
        [(name, reason) for name, reason in UNREADABLE.items()]
        + [(name, reason) for name, reason in NOT_IMAGES.items()]
    )
    assert "tempfile.tif" not in capfd.readouterr().err
