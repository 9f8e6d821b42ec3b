#!/usr/bin/env bash
# Build the Linux installers of ResNet App:
#   dist/resnet-app_<version>_amd64.deb            (installs under /opt/resnet-app, menu entry, icons, launcher)
#   dist/resnet-app-<version>-linux-x86_64.tar.gz  (portable folder; run ./resnet-app or ./install-desktop-entry.sh)
#
# usage: packaging/build.sh [--variant cpu|cuda] [--imagenet-weights PATH] [--python PATH]
#                           [--compression gzip|zstd|xz] [--no-tar] [--no-deb] [--reuse-bundle]
#
# The variant is whichever torch the build Python has: a CUDA build of torch (PyPI's default on Linux)
# makes the "cuda" bundle, a CPU-only one (from the PyTorch CPU index) the "cpu" bundle; --variant checks
# that it matches. See packaging/README.md ("Variants") for how to make a build venv for each.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

VARIANT=""
WEIGHTS=""
PYTHON="${PYTHON:-}"
COMPRESSION="gzip"
MAKE_TAR=1
MAKE_DEB=1
REUSE=0

die() { echo "build.sh: error: $*" >&2; exit 2; }
say() { echo "build.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --variant) VARIANT="${2:-}"; shift 2 ;;
        --variant=*) VARIANT="${1#*=}"; shift ;;
        --imagenet-weights) WEIGHTS="${2:-}"; shift 2 ;;
        --imagenet-weights=*) WEIGHTS="${1#*=}"; shift ;;
        --python) PYTHON="${2:-}"; shift 2 ;;
        --python=*) PYTHON="${1#*=}"; shift ;;
        --compression) COMPRESSION="${2:-}"; shift 2 ;;
        --compression=*) COMPRESSION="${1#*=}"; shift ;;
        --no-tar) MAKE_TAR=0; shift ;;
        --no-deb) MAKE_DEB=0; shift ;;
        --reuse-bundle) REUSE=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$VARIANT" in ""|cpu|cuda) ;; *) die "--variant must be cpu or cuda" ;; esac
case "$COMPRESSION" in gzip|zstd|xz) ;; *) die "--compression must be gzip, zstd or xz" ;; esac
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
[ -x "$PYTHON" ] || die "no Python at $PYTHON (give --python PATH: a venv with the app installed)"

BUILD="$ROOT/build/packaging"
TOOLS="$ROOT/build/tools"      # PyInstaller, installed here so the app's venv stays as it is
DIST="$ROOT/dist"
BUNDLE="$BUILD/pyinstaller-dist/resnet-app"
START=$(date +%s)

# --- what we are building ----------------------------------------------------------------------------
VERSION="$("$PYTHON" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
    "$ROOT/pyproject.toml")"
TORCH_INFO="$("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda or "none")')" \
    || die "$PYTHON can't import torch: install the app into it first (pip install -e .)"
TORCH_VERSION="${TORCH_INFO% *}"
TORCH_CUDA="${TORCH_INFO#* }"
FOUND_VARIANT=cpu; [ "$TORCH_CUDA" != "none" ] && FOUND_VARIANT=cuda
if [ -z "$VARIANT" ]; then
    VARIANT="$FOUND_VARIANT"
elif [ "$VARIANT" != "$FOUND_VARIANT" ]; then
    if [ "$VARIANT" = cpu ]; then
        die "--variant cpu needs a CPU-only torch in the build Python, but $PYTHON has torch $TORCH_VERSION (CUDA $TORCH_CUDA).
  Make a CPU build venv (needs the PyTorch CPU index, https://download.pytorch.org/whl/cpu):
    python3 -m venv build/venv-cpu
    build/venv-cpu/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
    build/venv-cpu/bin/pip install -e .
    packaging/build.sh --variant cpu --python build/venv-cpu/bin/python"
    else
        die "--variant cuda needs a CUDA build of torch (pip install torch from PyPI on Linux), but $PYTHON has torch $TORCH_VERSION (CPU only)"
    fi
fi
# A Qt binding that loses a reference to True on every signal aborts the app in long sessions on
# Python < 3.12 (resnet_app/ui/binding_check.py): never ship one.
QT_QPA_PLATFORM=offscreen "$PYTHON" - <<'EOF' || die "the build venv's Qt binding is unfit to ship (above); install PySide6-Essentials<6.12 into it"
import sys
from PySide6.QtCore import QCoreApplication
app = QCoreApplication([])
from resnet_app.ui.binding_check import describe_binding, signals_leak_true
if sys.version_info < (3, 12) and signals_leak_true():
    sys.exit(f"build.sh: error: {describe_binding()} loses a reference to True on every signal")
EOF
mkdir -p "$BUILD" "$DIST"
say "ResNet App $VERSION, variant $VARIANT (torch $TORCH_VERSION, CUDA $TORCH_CUDA), python $PYTHON"

# --- optional ImageNet weights -----------------------------------------------------------------------
WEIGHTS_DIR=""
WEIGHTS_NOTE="none"
if [ -n "$WEIGHTS" ]; then
    [ -f "$WEIGHTS" ] || die "--imagenet-weights: no file at $WEIGHTS"
    WEIGHTS_DIR="$BUILD/weights"
    rm -rf "$WEIGHTS_DIR"; mkdir -p "$WEIGHTS_DIR"
    # Check it is a ResNet18 state_dict loadable without running code, before shipping it. torchvision's
    # release (known by its whole SHA-256, as the app knows it: resnet_app/core/model/release.py) ships
    # under its own name in torch's cache folder; any other ImageNet-layout weights ship under
    # OTHER_WEIGHTS_FILE (resnet_app/frozen.py), which the app names as "not torchvision's release".
    WEIGHTS_INFO="$("$PYTHON" - "$WEIGHTS" <<'EOF'
import hashlib, sys, torch, torchvision
RELEASE_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
path = sys.argv[1]
state = torch.load(path, map_location="cpu", weights_only=True)
expected = set(torchvision.models.resnet18().state_dict())
if not isinstance(state, dict) or set(state) != expected:
    sys.exit(f"build.sh: error: {path} is not a torchvision ResNet18 state_dict")
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
official = digest == RELEASE_SHA256
print("resnet18-f37072fd.pth" if official else "resnet18-imagenet-layout.pth")
print(f"sha256 {digest[:16]}... ({'torchvision IMAGENET1K_V1' if official else 'NOT the torchvision release file'})")
EOF
)" || exit 2
    WEIGHTS_NAME="${WEIGHTS_INFO%%$'\n'*}"
    WEIGHTS_NOTE="${WEIGHTS_INFO#*$'\n'}"
    cp "$WEIGHTS" "$WEIGHTS_DIR/$WEIGHTS_NAME"
    say "bundling ImageNet weights as $WEIGHTS_NAME: $WEIGHTS_NOTE"
fi

# --- PyInstaller ------------------------------------------------------------------------------------
PYI_ENV=()
if ! "$PYTHON" -c 'import PyInstaller' 2>/dev/null; then
    if ! PYTHONPATH="$TOOLS" "$PYTHON" -c 'import PyInstaller' 2>/dev/null; then
        say "installing PyInstaller into $TOOLS"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$TOOLS" -r "$HERE/requirements-build.txt"
    fi
    PYI_ENV=(env "PYTHONPATH=$TOOLS")
fi

cat > "$BUILD/BUILD_INFO.json" <<EOF
{"name": "resnet-app", "version": "$VERSION", "variant": "$VARIANT", "torch": "$TORCH_VERSION", "cuda": "$TORCH_CUDA",
 "imagenet_weights": "$WEIGHTS_NOTE", "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "platform": "linux-x86_64"}
EOF

if [ "$REUSE" = 1 ] && [ -x "$BUNDLE/resnet-app" ]; then
    say "reusing $BUNDLE"
    cp "$BUILD/BUILD_INFO.json" "$BUNDLE/_internal/BUILD_INFO.json"
else
    say "freezing with PyInstaller (several minutes)"
    rm -rf "$BUILD/pyinstaller-dist"
    "${PYI_ENV[@]}" env RESNET_APP_VARIANT="$VARIANT" RESNET_APP_WEIGHTS_DIR="$WEIGHTS_DIR" \
        RESNET_APP_BUILD_INFO="$BUILD/BUILD_INFO.json" \
        "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$BUILD/pyinstaller-dist" --workpath "$BUILD/pyinstaller-work" "$HERE/resnet-app.spec"
fi
FREEZE_END=$(date +%s)
# A quick check that the frozen executable starts at all (no Qt, no display needed).
"$BUNDLE/resnet-app" --help > /dev/null || die "the frozen executable does not start"

# --- .deb ---------------------------------------------------------------------------------------------
ICON_SRC="$ROOT/resnet_app/resources"  # the one copy of the icons (resources/make_icons.py renders them)
DESKTOP_SRC="$ROOT/resources/resnet-app.desktop"
[ -f "$DESKTOP_SRC" ] || die "missing $DESKTOP_SRC"

install_icons() {  # $1: the share/ folder to fill
    local size
    for size in 16 24 32 48 64 128 256; do
        if [ -f "$ICON_SRC/resnet-app-$size.png" ]; then
            install -Dm644 "$ICON_SRC/resnet-app-$size.png" "$1/icons/hicolor/${size}x${size}/apps/resnet-app.png"
        fi
    done
    [ -f "$ICON_SRC/resnet-app.svg" ] && install -Dm644 "$ICON_SRC/resnet-app.svg" "$1/icons/hicolor/scalable/apps/resnet-app.svg"
    return 0
}

DEB=""
if [ "$MAKE_DEB" = 1 ]; then
    STAGE="$BUILD/deb-root"
    rm -rf "$STAGE"
    mkdir -p "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/DEBIAN"
    # Hard links: no copy of several GB (the staging folder lives on the same disk).
    cp -al "$BUNDLE" "$STAGE/opt/resnet-app" 2>/dev/null || cp -a "$BUNDLE" "$STAGE/opt/resnet-app"
    ln -s /opt/resnet-app/resnet-app "$STAGE/usr/bin/resnet-app"
    install -Dm644 "$DESKTOP_SRC" "$STAGE/usr/share/applications/resnet-app.desktop"
    install_icons "$STAGE/usr/share"
    install -Dm644 "$HERE/linux/copyright" "$STAGE/usr/share/doc/resnet-app/copyright"
    INSTALLED_KB=$(du -sk --apparent-size "$STAGE" | cut -f1)
    DESCRIPTION_VARIANT="CPU-only build (runs on any x86-64 PC)"
    [ "$VARIANT" = cuda ] && DESCRIPTION_VARIANT="NVIDIA GPU build (CUDA $TORCH_CUDA libraries included; runs on the CPU where there is no NVIDIA GPU)"
    sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$INSTALLED_KB/" -e "s/@VARIANT@/$DESCRIPTION_VARIANT/" \
        "$HERE/linux/control.in" > "$STAGE/DEBIAN/control"
    install -m755 "$HERE/linux/postinst" "$HERE/linux/postrm" "$STAGE/DEBIAN/"
    DEB="$DIST/resnet-app_${VERSION}_amd64.deb"
    case "$COMPRESSION" in
        gzip) ZOPTS=(-Zgzip -z1) ;;   # any dpkg; ~1 min per GB on one core
        zstd) ZOPTS=(-Zzstd -z3) ;;   # dpkg >= 1.21.18 (Debian 12, Ubuntu 21.10+); faster and smaller
        xz) ZOPTS=(-Zxz -z6) ;;       # smallest, slowest (many minutes for the CUDA bundle)
    esac
    say "building $DEB ($COMPRESSION)"
    dpkg-deb --root-owner-group "${ZOPTS[@]}" --build "$STAGE" "$DEB" > /dev/null
    rm -rf "$STAGE"
fi
DEB_END=$(date +%s)

# --- portable .tar.gz -------------------------------------------------------------------------------
TARBALL=""
if [ "$MAKE_TAR" = 1 ]; then
    NAME="resnet-app-$VERSION"
    TSTAGE="$BUILD/tar-root"
    rm -rf "$TSTAGE"; mkdir -p "$TSTAGE"
    cp -al "$BUNDLE" "$TSTAGE/$NAME" 2>/dev/null || cp -a "$BUNDLE" "$TSTAGE/$NAME"
    mkdir -p "$TSTAGE/$NAME/share/applications"
    install -m644 "$DESKTOP_SRC" "$TSTAGE/$NAME/share/applications/resnet-app.desktop"
    install_icons "$TSTAGE/$NAME/share"
    install -m755 "$HERE/linux/install-desktop-entry.sh" "$TSTAGE/$NAME/install-desktop-entry.sh"
    install -m644 "$HERE/linux/README-portable.txt" "$TSTAGE/$NAME/README.txt"
    TARBALL="$DIST/resnet-app-$VERSION-linux-x86_64.tar.gz"
    say "building $TARBALL"
    tar -C "$TSTAGE" --owner=0 --group=0 -cf - "$NAME" | gzip -1 > "$TARBALL.part"
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$TSTAGE"
fi
END=$(date +%s)

# --- summary ------------------------------------------------------------------------------------------
mib() { echo $(( ($(du -sb --apparent-size "$1" | cut -f1) + 1048575) / 1048576 )); }
{
    echo "ResNet App $VERSION, variant $VARIANT, torch $TORCH_VERSION (CUDA $TORCH_CUDA), ImageNet weights: $WEIGHTS_NOTE"
    echo "bundle folder: $(mib "$BUNDLE") MiB ($BUNDLE)"
    [ -n "$DEB" ] && echo "deb: $(mib "$DEB") MiB ($DEB)"
    [ -n "$TARBALL" ] && echo "tar.gz: $(mib "$TARBALL") MiB ($TARBALL)"
    echo "time: freeze $((FREEZE_END - START)) s, deb $((DEB_END - FREEZE_END)) s, tar.gz $((END - DEB_END)) s, total $((END - START)) s"
} | tee "$DIST/build-summary-$VARIANT.txt" >&2
