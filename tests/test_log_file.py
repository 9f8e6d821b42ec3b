"""The app's log file (README asks people to send it): its first line names the versions that matter."""
import os
import subprocess
import sys


def test_the_log_header_names_torch_and_pyside_from_a_source_install(tmp_path):
    """Issue 21 item 12: a source install's log said "torch ?"."""
    log = tmp_path / "resnet-app.log"
    script = ("from pathlib import Path; from resnet_app.frozen import setup_log_file; "
              f"setup_log_file(Path({str(log)!r}))")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    header = log.read_text().strip().splitlines()[0]
    import PySide6
    import torch

    assert f"torch {torch.__version__.split('+')[0]}" in header, header
    assert f"PySide6 {PySide6.__version__}" in header, header
    assert "?" not in header


def test_the_log_writes_home_folders_as_a_tilde_and_the_console_is_left_as_it_is(tmp_path):
    """Issue 24: the log is sent with reports; the paths in it name no home folder (and so no user)."""
    home = tmp_path / "home" / "ann-secret-clinic-2026-XYZ"
    home.mkdir(parents=True)
    log = tmp_path / "resnet-app.log"
    script = (
        "import sys; from pathlib import Path; from resnet_app.frozen import setup_log_file; "
        f"setup_log_file(Path({str(log)!r})); "
        "print('saved', Path.home() / 'runs' / 'model.safetensors'); "
        "print('data: /home/bob/patients, /Users/carl/photos and C:\\\\Users\\\\dana\\\\photos', file=sys.stderr); "
        "raise RuntimeError(f'no such folder: {Path.home()}')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(home), "USERPROFILE": str(home)})
    assert done.returncode == 1
    written = log.read_text()
    assert "saved ~/runs/model.safetensors" in written
    assert "data: ~/patients, ~/photos and ~\\photos" in written
    assert "RuntimeError: no such folder: ~\n" in written
    for name in ("ann-secret-clinic-2026-XYZ", "bob", "carl", "dana"):
        assert name not in written, name
    assert f"saved {home}/runs/model.safetensors" in done.stdout  # the console shows the real path
    assert f"no such folder: {home}" in done.stderr
