"""How fast quick transfer is: features per second, and the last layer's training time once they exist.

    .venv/bin/python benchmarks/transfer_speed.py [--images-per-class 75] [--classes 4] [--device cpu]

Writes a folder of photo-sized JPEGs (500 x 375, drawn shapes on noisy gradients), then runs the app's
quick transfer (QuickTrainer: resnet18 at 224 px, last layer only) twice: the first run decodes the
photos and computes their features; the second finds both in the cache and only trains the last
layer. Prints decode, feature and head times and features/s, with the machine named. The weights are
random (the real ImageNet file can't be downloaded here): speed does not depend on their values.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from resnet_app.core.model.architectures import build_model  # noqa: E402
from resnet_app.core.train.quick import QUICK_PASSES, QuickTrainer  # noqa: E402
from resnet_app.core.train.settings import TrainConfig  # noqa: E402


def write_photos(folder: Path, classes: int, per_class: int) -> Path:
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = random.Random(f"{c}/{i}")
            image = Image.linear_gradient("L").resize((500, 375)).convert("RGB")
            tint = Image.new("RGB", (500, 375), tuple(rng.randrange(256) for _ in range(3)))
            image = Image.blend(image, tint, 0.6)
            draw = ImageDraw.Draw(image)
            for _ in range(3 + c):
                x, y, r = rng.randrange(500), rng.randrange(375), rng.randrange(20, 90)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
            noise = Image.effect_noise((500, 375), 20).convert("RGB")
            Image.blend(image, noise, 0.1).save(folder / f"class{c}" / f"{i:04d}.jpg", quality=90)
    return folder


def timed_run(config: TrainConfig, data: Path, out: Path) -> dict:
    trainer = QuickTrainer(config, data, out)
    said: list[str] = []
    head_seconds = []
    trainer.add_callback("message", lambda m: said.append(m.text))
    trainer.add_callback("epoch_end", lambda e: head_seconds.append(e.seconds))
    started = time.perf_counter()
    result = trainer.fit()
    assert result.status == "completed", result.message
    return {"total_s": time.perf_counter() - started, "head_s": sum(head_seconds), "messages": said}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--images-per-class", type=int, default=75)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="transfer-speed-") as tmp:
        tmp = Path(tmp)
        os.environ["RESNET_APP_CACHE_DIR"] = str(tmp / "cache")  # a first run really computes
        data = write_photos(tmp / "photos", args.classes, args.images_per_class)
        weights = tmp / "resnet18-random.pth"
        torch.save(build_model("resnet18", 1000).state_dict(), weights)
        config = TrainConfig(arch="resnet18", pretrained=str(weights), quick=True, device=args.device,
                             loader_processes=0, flip=False, augment=False)
        first = timed_run(config, data, tmp / "first")
        second = timed_run(config, data, tmp / "second")
    images = args.classes * args.images_per_class
    train_images = images - args.classes * math.floor(args.images_per_class * 0.2 + 0.5)
    print(f"{images} photos (500 x 375 JPEG), {args.classes} classes, resnet18 at 224 px, device {args.device}, "
          f"{torch.get_num_threads()} torch threads; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    for line in first["messages"]:
        if "features" in line or "decoded" in line:
            print(f"  first run: {line}")
    print(f"| run | total | last layer ({QUICK_PASSES} passes over {train_images} features) |")
    print("|---|---:|---:|")
    print(f"| first (decode + features + last layer) | {first['total_s']:.1f} s | {first['head_s']:.2f} s |")
    print(f"| second (both from the cache) | {second['total_s']:.1f} s | {second['head_s']:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
