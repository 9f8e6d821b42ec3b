"""Render the app icon's SVG to PNGs (16..256 px), beside it in the package (resnet_app/resources/).

The SVG is the one source; the PNGs are made from it and kept in the package, which ships them (the
window icon, the installers' menu entries).

Run: .venv/bin/python resources/make_icons.py   (QT_QPA_PLATFORM=offscreen works without a display)
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

SIZES = (16, 24, 32, 48, 64, 128, 256)
HERE = Path(__file__).parent
PACKAGE = HERE.parent / "resnet_app" / "resources"
SVG = PACKAGE / "resnet-app.svg"


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv)  # noqa: F841 - needed for painting
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"cannot read {SVG}")
        return 1
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        image.save(str(PACKAGE / f"resnet-app-{size}.png"))
    print(f"wrote {len(SIZES)} PNGs to {PACKAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
