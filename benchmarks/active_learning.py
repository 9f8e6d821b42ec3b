"""Active learning: does labelling the images the model is least sure of first beat labelling at random?

    .venv/bin/python benchmarks/active_learning.py [--work-dir DIR] [--datasets digits letters]
        [--seeds 0 1 2] [--rounds 5] [--start-per-class 5] [--step 20] [--epochs 5] [--batch-size 8]
        [--image-size 16] [--val-fraction 0] [--threads N] [--quick] [--json-out FILE] [--table-only]

The Review tab and `resnet-app review` (core.use.review.rank_for_review) order a folder least sure
first: smallest margin between the model's top two probabilities. They claim that labelling in that
order gets a better model for the same labelling work than labelling in random order. Measured here
(issue 22):

For each dataset of quality_data.py and each seed, the labelled set starts as `--start-per-class`
images per class drawn at random (seeded) from the dataset's TRAIN folder; the rest of TRAIN is the
unlabelled pool (its labels, known from its folders, play the person who labels). Then `--rounds`
rounds: train a model on the labelled set with the app's default recipe through the real engine
(core.train.loop.Trainer on a folder of copies, one sub-folder per class), score it on the TEST folder
(core.use.evaluation.evaluate_folder), then label `--step` more images of the pool: either the first
ones of rank_for_review with the current model ("review") or drawn at random, seeded ("random"). No
labelling follows the last round. Round 0 is the same labelled set for both orders and is trained once.

The recipe is TrainConfig's defaults (one cycle, label smoothing, random crops) with the budget below
set from the command line. With 40 to 150 labelled images, the usual 20 % validation share would be
one or two images per class, which can't choose a best epoch and takes images from training that a
person did label; so the default is --val-fraction 0: every labelled image trains, and the model is the
last epoch's. Calibration needs 150 validation images, so these models are uncalibrated either way and
the margins come from the plain softmax.

The default budget (16 px, 5 epochs, batch 8) keeps one full run to about half an hour on a loaded
2-core CPU: the Trainer writes its checkpoints every epoch as a user's run does, which costs more than
the few training steps of a 50-image set.

Each (dataset, seed, order, round) result is appended to <work-dir>/results.jsonl with the labelled
set and the images chosen next, so a rerun with the same --work-dir continues where it stopped. At the
end: a Markdown table per dataset (labelled count x order: mean test accuracy over seeds, min-max), a
verdict line, and with --json-out the same figures as JSON. --quick is a smoke test (under a minute).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the app's package, when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # quality_data beside this file

import quality_data  # noqa: E402
import torch  # noqa: E402
from machine import cpu_name  # noqa: E402

from resnet_app import __version__ as app_version  # noqa: E402
from resnet_app.core.train.loop import Trainer  # noqa: E402
from resnet_app.core.train.settings import TrainConfig  # noqa: E402
from resnet_app.core.use.classifier import Classifier  # noqa: E402
from resnet_app.core.use.evaluation import evaluate_folder  # noqa: E402
from resnet_app.core.use.review import rank_for_review  # noqa: E402

ORDERS = ("review", "random")
RESULTS_FILE = "results.jsonl"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
QUICK_SCALE = quality_data.DataScale("quick", train_per_class=12, test_per_class=6)


@dataclasses.dataclass(frozen=True)
class Budget:
    epochs: int
    batch_size: int
    image_size: int
    val_fraction: float
    start_per_class: int
    step: int
    rounds: int
    scale: quality_data.DataScale

    def train_config(self, seed: int) -> TrainConfig:
        """The app's default recipe with this budget: the settings a run really trains with."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, image_size=self.image_size,
                           val_fraction=self.val_fraction, seed=seed, device="cpu", loader_processes=0)

    def describe(self) -> str:
        return (f"{self.epochs} epoch(s), batch {self.batch_size}, {self.image_size} px, validation share "
                f"{self.val_fraction:g}, start {self.start_per_class}/class, +{self.step} per round, "
                f"{self.rounds} rounds, {self.scale.name} data scale")


# --- the pool and the labelled set --------------------------------------------------------------------

def train_images(train_dir: Path) -> dict[str, str]:
    """{path relative to TRAIN: class} for every image of TRAIN, in a fixed order."""
    found = {}
    for path in sorted(train_dir.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found[path.relative_to(train_dir).as_posix()] = path.parent.name
    return found


def initial_labelled(images: dict[str, str], per_class: int, seed: int) -> list[str]:
    """`per_class` images of each class, drawn at random (seeded)."""
    rng = random.Random(f"active-learning-start-{seed}")
    chosen = []
    for label in sorted(set(images.values())):
        members = [p for p, c in images.items() if c == label]
        chosen += rng.sample(members, min(per_class, len(members)))
    return sorted(chosen)


def build_labelled_folder(train_dir: Path, labelled: list[str], folder: Path) -> None:
    """A folder with one sub-folder per class holding copies of the labelled images."""
    shutil.rmtree(folder, ignore_errors=True)
    for relative in labelled:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(train_dir / relative, target)


def choose_next(order: str, model_path: Path | None, train_dir: Path, pool: list[str], step: int,
                seed: int, round_number: int) -> list[str]:
    """The `step` pool images to label next: review order (least sure first) or random (seeded)."""
    if order == "random":
        rng = random.Random(f"active-learning-random-{seed}-{round_number}")
        return sorted(rng.sample(pool, min(step, len(pool))))
    classifier = Classifier.from_file(model_path, device="cpu")
    ranked = rank_for_review(classifier, [train_dir / p for p in pool])
    chosen = [Path(item.path).relative_to(train_dir).as_posix() for item in ranked if item.ok][:step]
    return sorted(chosen)


def set_hash(labelled: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(labelled)).encode()).hexdigest()[:16]


# --- one round -------------------------------------------------------------------------------------

def train_and_score(dataset: quality_data.PreparedDataset, labelled: list[str], budget: Budget, seed: int,
                    scratch: Path) -> tuple[float, Path, float, float]:
    """(test accuracy, model file, training seconds, testing seconds) of a model trained on `labelled`."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # A fresh decoded-image cache per run keeps the user's cache clean (as learning_quality.py does).
    os.environ["RESNET_APP_CACHE_DIR"] = str(scratch / "decoded-cache")
    folder = scratch / "labelled"
    build_labelled_folder(dataset.train_dir, labelled, folder)
    trainer = Trainer(budget.train_config(seed), folder, scratch / "run")
    trainer.add_callback("message", lambda m: print(f"    {m.level}: {m.text}") if m.level != "info" else None)
    started = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - started
    if result.model_path is None:
        raise RuntimeError(f"training ended without a model ({result.status})")
    started = time.perf_counter()
    accuracy = evaluate_folder(Classifier.from_file(result.model_path, device="cpu"), dataset.test_dir).accuracy
    return accuracy, Path(result.model_path), train_seconds, time.perf_counter() - started


# --- results file ------------------------------------------------------------------------------------

def identity(dataset: quality_data.PreparedDataset, budget: Budget, seed: int) -> dict[str, Any]:
    """What makes two results comparable: the data, the settings trained with, the labelling budget."""
    settings = budget.train_config(seed).to_dict()
    return {"data_tag": dataset.tag, "seed": seed, "settings": settings, "start_per_class": budget.start_per_class,
            "step": budget.step}


def same_run(record: dict[str, Any], ident: dict[str, Any]) -> bool:
    return all(record.get(k) == v for k, v in ident.items())


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted write
                continue
    return records


def append_result(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run_sequence(dataset: quality_data.PreparedDataset, budget: Budget, seed: int, order: str,
                 work_dir: Path, results_path: Path) -> None:
    """The rounds of one (dataset, seed, order), each one skipped if results.jsonl has it."""
    images = train_images(dataset.train_dir)
    ident = identity(dataset, budget, seed)
    labelled = initial_labelled(images, budget.start_per_class, seed)
    for round_number in range(budget.rounds):
        last = round_number == budget.rounds - 1
        records = [r for r in load_results(results_path) if same_run(r, ident)]
        mine = [r for r in records if r["order"] == order and r["round"] == round_number]
        label = f"{dataset.name} | seed {seed} | {order} | round {round_number} ({len(labelled)} labelled)"
        if mine:
            record = mine[-1]
            print(f"{label}: already in {results_path.name}, test {record['test_accuracy']:.1%}")
            labelled = sorted(record["labelled"] + record["added"])
            continue
        pool = sorted(set(images) - set(labelled))
        # Round 0 is the same labelled set for both orders: its model is trained once.
        shared = [r for r in records if r["round"] == round_number and r["labelled_hash"] == set_hash(labelled)
                  and r.get("model_of_round_0_shared")]
        scratch = work_dir / "current-run"
        try:
            if shared and order == "random":
                source = shared[-1]
                accuracy, train_s, test_s, model_path = source["test_accuracy"], 0.0, 0.0, None
                print(f"{label}: the same model as {source['order']}'s, test {accuracy:.1%}")
            else:
                accuracy, model_path, train_s, test_s = train_and_score(dataset, labelled, budget, seed, scratch)
            started = time.perf_counter()
            added = [] if last else choose_next(order, model_path, dataset.train_dir, pool, budget.step, seed,
                                                round_number)
            choose_s = time.perf_counter() - started
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # ~45 MB of weights per run otherwise
        record = {**ident, "dataset": dataset.name, "order": order, "round": round_number,
                  "labelled_count": len(labelled), "labelled_hash": set_hash(labelled),
                  "test_accuracy": accuracy, "train_seconds": round(train_s, 2), "test_seconds": round(test_s, 2),
                  "choose_seconds": round(choose_s, 2), "labelled": labelled, "added": added,
                  "added_classes": sorted(images[p] for p in added), "pool_size": len(pool),
                  "model_of_round_0_shared": round_number == 0, "torch_threads": torch.get_num_threads(),
                  "app_version": app_version, "torch_version": torch.__version__, "date": date.today().isoformat()}
        append_result(results_path, record)
        if model_path is not None:
            print(f"{label}: test {accuracy:.1%}; {train_s:.1f} s training, {test_s:.1f} s testing, "
                  f"{choose_s:.1f} s choosing")
        labelled = sorted(labelled + added)


# --- the tables ---------------------------------------------------------------------------------------

def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """{dataset: {"rows": [{round, labelled, review: {mean, min, max, seeds}, random: {...}}]}, verdicts}"""
    by_dataset: dict[str, Any] = {}
    for dataset in sorted({r["dataset"] for r in records}, key=lambda d: list(quality_data.BUILDERS).index(d)
                          if d in quality_data.BUILDERS else 99):
        mine = [r for r in records if r["dataset"] == dataset]
        rows = []
        for round_number in sorted({r["round"] for r in mine}):
            row: dict[str, Any] = {"round": round_number}
            for order in ORDERS:
                cells = [r for r in mine if r["round"] == round_number and r["order"] == order]
                accuracies = [r["test_accuracy"] for r in cells]
                row["labelled"] = cells[0]["labelled_count"] if cells else row.get("labelled")
                row[order] = ({"mean": statistics.mean(accuracies), "min": min(accuracies), "max": max(accuracies),
                               "seeds": sorted(r["seed"] for r in cells)} if cells else None)
            rows.append(row)
        by_dataset[dataset] = {"rows": rows, **verdict_figures(rows), **paired_wins(mine)}
    return by_dataset


def verdict_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Review minus random: mean over the rounds after round 0 (where both are the same model), and at
    the last round; only over rounds where both orders have the same seeds."""
    later = [r for r in rows if r["round"] > 0 and r["review"] and r["random"]
             and r["review"]["seeds"] == r["random"]["seeds"]]
    if not later:
        return {"mean_gain": None, "last_gain": None, "last_round": None}
    gains = [r["review"]["mean"] - r["random"]["mean"] for r in later]
    return {"mean_gain": statistics.mean(gains), "last_gain": gains[-1], "last_round": later[-1]["round"]}


def paired_wins(records: list[dict[str, Any]]) -> dict[str, Any]:
    """In how many (seed, round) pairs after round 0 review order's model scored above random's (and
    below, and the same)."""
    pairs = {}
    for r in records:
        if r["round"] > 0:
            pairs.setdefault((r["seed"], r["round"]), {})[r["order"]] = r["test_accuracy"]
    both = [p for p in pairs.values() if len(p) == len(ORDERS)]
    return {"review_ahead": sum(p["review"] > p["random"] for p in both),
            "random_ahead": sum(p["review"] < p["random"] for p in both),
            "pairs": len(both)}


def percent(value: float) -> str:
    return f"{value * 100:.1f}"


def markdown_tables(summary: dict[str, Any]) -> str:
    parts = []
    for dataset, figures in summary.items():
        lines = [f"**{dataset}**", "",
                 "| round | labelled | review order: mean % (min-max) | random order: mean % (min-max) | seeds |",
                 "|---:|---:|---:|---:|---|"]
        for row in figures["rows"]:
            cells = []
            for order in ORDERS:
                cell = row[order]
                cells.append(f"{percent(cell['mean'])} ({percent(cell['min'])}-{percent(cell['max'])})"
                             if cell else "-")
            seeds = sorted(set((row["review"] or {}).get("seeds", [])) | set((row["random"] or {}).get("seeds", [])))
            lines.append(f"| {row['round']} | {row['labelled']} | {cells[0]} | {cells[1]} | "
                         f"{', '.join(map(str, seeds))} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def verdict_line(summary: dict[str, Any]) -> str:
    words = []
    for dataset, figures in summary.items():
        if figures["mean_gain"] is None:
            words.append(f"{dataset}: no round after the first to compare")
            continue
        mean_gain, last_gain = figures["mean_gain"] * 100, figures["last_gain"] * 100
        beat = "beat" if mean_gain > 0 else "did not beat"
        last = "beat" if last_gain > 0 else "did not beat"
        words.append(f"{dataset}: review order {beat} random over rounds 1-{figures['last_round']} "
                     f"(mean {mean_gain:+.1f} points; ahead in {figures['review_ahead']} of {figures['pairs']} "
                     f"(seed, round) pairs, behind in {figures['random_ahead']}) and {last} it at the last "
                     f"round ({last_gain:+.1f} points)")
    return "Verdict: " + "; ".join(words) + "."


# --- command line ------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, help="datasets and results.jsonl (default: a new temp folder)")
    parser.add_argument("--datasets", nargs="+", choices=list(quality_data.BUILDERS),
                        help="default: digits letters; --quick: letters")
    parser.add_argument("--seeds", nargs="+", type=int, help="default 0 1 2; --quick: 0")
    parser.add_argument("--orders", nargs="+", choices=ORDERS, default=list(ORDERS))
    parser.add_argument("--rounds", type=int, help="models trained per sequence (default 5; --quick: 2)")
    parser.add_argument("--start-per-class", type=int, help="labelled images per class at first (default 5; "
                                                            "--quick: 2)")
    parser.add_argument("--step", type=int, help="images labelled per round (default 20; --quick: 4)")
    parser.add_argument("--epochs", type=int, help="default 5; --quick: 1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="validation share of the labelled set (default 0: every labelled image trains)")
    parser.add_argument("--data-seed", type=int, default=0, help="the seed the datasets are made from (default 0)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 dataset, 1 seed, 2 rounds, 1 epoch")
    parser.add_argument("--json-out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--table-only", action="store_true", help="print the tables of --work-dir's results")
    args = parser.parse_args(argv)
    quick = args.quick
    args.datasets = args.datasets or (["letters"] if quick else ["digits", "letters"])
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    args.rounds = args.rounds or (2 if quick else 5)
    args.start_per_class = args.start_per_class or (2 if quick else 5)
    args.step = args.step or (4 if quick else 20)
    args.epochs = args.epochs or (1 if quick else 5)
    if args.table_only and args.work_dir is None:
        parser.error("--table-only needs the --work-dir of the benchmark whose results to print")
    return args


def machine_description() -> str:
    return f"{platform.system()} {platform.release()}, {cpu_name()}, {os.cpu_count()} CPUs"


def report(records: list[dict[str, Any]], budget_words: str, json_out: Path | None, seconds: float) -> None:
    summary = summarise(records)
    print()
    print(markdown_tables(summary))
    print()
    if json_out is not None:
        figures = {"budget": budget_words, "machine": machine_description(), "cpu": cpu_name(),
                   "cores": os.cpu_count(), "torch_version": torch.__version__, "app_version": app_version,
                   "date": date.today().isoformat(), "seconds": round(seconds, 1),
                   "calibrated": False, "datasets": summary}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(figures, indent=2) + "\n")
    print(verdict_line(summary))


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="resnet-active-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results_path = work_dir / RESULTS_FILE
    scale = QUICK_SCALE if args.quick else quality_data.DEFAULT_SCALE
    budget = Budget(args.epochs, args.batch_size, args.image_size, args.val_fraction, args.start_per_class,
                    args.step, args.rounds, scale)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"work dir: {work_dir} (pass --work-dir {work_dir} to continue or to print the tables again)")
    print(f"budget: {budget.describe()}; seeds {args.seeds}; {torch.get_num_threads()} torch thread(s); "
          f"{machine_description()}; torch {torch.__version__}")
    datasets = []
    for name in args.datasets:
        try:
            datasets.append(quality_data.prepare_dataset(name, work_dir / "data", scale, args.image_size,
                                                         args.data_seed))
        except quality_data.MissingDependency as exc:
            print(f"dataset {name!r} skipped: {exc}")
    if not datasets:
        print("nothing to run")
        return 1
    wanted = []
    for dataset in datasets:
        for seed in args.seeds:
            wanted.append(identity(dataset, budget, seed))
            if args.table_only:
                continue
            for order in args.orders:
                run_sequence(dataset, budget, seed, order, work_dir, results_path)
    records = [r for r in load_results(results_path) if any(same_run(r, ident) for ident in wanted)
               and r["round"] < budget.rounds and r["order"] in args.orders]
    if not records:
        print(f"no results in {results_path}")
        return 1
    report(records, budget.describe(), args.json_out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
