"""The check that runs before Qt on Linux: missing X11 libraries are named, with the apt line."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from resnet_app.ui import system_check

needs_linker = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not shutil.which("ldd") or not shutil.which("gcc"),
    reason="Linux, with ldd and gcc")


def library_needing(tmp_path, sonames: list[str]):
    """A real shared library that links against `sonames`, which are then removed: the linker reports
    them 'not found', as it does for Qt's plugin on a machine without the xcb packages."""
    for soname in sonames:
        stub = tmp_path / soname
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(stub), f"-Wl,-soname,{soname}", "-x", "c", "-"],
                       input="void stub(void) {}\n", text=True, check=True)
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugin), "-x", "c", "-", "-x", "none", "-Wl,--no-as-needed",
                    *[str(tmp_path / soname) for soname in sonames]], input="void plugin(void) {}\n", text=True,
                   check=True)
    for soname in sonames:
        (tmp_path / soname).unlink()
    return plugin


@needs_linker
def test_missing_libraries_are_named_with_the_packages_that_install_them(tmp_path, monkeypatch):
    real = system_check.xcb_plugin()
    if real is not None:
        assert system_check.missing_libraries(real) == []  # this machine has them all
    # Names no system has, so the linker really can't find them (this machine has the xcb libraries).
    missing = ["libresnetapp-absent-a.so.0", "libresnetapp-absent-b.so.1"]
    plugin = library_needing(tmp_path, missing)
    assert system_check.missing_libraries(plugin) == missing
    monkeypatch.setattr(system_check, "xcb_plugin", lambda: plugin)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setitem(system_check.DEBIAN_PACKAGES, missing[0], "libxcb-cursor0")  # as the real ones map
    message = system_check.missing_system_libraries_message()
    assert ", ".join(missing) in message
    assert f"sudo apt install {missing[1]} libxcb-cursor0" in message


def test_no_check_where_qt_does_not_load_the_x11_plugin(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert system_check.missing_system_libraries_message() is None
