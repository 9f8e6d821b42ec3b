"""QApplication setup and the `resnet-app` (no arguments) entry point."""
from __future__ import annotations

import os
import signal
import sys

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from resnet_app.runtime import freeze_startup_heap
from resnet_app.ui.settings import APPLICATION, ORGANIZATION
from resnet_app.ui.system_check import missing_system_libraries_message


def has_display() -> bool:
    """False on Linux without X11 or Wayland (and no platform chosen), where Qt would abort."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def create_app(argv: list[str] | None = None) -> QApplication:
    """The one QApplication (reused when it exists: tests and the self-test make their own)."""
    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QGuiApplication.setApplicationDisplayName("ResNet App")
    QGuiApplication.setDesktopFileName("resnet-app")
    from resnet_app.ui.resources import app_icon

    app.setWindowIcon(app_icon())
    return app


def run_app() -> int:
    if not has_display():
        print("resnet-app: no display found (DISPLAY/WAYLAND_DISPLAY unset). Start it from a desktop session, "
              "or use the command line: resnet-app --help", file=sys.stderr)
        return 2
    missing = missing_system_libraries_message()
    if missing:  # instead of Qt's abort, which names one library and nothing to install
        print(f"resnet-app: {missing}", file=sys.stderr)
        return 2
    from resnet_app import frozen

    if not frozen.is_frozen():  # the frozen app set its log up already; from source, the same log file
        frozen.setup_log_file()
    app = create_app()
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True)
    from resnet_app.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    freeze_startup_heap()  # full garbage collections would otherwise freeze the window (runtime.py)
    # Ctrl+C in the terminal that started the app quits it; Qt's loop never hands the signal to Python.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return app.exec()
