"""ImageNet weights for torchvision's ResNet18: where they are, checking a file, downloading them.

Three places can hold them, looked at in this order: a file the user chose once (the app remembers
it), torchvision's own cache (`~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth`, which the
installers point at the copy they bundle), or the network, through torchvision's weights API.

A file is read with torch.load(weights_only=True): no code in it ever runs. A file named as
torchvision names its downloads (`resnet18-<hash>.pth`) must match the SHA-256 prefix in its name, as
torch.hub checks a download; any other file must be a ResNet18 state dict in torchvision's layout
(their own earlier fine-tune, say): its keys and shapes are checked, and each refusal names the file
and the reason.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torchvision

from resnet_app.core.model.architectures import ModelError, build_model

IMAGENET_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
DOWNLOAD_CONNECT_TIMEOUT_S = 5.0
DOWNLOAD_CHUNK = 1 << 16
# torch.hub's naming of downloads: the file name ends in the first hex digits of its SHA-256.
HASHED_NAME = re.compile(r"-([a-f0-9]{6,64})\.pth?$")
_HASH_CHUNK = 1 << 20


class DownloadCancelled(Exception):
    """The user cancelled a download; nothing was kept."""


@dataclass
class PretrainedWeights:
    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    source: str  # a path, or the URL they came from
    sha256: str  # of the file they were read from: recorded in the models trained from them

    def describe(self) -> str:
        return f"{Path(self.source).name} (SHA-256 {self.sha256[:12]}…)"


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names, from torchvision's weights metadata (no download needed)."""
    return list(IMAGENET_WEIGHTS.meta["categories"])


def imagenet_cache_path() -> Path:
    """Where torchvision's weights API keeps the ResNet18 file (torch.hub's checkpoints folder)."""
    filename = Path(urlparse(IMAGENET_WEIGHTS.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def available_imagenet_weights(chosen: str | Path | None = None) -> Path | None:
    """The ImageNet weights file at hand without a download: the one the user chose (if it still
    exists), else torchvision's cached (or the installer's bundled) copy; None when neither is."""
    for candidate in (chosen, imagenet_cache_path()):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_pretrained(source: str | Path, progress: bool = False) -> PretrainedWeights:
    """ImageNet ResNet18 weights from a local .pth file, or "imagenet" for torchvision's (cached or
    downloaded) copy. A file the user names is checked (see the module's docstring)."""
    if str(source) == "imagenet":
        return download_imagenet_weights(progress=progress)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    sha256 = file_sha256(path)
    _check_hash_in_name(path, sha256)
    state_dict = _load_state_dict_file(path)
    check_resnet18_state_dict(state_dict, path)
    return PretrainedWeights(state_dict, imagenet_class_names(), str(path), sha256)


def _check_hash_in_name(path: Path, sha256: str) -> None:
    named = HASHED_NAME.search(path.name)
    if named and not sha256.startswith(named.group(1)):
        raise ModelError(
            f"{path}: the file is damaged or incomplete: its name says its SHA-256 starts with "
            f"{named.group(1)}, but it starts with {sha256[:len(named.group(1))]}. Download it again, "
            "or choose another copy.")


def download_imagenet_weights(progress: bool = False) -> PretrainedWeights:
    """torchvision's ImageNet ResNet18 weights, from its cache or downloaded into it.

    Offline, this fails within DOWNLOAD_CONNECT_TIMEOUT_S with a message saying what to do, instead
    of hanging in urllib (which has no timeout of its own).
    """
    cached = imagenet_cache_path()
    if not cached.is_file():
        _check_reachable(IMAGENET_WEIGHTS.url)
    try:
        state_dict = IMAGENET_WEIGHTS.get_state_dict(progress=progress, check_hash=True)
    except Exception as exc:  # network errors, hash mismatch, disk full: all end in one clear message
        raise ModelError(
            f"could not download the ImageNet ResNet18 weights from {IMAGENET_WEIGHTS.url}: {exc}. "
            f"Without a network, copy the file to {cached} or give its path instead of 'imagenet'."
        ) from exc
    return PretrainedWeights(state_dict, imagenet_class_names(), str(cached), file_sha256(cached))


def fetch_imagenet_weights_file(report: Callable[[int, int], None] | None = None,
                                should_stop: Callable[[], bool] | None = None) -> Path:
    """Download torchvision's ImageNet ResNet18 file into its cache, with progress and cancel.

    The app's download: `report(done_bytes, total_bytes)` after each chunk, `should_stop()` checked
    between chunks (DownloadCancelled then, and nothing is kept). The file is written next to its
    final place and moved there only once its SHA-256 matches the prefix in its name, as torch.hub
    checks; so a cancelled, cut or corrupted download never leaves a file that looks complete.
    """
    target = imagenet_cache_path()
    if target.is_file():
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
        _check_hash_in_name(target, file_sha256(tmp))
        os.replace(tmp, target)
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
