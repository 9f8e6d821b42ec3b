"""The model registry: build_model(arch, num_classes), and ImageNet weights for torchvision's ResNet18.

`resnet18-cifar` is the article's network (../shared/reference/seed_resnet18.py) key for key, so weights
trained with the article's code load here unchanged and give the same logits. `resnet18` is torchvision's
ImageNet-layout ResNet18; its ImageNet weights are pretrained.py's business.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from resnet_app.core.data.rng import GLOBAL_RNG_LOCK

ARCHITECTURES = ("resnet18-cifar", "resnet18")

# Per-channel mean/std (RGB, on 0..1 pixels). ImageNet statistics serve both archs: they are what
# torchvision's weights expect, and for a model trained from scratch any fixed normalisation works as
# long as training and prediction share it, which the model file guarantees by storing it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_IMAGE_SIZE = {"resnet18-cifar": 32, "resnet18": 224}
# The input sizes (pixels) a model may be trained at or described with: the settings table's range, and
# what a model file may say (checkpoints.check_model_description refuses others).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024


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


def build_model(arch: str, num_classes: int, generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised model of the named architecture with `num_classes` outputs.

    With `generator`, the initial weights are drawn from it alone (what other threads draw from
    torch's global generator can't change them); the distributions are the architecture's own.
    """
    if num_classes < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    with GLOBAL_RNG_LOCK:  # initial weights come from torch's global generator: see rng.py
        model = CifarResNet18(num_classes) if arch == "resnet18-cifar" else torchvision.models.resnet18(
            weights=None, num_classes=num_classes)
    if generator is not None:
        initialize(model, generator, conv_init="torchvision" if arch == "resnet18" else "default")
    return model


@torch.no_grad()
def initialize(model: nn.Module, generator: torch.Generator, conv_init: str = "default") -> None:
    """Draw every weight again from `generator`, with the distributions the modules are built with:
    PyTorch's defaults for convolutions and linear layers (or torchvision's ResNet choice for
    convolutions, He-normal over fan-out), ones and zeros for batch norm."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and conv_init == "torchvision":
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            _default_init(module, generator)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _default_init(module: nn.Conv2d | nn.Linear, generator: torch.Generator) -> None:
    """nn.Conv2d's and nn.Linear's reset_parameters, drawing from `generator`."""
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
    if module.bias is not None:
        fan_in = module.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(module.bias, -bound, bound, generator=generator)
