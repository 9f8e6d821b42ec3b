"""The installed app, end to end: build the .deb, unpack it into a scratch root, run it from a clean env.

Slow (a PyInstaller build with torch: minutes and several GB), so it runs only with
RESNET_APP_PACKAGING_TEST=1 (`.ci/run` sets it for this folder). RESNET_APP_PACKAGING_REUSE=1 uses an
existing dist/resnet-app_<version>_amd64.deb instead of building; RESNET_APP_IMAGENET_WEIGHTS=PATH
bundles a real ImageNet ResNet18 .pth (otherwise the build bundles a stand-in with the same keys, which
tests the mechanism, not the accuracy: the app knows torchvision's release by its content, so the
stand-in ships under another name, and the app names it as not the release).

Every run of the installed app happens with `env -i` (only PATH, HOME in a scratch folder,
QT_QPA_PLATFORM=offscreen), from an empty folder, so nothing of this checkout or its venv can help it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DEB = ROOT / "dist" / f"resnet-app_{VERSION}_amd64.deb"
TARBALL = ROOT / "dist" / f"resnet-app-{VERSION}-linux-x86_64.tar.gz"
BUILD_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.skipif(os.environ.get("RESNET_APP_PACKAGING_TEST") != "1",
                       reason="slow packaging build: set RESNET_APP_PACKAGING_TEST=1"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("dpkg-deb") is None,
                       reason="needs Linux with dpkg-deb"),
    pytest.mark.timeout(BUILD_TIMEOUT_S + RUN_TIMEOUT_S),
]


def _stand_in_weights(path: Path) -> Path:
    """A torchvision ResNet18 state_dict (random weights): the keys the app checks, no download."""
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if os.environ.get("RESNET_APP_PACKAGING_REUSE") == "1" and DEB.is_file():
        return DEB
    weights = os.environ.get("RESNET_APP_IMAGENET_WEIGHTS") or str(
        _stand_in_weights(tmp_path_factory.mktemp("weights") / "resnet18.pth"))
    subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--python", sys.executable,
                    "--imagenet-weights", weights], cwd=ROOT, check=True, timeout=BUILD_TIMEOUT_S)
    assert DEB.is_file() and TARBALL.is_file()
    return DEB


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory):
    """The .deb unpacked as dpkg would install it, into a scratch root."""
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=RUN_TIMEOUT_S)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # several GB; pytest would keep it around for three runs


@pytest.fixture
def clean(tmp_path):
    """run(args) -> CompletedProcess of the installed app with a clean environment, from an empty folder."""
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()

    def run(exe: Path, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
        return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(exe), *args],
                              cwd=cwd, capture_output=True, text=True, timeout=timeout)

    run.cwd = cwd
    run.home = home
    return run


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                                  f"stderr:\n{proc.stderr[-4000:]}")
    return proc.stdout


def test_control_and_maintainer_scripts(deb, tmp_path):
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert "Package: resnet-app" in fields
    assert f"Version: {VERSION}" in fields
    assert "Architecture: amd64" in fields
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    for script in ("postinst", "postrm"):
        assert os.access(control / script, os.X_OK)
        subprocess.run(["sh", "-n", str(control / script)], check=True)
        # With no desktop tools on PATH (a server), the scripts still succeed.
        arg = "configure" if script == "postinst" else "remove"
        subprocess.run(["env", "-i", "PATH=/nonexistent", "/bin/sh", str(control / script), arg], check=True)


def test_layout_menu_entry_icons_and_launcher(root):
    exe = root / "opt/resnet-app/resnet-app"
    assert exe.is_file() and os.access(exe, os.X_OK)
    launcher = root / "usr/bin/resnet-app"
    assert launcher.is_symlink() and os.readlink(launcher) == "/opt/resnet-app/resnet-app"
    desktop = (root / "usr/share/applications/resnet-app.desktop").read_text()
    assert "Exec=resnet-app" in desktop and "Icon=resnet-app" in desktop
    for size in (16, 32, 48, 64, 128, 256):
        assert (root / f"usr/share/icons/hicolor/{size}x{size}/apps/resnet-app.png").is_file()
    assert (root / "usr/share/icons/hicolor/scalable/apps/resnet-app.svg").is_file()
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(root / "usr/share/applications/resnet-app.desktop")], check=True)
    # Everything else lives under /opt/resnet-app, so dpkg removes it all.
    top = {p.name for p in root.iterdir()}
    assert top == {"opt", "usr"}
    assert {p.name for p in (root / "usr").iterdir()} == {"bin", "share"}


def test_left_out_what_the_app_does_not_use(root):
    internal = root / "opt/resnet-app/_internal"
    assert (internal / "resnet_app/resources/resnet-app.svg").is_file()
    assert (internal / "BUILD_INFO.json").is_file()
    for unused in ("triton", "tensorboard", "torch/include", "torch/bin/protoc", "torch/utils/tensorboard",
                   "PySide6/Qt/qml"):
        assert not (internal / unused).exists(), unused
    for pattern in ("libQt6Quick*", "libQt6WebEngine*", "*.a", "libnvblas*", "libcufftw*", "nvshmem_transport_*"):
        assert not list(internal.rglob(pattern)), pattern
    assert list(internal.glob("torchvision/_C*.so"))  # torchvision's compiled ops
    if json.loads((internal / "BUILD_INFO.json").read_text())["variant"] == "cuda":
        # loaded with dlopen at run time, so PyInstaller's dependency analysis alone would miss them
        for lib in ("libnvrtc-builtins.so.*", "libcudnn_engines_precompiled.so.*"):
            assert list(internal.glob(f"nvidia/*/lib/{lib}")), lib
    else:
        assert not (internal / "nvidia").exists()
    platforms = {p.name for p in (internal / "PySide6/Qt/plugins/platforms").iterdir()}
    assert {"libqxcb.so", "libqoffscreen.so"} <= platforms


def test_selftest_of_the_installed_app_in_a_clean_env(root, clean):
    out = _ok(clean(root / "opt/resnet-app/resnet-app", "selftest"))
    assert "self-test passed" in out
    assert "[FAIL]" not in out
    for step in ("GUI started", "Qt binding keeps its references", "trained one epoch", "classified an image",
                 "exported to ONNX and checked it"):
        assert f"[ok] {step}" in out


def test_cli_train_and_predict_through_the_launcher(root, clean):
    """Through the usr/bin symlink (as the menu runs it), with spawned data-loading workers."""
    # usr/bin/resnet-app points at /opt/resnet-app/resnet-app of the real root; make the same link to the
    # scratch root's copy, so the executable runs through a symlink as it does when installed.
    exe = clean.home / "bin" / "resnet-app"
    exe.parent.mkdir()
    exe.symlink_to(root / os.readlink(root / "usr/bin/resnet-app").lstrip("/"))
    assert "train" in _ok(clean(exe, "--help"))
    _ok(clean(exe, "sample-data", "shapes", "--per-class", "12"))
    # Streaming with one worker process: the worker is this frozen executable again (freeze_support).
    out = _ok(clean(exe, "train", "shapes", "--out", "run", "--image-size", "16", "--batch-size", "8",
                    "--epochs", "1", "--workers", "1", "--data-loading", "streaming", "--json"))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "completed"
    model = clean.cwd / "run" / "model.safetensors"
    assert model.is_file()
    lines = _ok(clean(exe, "predict", str(model), "shapes/circle", "--top-k", "2", "--json")).strip().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert predictions and all(p["error"] is None and len(p["top_k"]) == 2 for p in predictions)
    # The decoded data path decodes in a spawned process pool from 2,000 training images on.
    _ok(clean(exe, "sample-data", "many", "--per-class", "650"))
    out = _ok(clean(exe, "train", "many", "--out", "run2", "--image-size", "16", "--batch-size", "128",
                    "--epochs", "1", "--data-loading", "decoded", "--json"))
    assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"


def test_bundled_imagenet_weights_classify_offline(root, clean):
    exe = root / "opt/resnet-app/resnet-app"
    checkpoints = root / "opt/resnet-app/_internal/torch_home/hub/checkpoints"
    release, other = checkpoints / "resnet18-f37072fd.pth", checkpoints / "resnet18-imagenet-layout.pth"
    if not release.is_file() and not other.is_file():  # a reused build made without --imagenet-weights:
        checkpoints.mkdir(parents=True)                  # put a stand-in where the build would
        _stand_in_weights(other)
    _ok(clean(exe, "sample-data", "shapes", "--per-class", "2"))
    predicted = clean(exe, "predict", "imagenet", "shapes/star", "--top-k", "3", "--json")
    predictions = [json.loads(line) for line in _ok(predicted).strip().splitlines()]
    assert predictions and all(p["error"] is None and len(p["top_k"]) == 3 for p in predictions)
    assert not (clean.home / ".cache" / "torch").exists()  # read from the bundle, nothing downloaded
    said = ("torchvision's ImageNet release resnet18-f37072fd.pth" if release.is_file()
            else "ImageNet-layout weights from resnet18-imagenet-layout.pth, not torchvision's release")
    assert f"weights: {said}" in predicted.stderr, predicted.stderr


def test_portable_tarball_matches(deb):
    if not TARBALL.is_file():
        pytest.skip("no tarball next to the reused .deb")
    names = subprocess.run(["tar", "-tzf", str(TARBALL)], capture_output=True, text=True, check=True).stdout.split()
    prefix = f"resnet-app-{VERSION}/"
    for name in ("resnet-app", "install-desktop-entry.sh", "README.txt",
                 "share/applications/resnet-app.desktop", "_internal/BUILD_INFO.json"):
        assert prefix + name in names, name


def test_the_installed_app_trains_with_two_processes(root, clean):
    """torchrun's processes are this frozen executable again (resnet_app/frozen.py, PyInstaller #7756's
    pattern): two CPU processes with the gloo backend, as on a machine with two GPUs."""
    exe = root / "opt/resnet-app/resnet-app"
    _ok(clean(exe, "sample-data", "shapes", "--per-class", "12"))
    out = _ok(clean(exe, "train", "shapes", "--out", "ddp", "--image-size", "16", "--batch-size", "8",
                    "--epochs", "1", "--device", "cpu", "--nproc", "2", "--json"))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "completed", out
    assert (clean.cwd / "ddp" / "model.safetensors").is_file()
