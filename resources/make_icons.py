"""Render resources/icons/resnet-app.svg to PNGs (16..256 px) and copy all into the package.

Run: .venv/bin/python resources/make_icons.py   (QT_QPA_PLATFORM=offscreen works without a display)
"""
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

SIZES = (16, 24, 32, 48, 64, 128, 256)
HERE = Path(__file__).parent
SVG = HERE / "icons" / "resnet-app.svg"
PACKAGE = HERE.parent / "resnet_app" / "resources"


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv)  # noqa: F841 - needed for painting
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"cannot read {SVG}")
        return 1
    PACKAGE.mkdir(parents=True, exist_ok=True)
    shutil.copy(SVG, PACKAGE / SVG.name)
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        out = HERE / "icons" / f"resnet-app-{size}.png"
        image.save(str(out))
        shutil.copy(out, PACKAGE / out.name)
    print(f"wrote {len(SIZES)} PNGs to {HERE / 'icons'} and copied the icons to {PACKAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
