"""Calibration: how many validation images the temperature and the "unsure" threshold need.

    .venv/bin/python benchmarks/calibration_size.py [--work-dir DIR] [--datasets digits letters shapes]
        [--recipes "app default" article] [--seeds 0] [--epochs 4] [--batch-size 16] [--image-size 16]
        [--draws 200] [--sizes 10 20 ...] [--min-eval 300] [--threads N] [--quick] [--json-out FILE]

After training, the app fits a temperature and an "unsure" threshold on the validation images' logits
(resnet_app.core.use.calibration.calibrate_logits) and reports the expected calibration error (ECE)
before and after, measured on those same images. This benchmark measures, for each number n of
validation images, what that fit is worth on images it has not seen, so that the minimum
(calibration.MIN_CALIBRATION_IMAGES) is chosen by measurement.

For each kind of data (quality_data.py: real handwritten digits, with half of the 1,797 scans held out;
letters from fonts the test set alone uses; the app's generated shapes), each recipe (the
app's default through the real engine, and the article's loop, the most over-confident) and each seed,
one model is trained on the TRAIN folder with a short budget (a realistic, imperfect model: see
DEFAULT_EPOCHS) and its logits are computed on the TEST folder, the held-out pool of 800-900 images
(Classifier.output_batches, the app's own preprocessing). Models and logits are kept in
<work-dir>/models, so a rerun with the same --work-dir only redoes the draws (seconds).

Then, per draw: the pool is shuffled in a stratified way (each class spread evenly along the order, as
the app's validation split is stratified); the last `pool - max n` images are the evaluation part,
the same for every n of the draw, and the first n are the "validation images" calibrate_logits fits
on (nested: the 20 images of a draw include its 10). Per n, over the draws:

- NLL: the share of draws in which the fitted temperature gives a lower held-out NLL than T = 1, the
  mean change, and the share of the possible gain it gets (against the temperature fitted on the
  evaluation part itself); draws in which calibrate_logits fits nothing (too few images, or no
  mistake among them) keep T = 1 and count as not improved.
- ECE on the evaluation part without the temperature and with it.
- gap: how far the ECE calibrate_logits reports (result["ece_after"], measured on the n images) is
  from the held-out ECE after, in points (mean of the absolute difference).
- the unsure threshold: its spread (std over draws), the held-out accuracy of the predictions under
  it (mean over the draws that put any under it) and above it, and the share of them under it.

The recommendation is the smallest n of the grid from which on (that n and every larger one measured)
every model meets both: the fitted temperature improves the held-out NLL in at least 90 % of draws
(--improve-share), and the reported ECE is within 3 points of the held-out one on average
(--gap-points). A model whose best temperature gains less than 0.005 nats on the evaluation part
(already calibrated: nothing for any n to gain) is not held to the NLL part, which it could only meet
by luck; the table says so.

Needs scikit-learn for the digits (a benchmark-only dependency: .venv/bin/pip install scikit-learn);
without it the digits are skipped with a note. The full default run (6 models) trains for 2-6 minutes a
model on a 2-core CPU, depending on what else the cores run (docs/performance.md); a rerun with the same
--work-dir takes under a minute; --quick (letters only, tiny
data, the app's recipe for 1 epoch at 16 px, 5 draws) is a smoke test of about 15 seconds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the app's package, when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # quality_data, learning_quality beside this file

import learning_quality  # noqa: E402
import quality_data  # noqa: E402
import torch  # noqa: E402

from resnet_app import __version__ as app_version  # noqa: E402
from resnet_app.core.use import calibration  # noqa: E402
from resnet_app.core.use.calibration import (  # noqa: E402
    calibrate_logits,
    expected_calibration_error,
    fit_temperature,
)
from resnet_app.core.use.classifier import Classifier  # noqa: E402

DEFAULT_SIZES = (10, 20, 30, 50, 75, 100, 150, 200, 300, 500)
QUICK_SIZES = (10, 20, 30)
# Training a little: a realistic, imperfect model (a user's first run), not a finished one. The pool is
# large: up to 500 images to draw from, and at least --min-eval left over to measure on.
CALIBRATION_SCALE = quality_data.DataScale("calibration", train_per_class=60, test_per_class=100,
                                           digits_test_fraction=0.5)
QUICK_SCALE = quality_data.DataScale("calibration-quick", train_per_class=8, test_per_class=10)
# Shapes has 4 classes: more images a class, for about as many images in all as the others.
PER_CLASS_FACTOR = {"shapes": 2}
DEFAULT_RECIPES = ("app default", "article")
# The budget: short, for a realistic imperfect model in a few minutes on 2 CPU cores. 16 px (the data is
# stored at 32 and downscaled by the app, as a user's folder is) costs a quarter of 32 px; batch 16 gives
# a run of ~500 images about 100 steps, enough for batch norm's running statistics to settle (with 15
# steps of batch 64 the letters models stayed at chance).
DEFAULT_EPOCHS, DEFAULT_BATCH, DEFAULT_IMAGE_SIZE = 4, 16, 16
QUICK_RECIPES = ("app default",)  # --quick: the engine's path, the one most likely to break
IMPROVE_SHARE = 0.9
GAP_POINTS = 3.0
ROOM_NATS = 0.005  # a model whose best temperature gains less than this has nothing to calibrate


@dataclass
class Model:
    """One trained model's outputs on its held-out pool."""

    kind: str
    recipe: str
    seed: int
    logits: torch.Tensor  # (pool, classes), before any temperature
    labels: torch.Tensor
    info: dict[str, Any]  # training time, accuracy on the pool, ...

    @property
    def name(self) -> str:
        return f"{self.kind} | {self.recipe} | seed {self.seed}"


# --- training and logits (cached) ---------------------------------------------------------------

def scale_for(kind: str, scale: quality_data.DataScale) -> quality_data.DataScale:
    factor = PER_CLASS_FACTOR.get(kind, 1)
    if factor == 1:
        return scale
    return quality_data.DataScale(scale.name, scale.train_per_class * factor, scale.test_per_class * factor,
                                  scale.digits_test_fraction)


def model_key(run: learning_quality.Run, budget: learning_quality.Budget) -> str:
    """Names what the model learned from (data, recipe with every resolved setting, seed, budget)."""
    identity = learning_quality.run_identity(run, budget)
    identity["settings"] = {k: v for k, v in identity["settings"].items()
                            if k not in learning_quality.NOT_LEARNING_SETTINGS}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{run.dataset.tag}-{run.recipe.replace(' ', '_')}-seed{run.seed}-{digest}"


def test_samples(test_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    samples = []
    for index, name in enumerate(classes):
        samples += [(path, index) for path in sorted((test_dir / name).glob("*.png"))]
    return samples


def pool_logits(model_path: Path, test_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits (before any temperature) and the labels of every image in the TEST folder."""
    classifier = Classifier.from_file(model_path, device="cpu")
    samples = test_samples(test_dir, classifier.class_names)
    logits, labels, start = [], [], 0
    for batch in classifier.output_batches([path for path, _ in samples], batch_size=128):
        logits.append(batch.logits)
        labels += [samples[start + i][1] for i in batch.read]
        start += len(batch.paths)
    return torch.cat(logits).double(), torch.tensor(labels, dtype=torch.long)


def trained_model(run: learning_quality.Run, budget: learning_quality.Budget, models_dir: Path) -> Model:
    """Train (unless the same model was trained into this work dir before) and compute the pool's logits."""
    key = model_key(run, budget)
    cached = models_dir / f"{key}.pt"
    if cached.exists():
        stored = torch.load(cached, weights_only=True)
        info = json.loads((models_dir / f"{key}.json").read_text())
        return Model(run.dataset.name, run.recipe, run.seed, stored["logits"], stored["labels"], info)
    out_dir = models_dir / "current-run"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    if learning_quality.loop_of(run.recipe) == "article":
        model_path, seconds = learning_quality.train_article_loop(run, budget, out_dir)
        status = "completed"
    else:
        result, seconds = learning_quality.train_app_recipe(run, budget, out_dir)
        model_path, status = (Path(result.model_path) if result.model_path else None), result.status
    if model_path is None:
        raise RuntimeError(f"{run.recipe} on {run.dataset.name} (seed {run.seed}) produced no model: {status}")
    kept = models_dir / f"{key}.safetensors"
    shutil.copyfile(model_path, kept)
    shutil.rmtree(out_dir, ignore_errors=True)  # checkpoints, the run's log
    started = time.perf_counter()
    logits, labels = pool_logits(kept, run.dataset.test_dir)
    info = {"train_s": round(seconds, 1), "logits_s": round(time.perf_counter() - started, 1), "status": status,
            "pool": int(labels.numel()), "classes": int(logits.shape[1]),
            "pool_accuracy": float((logits.argmax(1) == labels).double().mean()), "model_file": kept.name}
    torch.save({"logits": logits, "labels": labels}, cached)
    (models_dir / f"{key}.json").write_text(json.dumps(info, indent=2) + "\n")
    return Model(run.dataset.name, run.recipe, run.seed, logits, labels, info)


# --- the draws -----------------------------------------------------------------------------------

def stratified_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random order of the pool in which every class is spread evenly: any first n (and any last m)
    holds each class in about its share, as the app's stratified validation split does."""
    perm = torch.randperm(labels.numel(), generator=generator)
    key = torch.empty(labels.numel(), dtype=torch.float64)
    jitter = torch.rand(labels.numel(), generator=generator, dtype=torch.float64)
    for label in labels.unique():
        members = perm[labels[perm] == label]  # this class, in random order
        count = members.numel()
        key[members] = (torch.arange(count, dtype=torch.float64) + jitter[members]) / count
    return torch.argsort(key, stable=True)


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, labels))


def draw_figures(model: Model, sizes: list[int], draws: int, seed: int) -> list[dict[str, Any]]:
    """Per n, over `draws` draws, the figures the module docstring lists."""
    generator = torch.Generator().manual_seed(seed)
    per_n: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    eval_size = model.labels.numel() - max(sizes)
    for _ in range(draws):
        order = stratified_order(model.labels, generator)
        held = order[-eval_size:]
        h_logits, h_labels = model.logits[held], model.labels[held]
        h_correct = h_logits.argmax(1) == h_labels
        nll_1 = nll(h_logits, h_labels, 1.0)
        nll_best = nll(h_logits, h_labels, fit_temperature(h_logits, h_labels))
        ece_1 = expected_calibration_error(torch.softmax(h_logits, 1).max(1).values, h_correct)
        for n in sizes:
            chosen = order[:n]
            fitted = calibrate_logits(model.logits[chosen], model.labels[chosen])
            temperature = fitted["temperature"]
            confidence = torch.softmax(h_logits / temperature, 1).max(1).values
            nll_t = nll(h_logits, h_labels, temperature)
            ece_t = expected_calibration_error(confidence, h_correct)
            under = confidence < fitted["unsure_below"]
            per_n[n].append({
                "fitted": "not_fitted" not in fitted, "temperature": temperature,
                "improved": nll_t < nll_1, "nll_change": nll_t - nll_1, "room": nll_1 - nll_best,
                "ece_before": ece_1, "ece_after": ece_t, "reported_ece_after": fitted["ece_after"],
                "gap": abs(fitted["ece_after"] - ece_t), "threshold": fitted["unsure_below"],
                "unsure_share": float(under.double().mean()),
                "acc_under": float(h_correct[under].double().mean()) if bool(under.any()) else None,
                "acc_above": float(h_correct[~under].double().mean()) if bool((~under).any()) else None,
            })
    return [summarise(n, per_n[n], eval_size) for n in sizes]


def mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def summarise(n: int, draws: list[dict[str, Any]], eval_size: int) -> dict[str, Any]:
    temperatures = sorted(d["temperature"] for d in draws)
    spread = lambda values: statistics.pstdev(values) if len(values) > 1 else 0.0  # noqa: E731
    return {
        "n": n, "eval_images": eval_size, "draws": len(draws),
        "fitted_share": mean_of([float(d["fitted"]) for d in draws]),
        "improved_share": mean_of([float(d["improved"]) for d in draws]),
        "nll_change": mean_of([d["nll_change"] for d in draws]),
        "room_nats": mean_of([d["room"] for d in draws]),
        # of the NLL the best temperature for the evaluation part would save, the share the fitted one saves
        # (none when there is next to nothing to save: a ratio of two tiny numbers)
        "gain_share": -mean_of([d["nll_change"] for d in draws]) / room
        if (room := mean_of([d["room"] for d in draws])) >= ROOM_NATS else None,
        "temperature_median": temperatures[len(temperatures) // 2],
        "temperature_p10": temperatures[len(temperatures) // 10],
        "temperature_p90": temperatures[(9 * len(temperatures)) // 10],
        "ece_before": mean_of([d["ece_before"] for d in draws]),
        "ece_after": mean_of([d["ece_after"] for d in draws]),
        "reported_ece_after": mean_of([d["reported_ece_after"] for d in draws]),
        "gap_points": 100 * mean_of([d["gap"] for d in draws]),
        "threshold_mean": mean_of([d["threshold"] for d in draws]),
        "threshold_std": spread([d["threshold"] for d in draws]),
        "unsure_share": mean_of([d["unsure_share"] for d in draws]),
        "acc_under": mean_of([d["acc_under"] for d in draws]),
        "draws_with_unsure": sum(d["acc_under"] is not None for d in draws),
        "acc_above": mean_of([d["acc_above"] for d in draws]),
    }


# --- the rule ------------------------------------------------------------------------------------

def passes(row: dict[str, Any], held_to_nll: bool, improve_share: float, gap_points: float) -> bool:
    return (not held_to_nll or row["improved_share"] >= improve_share) and row["gap_points"] <= gap_points


def smallest_good_n(rows: list[dict[str, Any]], held_to_nll: bool, improve_share: float,
                    gap_points: float) -> int | None:
    """The smallest n from which on every n measured passes; None if even the largest fails."""
    good = None
    for row in reversed(rows):
        if not passes(row, held_to_nll, improve_share, gap_points):
            break
        good = row["n"]
    return good


# --- output --------------------------------------------------------------------------------------

def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def model_table(result: dict[str, Any]) -> str:
    lines = ["| n | T fitted | NLL better than T=1 | NLL change | share of best gain | T median (p10-p90) "
             "| ECE before | ECE after | ECE reported | gap (pt) | unsure threshold (std) | acc. under / above "
             "| share unsure |",
             "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {pct(r['fitted_share'], 0)} % | {pct(r['improved_share'], 0)} % | {r['nll_change']:+.3f} "
            f"| {pct(r['gain_share'], 0)} % | {r['temperature_median']:.2f} ({r['temperature_p10']:.2f}-"
            f"{r['temperature_p90']:.2f}) | {pct(r['ece_before'])} | {pct(r['ece_after'])} "
            f"| {pct(r['reported_ece_after'])} | {r['gap_points']:.1f} "
            f"| {r['threshold_mean']:.2f} ({r['threshold_std']:.2f}) "
            f"| {pct(r['acc_under'], 0)} / {pct(r['acc_above'], 0)} % | {pct(r['unsure_share'])} % |")
    return "\n".join(lines) + "\n"


def summary_table(results: list[dict[str, Any]]) -> str:
    """One line per n: for each model, share of draws improved / mean gap in points."""
    sizes = [r["n"] for r in results[0]["rows"]]
    header = "| n | " + " | ".join(f"{r['kind']} {r['recipe']} s{r['seed']}" for r in results) + " |"
    lines = [header, "|---:|" + "---:|" * len(results)]
    for i, n in enumerate(sizes):
        cells = []
        for r in results:
            row = r["rows"][i]
            mark = "" if passes(row, r["held_to_nll"], r["improve_share"], r["gap_limit"]) else "x "
            cells.append(f"{mark}{pct(row['improved_share'], 0)} % / {row['gap_points']:.1f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine_line(threads: int) -> str:
    return (f"{learning_quality.machine_description()}, torch {torch.__version__}, {threads} thread(s), "
            f"resnet_app {app_version}, {time.strftime('%Y-%m-%d')}")


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, help="datasets, models and logits (default: a new temp folder)")
    parser.add_argument("--datasets", nargs="+", choices=["digits", "letters", "shapes"],
                        help="default: digits letters shapes; --quick: letters")
    parser.add_argument("--recipes", nargs="+", choices=list(learning_quality.ARTICLE_RECIPES)
                        + list(learning_quality.APP_RECIPES), metavar="NAME",
                        help=f"learning_quality.py's recipes (default: {', '.join(DEFAULT_RECIPES)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0)")
    parser.add_argument("--epochs", type=int, help=f"default {DEFAULT_EPOCHS}; --quick: 1")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"default {DEFAULT_BATCH}")
    parser.add_argument("--image-size", type=int, help=f"default {DEFAULT_IMAGE_SIZE}; --quick: 16")
    parser.add_argument("--sizes", nargs="+", type=int, help=f"n to try (default {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--draws", type=int, help="random draws per n (default 200; --quick: 5)")
    parser.add_argument("--min-eval", type=int, help="images kept for evaluation (default 300; --quick: 30)")
    parser.add_argument("--improve-share", type=float, default=IMPROVE_SHARE)
    parser.add_argument("--gap-points", type=float, default=GAP_POINTS)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: letters, tiny data, the app's recipe for 1 epoch at 16 px, 5 draws")
    parser.add_argument("--json-out", type=Path, help="write every figure here as JSON")
    args = parser.parse_args(argv)
    q = args.quick
    args.datasets = args.datasets or (["letters"] if q else ["digits", "letters", "shapes"])
    args.recipes = args.recipes or list(QUICK_RECIPES if q else DEFAULT_RECIPES)
    args.epochs = args.epochs or (1 if q else DEFAULT_EPOCHS)
    args.image_size = args.image_size or (16 if q else DEFAULT_IMAGE_SIZE)
    args.sizes = sorted(args.sizes or (QUICK_SIZES if q else DEFAULT_SIZES))
    args.draws = args.draws or (5 if q else 200)
    args.min_eval = args.min_eval if args.min_eval is not None else (30 if q else 300)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="resnet-calsize-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    # One cache of decoded images for the whole benchmark, inside the work dir (not the user's).
    os.environ["RESNET_APP_CACHE_DIR"] = str(work_dir / "decoded-cache")
    print(f"work dir: {work_dir} (pass --work-dir {work_dir} to reuse its models)")
    print(f"machine: {machine_line(threads)}")
    print(f"calibration.MIN_CALIBRATION_IMAGES today: {calibration.MIN_CALIBRATION_IMAGES}")

    base_scale = QUICK_SCALE if args.quick else CALIBRATION_SCALE
    models: list[Model] = []
    for kind in args.datasets:
        scale = scale_for(kind, base_scale)
        try:
            dataset = quality_data.prepare_dataset(kind, work_dir / "data", scale, args.image_size, args.data_seed)
        except quality_data.MissingDependency as exc:
            print(f"dataset {kind!r} skipped: {exc}")
            continue
        budget = learning_quality.Budget(args.epochs, args.batch_size, args.image_size, scale)
        for recipe in learning_quality.runnable_recipes(args.recipes):
            for seed in args.seeds:
                run = learning_quality.Run(dataset, recipe, seed)
                t0 = time.perf_counter()
                model = trained_model(run, budget, work_dir / "models")
                models.append(model)
                print(f"{model.name}: pool {model.info['pool']} images, accuracy {pct(model.info['pool_accuracy'])} %, "
                      f"trained in {model.info['train_s']} s ({time.perf_counter() - t0:.1f} s now)")
    if not models:
        print("nothing to measure")
        return 1

    # The draws are thousands of small fits: one thread does them faster than two waiting on each other.
    torch.set_num_threads(1)
    results = []
    for number, model in enumerate(models):
        sizes = [n for n in args.sizes if n <= model.labels.numel() - args.min_eval]
        if not sizes:
            print(f"{model.name}: pool of {model.labels.numel()} too small for n >= {args.sizes[0]} "
                  f"with {args.min_eval} kept for evaluation; skipped")
            continue
        t0 = time.perf_counter()
        rows = draw_figures(model, sizes, args.draws, seed=1000 + number)
        room = rows[-1]["room_nats"]
        held_to_nll = room >= ROOM_NATS
        results.append({
            "kind": model.kind, "recipe": model.recipe, "seed": model.seed, **model.info,
            "best_gain_nats": room, "held_to_nll": held_to_nll, "improve_share": args.improve_share,
            "gap_limit": args.gap_points, "rows": rows,
            "smallest_good_n": smallest_good_n(rows, held_to_nll, args.improve_share, args.gap_points),
        })
        print(f"{model.name}: {args.draws} draws x {len(sizes)} sizes in {time.perf_counter() - t0:.1f} s")

    print()
    for r in results:
        nll_note = ("" if r["held_to_nll"] else
                    f"; its best temperature gains only {r['best_gain_nats']:.4f} nats: not held to the NLL part")
        print(f"### {r['kind']} | {r['recipe']} | seed {r['seed']}: pool {r['pool']} images "
              f"({r['rows'][0]['eval_images']} evaluated per draw), accuracy {pct(r['pool_accuracy'])} %, best "
              f"temperature gains {r['best_gain_nats']:.3f} nats{nll_note}; smallest good n: "
              f"{r['smallest_good_n'] if r['smallest_good_n'] is not None else 'none measured'}\n")
        print(model_table(r))
    print(f"Share of draws whose fitted temperature improves held-out NLL / mean gap between the reported and "
          f"the held-out ECE after, in points (x: fails the rule), {args.draws} draws:\n")
    print(summary_table(results))
    rule = (f"the smallest n from which on (every larger n measured too) the fitted temperature improves the "
            f"held-out NLL in >= {args.improve_share:.0%} of draws (models with room to gain >= {ROOM_NATS} nats) "
            f"AND the ECE reported from the n images is within {args.gap_points:g} points of the held-out one "
            f"on average, for every model")
    picks = [r["smallest_good_n"] for r in results]
    recommended = None if any(p is None for p in picks) else max(picks)
    print(f"Rule: {rule}.")
    per_model = [f"{r['kind']} {r['recipe']} s{r['seed']}: {r['smallest_good_n']}" for r in results]
    print(f"Per model: {', '.join(per_model)}")
    print(f"Recommended minimum: {recommended if recommended is not None else 'none of the sizes measured'}")
    elapsed = time.perf_counter() - started
    print(f"Machine: {machine_line(threads)}; total {elapsed:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "machine": learning_quality.machine_description(), "torch": str(torch.__version__),
            "resnet_app": app_version, "threads": threads, "date": time.strftime("%Y-%m-%d"),
            "settings": {"datasets": args.datasets, "recipes": args.recipes, "seeds": args.seeds,
                         "epochs": args.epochs, "batch_size": args.batch_size, "image_size": args.image_size,
                         "sizes": args.sizes, "draws": args.draws, "min_eval": args.min_eval, "quick": args.quick},
            "rule": rule, "recommended_min_images": recommended, "models": results,
            "total_s": round(elapsed, 1),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
