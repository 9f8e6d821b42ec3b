"""Support for the installed (frozen, PyInstaller) app; harmless when run from source.

The frozen entry point (packaging/entry.py) calls, in this order:

1. ``multiprocessing.freeze_support()`` -- first thing, so that the worker processes the engine starts
   with the ``spawn`` method (DataLoader workers, the decode pool) run their task and exit instead of
   starting a second app. PyInstaller's runtime hook makes it work on Linux and macOS too.
2. ``setup(argv)`` -- below: bundled ImageNet weights, and for the desktop app (no arguments) a log file
   in the per-user data folder that the user can send. A process of a distributed run (``--nproc``)
   is started as ``<executable> [-u] -m MODULE ...``, as Python would be: the frozen app has no
   interpreter to do that, so ``setup`` runs the module itself and exits (``python_module_invocation``;
   PyInstaller issue 7756's pattern for torchrun).

Everything else the app needs is already per-user: settings (QSettings: ~/.config/ResNet App/,
the registry, ~/Library/Preferences), the decoded-image cache (~/.cache/resnet-app), runs in Documents.
"""
from __future__ import annotations

import datetime as _dt
import faulthandler
import json
import os
import platform
import re
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

LOG_NAME = "resnet-app.log"
LOG_MAX_BYTES = 2_000_000  # rotated to resnet-app.log.1 at start once past this: a sendable size
IMAGENET_FILE = "resnet18-f37072fd.pth"  # torchvision's file name for ResNet18_Weights.IMAGENET1K_V1
# What build.sh names bundled ImageNet-layout weights that are not torchvision's release (the app knows
# the release by its content and refuses other bytes under the release's name: core/model/release.py).
OTHER_WEIGHTS_FILE = "resnet18-imagenet-layout.pth"
BUNDLED_TORCH_HOME = "torch_home"  # inside the bundle: torch_home/hub/checkpoints/<IMAGENET_FILE>
WEIGHTS_ENV = "RESNET_APP_FALLBACK_WEIGHTS"  # core/model/pretrained.py's: the file "imagenet" falls back on


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path | None:
    """The folder holding the bundled libraries and data (PyInstaller's _internal), or None from source."""
    meipass = getattr(sys, "_MEIPASS", None)
    return Path(meipass) if is_frozen() and meipass else None


def resource_path(*parts: str) -> Path:
    """A file of resnet_app/resources, from source or from inside the bundle."""
    base = bundle_dir()
    root = base / "resnet_app" / "resources" if base else Path(__file__).resolve().parent / "resources"
    return root.joinpath(*parts)


def build_info() -> dict[str, Any]:
    """What packaging/build.sh recorded about this bundle (variant, torch version, weights), or {}."""
    base = bundle_dir()
    try:
        return json.loads((base / "BUILD_INFO.json").read_text(encoding="utf-8")) if base else {}
    except (OSError, ValueError):
        return {}


def bundled_imagenet_weights() -> Path | None:
    """The ImageNet ResNet18 weights file shipped inside the bundle (build.sh --imagenet-weights), or None:
    torchvision's release under its own name, or other ImageNet-layout weights under OTHER_WEIGHTS_FILE."""
    base = bundle_dir()
    if base is None:
        return None
    for name in (IMAGENET_FILE, OTHER_WEIGHTS_FILE):
        path = base / BUNDLED_TORCH_HOME / "hub" / "checkpoints" / name
        if path.is_file():
            return path
    return None


def use_bundled_imagenet_weights() -> bool:
    """Point the app at the weights the bundle ships, so "imagenet" works offline.

    torchvision's release: torch's hub cache is pointed at the bundle (torchvision looks for the file in
    $TORCH_HOME/hub/checkpoints before downloading); a TORCH_HOME the user set is respected. Nothing
    else of the app uses torch's hub folder. Other weights: RESNET_APP_FALLBACK_WEIGHTS names the file,
    which "imagenet" uses when torch's cache has none (and the app names for what it is).
    """
    weights = bundled_imagenet_weights()
    variable = "TORCH_HOME" if weights is not None and weights.name == IMAGENET_FILE else WEIGHTS_ENV
    if weights is None or variable in os.environ:
        return False
    os.environ[variable] = str(weights.parents[2]) if variable == "TORCH_HOME" else str(weights)
    return True


def log_dir() -> Path:
    """The per-user data folder Qt uses for this app (QStandardPaths.AppLocalDataLocation) + /logs.

    Linux ~/.local/share/ResNet App/ResNet App/logs, Windows %LOCALAPPDATA%/ResNet App/ResNet App/logs,
    macOS ~/Library/Application Support/ResNet App/ResNet App/logs.
    """
    try:
        from PySide6.QtCore import QCoreApplication, QStandardPaths

        from resnet_app.ui.settings import APPLICATION, ORGANIZATION

        QCoreApplication.setOrganizationName(ORGANIZATION)
        QCoreApplication.setApplicationName(APPLICATION)
        location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
        if location:
            return Path(location) / "logs"
    except Exception:  # noqa: BLE001 - a log folder must never stop the app from starting
        pass
    return Path.home() / ".resnet-app" / "logs"


def _home_folders() -> list[str]:
    """The home folder as it may appear in a path: Path.home() ($HOME), and where it really is when that
    is a link (a home folder on another disk)."""
    found: list[str] = []
    for home in (str(Path.home()), os.path.realpath(Path.home())):
        home = home.rstrip("/\\")
        if home and home not in found:
            found.append(home)
    return found


# Anyone's home folder: /home/name, /Users/name, C:\Users\name (a path of another user, or written while
# $HOME pointed elsewhere).
_ANY_HOME = re.compile(r"(?<![\w.~-])(?:/home/|/Users/|[A-Za-z]:[\\/]Users[\\/])[^/\\\s:'\"]+(?=[/\\]|$|[\s:'\"])")


def hide_home(text: str, homes: Sequence[str] | None = None) -> str:
    """`text` with home-folder paths written as "~" ("/home/ann/photos/x.jpg": "~/photos/x.jpg"), for a
    file the user is asked to send: a path in a home folder names the user."""
    for home in sorted(_home_folders() if homes is None else homes, key=len, reverse=True):
        text = re.sub(r"(?<![\w.~-])" + re.escape(home) + r"(?=[/\\]|$|[^\w.-])", "~", text)
    return _ANY_HOME.sub("~", text)


class _HomeHidingLog:
    """The log file, with home folders written as "~" (hide_home) in whatever goes into it."""

    def __init__(self, log: TextIO):
        self.log, self.homes = log, _home_folders()

    def write(self, text: str) -> int:
        self.log.write(hide_home(text, self.homes))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


class _Tee:
    """A text stream writing to the original stream (None in a Windows GUI app) and to the log file."""

    def __init__(self, original: TextIO | None, log: TextIO):
        self.original, self.log = original, log

    def write(self, text: str) -> int:
        if self.original is not None:
            try:
                self.original.write(text)
            except (OSError, ValueError):
                pass
        try:
            self.log.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        for stream in (self.original, self.log):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass

    def isatty(self) -> bool:
        return bool(self.original is not None and self.original.isatty())

    def fileno(self) -> int:
        return (self.original or self.log).fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original or self.log, name)


def _installed_version(distribution: str) -> str:
    """A package's version from its installed metadata (nothing imported: the log opens before torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        if distribution.startswith("PySide6"):
            try:
                import PySide6

                return PySide6.__version__
            except ImportError:
                pass
        return "?"


def setup_log_file(path: Path | None = None) -> Path | None:
    """Copy stdout/stderr, uncaught exceptions, Qt messages and native crashes into a log file, home
    folders written as "~" (people send it with their reports; the console keeps the real paths).

    Returns the log's path, or None when it could not be opened (the app then runs without one).
    """
    path = path or log_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        raw = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115 - lives with the app
    except OSError:
        return None
    # What goes into the file names no home folder ("~" instead); the console is left as it is.
    log: Any = _HomeHidingLog(raw)
    info = build_info()
    from resnet_app import __version__

    log.write(f"\n=== {_dt.datetime.now().isoformat(timespec='seconds')} ResNet App {__version__} "
              f"({info.get('variant', 'source')}, torch {info.get('torch') or _installed_version('torch')}, "
              f"PySide6 {_installed_version('PySide6-Essentials')}) on {platform.platform()}, "
              f"Python {platform.python_version()}, pid {os.getpid()}\n")
    sys.stdout = _Tee(sys.stdout, log)  # type: ignore[assignment]
    sys.stderr = _Tee(sys.stderr, log)  # type: ignore[assignment]
    try:
        faulthandler.enable(raw)  # a segfault in Qt or torch still leaves a Python traceback (written
        # by C code straight to the file: its module paths are not hidden)
    except (OSError, ValueError, AttributeError):
        pass

    previous_hook = sys.excepthook

    def excepthook(kind, value, tb) -> None:
        log.write("".join(traceback.format_exception(kind, value, tb)))
        log.flush()
        if previous_hook is not None:
            previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    threading.excepthook = lambda args: excepthook(args.exc_type, args.exc_value, args.exc_traceback)
    _log_qt_messages()
    return path


def _log_qt_messages() -> None:
    """Qt writes its warnings to the C stderr, past Python's: route them through sys.stderr (the tee)."""
    try:
        from PySide6.QtCore import qInstallMessageHandler
    except Exception:  # noqa: BLE001
        return
    stream = sys.stderr

    def handler(mode, context, message: str) -> None:
        stream.write(f"qt: {getattr(mode, 'name', mode)}: {message}\n")

    qInstallMessageHandler(handler)


# What the frozen app runs when started as `python -m MODULE`: the distributed launcher and its
# workers (core/train/distributed/ starts them so), and torchrun itself.
PYTHON_MODULES = ("resnet_app.core.train.distributed.launcher", "torch.distributed.run")
_PYTHON_FLAGS = ("-u", "-B", "-E", "-s", "-I")  # interpreter flags a launcher may put first (torchrun: -u)


def python_module_invocation(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """(module, its arguments) when `argv` is `[-u] -m MODULE ARGS...` for one of PYTHON_MODULES."""
    args = list(argv)
    while args and args[0] in _PYTHON_FLAGS:
        args.pop(0)
    if len(args) >= 2 and args[0] == "-m" and args[1] in PYTHON_MODULES:
        return args[1], args[2:]
    return None


def run_python_module(module: str, args: list[str]) -> int:
    """Run one of PYTHON_MODULES as `python -m module args` would; returns its exit code."""
    if module == "torch.distributed.run":
        from torch.distributed.run import main as torchrun

        sys.argv = ["torchrun", *args]
        torchrun(args)
        return 0
    from resnet_app.core.train.distributed.launcher import main as distributed

    sys.argv = [module, *args]
    return distributed(args)


def setup(argv: Sequence[str]) -> Path | None:
    """Frozen-app start-up after freeze_support(); returns the log file's path (desktop app only).
    A process of a distributed run does its work here and exits."""
    use_bundled_imagenet_weights()
    invocation = python_module_invocation(argv) if is_frozen() else None
    if invocation is not None:
        sys.exit(run_python_module(*invocation))
    if not argv:  # the desktop app, started from a menu: nobody sees stderr, so keep a log file
        return setup_log_file()
    return None
