"""Quick checks of the packaging recipes and of the frozen-app support (no build: seconds)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


@pytest.mark.parametrize("script, shell", [
    ("build.sh", "bash"), ("linux/postinst", "sh"), ("linux/postrm", "sh"),
    ("linux/install-desktop-entry.sh", "sh"), ("macos/build-dmg.sh", "bash"),
])
def test_shell_scripts_parse_and_are_executable(script, shell):
    path = PACKAGING / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run([shell, "-n", str(path)], check=True)


def test_spec_and_entry_point_are_valid_python():
    for name in ("resnet-app.spec", "entry.py"):
        compile((PACKAGING / name).read_text(), name, "exec")
    entry = (PACKAGING / "entry.py").read_text()
    assert entry.index("multiprocessing.freeze_support()") < entry.index("sys.exit(_main())")


def test_deb_control_template_has_the_fields_dpkg_needs():
    control = (PACKAGING / "linux/control.in").read_text()
    for field in ("Package: resnet-app", "Version: @VERSION@", "Architecture: amd64", "Maintainer:",
                  "Installed-Size: @INSTALLED_SIZE@", "Depends:", "Description:"):
        assert field in control


def test_installer_inputs_exist():
    assert (ROOT / "resources/resnet-app.desktop").is_file()
    for size in (16, 32, 48, 256):
        assert (ROOT / f"resnet_app/resources/resnet-app-{size}.png").is_file()
    for recipe in ("windows/resnet-app.iss", "windows/build.ps1", "ci/build-installers.yml", "README.md"):
        assert (PACKAGING / recipe).is_file(), recipe


def test_build_refuses_a_variant_that_the_build_python_cannot_make():
    """--variant must match the torch of the build Python (checked before anything is built)."""
    bad = subprocess.run(["bash", str(PACKAGING / "build.sh"), "--variant", "tpu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--variant must be cpu or cuda" in bad.stderr
    cuda = subprocess.run([sys.executable, "-c", "import torch; print(bool(torch.version.cuda))"],
                          capture_output=True, text=True, check=True).stdout.strip() == "True"
    other = "cpu" if cuda else "cuda"
    proc = subprocess.run(["bash", str(PACKAGING / "build.sh"), "--variant", other, "--python", sys.executable],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"--variant {other} needs" in proc.stderr


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    full_env.pop("TORCH_HOME", None) if "TORCH_HOME" not in env else None
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120)


def test_frozen_support_is_inert_from_source(tmp_path):
    proc = _run_python("""
        import os
        from resnet_app import frozen
        assert not frozen.is_frozen() and frozen.bundle_dir() is None
        assert frozen.resource_path("resnet-app.svg").is_file()
        assert frozen.setup(["predict"]) is None
        assert "TORCH_HOME" not in os.environ
        print("ok")
    """, {"HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "_internal"
    weights = bundle / "torch_home/hub/checkpoints/resnet18-f37072fd.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in")
    (bundle / "BUILD_INFO.json").write_text('{"variant": "cpu", "torch": "x"}')
    return bundle


FROZEN_PRELUDE = """
    import sys
    sys.frozen = True
    sys._MEIPASS = {bundle!r}
    from resnet_app import frozen
"""


def test_frozen_app_finds_bundled_weights_and_keeps_a_log(tmp_path):
    bundle = _fake_bundle(tmp_path)
    proc = _run_python(FROZEN_PRELUDE.format(bundle=str(bundle)) + """
    import os
    from pathlib import Path
    log = frozen.setup([])  # no arguments: the desktop app
    assert frozen.build_info()["variant"] == "cpu"
    from resnet_app.core.model.pretrained import imagenet_cache_path
    assert imagenet_cache_path() == frozen.bundled_imagenet_weights(), imagenet_cache_path()
    print("hello from the app")
    sys.stdout.flush()
    print(log)
    """, {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    log = Path(proc.stdout.strip().splitlines()[-1])
    assert log.is_relative_to(tmp_path / "data") and log.name == "resnet-app.log"
    text = log.read_text()
    assert "ResNet App" in text and "(cpu, torch x, PySide6 " in text and "hello from the app" in text


def test_frozen_app_names_other_bundled_weights_for_what_they_are(tmp_path):
    """A build given ImageNet-layout weights that are not torchvision's release ships them under another
    name (build.sh); the frozen app points "imagenet" at them, and they are named as not the release."""
    bundle = tmp_path / "_internal"
    weights = bundle / "torch_home/hub/checkpoints/resnet18-imagenet-layout.pth"
    weights.parent.mkdir(parents=True)
    proc = _run_python(FROZEN_PRELUDE.format(bundle=str(bundle)) + f"""
    import os, torch
    from resnet_app.core.model.architectures import build_model
    torch.save(build_model("resnet18", 1000).state_dict(), {str(weights)!r})
    assert frozen.setup(["predict"]) is None
    assert "TORCH_HOME" not in os.environ  # torch's own cache stays the user's
    from resnet_app.core.model import pretrained
    assert os.environ[pretrained.WEIGHTS_ENV] == str(frozen.bundled_imagenet_weights()) == {str(weights)!r}
    print(pretrained.load_pretrained("imagenet").describe())
    """, {"HOME": str(tmp_path / "home"), "RESNET_APP_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "ImageNet-layout weights from resnet18-imagenet-layout.pth, not torchvision's release")


def test_the_build_scripts_name_bundled_weights_as_the_app_looks_for_them():
    from resnet_app import frozen
    from resnet_app.core.model import pretrained, release

    assert frozen.IMAGENET_FILE == release.RELEASE_NAME and frozen.WEIGHTS_ENV == pretrained.WEIGHTS_ENV
    build = (PACKAGING / "build.sh").read_text()
    for text in (release.RELEASE_SHA256, release.RELEASE_NAME, frozen.OTHER_WEIGHTS_FILE):
        assert text in build
    for script in ("windows/build.ps1", "macos/build-dmg.sh"):
        assert "frozen.OTHER_WEIGHTS_FILE" in (PACKAGING / script).read_text(), script


def test_frozen_app_respects_a_torch_home_the_user_set(tmp_path):
    bundle = _fake_bundle(tmp_path)
    proc = _run_python(FROZEN_PRELUDE.format(bundle=str(bundle)) + """
    import os
    assert frozen.setup(["predict"]) is None  # a command: no log file
    print(os.environ["TORCH_HOME"])
    """, {"HOME": str(tmp_path / "home"), "TORCH_HOME": str(tmp_path / "mine")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "mine")
    assert not (tmp_path / "home").exists()
