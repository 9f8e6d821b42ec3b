#!/usr/bin/env bash
# macOS build of ResNet App: PyInstaller "ResNet App.app" (BUNDLE in packaging/resnet-app.spec) in a .dmg.
#   packaging/macos/build-dmg.sh [--imagenet-weights PATH]
# Needs: macOS 12+ on Apple silicon (arm64), Python 3.11, a network (PyPI). Makes
#   dist/resnet-app-<version>-macos-arm64.dmg   (drag "ResNet App" onto Applications)
# macOS has one variant: PyPI's torch for macOS runs on the CPU and on the GPU through MPS.
# Signing: ad-hoc by default (PyInstaller signs every binary; arm64 needs at least that). With
# CODESIGN_IDENTITY="Developer ID Application: ..." and NOTARY_PROFILE (xcrun notarytool store-credentials)
# set, the app is signed with the hardened runtime and the .dmg notarized and stapled.
# NOT RUN on the Linux machine this was written on; CI runs it (packaging/ci/build-installers.yml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WEIGHTS=""
[ "${1:-}" = "--imagenet-weights" ] && WEIGHTS="${2:?path}"
BUILD="$ROOT/build/packaging"
VENV="$ROOT/build/venv-macos"
mkdir -p "$BUILD" "$ROOT/dist"
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install -e . -r packaging/requirements-build.txt
PY="$VENV/bin/python"
VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
TORCH="$("$PY" -c 'import torch; print(torch.__version__)')"

export RESNET_APP_VARIANT=cpu RESNET_APP_WEIGHTS_DIR="" RESNET_APP_BUILD_INFO="$BUILD/BUILD_INFO.json"
if [ -n "$WEIGHTS" ]; then
    RESNET_APP_WEIGHTS_DIR="$BUILD/weights"; mkdir -p "$RESNET_APP_WEIGHTS_DIR"
    # torchvision's release (known by its whole SHA-256) under its own name; other weights under the
    # name the app looks for them by (resnet_app/frozen.py OTHER_WEIGHTS_FILE).
    NAME="$("$PY" -c 'import sys; from resnet_app.core.model import release; from resnet_app import frozen; print(release.RELEASE_NAME if release.file_sha256(sys.argv[1]) == release.RELEASE_SHA256 else frozen.OTHER_WEIGHTS_FILE)' "$WEIGHTS")"
    cp "$WEIGHTS" "$RESNET_APP_WEIGHTS_DIR/$NAME"
fi
printf '{"name": "resnet-app", "version": "%s", "variant": "mps+cpu", "torch": "%s", "platform": "macos-arm64"}\n' \
    "$VERSION" "$TORCH" > "$RESNET_APP_BUILD_INFO"

START=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$BUILD/pyinstaller-dist" \
    --workpath "$BUILD/pyinstaller-work" packaging/resnet-app.spec
APP="$BUILD/pyinstaller-dist/ResNet App.app"
"$APP/Contents/MacOS/resnet-app" --help > /dev/null
QT_QPA_PLATFORM=offscreen "$APP/Contents/MacOS/resnet-app" selftest

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$APP"
fi

DMG="$ROOT/dist/resnet-app-$VERSION-macos-arm64.dmg"
STAGE="$BUILD/dmg-root"
rm -rf "$STAGE" "$DMG"; mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "ResNet App" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"
if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
    codesign --sign "$CODESIGN_IDENTITY" --timestamp "$DMG"
    xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
fi
echo "ResNet App $VERSION macOS: app $(du -sh "$APP" | cut -f1), dmg $(du -sh "$DMG" | cut -f1), $(( $(date +%s) - START )) s" \
    | tee "$ROOT/dist/build-summary-macos.txt"
