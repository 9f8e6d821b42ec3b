"""Before Qt starts on Linux: are the system libraries its X11 (xcb) plugin needs installed?

pip's PySide6 brings Qt but not the xcb libraries it links against. Without them Qt aborts with
"could not load the Qt platform plugin xcb", naming at most one library and nothing to install. So the
app asks the dynamic linker first (`ldd` on the plugin) and, if something is missing, says which
libraries and the one `apt` line that installs them. Plain Python: runs before any Qt window exists.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Library (soname) -> the Debian/Ubuntu package that ships it: those pip's Qt needs and a desktop
# install may lack (a minimal or server install, WSL, a fresh container).
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
# The line for a source install on Debian/Ubuntu (the .deb declares these itself); README names it too.
APT_LINE = "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libegl1"
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """Qt's X11 platform plugin inside the installed PySide6, or None where it isn't."""
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """The libraries `plugin` needs that the dynamic linker can't find (empty when all are there, or
    when ldd can't tell)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(_NOT_FOUND.findall(done.stdout)))


def uses_xcb() -> bool:
    """Whether Qt will load its X11 plugin: on Linux, with an X display and no other platform chosen."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.startswith("xcb")
    return bool(os.environ.get("DISPLAY")) and not os.environ.get("WAYLAND_DISPLAY")


def missing_system_libraries_message() -> str | None:
    """What to tell the user when the X11 plugin can't load, or None when all is well."""
    plugin = xcb_plugin() if uses_xcb() else None
    missing = missing_libraries(plugin) if plugin else []
    if not missing:
        return None
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in missing})
    return ("The desktop app needs system libraries that are not installed: " + ", ".join(missing) + ".\n"
            "On Debian or Ubuntu, install them with:\n"
            f"    sudo apt install {' '.join(packages)}\n"
            "(Other Linux systems: install the packages that provide these libraries.) "
            "The command line works without them: resnet-app --help")
