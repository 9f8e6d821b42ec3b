"""Training throughput: the article's loop against the app's engine, on the same generated folder, in one run.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--quick] [--images N] [--sizes 32,224]
                                          [--batch-size N|auto] [--compile] [--nproc N] [--json-out FILE]

For each input size (32 px: PNGs of drawn shapes; 224 px: ~500x375 JPEG "photos"), it runs
1. the article's loop as written: torchvision ImageFolder + DataLoader (num_workers = min(8, cores),
   stated), fp32, Adam, batch 128, CrossEntropyLoss; and
2. the app's Trainer with its defaults for the device (decoded images + batch augmentation, bf16 and
   channels_last on CUDA, batch size auto), run twice: the second run finds the decoded set in the
   disk cache; with --compile, a third run with torch.compile, to weigh its compile time against
   its gain,
and prints images/s for the first epoch and the steady state (later epochs), the engine's decode pass
(seconds and images/s), the ratio of the steady states, and the FLOP-based utilisation: images/s x
training FLOP per image / measured peak FLOP/s. Results belong in docs/performance.md with the device
and torch version named.

With --nproc N (N GPUs, or N CPU processes with --device cpu), the engine also trains under DDP
(core/train/distributed/, launched by torchrun as `resnet-app train --nproc N` does), at the same batch a
process as the one-process run, and the report adds its images/s and the scaling efficiency: images/s
with N processes / (N x images/s with one).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
NO_AUTOSAVE = 86_400.0  # the longest interval the setting allows: no mid-epoch save in the timings
sys.path.insert(0, str(ROOT))

from resnet_app.core.data.sample_data import draw_sample  # noqa: E402
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model  # noqa: E402
from resnet_app.core.train.loop import Trainer  # noqa: E402
from resnet_app.core.train.settings import TrainConfig  # noqa: E402

CLASSES = 10


# --- data ------------------------------------------------------------------------------------------

def make_folder(root: Path, images: int, size: int) -> Path:
    """10 class folders. 32 px: PNG shapes at 32 px; 224 px: 500x375 JPEG photos of shapes.
    Written by all cores (50,000 files one by one would take minutes of a GPU lease)."""
    for label in range(CLASSES):
        (root / f"class{label:02d}").mkdir(parents=True, exist_ok=True)
    chunks = [(root, start, min(start + 500, images), size) for start in range(0, images, 500)]
    # spawn: the parent may already run CUDA threads (peak_flops), which a forked child would inherit broken.
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=get_context("spawn")) as pool:
        list(pool.map(_write_images, *zip(*chunks, strict=True)))
    return root


def _write_images(root: Path, start: int, stop: int, size: int) -> None:
    shapes = ["circle", "square", "star", "triangle"]
    for i in range(start, stop):
        label = i % CLASSES
        folder = root / f"class{label:02d}"
        rng = random.Random(i)
        if size <= 64:
            draw_sample(shapes[label % 4], 32, rng).save(folder / f"{i:06d}.png", compress_level=1)
        else:
            photo = draw_sample(shapes[label % 4], 375, rng).resize((500, 375))
            photo.save(folder / f"{i:06d}.jpg", quality=90)


# --- the article's loop ----------------------------------------------------------------------------

def article_loop(folder: Path, size: int, device: torch.device, epochs: int) -> list[tuple[float, int]]:
    """(seconds, images) per epoch of the article's loop, data read by ImageFolder + DataLoader."""
    from torchvision import datasets, transforms

    if size <= 64:
        augment = [transforms.Resize((size, size)), transforms.RandomCrop(size, padding=4),
                   transforms.RandomHorizontalFlip()]
    else:
        augment = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    transform = transforms.Compose(augment + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    workers = min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    arch = "resnet18-cifar" if size <= 64 else "resnet18"
    net = build_model(arch, CLASSES).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters())
    timings = []
    for _epoch in range(epochs):
        started, seen = time.perf_counter(), 0
        running_loss = 0.0
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(net(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # as the article: a host sync every batch
            seen += len(labels)
        timings.append((time.perf_counter() - started, seen))
    return timings


# --- the app's engine ------------------------------------------------------------------------------

def engine_loop(folder: Path, size: int, device: torch.device, epochs: int, batch_size: int | str,
                cache_dir: Path, compile: bool = False) -> dict:
    """The app's Trainer on `folder`: setup seconds (scan + decode or cache load), (seconds, images)
    per epoch, the data path and batch size it chose, and what it said."""
    os.environ["RESNET_APP_CACHE_DIR"] = str(cache_dir)
    arch = "resnet18-cifar" if size <= 64 else "resnet18"
    config = TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, image_size=size, val_fraction=0.0,
                         device=device.type, seed=0, checkpoint_every_s=NO_AUTOSAVE, compile=compile)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, folder, out)
        run: dict = {"epochs": [], "messages": []}
        trainer.add_callback("run_start", lambda e: run.update(
            start=time.perf_counter(), data_loading=e.data_loading, batch_size=e.batch_size))
        trainer.add_callback("epoch_end", lambda e: run["epochs"].append(
            (e.seconds, round(e.images_per_second * e.seconds))))
        trainer.add_callback("message", lambda e: run["messages"].append(e.text))
        began = time.perf_counter()
        trainer.fit()
    run["setup_s"] = run["start"] - began
    return run


def distributed_loop(folder: Path, size: int, device: torch.device, epochs: int, batch_size: int,
                     cache_dir: Path, nproc: int) -> dict:
    """The engine under DDP with `nproc` processes: (seconds, images) per epoch, images counted over all
    processes. `batch_size` is a process's (the one-process run's): the global batch is nproc times it."""
    from resnet_app.core.train.distributed.launcher import DistributedRun, LaunchPlan

    os.environ["RESNET_APP_CACHE_DIR"] = str(cache_dir)  # the workers read the decoded set from the cache
    arch = "resnet18-cifar" if size <= 64 else "resnet18"
    config = TrainConfig(arch=arch, epochs=epochs, image_size=size, val_fraction=0.0, device=device.type, seed=0,
                         batch_size=batch_size * nproc,
                         checkpoint_every_s=NO_AUTOSAVE)
    with tempfile.TemporaryDirectory() as out:
        run = DistributedRun(LaunchPlan(nproc), config=config, data_dir=folder, out_dir=out)
        result: dict = {"epochs": [], "messages": []}
        run.add_callback("run_start", lambda e: result.update(batch_size=e.batch_size))
        run.add_callback("epoch_end", lambda e: result["epochs"].append(
            (e.seconds, round(e.images_per_second * e.seconds))))
        run.add_callback("message", lambda e: result["messages"].append(e.text))
        run.fit()
    return result


# --- FLOP accounting -------------------------------------------------------------------------------

def train_flops_per_image(size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("resnet18-cifar" if size <= 64 else "resnet18", CLASSES)
    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def peak_flops(device: torch.device) -> tuple[float, str]:
    """Measured matrix-multiply FLOP/s: bf16 on CUDA (what autocast uses), fp32 on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    reps = 50 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - started), str(dtype).replace("torch.", "")


# --- report ----------------------------------------------------------------------------------------

def rate(timings: list[tuple[float, int]]) -> float:
    seconds, images = sum(t for t, _ in timings), sum(n for _, n in timings)
    return images / seconds if seconds else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="few images and epochs: a smoke run, not a measurement")
    parser.add_argument("--images", type=int, help="images per folder (default 50,000 at 32 px and 10,000 at "
                                                   "224 px on CUDA; 512/64 on the CPU; 256/32 with --quick)")
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop; the first includes decoding")
    parser.add_argument("--batch-size", default="auto",
                        help="the engine's batch size, or auto (its default); the article's is 128")
    parser.add_argument("--compile", action="store_true", help="also run the engine with torch.compile")
    parser.add_argument("--compile-sizes", default="32",
                        help="the sizes the --compile run covers (each costs a compile of about a minute)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="also train under DDP with this many processes (one per GPU) and report the "
                             "scaling efficiency against one process")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    device = torch.device(args.device)
    epochs = 2 if args.quick else max(2, args.epochs)
    peak, peak_dtype = peak_flops(device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"device: {name}; torch {torch.__version__}; measured peak {peak / 1e12:.1f} TFLOP/s ({peak_dtype} matmul)")
    print(f"article's loop: ImageFolder + DataLoader with num_workers={min(8, os.cpu_count() or 1)}, "
          "fp32, Adam, batch 128")
    print(f"app's engine: Trainer defaults for {device.type}, batch {batch_size}")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        default_images = {True: {32: 256, 224: 32}, False: {32: 512, 224: 64}} if device.type == "cpu" else \
            {True: {32: 2048, 224: 512}, False: {32: 50_000, 224: 10_000}}
        images = args.images or default_images[args.quick].get(size, 512)
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_folder(Path(tmp) / "data", images, size)
            article = article_loop(folder, size, device, epochs)
            cache = Path(tmp) / "cache"
            engine = engine_loop(folder, size, device, epochs, batch_size, cache)
            second = engine_loop(folder, size, device, epochs, batch_size, cache)  # decoded set from disk
            compile_here = args.compile and str(size) in args.compile_sizes.split(",")
            compiled = (engine_loop(folder, size, device, epochs, batch_size, cache, compile=True)
                        if compile_here else None)
            per_process = engine["batch_size"] if batch_size == "auto" else batch_size
            ddp = (distributed_loop(folder, size, device, epochs, per_process, cache, args.nproc)
                   if args.nproc > 1 else None)
        rows.append(summarise(size, images, article, engine, second, compiled, train_flops_per_image(size), peak))
        if ddp is not None:
            add_scaling(rows[-1], ddp, args.nproc)
        print_row(rows[-1])
        print_table(rows)  # after each size: a run cut short still leaves what it measured
        if args.json_out:
            args.json_out.write_text(json.dumps({"device": name, "torch": str(torch.__version__),
                                                 "peak_flops": peak, "peak_dtype": peak_dtype, "rows": rows},
                                                indent=2))
    return 0


def summarise(size, images, article, engine, second, compiled, flops, peak) -> dict:
    row = {
        "size": size, "images": images, "flop_per_image": flops,
        "article_first": rate(article[:1]), "article_steady": rate(article[1:]),
        "engine_setup_s": engine["setup_s"], "engine_setup_cached_s": second["setup_s"],
        "engine_first": rate(engine["epochs"][:1]),
        # The second run's data comes from the disk cache: its epochs are all steady-state ones.
        "engine_steady": rate(engine["epochs"][1:] + second["epochs"]),
        "data_loading": engine["data_loading"], "batch_size": engine["batch_size"],
        "engine_messages": engine["messages"],
    }
    row["decode_images_per_s"] = images / row["engine_setup_s"] if row["engine_setup_s"] else 0.0
    row["ratio"] = row["engine_steady"] / row["article_steady"] if row["article_steady"] else float("nan")
    row["util_article"] = row["article_steady"] * flops / peak
    row["util_engine"] = row["engine_steady"] * flops / peak
    if compiled:
        # Compiling happens in the first epoch: its extra seconds over an uncompiled first epoch.
        first_s, first_images = compiled["epochs"][0]
        row["compiled_steady"] = rate(compiled["epochs"][1:])
        row["compile_s"] = first_s - first_images / row["engine_first"] if row["engine_first"] else float("nan")
    return row


def add_scaling(row: dict, ddp: dict, nproc: int) -> None:
    """DDP's steady images/s (its epochs after the first, the decoded set read from the cache) and the
    scaling efficiency against the one-process engine's steady state."""
    row["nproc"], row["ddp_batch_size"] = nproc, ddp.get("batch_size")
    row["ddp_steady"] = rate(ddp["epochs"][1:] or ddp["epochs"])
    row["scaling_efficiency"] = row["ddp_steady"] / (nproc * row["engine_steady"]) if row["engine_steady"] else 0.0


def print_row(row: dict) -> None:
    """What the engine said about its data and batch (not the dataset's warnings)."""
    for text in row["engine_messages"]:
        if "decoded" in text or "from the cache" in text or text.startswith("batch size"):
            print(f"  {row['size']} px engine: {text}")


def print_table(rows: list[dict]) -> None:
    print()
    print("size  images  article 1st  article steady  engine decode (img/s)  2nd run  engine 1st  engine steady"
          "  ratio  util(article/engine)  batch")
    for r in rows:
        print(f"{r['size']:>4}  {r['images']:>6}  {r['article_first']:>9.0f}/s  {r['article_steady']:>12.0f}/s  "
              f"{r['engine_setup_s']:>6.1f} s ({r['decode_images_per_s']:>6.0f}/s)  "
              f"{r['engine_setup_cached_s']:>5.1f} s  "
              f"{r['engine_first']:>8.0f}/s  {r['engine_steady']:>11.0f}/s  {r['ratio']:>5.1f}x  "
              f"{r['util_article']:>6.1%}/{r['util_engine']:.1%}  {r['batch_size']:>5}"
              f"   [{r['data_loading']}, {r['flop_per_image'] / 1e9:.2f} GFLOP/image]")
        if "ddp_steady" in r:
            print(f"      DDP, {r['nproc']} processes (global batch {r['ddp_batch_size']}): steady "
                  f"{r['ddp_steady']:.0f}/s, scaling efficiency {r['scaling_efficiency']:.0%} "
                  f"(= {r['ddp_steady']:.0f} / ({r['nproc']} x {r['engine_steady']:.0f}))")
        if "compiled_steady" in r:
            print(f"      torch.compile: steady {r['compiled_steady']:.0f}/s "
                  f"({r['compiled_steady'] / r['engine_steady']:.2f}x), compile time ~{r['compile_s']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
