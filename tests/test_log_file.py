"""The app's log file (README asks people to send it): its first line names the versions that matter."""
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
