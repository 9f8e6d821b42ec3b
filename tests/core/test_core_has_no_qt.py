"""The engine never imports Qt: the GUI, the CLI and the tests share it, and CLI use must not need a display."""
import subprocess
import sys


def test_importing_every_core_module_loads_no_qt():
    code = (
        "import importlib, pkgutil, sys, resnet_app.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'resnet_app.core.'): importlib.import_module(m.name)\n"
        "import resnet_app.cli\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph'))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
