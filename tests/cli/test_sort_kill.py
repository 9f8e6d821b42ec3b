"""The kill test (issue 19, DESIGN habit 12): `resnet-app sort --move` killed with SIGKILL at 10 random
moments, re-run each time, then a full sort and --undo: every photo ends up in DEST exactly once, then
back in SOURCE byte for byte, and nothing but the log is left in DEST.

Run time: 60-110 s on the shared 2-core machine (11 sort processes + 1 undo; most of it is starting
Python and torch), so it runs in the normal suite."""
import collections
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file

PHOTOS = 300
KILLS = 10
LOG = "sort-log.jsonl"


def cli(*args):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return [sys.executable, "-m", "resnet_app", *map(str, args)], env


def placed_rows(log) -> int:
    try:
        return log.read_bytes().count(b'"op": "place"')
    except FileNotFoundError:
        return 0


def files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_9_at_random_moments_never_loses_or_duplicates_a_photo(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "model.safetensors"
    # 16 px input, the smallest a model file may have: the test is about files, not accuracy.
    save_model_file(model, ModelFile(build_model("resnet18-cifar", 3).state_dict(), "resnet18-cifar",
                                     ["cat", "dog", "bird"], 16, [0.5] * 3, [0.25] * 3))
    source, dest = tmp_path / "source", tmp_path / "dest"
    rng = random.Random(19)
    for n in range(PHOTOS):
        folder = source / f"day{n % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(8, 16)
        Image.new("RGB", (size, size), (n % 256, n // 256 * 90, rng.randrange(256))).save(folder / f"p{n // 4}.png")
    originals = files(source)
    assert len(set(originals.values())) == PHOTOS  # each photo is told apart by its bytes
    log = dest / LOG
    command, env = cli("sort", model, source, "--into", dest, "--move", "--batch-size", "8")
    kills = 0
    for _ in range(KILLS):
        left = len(files(source))
        goal = placed_rows(log) + rng.randint(1, max(1, left // 4))
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if placed_rows(log) >= goal:
                time.sleep(rng.random() * 0.02)  # somewhere inside the placing of the next files
                process.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.002)
        assert process.wait(timeout=60) in (0, -signal.SIGKILL)
    assert kills == KILLS

    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert not files(source)
    in_dest = collections.Counter(content for path, content in files(dest).items() if path.name != LOG)
    assert in_dest == collections.Counter(originals.values())  # every photo exactly once

    command, env = cli("sort", "--undo", log)
    undo = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert files(source) == originals
    assert [p.name for p in dest.rglob("*")] == [LOG]
