"""The model registry: build_model(arch, num_classes), and ImageNet weights for torchvision's ResNet18.

`resnet18-cifar` is the article's network (../shared/reference/seed_resnet18.py) key for key, so weights
trained with the article's code load here unchanged and give the same logits. `resnet18` is torchvision's
ImageNet-layout ResNet18.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ARCHITECTURES = ("resnet18-cifar", "resnet18")

# Per-channel mean/std (RGB, on 0..1 pixels). ImageNet statistics serve both archs: they are what
# torchvision's weights expect, and for a model trained from scratch any fixed normalisation works as
# long as training and prediction share it, which the model file guarantees by storing it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_IMAGE_SIZE = {"resnet18-cifar": 32, "resnet18": 224}


class ModelError(ValueError):
    """A model can't be built or its weights can't be had; the message says why."""


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU; attribute names match the article's code."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet18(nn.Module):
    """The article's ResNet18: 3x3 stride-1 stem, no max-pool, four stages of two BasicBlocks.

    One change from the article: the final pooling averages the whole feature map whatever its size,
    where the article's avg_pool2d(out, 4) assumes 32 px input (a 4x4 map). At 32 px the two are the
    same operation; at other sizes the article's version fails or pools only a corner.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, 2, stride=1)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.linear = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # Global average pooling written as the article's avg_pool2d with the kernel set to the map's
        # size: the same kernel (bit-identical logits) at 32 px, and correct at any other size.
        out = F.avg_pool2d(out, kernel_size=out.shape[-2:])
        return self.linear(torch.flatten(out, 1))


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of the named architecture with `num_classes` outputs."""
    if num_classes < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")
    if arch == "resnet18-cifar":
        return CifarResNet18(num_classes)
    if arch == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=num_classes)
    raise ModelError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")


# --- ImageNet weights for torchvision's ResNet18 --------------------------------------------------

IMAGENET_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
DOWNLOAD_CONNECT_TIMEOUT_S = 5.0


@dataclass
class PretrainedWeights:
    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    source: str  # a path, or the URL they came from


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names, from torchvision's weights metadata (no download needed)."""
    return list(IMAGENET_WEIGHTS.meta["categories"])


def imagenet_cache_path() -> Path:
    """Where torchvision's weights API keeps the ResNet18 file (torch.hub's checkpoints folder)."""
    filename = Path(urlparse(IMAGENET_WEIGHTS.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_pretrained(source: str | Path, progress: bool = False) -> PretrainedWeights:
    """ImageNet ResNet18 weights from a local .pth file, or "imagenet" for torchvision's download.

    A local file is read with torch.load(weights_only=True): no code in it ever runs.
    """
    if str(source) == "imagenet":
        return download_imagenet_weights(progress=progress)
    path = Path(source)
    state_dict = _load_state_dict_file(path)
    _check_resnet18_state_dict(state_dict, path)
    return PretrainedWeights(state_dict, imagenet_class_names(), str(path))


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
    return PretrainedWeights(state_dict, imagenet_class_names(), IMAGENET_WEIGHTS.url)


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
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a plain weights file that can be loaded safely ({exc})") from exc
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path}: does not hold a state_dict of tensors")
    return loaded


def _check_resnet18_state_dict(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    expected = build_model("resnet18", 1000).state_dict()
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ModelError(f"{path}: not torchvision ResNet18 weights (missing {missing[0]} and {len(missing) - 1} more)")
    for key, tensor in expected.items():
        if key.startswith("fc."):
            continue  # the classifier head may have any number of classes
        if state_dict[key].shape != tensor.shape:
            raise ModelError(f"{path}: {key} has shape {tuple(state_dict[key].shape)}, expected {tuple(tensor.shape)}")


def apply_pretrained(model: nn.Module, weights: PretrainedWeights, num_classes: int) -> bool:
    """Load pretrained backbone weights into a torchvision ResNet18 with `num_classes` outputs.

    Returns True when the ImageNet head was kept too (num_classes matches), False when the head stays
    freshly initialised for fine-tuning on the user's classes.
    """
    head_matches = weights.state_dict["fc.weight"].shape[0] == num_classes
    state = weights.state_dict if head_matches else {k: v for k, v in weights.state_dict.items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=head_matches)
    return head_matches
