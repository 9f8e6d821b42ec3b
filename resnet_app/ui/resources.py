"""The app icon, shipped inside the package (resnet_app/resources/)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def icon_path(size: int | None = None) -> Path:
    return RESOURCES / ("resnet-app.svg" if size is None else f"resnet-app-{size}.png")


def app_icon() -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        path = icon_path(size)
        if path.is_file():
            icon.addFile(str(path))
    svg = icon_path()
    if svg.is_file():
        icon.addFile(str(svg))  # sharp at any other size, where the SVG icon engine is present
    return icon
