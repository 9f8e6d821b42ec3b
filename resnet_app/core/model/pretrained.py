"""ImageNet weights for torchvision's ResNet18: where they are, checking a file, downloading them.

Three places can hold them, looked at in this order: a file the user chose once (the app remembers
it), torchvision's own cache (`~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth`, which the
installers point at the copy they bundle) or the file RESNET_APP_FALLBACK_WEIGHTS names (an installer
that bundles other ImageNet-layout weights sets it), or the network, through torchvision's weights API.

A file is read with torch.load(weights_only=True): no code in it ever runs. Every file is known by its
content (release.py): torchvision's release by its whole SHA-256, wherever it lies; a file named as the
release (or as any torch.hub download) whose content is not what its name says is refused; any other
ResNet18 state dict in torchvision's layout (their own earlier fine-tune, say) is used, and named as
"ImageNet-layout weights from FILE, not torchvision's release". Its keys and shapes are checked, and
each refusal names the file and the reason.
"""
from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from resnet_app.core.model import release
from resnet_app.core.model.architectures import ModelError, build_model
from resnet_app.core.model.release import IMAGENET_WEIGHTS, describe_weights, file_sha256, identify_weights

DOWNLOAD_CONNECT_TIMEOUT_S = 5.0
DOWNLOAD_CHUNK = 1 << 16
# A weights file "imagenet" means when torchvision's cache has none (an installer that bundles
# ImageNet-layout weights other than torchvision's release sets it: frozen.py).
WEIGHTS_ENV = "RESNET_APP_FALLBACK_WEIGHTS"


class DownloadCancelled(Exception):
    """The user cancelled a download; nothing was kept."""


@dataclass
class PretrainedWeights:
    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    source: str  # the file they were read from
    sha256: str  # of that file: recorded in the models trained from them
    official: bool = False  # the file is torchvision's release (by its whole SHA-256: release.py)

    def describe(self) -> str:
        """"torchvision's ImageNet release FILE (…)", or "ImageNet-layout weights from FILE, not
        torchvision's release (…)": what the Train tab, the run's log and the Classify tab say."""
        return describe_weights(Path(self.source).name, self.sha256, self.official)

    def start_record(self, trained: str) -> dict[str, object]:
        """What a run and its model file record of where training started."""
        return {"from": "pretrained", "weights": Path(self.source).name, "weights_sha256": self.sha256,
                "official": self.official, "trained": trained}


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names, from torchvision's weights metadata (no download needed)."""
    return list(IMAGENET_WEIGHTS.meta["categories"])


def imagenet_cache_path() -> Path:
    """Where torchvision's weights API keeps the ResNet18 file (torch.hub's checkpoints folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / release.RELEASE_NAME


def available_imagenet_weights(chosen: str | Path | None = None) -> Path | None:
    """The ImageNet weights file at hand without a download: the one the user chose (if it still
    exists), else torchvision's cached (or the installer's bundled) copy, else the file
    RESNET_APP_FALLBACK_WEIGHTS names; None when none is. (Found, not yet checked: identify_weights.)"""
    for candidate in (chosen, imagenet_cache_path(), os.environ.get(WEIGHTS_ENV)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_pretrained(source: str | Path, progress: bool = False) -> PretrainedWeights:
    """ImageNet ResNet18 weights from a local .pth file, or "imagenet" for torchvision's (cached or
    downloaded) copy. A file the user names is checked (see the module's docstring)."""
    if str(source) == "imagenet":
        return download_imagenet_weights(progress=progress)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    identity = identify_weights(path)
    state_dict = _load_state_dict_file(path)
    check_resnet18_state_dict(state_dict, path)
    return PretrainedWeights(state_dict, imagenet_class_names(), str(path), identity.sha256, identity.official)


def download_imagenet_weights(progress: bool = False) -> PretrainedWeights:
    """ImageNet ResNet18 weights for "imagenet": the file at hand (torchvision's cache, which may be the
    installer's bundle, else RESNET_APP_FALLBACK_WEIGHTS's), else torchvision's release downloaded into
    torchvision's cache, checked against the release's whole SHA-256 before it is kept.

    Offline, this fails within DOWNLOAD_CONNECT_TIMEOUT_S with a message saying what to do, instead
    of hanging in urllib (which has no timeout of its own).
    """
    at_hand = available_imagenet_weights()
    if at_hand is None:
        at_hand = imagenet_cache_path()
        _check_reachable(IMAGENET_WEIGHTS.url)
        try:
            at_hand.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(IMAGENET_WEIGHTS.url, str(at_hand), hash_prefix=release.RELEASE_SHA256,
                                           progress=progress)
        except Exception as exc:  # network errors, hash mismatch, disk full: all end in one clear message
            raise ModelError(
                f"could not download the ImageNet ResNet18 weights from {IMAGENET_WEIGHTS.url}: {exc}. "
                f"Without a network, copy the file to {at_hand} or give its path instead of 'imagenet'."
            ) from exc
    return load_pretrained(at_hand)


def fetch_imagenet_weights_file(report: Callable[[int, int], None] | None = None,
                                should_stop: Callable[[], bool] | None = None) -> Path:
    """Download torchvision's ImageNet ResNet18 file into its cache, with progress and cancel.

    The app's download: `report(done_bytes, total_bytes)` after each chunk, `should_stop()` checked
    between chunks (DownloadCancelled then, and nothing is kept). The file is written next to its
    final place and moved there only once its SHA-256 is the release's; so a cancelled, cut or
    corrupted download never leaves a file that looks complete. A file already there is kept only if
    it is the release: anything else under its name is downloaded again over.
    """
    target = imagenet_cache_path()
    if target.is_file():
        with contextlib.suppress(ModelError):  # the release's name on other bytes
            if identify_weights(target).official:
                return target
    url = IMAGENET_WEIGHTS.url
    _check_reachable(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(DOWNLOAD_CHUNK):
                if should_stop is not None and should_stop():
                    raise DownloadCancelled("download cancelled")
                out.write(chunk)
                done += len(chunk)
                if report is not None:
                    report(done, total)
        sha256 = file_sha256(tmp)
        if sha256 != release.RELEASE_SHA256:
            raise ModelError(f"the download from {url} is damaged or incomplete (SHA-256 {sha256[:12]}…, the "
                             f"release's is {release.RELEASE_SHA256[:12]}…); nothing was kept. Try again.")
        os.replace(tmp, target)
        release.remember_sha256(target, sha256)
    except (DownloadCancelled, ModelError):
        raise
    except OSError as exc:
        raise ModelError(f"could not download the ImageNet ResNet18 weights from {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _check_reachable(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=DOWNLOAD_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ModelError(
            f"cannot reach {host} to download the ImageNet ResNet18 weights ({exc}); you seem to be "
            f"offline. Download {url} on a machine with a network and open that file instead, "
            f"or copy it to {imagenet_cache_path()}."
        ) from exc


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a weights file that can be loaded safely, or a damaged one "
                         f"({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path}: does not hold a state_dict of tensors")
    return loaded


def check_resnet18_state_dict(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse, naming the file and the first difference, a state dict that is not torchvision's ResNet18."""
    expected = build_model("resnet18", 1000).state_dict()
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ModelError(f"{path}: not torchvision ResNet18 weights (missing {missing[0]}"
                         f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''})")
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise ModelError(f"{path}: not torchvision ResNet18 weights (it has {unexpected[0]}"
                         f"{f' and {len(unexpected) - 1} more' if len(unexpected) > 1 else ''} that ResNet18 "
                         "lacks: another network, perhaps a deeper ResNet)")
    for key, tensor in expected.items():
        if key.startswith("fc."):
            continue  # the classifier head may have any number of classes
        if state_dict[key].shape != tensor.shape:
            raise ModelError(f"{path}: not torchvision ResNet18 weights ({key} has shape "
                             f"{tuple(state_dict[key].shape)}, expected {tuple(tensor.shape)})")
    if state_dict["fc.weight"].shape[1] != expected["fc.weight"].shape[1]:
        raise ModelError(f"{path}: not torchvision ResNet18 weights (fc.weight takes "
                         f"{state_dict['fc.weight'].shape[1]} features, expected 512)")


def apply_pretrained(model: nn.Module, weights: PretrainedWeights, num_classes: int) -> bool:
    """Load pretrained backbone weights into a torchvision ResNet18 with `num_classes` outputs.

    Returns True when the ImageNet head was kept too (num_classes matches), False when the head stays
    freshly initialised for fine-tuning on the user's classes.
    """
    head_matches = weights.state_dict["fc.weight"].shape[0] == num_classes
    state = weights.state_dict if head_matches else {
        k: v for k, v in weights.state_dict.items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=head_matches)
    return head_matches
