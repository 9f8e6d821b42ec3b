"""Scale of the data check: `resnet-app doctor --json` on big folders of small images.

    .venv/bin/python benchmarks/scale.py [--sizes 5000 50000] [--with-100k] [--kinds different frames]
        [--work-dir DIR] [--classes 10] [--clips 5]

For each size N and kind it generates (once, kept in --work-dir) a folder of N 32 px PNGs in 10 class
folders, then runs `python -m resnet_app doctor --json` on it in a child process and measures the wall
time, the child's peak memory (os.wait4's ru_maxrss) and the size of the JSON it printed. Two kinds:

- different: every image its own picture (a smooth random field of colours);
- frames: a few pictures ("clips") per class, every image one of them shifted by a pixel or so with a
  little noise, as the frames of a video or a webcam's captures: the case where all-pairs near-duplicate
  listing grows with the square of a class's size.

It prints a Markdown table and the growth factor of each figure from one size to the next (10x the
images: linear is 10x).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

SIZE = 32


def smooth_picture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A smooth field of colours (a 5x5 grid of random colours, enlarged): shows a picture to hash."""
    grid = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    return np.asarray(grid.resize((size + 4, size + 4), Image.Resampling.BICUBIC), dtype=np.int16)


def frame_of(picture: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """The picture shifted by up to a pixel each way (it is 4 px bigger than a frame), with noise of +-3."""
    dy, dx = rng.integers(1, 4, 2)
    crop = picture[dy:dy + size, dx:dx + size] + rng.integers(-3, 4, (size, size, 3))
    return np.clip(crop, 0, 255).astype(np.uint8)


def make_folder(root: Path, count: int, kind: str, classes: int = 10, clips: int = 5, seed: int = 0) -> Path:
    """`count` PNGs of SIZE px in `classes` folders under root (skipped when already made)."""
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    bases = [[smooth_picture(rng) for _ in range(clips)] for _ in range(classes)]
    for label in range(classes):
        (root / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        label = i % classes
        if kind == "frames":
            pixels = frame_of(bases[label][(i // classes) % clips], rng)
        else:
            pixels = frame_of(smooth_picture(rng), rng)
        Image.fromarray(pixels).save(root / f"class_{label:02d}" / f"{i:06d}.png", compress_level=1)
    done.touch()
    return root


def measure_doctor(folder: Path) -> dict:
    """Wall time, peak memory and JSON size of `resnet-app doctor --json folder` in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "resnet_app", "doctor", "--json", str(folder)],
                                 stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    report = json.loads(text.decode().splitlines()[-1])
    near = report.get("near_duplicate_groups", {})
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024, "json_bytes": len(text),
            "exit": child.returncode, "images": report["num_samples"], "groups": near.get("groups"),
            "largest": near.get("largest")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--with-100k", action="store_true", help="also 100,000 images")
    parser.add_argument("--kinds", nargs="+", default=["different", "frames"], choices=["different", "frames"])
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "resnet-app-scale")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clips", type=int, default=5, help="pictures per class of the frames kind")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes + ([100_000] if args.with_100k else [])))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    rows = []
    for kind in args.kinds:
        for count in sizes:
            folder = args.work_dir / f"{kind}-{count}"
            start = time.perf_counter()
            make_folder(folder, count, kind, args.classes, args.clips)
            print(f"{kind} {count}: folder ready in {time.perf_counter() - start:.0f} s, running doctor...",
                  flush=True)
            result = measure_doctor(folder)
            rows.append((kind, count, result))
            print(f"  {result}", flush=True)
    print()
    print("| kind | images | wall time | peak memory | JSON | groups (largest) | exit |")
    print("|---|---|---|---|---|---|---|")
    for kind, count, r in rows:
        print(f"| {kind} | {count:,} | {r['seconds']:.1f} s | {r['peak_mib']:.0f} MiB | "
              f"{r['json_bytes'] / 1e6:.2f} MB | {r['groups']} ({r['largest']}) | {r['exit']} |")
    print()
    for kind in args.kinds:
        mine = [(count, r) for k, count, r in rows if k == kind]
        for (n0, r0), (n1, r1) in zip(mine, mine[1:], strict=False):
            print(f"{kind}: {n0:,} -> {n1:,} images ({n1 / n0:.0f}x): "
                  f"time {r1['seconds'] / r0['seconds']:.1f}x, peak memory {r1['peak_mib'] / r0['peak_mib']:.1f}x, "
                  f"JSON {r1['json_bytes'] / r0['json_bytes']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
