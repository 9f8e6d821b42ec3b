"""The labelling kill test (DESIGN habit 12, as tests/cli/test_sort_kill.py does for the sort): a process
labelling a folder into a data set (moves and copies, a taken name, a new class) is killed with SIGKILL
at random moments and started again; then every label is undone by processes killed the same way. Each
photo ends up in the data set exactly once (a moved one gone from the source, a copied one still there),
and after the undo the source is as it was, byte for byte, and the data set holds nothing but what it
held before and the log: no orphan copy, no empty class folder.

Run time: ~5-15 s on the shared 2-core machine (the process imports no torch: ~0.2 s a start)."""
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnet_app.core.use.labelling import LOG_FOLDER, LOG_NAME

PHOTOS = 150
KILLS = 8
HELPER = Path(__file__).with_name("label_process.py")


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def rows(log: Path, op: bytes) -> int:
    try:
        return log.read_bytes().count(b'"op": "' + op + b'"')
    except FileNotFoundError:
        return 0


def run_killed(data: Path, source: Path, mode: str, op: bytes, rng: random.Random) -> int:
    """Start the helper and kill it once it has logged a random number more `op` rows; returns kills."""
    log = data / LOG_FOLDER / LOG_NAME
    goal = rows(log, op) + rng.randint(1, 25)
    process = subprocess.Popen([sys.executable, str(HELPER), str(data), str(source), mode],
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    killed = 0
    while process.poll() is None and time.monotonic() < deadline:
        if rows(log, op) >= goal:
            time.sleep(rng.random() * 0.004)  # somewhere inside the placing (or putting back) of a file
            process.send_signal(signal.SIGKILL)
            killed = 1
            break
        time.sleep(0.0005)
    code = process.wait(timeout=60)
    assert code in (0, -signal.SIGKILL), process.stderr.read().decode()
    return killed


def run(data: Path, source: Path, mode: str) -> None:
    done = subprocess.run([sys.executable, str(HELPER), str(data), str(source), mode], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_9_while_labelling_or_undoing_never_loses_duplicates_or_orphans(tmp_path):
    rng = random.Random(22)
    source, data = tmp_path / "unlabelled", tmp_path / "data"
    source.mkdir()
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        (data / name / "p0.png").write_bytes(f"an older {name}".encode())  # taken names: p0-2.png
    for n in range(PHOTOS):
        (source / f"p{n}.png").write_bytes(rng.randbytes(rng.randint(200, 5000)))
    originals, before = files(source), files(data)
    assert len(set(originals.values())) == PHOTOS

    kills = sum(run_killed(data, source, "label", b"label", rng) for _ in range(KILLS))
    run(data, source, "label")
    assert kills >= KILLS - 2  # a process may finish before its goal when few files are left
    in_data = collections.Counter(content for path, content in files(data).items()
                                  if LOG_FOLDER not in path.parts and path not in before)
    assert in_data == collections.Counter(originals.values())  # every photo exactly once
    left = files(source)
    assert set(left) == {source / f"p{n}.png" for n in range(PHOTOS) if n % 2}  # copies stay, moves went
    assert all(left[p] == originals[p] for p in left)
    for path, content in originals.items():
        folder = ["cat", "dog", "new class"][int(path.stem[1:]) % 3]
        assert content in {p.read_bytes() for p in (data / folder).iterdir()}, path

    kills = sum(run_killed(data, source, "undo", b"undo", rng) for _ in range(KILLS // 2))
    run(data, source, "undo")
    assert kills >= 1
    assert files(source) == originals
    assert {p: c for p, c in files(data).items() if LOG_FOLDER not in p.parts} == before
    assert sorted(p.name for p in data.iterdir()) == [LOG_FOLDER, "cat", "dog"]  # the new class went too
    assert [p.name for p in (data / LOG_FOLDER).iterdir()] == [LOG_NAME]
