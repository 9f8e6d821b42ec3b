"""The benchmark scripts run to the end (their figures are measured elsewhere, never asserted here).

A GPU session is short and rare: a script that fails on a setting it passes (as train_throughput.py did
with checkpoint_every_s=1e9) would waste it. So the scripts that device_check.sh runs are smoke-run here
on the CPU, as small as they go.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_runs_and_writes_its_figures(tmp_path):
    out = tmp_path / "throughput.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", "cpu",
                           "--quick", "--sizes", "32", "--images", "64", "--epochs", "2", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert figures, "no figures written"


def test_calibration_size_runs_and_writes_its_figures(tmp_path):
    out = tmp_path / "calibration.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibration_size.py"), "--quick",
                           "--work-dir", str(tmp_path / "work"), "--json-out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert figures["models"] and figures["models"][0]["rows"], "no figures written"
    assert "Recommended minimum" in done.stdout


def test_scale_runs_doctor_and_the_apps_dataset_check(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--sizes", "60", "--kinds", "frames",
                           "--work-dir", str(tmp_path), "--app-check"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    app_rows = [line for line in done.stdout.splitlines() if line.startswith("| frames | 60 |")]
    assert len(app_rows) == 2, done.stdout  # doctor's row and the app check's
    assert app_rows[1].endswith("| 0 |"), app_rows[1]  # the app's check exited normally


def test_active_learning_runs_both_orders_and_writes_its_figures(tmp_path):
    out = tmp_path / "active.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "active_learning.py"), "--quick",
                           "--work-dir", str(tmp_path / "work"), "--json-out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    rows = figures["datasets"]["letters"]["rows"]
    assert [row["round"] for row in rows] == [0, 1], rows
    assert all(row["review"] and row["random"] for row in rows), rows
    assert rows[1]["labelled"] > rows[0]["labelled"], rows  # a round labels more images
    assert "Verdict:" in done.stdout
