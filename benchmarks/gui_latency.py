"""GUI latency while training: how long the app's event loop goes without running, measured.

    .venv/bin/python benchmarks/gui_latency.py [--seconds 10] [--min-batches 5] [--interval-ms 5] [--image-size 32]
        [--batch-size 32] [--images-per-class 100] [--device auto|cpu|cuda|mps] [--no-freeze]
        [--platform offscreen|xcb|wayland|...] [--json-out FILE]

The main window is made as the app makes it (its settings in a throw-away folder), trains from scratch
on the generated shapes in a temporary folder, and once the first batch losses are drawn a QTimer asks
for a tick every --interval-ms. For --seconds of training (and at least --min-batches batches) the
time between ticks is recorded: a gap well above the interval is time the GUI thread could not run
(the training thread holding the GIL, a garbage collection, the plot redrawing). Printed: the machine,
the run, and the gaps' median, 90th, 99th and 99.9th percentiles, the largest gap, and how many
exceeded 50 and 100 ms (about where a window stops feeling immediate).

This replaced the test that asserted "no gap over 100 ms": on a shared CPU that is a measurement, not
a property, and it failed when other work ran. tests/ui/test_train.py keeps the functional part (the
loop runs timers between batches while training runs). The app freezes its start-up heap out of full
garbage collections (resnet_app/runtime.py); --no-freeze shows what that saves.

Qt runs offscreen by default, so it needs no display; --platform xcb (or wayland) measures on a real one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py beside this file

from machine import cpu_name  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="training time measured, at least (default 10)")
    parser.add_argument("--min-batches", type=int, default=5,
                        help="measure on until this many batches were trained, however slow they are (default 5)")
    parser.add_argument("--interval-ms", type=int, default=5, help="the timer's interval (default 5 ms)")
    parser.add_argument("--image-size", type=int, default=32, help="training image size in px (default 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    parser.add_argument("--images-per-class", type=int, default=100,
                        help="generated images per class, 4 classes (default 100)")
    parser.add_argument("--device", default="auto", help="training device, as in the app (default auto)")
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave the start-up heap in full garbage collections (the app freezes it)")
    parser.add_argument("--platform", default="offscreen",
                        help="Qt platform plugin (default offscreen; QT_QPA_PLATFORM, if set, wins)")
    parser.add_argument("--json-out", type=Path, help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of values already sorted (share in 0..1)."""
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise_gaps(gaps_s: list[float]) -> dict:
    ordered = sorted(gaps_s)
    ms = 1000.0
    return {
        "ticks": len(gaps_s),
        "median_ms": statistics.median(ordered) * ms,
        "p90_ms": percentile(ordered, 0.90) * ms,
        "p99_ms": percentile(ordered, 0.99) * ms,
        "p99_9_ms": percentile(ordered, 0.999) * ms,
        "largest_ms": ordered[-1] * ms,
        "over_50_ms": sum(g > 0.050 for g in ordered),
        "over_100_ms": sum(g > 0.100 for g in ordered),
    }


def machine_description() -> dict:
    import PySide6
    import torch

    cpu = cpu_name()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(terse=True),
        "load_average": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(), "pyside6": PySide6.__version__, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def wait_for(app, condition, timeout_s: float) -> bool:
    """Run the event loop (a real one, as app.exec() would) until `condition()` or the timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(50)
    poll.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    return condition()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", args.platform)
    work = Path(tempfile.mkdtemp(prefix="resnet-app-gui-latency-"))
    # Nothing of the user's is read or written: settings, decoded-image cache and runs all go to `work`.
    os.environ["RESNET_APP_CACHE_DIR"] = str(work / "cache")
    try:
        return measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtGui import QGuiApplication

    from resnet_app.core.data.sample_data import generate_sample_dataset
    from resnet_app.runtime import freeze_startup_heap
    from resnet_app.ui.app import create_app

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    app = create_app()
    from resnet_app.ui.main_window import MainWindow
    from resnet_app.ui.settings import Settings

    data = generate_sample_dataset(work / "data", images_per_class=args.images_per_class, image_size=32)
    settings = Settings()
    settings.set("train/start_from", "scratch")  # every weight trained: the loop the GUI must live beside
    window = MainWindow(settings)
    tab = window.train_tab
    tab.apply_settings({"arch": "resnet18-cifar", "epochs": 1000, "batch_size": args.batch_size,
                        "image_size": args.image_size, "device": args.device, "output_folder": str(work / "runs")})
    window.show()
    if not args.no_freeze:
        freeze_startup_heap()  # as the app does once its window is up (resnet_app/ui/app.py)

    tab.set_data_folder(str(data))
    tab.start_button.click()
    run: dict = {}
    if tab.worker is not None:  # (its run_start comes after the images are decoded: long after this)
        tab.worker.run_started.connect(run.update)
    wait_for(app, lambda: tab.plot.point_count >= 1 or not tab.running, 600)
    if not tab.running or tab.plot.point_count < 1:
        print("training did not start: " + tab.status_label.text(), file=sys.stderr)
        print(tab.log_view.toPlainText(), file=sys.stderr)
        return 1

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(args.interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    points_before = tab.plot.point_count
    ticks.append(time.perf_counter())
    timer.start()
    end = time.monotonic() + args.seconds
    wait_for(app, lambda: not tab.running or (time.monotonic() >= end
                                               and tab.plot.point_count - points_before >= args.min_batches),
             args.seconds + 600)
    timer.stop()
    batches = tab.plot.point_count - points_before
    still_training = tab.running
    tab.stop()
    wait_for(app, lambda: not tab.running, 600)
    qt_platform = QGuiApplication.platformName()
    window.close()

    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    if not gaps:
        print("no event-loop tick was recorded", file=sys.stderr)
        return 1
    result = {
        "machine": machine_description(), "qt_platform": qt_platform,
        "run": {"image_size": args.image_size, "batch_size": run.get("batch_size", args.batch_size),
                "device": run.get("device", args.device), "data_loading": run.get("data_loading", "?"),
                "train_images": run.get("train_size"), "heap_frozen": not args.no_freeze},
        "interval_ms": args.interval_ms, "seconds": round(ticks[-1] - ticks[0], 2), "batches": batches,
        "training_throughout": still_training, "gaps": summarise_gaps(gaps),
    }
    print_report(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_report(result: dict) -> None:
    m, r, g = result["machine"], result["run"], result["gaps"]
    load = "" if not m["load_average"] else f", load {'/'.join(str(x) for x in m['load_average'])}"
    print(f"machine: {m['host']}: {m['cpu']}, {m['cores']} cores{load}; {m['os']}")
    print(f"         Python {m['python']}, PySide6 {m['pyside6']}, torch {m['torch']} ({m['torch_threads']} threads); "
          f"Qt platform {result['qt_platform']}")
    print(f"training: resnet18-cifar from scratch on {r['train_images']} images of {r['image_size']} px, "
          f"batch {r['batch_size']}, {r['device']}, {r['data_loading']} images; start-up heap "
          f"{'frozen' if r['heap_frozen'] else 'not frozen'}")
    note = "" if result["training_throughout"] else " (training ended early: fewer gaps than asked for)"
    print(f"event loop: a timer every {result['interval_ms']} ms for {result['seconds']} s, "
          f"while {result['batches']} batches were trained{note}")
    print()
    columns = ("median", "p90", "p99", "p99.9", "largest")
    print(f"{'ticks':>6}  " + "  ".join(f"{c:>8}" for c in columns) + f"  {'>50 ms':>6}  {'>100 ms':>7}")
    print(f"{g['ticks']:>6}  {g['median_ms']:>5.1f} ms  {g['p90_ms']:>5.1f} ms  {g['p99_ms']:>5.1f} ms  "
          f"{g['p99_9_ms']:>5.1f} ms  {g['largest_ms']:>5.1f} ms  {g['over_50_ms']:>6}  {g['over_100_ms']:>7}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
