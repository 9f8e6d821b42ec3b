"""Scale of the data check: `resnet-app doctor --json` on big folders of small images.

    .venv/bin/python benchmarks/scale.py [--sizes 5000 50000] [--with-100k] [--kinds different frames]
        [--work-dir DIR] [--classes 10] [--clips 5] [--app-check]

For each size N and kind it generates (once, kept in --work-dir) a folder of N 32 px PNGs in 10 class
folders, then runs `python -m resnet_app doctor --json` on it in a child process and measures the wall
time, the child's peak memory (os.wait4's ru_maxrss) and the size of the JSON it printed. With
--app-check it also measures the app's own dataset check: a child process opens the main window
offscreen (settings and caches in a throw-away folder), chooses the folder in the Train tab as a user
does, and runs the event loop until the report is shown, while a 5 ms QTimer records how long the
window went without running (the largest gap, and how many gaps exceeded 100 ms). Two kinds:

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


def measure_app_check(folder: Path) -> dict:
    """Wall time, peak memory and event-loop gaps of the Train tab's dataset check, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--app-check-child", str(folder)],
                                 stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        lines = out.read().decode().splitlines()
    result = json.loads(lines[-1]) if lines else {"error": "no output"}
    return {**result, "process_seconds": seconds, "peak_mib": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status)}


def app_check_child(folder: Path) -> int:
    """In a child process: the Train tab checks `folder`; prints one JSON line of what was measured."""
    sys.path.insert(0, str(ROOT))
    from gui_latency import summarise_gaps, wait_for  # the latency benchmark's event-loop tools

    work = Path(tempfile.mkdtemp(prefix="resnet-app-scale-app-"))
    os.environ["RESNET_APP_CACHE_DIR"] = str(work / "cache")
    from PySide6.QtCore import QSettings, QTimer

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    from resnet_app.runtime import freeze_startup_heap
    from resnet_app.ui.app import create_app
    from resnet_app.ui.main_window import MainWindow
    from resnet_app.ui.settings import Settings

    app = create_app()
    window = MainWindow(Settings())
    window.show()
    freeze_startup_heap()  # as the app does once its window is up (resnet_app/ui/app.py)
    tab = window.train_tab
    ticks: list[float] = [time.perf_counter()]
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    tab.set_data_folder(str(folder))
    shown = wait_for(app, lambda: tab.report is not None, 3600)
    seconds = time.perf_counter() - start
    timer.stop()
    report = tab.report
    window.close()
    gaps = summarise_gaps([b - a for a, b in zip(ticks, ticks[1:], strict=False)] or [0.0])
    print(json.dumps({"seconds": seconds, "shown": shown, "images": len(report.samples) if report else None,
                      "largest_gap_ms": gaps["largest_ms"], "gaps_over_100_ms": gaps["over_100_ms"],
                      "ticks": gaps["ticks"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--app-check-child"]:
        return app_check_child(Path(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--with-100k", action="store_true", help="also 100,000 images")
    parser.add_argument("--kinds", nargs="+", default=["different", "frames"], choices=["different", "frames"])
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "resnet-app-scale")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clips", type=int, default=5, help="pictures per class of the frames kind")
    parser.add_argument("--app-check", action="store_true",
                        help="also measure the app's dataset check (Train tab, offscreen) on each folder")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes + ([100_000] if args.with_100k else [])))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    rows, app_rows = [], []
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
            if args.app_check:
                app_rows.append((kind, count, measure_app_check(folder)))
                print(f"  app: {app_rows[-1][2]}", flush=True)
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
    if app_rows:
        print_app_rows(app_rows, args.kinds)
    return 0


def print_app_rows(app_rows: list, kinds: list[str]) -> None:
    print()
    print("The app's dataset check (Train tab, offscreen):")
    print()
    print("| kind | images | until the report shows | peak memory | largest event-loop gap | gaps > 100 ms | exit |")
    print("|---|---|---|---|---|---|---|")
    for kind, count, r in app_rows:
        print(f"| {kind} | {count:,} | {r.get('seconds', float('nan')):.1f} s | {r['peak_mib']:.0f} MiB | "
              f"{r.get('largest_gap_ms', float('nan')):.0f} ms | {r.get('gaps_over_100_ms')} | {r['exit']} |")
    for kind in kinds:
        mine = [(count, r) for k, count, r in app_rows if k == kind and "seconds" in r]
        for (n0, r0), (n1, r1) in zip(mine, mine[1:], strict=False):
            print(f"{kind}: {n0:,} -> {n1:,} images: time {r1['seconds'] / r0['seconds']:.1f}x, "
                  f"peak memory {r1['peak_mib'] / r0['peak_mib']:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
