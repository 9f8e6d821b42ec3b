"""Does validation accuracy tell the truth on a folder of video frames? `random` vs `grouped` split.

    .venv/bin/python benchmarks/split_honesty.py [--work-dir DIR] [--seeds 0 1] [--epochs 4]
        [--clips 12] [--test-clips 3] [--frames 15] [--threads N]

A frames data set: 4 classes (a disc, a square, a triangle, a cross), each with --clips clips of
--frames near-identical 32 px frames (one picture -- the shape at its own place, size and colours on its
own smooth background -- shifted by a pixel or not, with a little noise). --test-clips clips of each
class are held out as an unseen test folder; the app trains on the rest with its default 20 %
validation share, split `random` (any frame may validate) or `grouped` (each clip, found as a group of
near-duplicates, goes whole to one side). For each split and seed it prints the best validation
accuracy the run reports and the accuracy of that run's model on the unseen clips: an honest
validation is close to the unseen accuracy; a leaky one is above it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import cpu_name  # noqa: E402

from resnet_app.core.train.loop import Trainer  # noqa: E402
from resnet_app.core.train.settings import TrainConfig  # noqa: E402
from resnet_app.core.use.classifier import Classifier  # noqa: E402
from resnet_app.core.use.evaluation import evaluate_folder  # noqa: E402

SHAPES = ("disc", "square", "triangle", "cross")
SIZE = 32


def clip_picture(shape: str, rng: np.random.Generator) -> np.ndarray:
    """One clip's picture, 2 px bigger than a frame: a shape on a smooth random background."""
    side = SIZE + 2
    grid = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    picture = grid.resize((side, side), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    r = int(rng.integers(6, 11))
    cx, cy = (int(v) for v in rng.integers(r + 2, side - r - 2, 2))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        draw.rectangle([cx - r, cy - r // 3, cx + r, cy + r // 3], fill=colour)
        draw.rectangle([cx - r // 3, cy - r, cx + r // 3, cy + r], fill=colour)
    return np.asarray(picture, dtype=np.int16)


def make_frames(root: Path, clips: int, test_clips: int, frames: int, seed: int = 0) -> tuple[Path, Path]:
    """(train folder, unseen-clips test folder), made once."""
    train, test = root / "train", root / "test"
    if (root / ".complete").exists():
        return train, test
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for clip in range(clips):
            folder = (test if clip < test_clips else train) / shape
            folder.mkdir(parents=True, exist_ok=True)
            picture = clip_picture(shape, rng)
            for frame in range(frames):
                dy, dx = rng.integers(0, 2, 2)
                pixels = picture[dy:dy + SIZE, dx:dx + SIZE] + rng.integers(-4, 5, (SIZE, SIZE, 3))
                frame_image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                frame_image.save(folder / f"clip{clip:02d}_{frame:02d}.png")
    (root / ".complete").touch()
    return train, test


def run_one(train: Path, test: Path, out: Path, split: str, seed: int, epochs: int) -> dict:
    config = TrainConfig(epochs=epochs, seed=seed, split=split, device="cpu", batch_size=64)
    said: list[str] = []
    trainer = Trainer(config, train, out)
    trainer.events.add_callback("message", lambda m: said.append(m.text))
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    unseen = evaluate_folder(Classifier.from_file(result.model_path, device="cpu"), test).accuracy
    kept = next((line for line in said if line.startswith("split:")), "")
    return {"split": split, "seed": seed, "val": result.best_val_accuracy, "unseen": unseen,
            "seconds": seconds, "said": kept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "resnet-app-split-honesty")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--test-clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("RESNET_APP_CACHE_DIR", str(args.work_dir / "cache"))
    train, test = make_frames(args.work_dir / "data", args.clips, args.test_clips, args.frames)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{len(SHAPES)} classes x {args.clips} clips x {args.frames} frames, {args.test_clips} clips a class unseen",
          flush=True)
    rows = []
    for seed in args.seeds:
        for split in ("random", "grouped"):
            row = run_one(train, test, args.work_dir / f"run-{split}-{seed}", split, seed, args.epochs)
            rows.append(row)
            print(f"  {row}", flush=True)
    print()
    print("| split | seed | best validation accuracy | unseen-clip accuracy | gap | train time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['split']} | {r['seed']} | {r['val']:.1%} | {r['unseen']:.1%} | "
              f"{(r['val'] - r['unseen']) * 100:+.1f} pt | {r['seconds']:.0f} s |")
    for split in ("random", "grouped"):
        gaps = [(r["val"] - r["unseen"]) * 100 for r in rows if r["split"] == split]
        print(f"{split}: mean gap {statistics.mean(gaps):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
