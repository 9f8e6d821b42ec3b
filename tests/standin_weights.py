"""A stand-in for torchvision's ImageNet ResNet18 weights, made on the spot (no download here).

`make_standin_weights(folder)` pretrains torchvision's ResNet18 layout on drawn shapes of some kinds,
with the app's own Trainer, and saves the result as torchvision saves its weights (a plain state dict
in a .pth). Transfer is then tried on shapes of other kinds, as users try ImageNet weights on their
own classes: the code under test can't tell the stand-in from the real file, which goes through the
same path.

Shapes are drawn in random colours on random backgrounds, at random sizes, places and angles, so
that only the shape tells the class.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

PRETRAINING_KINDS = ("circle", "square", "triangle", "star", "ellipse", "diamond")
TRANSFER_KINDS = ("pentagon", "hexagon", "cross", "ring")
IMAGE_PX = 64


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    corners = {"triangle": 3, "square": 4, "diamond": 4, "pentagon": 5, "hexagon": 6}
    if kind in corners:
        n = corners[kind]
        stretch = (1.0, 0.6) if kind == "diamond" else (1.0, 1.0)
        return [(cx + r * stretch[k % 2 if kind == "diamond" else 0] * math.cos(angle + 2 * math.pi * k / n),
                 cy + r * math.sin(angle + 2 * math.pi * k / n)) for k in range(n)]
    if kind == "star":
        return [(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(angle + math.pi * k / 5),
                 cy + (r if k % 2 == 0 else r * 0.45) * math.sin(angle + math.pi * k / 5)) for k in range(10)]
    if kind == "cross":
        w = r * 0.35
        arms = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
                (-w, -w)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in arms]
    raise ValueError(kind)


def draw_shape(kind: str, rng: random.Random, size: int = IMAGE_PX) -> Image.Image:
    background = tuple(rng.randrange(256) for _ in range(3))
    colour = tuple((b + rng.randrange(96, 160)) % 256 for b in background)  # always stands out
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    r = size * rng.uniform(0.22, 0.4)
    cx, cy = size * rng.uniform(0.35, 0.65), size * rng.uniform(0.35, 0.65)
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ellipse":
        draw.ellipse([cx - r, cy - r * 0.55, cx + r, cy + r * 0.55], fill=colour)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r * 0.3)))
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=colour)
    noise = Image.effect_noise((size, size), rng.uniform(8, 24)).convert("RGB")
    return Image.blend(image, noise, 0.15)


def write_shapes(folder: Path, kinds: tuple[str, ...], per_class: int, seed: int) -> Path:
    for kind in kinds:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(kind, random.Random(f"{seed}/{kind}/{i}")).save(folder / kind / f"{kind}_{i:03d}.png")
    return folder


def make_standin_weights(folder: Path, per_class: int = 80, epochs: int = 8) -> Path:
    """Pretrain ResNet18 (torchvision's layout) on PRETRAINING_KINDS; returns the .pth of its state dict."""
    from resnet_app.core.checkpoints import load_model_file
    from resnet_app.core.training import TrainConfig, Trainer

    data = write_shapes(folder / "pretraining-data", PRETRAINING_KINDS, per_class, seed=1)
    config = TrainConfig(arch="resnet18", epochs=epochs, batch_size=32, image_size=IMAGE_PX, schedule="onecycle",
                         val_fraction=0.1, device="cpu", loader_processes=0, seed=0)
    result = Trainer(config, data, folder / "pretraining-run").fit()
    assert result.status == "completed", result.message
    path = folder / "resnet18-stand-in.pth"
    torch.save(load_model_file(result.model_path).state_dict, path)
    return path
