"""Learning quality: test accuracy of the article's loop and of the app's recipes, on the same data.

    .venv/bin/python benchmarks/learning_quality.py [--work-dir DIR] [--datasets digits letters shapes photos]
        [--recipes NAME ...] [--seeds 0 1 2] [--epochs 4] [--batch-size 64] [--image-size 32]
        [--threads N] [--quick] [--table-only] [--list-recipes]

Defaults are to be chosen by measurement. For each dataset (quality_data.py: real handwritten digits,
letters from fonts unseen in training, the app's generated shapes, patches of real photos), each recipe
and each seed, one model is trained on the dataset's TRAIN folder and scored on its held-out TEST
folder, and the result is appended to <work-dir>/results.jsonl. At the end a Markdown table gives, per
(dataset, recipe): mean test accuracy, worst and best seed, spread, and mean wall time.

Both loops see the same budget and the same images: epochs, batch size, image size and seed come from
the command line; the app holds out 20 % of TRAIN for validation (stratified, seeded), and the article's
loop trains on exactly the other 80 %. For the same seed both start from the same initial weights. Both
are scored by the same code (core.evaluation.evaluate_folder on a saved model file). The app keeps its
best-validation epoch, the article its final one: that difference is part of what is compared.

Wall time is training only (for the app: Trainer.fit, which includes decoding the images, validating
and writing checkpoints each epoch, as a user's run does), not the scoring of the test set.

Re-running with the same --work-dir skips the runs already in results.jsonl, so a long benchmark can be
stopped and continued. The full default run takes hours on a 2-core CPU; --quick is a smoke test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # quality_data beside this file

import quality_data  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from machine import cpu_name  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from resnet_app import __version__ as app_version  # noqa: E402
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model  # noqa: E402
from resnet_app.core.model.checkpoints import ModelFile, save_model_file  # noqa: E402
from resnet_app.core.train.events import EventHub  # noqa: E402
from resnet_app.core.train.loop import Trainer  # noqa: E402
from resnet_app.core.train.run_data import prepare_run_data  # noqa: E402
from resnet_app.core.train.settings import TrainConfig  # noqa: E402
from resnet_app.core.use.classifier import Classifier  # noqa: E402
from resnet_app.core.use.evaluation import evaluate_folder  # noqa: E402

# --- the recipes -------------------------------------------------------------------------------------
# The article's loop, as SEED.md gives it; its one option is the horizontal flip (which turns b into d).
ARTICLE_RECIPES: dict[str, dict[str, Any]] = {
    "article": {"flip": False},
    "article+flip": {"flip": True},
}
# The app's recipes: keyword arguments of TrainConfig on top of its defaults. A recipe naming a field
# that this version of TrainConfig lacks is skipped with a note, so the table can name fields that are
# still being added to the engine.
APP_RECIPES: dict[str, dict[str, Any]] = {
    "app default": {},
    "app default, batch auto": {"batch_size": "auto"},  # as a user runs it: the batch the app chooses
    # The defaults until 2026-11-28: constant learning rate, random crops and flips.
    "old default": {"schedule": "none", "augment": True, "flip": True},
    "constant": {"schedule": "none"},
    "no-crop": {"augment": False},
    "cosine": {"schedule": "cosine"},
    "onecycle": {"schedule": "onecycle"},
    "onecycle flip": {"schedule": "onecycle", "flip": True},
    "onecycle no-crop": {"schedule": "onecycle", "augment": False},
    "onecycle smoothing": {"schedule": "onecycle", "label_smoothing": 0.1},
    # one cycle's peak at twice Adam's usual rate (here at batch 64: 0.002 against the scaled 0.00071)
    "onecycle smoothing lr2e-3": {"schedule": "onecycle", "label_smoothing": 0.1, "lr": 0.002},
    "sgd onecycle": {"optimizer": "sgd", "schedule": "onecycle"},
}
QUICK_RECIPES = ("article", "app default")  # --quick: one of each loop, enough to smoke-test both
VAL_FRACTION = 0.2  # TrainConfig's default; the article's loop trains on the same other 80 %

# Set from the command line for every run (budget_settings), so that no recipe may change them.
BUDGET_KEYS = ("epochs", "seed", "image_size", "device", "loader_processes", "val_fraction")
# A recipe may ask for the app's automatic batch size (its real default) instead of the budget's.
RECIPE_MAY_SET = ("batch_size",)
RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class Budget:
    """What every run of one invocation gets, whatever the recipe."""

    epochs: int
    batch_size: int
    image_size: int
    scale: quality_data.DataScale

    def describe(self) -> str:
        return (f"{self.epochs} epoch(s), batch {self.batch_size}, {self.image_size} px, "
                f"{self.scale.name} data scale")


@dataclass(frozen=True)
class Run:
    dataset: quality_data.PreparedDataset
    recipe: str
    seed: int


@dataclass
class Outcome:
    test_accuracy: float | None  # of the model the run keeps (the app: best validation epoch)
    final_test_accuracy: float | None  # of the last epoch's weights (the app: last.pt)
    best_val_accuracy: float | None
    train_seconds: float
    test_seconds: float
    status: str  # "completed", or what the app's Trainer said (stopped, diverged)


# --- choosing recipes --------------------------------------------------------------------------------

def runnable_recipes(names: list[str]) -> list[str]:
    """The named recipes that this engine can run; each one left out is printed with the reason."""
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    chosen = []
    for name in names:
        if name in ARTICLE_RECIPES:
            chosen.append(name)
            continue
        settings = APP_RECIPES[name]
        fixed = sorted(set(settings) & set(BUDGET_KEYS))
        if fixed:
            print(f"recipe {name!r} skipped: {', '.join(fixed)} come from the command line, not from a recipe")
            continue
        missing = sorted(set(settings) - config_fields)
        if missing:
            print(f"recipe {name!r} skipped: TrainConfig has no field {', '.join(missing)}")
            continue
        try:  # a field may exist but not accept this value (its type or range changed)
            TrainConfig(**settings)
        except (TypeError, ValueError) as exc:
            print(f"recipe {name!r} skipped: TrainConfig refuses {settings}: {exc}")
            continue
        chosen.append(name)
    return chosen


def recipe_settings(name: str) -> dict[str, Any]:
    return ARTICLE_RECIPES.get(name, APP_RECIPES.get(name, {}))


def loop_of(recipe: str) -> str:
    return "article" if recipe in ARTICLE_RECIPES else "app"


# --- the article's loop ------------------------------------------------------------------------------

def app_training_split(train_dir: Path, seed: int) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, training samples): exactly the images the app trains on for this seed, from the
    app's own data preparation (core.run_data)."""
    config = TrainConfig(val_fraction=VAL_FRACTION, seed=seed)
    data = prepare_run_data(config, train_dir, EventHub())
    return data.classes, data.train_samples


def article_training_set(train_dir: Path, image_size: int, flip: bool,
                         seed: int) -> tuple[list[str], torch.utils.data.Dataset]:
    """torchvision's ImageFolder with the article's CIFAR transforms, limited to the app's training 80 %."""
    steps = [transforms.Resize((image_size, image_size)),
             transforms.RandomCrop(image_size, padding=image_size // 8)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    folder = datasets.ImageFolder(str(train_dir), transform=transforms.Compose(steps))
    classes, train_samples = app_training_split(train_dir, seed)
    if folder.classes != classes:
        raise RuntimeError(f"ImageFolder and the app disagree on the classes: {folder.classes} vs {classes}")
    wanted = {str(Path(path).resolve()) for path, _ in train_samples}
    indices = [i for i, (path, _) in enumerate(folder.samples) if str(Path(path).resolve()) in wanted]
    if len(indices) != len(train_samples):
        raise RuntimeError(f"found {len(indices)} of the app's {len(train_samples)} training images in ImageFolder")
    return classes, torch.utils.data.Subset(folder, indices)


def train_article_loop(run: Run, budget: Budget, out_dir: Path) -> tuple[Path, float]:
    """The article's loop as written (Adam at lr 1e-3, CrossEntropyLoss, final-epoch weights); returns
    the saved model file and the training seconds."""
    started = time.perf_counter()
    torch.manual_seed(run.seed)  # the same initial weights as the app's run with this seed
    train_dir = run.dataset.train_dir.resolve()
    classes, dataset = article_training_set(train_dir, budget.image_size, recipe_settings(run.recipe)["flip"], run.seed)
    model = build_model("resnet18-cifar", len(classes))
    loader = torch.utils.data.DataLoader(dataset, batch_size=budget.batch_size, shuffle=True, num_workers=0)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(budget.epochs):
        running_loss = 0.0
        for i, (inputs, labels) in enumerate(loader):
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 2000 == 1999:  # the article's progress line (reached only by large sets)
                print('    [%d, %5d] loss: %.3f' % (epoch + 1, i + 1, running_loss / 2000))
                running_loss = 0.0
    seconds = time.perf_counter() - started
    # Saved as the app saves its models, so that both loops are scored by identical code.
    path = save_model_file(out_dir / "article.safetensors", ModelFile(
        model.state_dict(), "resnet18-cifar", classes, budget.image_size, list(IMAGENET_MEAN), list(IMAGENET_STD)))
    return path, seconds


# --- the app's recipes -------------------------------------------------------------------------------

def app_settings(run: Run, budget: Budget) -> dict[str, Any]:
    """The recipe on top of the budget; only RECIPE_MAY_SET keys of the recipe override the budget."""
    recipe = recipe_settings(run.recipe)
    budget_part = {k: v for k, v in budget_settings(run, budget).items()
                   if k not in recipe or k not in RECIPE_MAY_SET}
    return {**recipe, **budget_part}


def budget_settings(run: Run, budget: Budget) -> dict[str, Any]:
    """The TrainConfig settings every app run gets from the command line."""
    return {"epochs": budget.epochs, "seed": run.seed, "batch_size": budget.batch_size,
            "image_size": budget.image_size, "device": "cpu", "loader_processes": 0, "val_fraction": VAL_FRACTION}


def train_app_recipe(run: Run, budget: Budget, out_dir: Path):
    """(the Trainer's TrainResult, training seconds)."""
    config = TrainConfig(**app_settings(run, budget))
    trainer = Trainer(config, run.dataset.train_dir, out_dir / "run")
    trainer.add_callback("message", lambda m: print(f"    {m.level}: {m.text}") if m.level != "info" else None)
    started = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - started
    return result, seconds


# --- one run -----------------------------------------------------------------------------------------

def run_once(run: Run, budget: Budget, scratch: Path) -> Outcome:
    """Train with the run's recipe, score the model on the TEST folder, and clean up its files."""
    out_dir = scratch / "current-run"
    shutil.rmtree(out_dir, ignore_errors=True)  # left by an interrupted run
    out_dir.mkdir(parents=True)
    # The app keeps decoded images in a per-user cache; a fresh one per run keeps the user's cache clean
    # and makes every run pay the same decoding, as a first run on new data does.
    os.environ["RESNET_APP_CACHE_DIR"] = str(out_dir / "decoded-cache")
    try:
        if loop_of(run.recipe) == "article":
            model_path, seconds = train_article_loop(run, budget, out_dir)
            final_path, best_val, status = model_path, None, "completed"
        else:
            result, seconds = train_app_recipe(run, budget, out_dir)
            model_path, final_path = result.model_path, result.checkpoint_path  # best epoch, last epoch
            best_val, status = result.best_val_accuracy, result.status
        started = time.perf_counter()
        accuracy, final = test_accuracy(model_path, run), test_accuracy(final_path, run)
        return Outcome(accuracy, final, best_val, seconds, time.perf_counter() - started, status)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)  # ~45 MB of weights per run otherwise


def test_accuracy(model_path: Path | None, run: Run) -> float | None:
    if model_path is None:
        return None
    return evaluate_folder(Classifier.from_file(model_path, device="cpu"), run.dataset.test_dir).accuracy


# --- results file ------------------------------------------------------------------------------------

def machine_description() -> str:
    return f"{platform.system()} {platform.release()}, {cpu_name()}, {os.cpu_count()} CPUs"


# What makes two results the same run: the data, the recipe as defined, the seed and the budget.
KEY_FIELDS = ("data_tag", "recipe", "settings", "seed", "epochs", "batch_size", "image_size")


def resolved_settings(run: Run, budget: Budget) -> dict[str, Any]:
    """The settings a run really trains with: for the app, every TrainConfig field (so that a changed
    default makes "app default" a new run, not a cached old one)."""
    if loop_of(run.recipe) == "article":
        return recipe_settings(run.recipe)
    return TrainConfig(**app_settings(run, budget)).to_dict()


def run_identity(run: Run, budget: Budget) -> dict[str, Any]:
    return {"data_tag": run.dataset.tag, "recipe": run.recipe, "settings": resolved_settings(run, budget),
            "seed": run.seed, "epochs": budget.epochs, "batch_size": budget.batch_size,
            "image_size": budget.image_size}


# Settings that say how or where a run is launched, not what it learns: left out of the key, so that
# a new one of them (issue 14 added nproc and sync_batchnorm) doesn't make every stored run a new one.
NOT_LEARNING_SETTINGS = ("device", "loader_processes", "data_loading", "compile", "nproc", "sync_batchnorm",
                         "log_every", "checkpoint_every_s")


def run_key(record: dict[str, Any]) -> tuple:
    identity = {**record, "settings": {name: value for name, value in record["settings"].items()
                                       if name not in NOT_LEARNING_SETTINGS}}
    return tuple(json.dumps(identity[name], sort_keys=True) for name in KEY_FIELDS)


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    latest: dict[tuple, dict[str, Any]] = {}  # a run measured again counts once: its latest result
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a run killed while writing it
            continue
        latest.pop(run_key(record), None)
        latest[run_key(record)] = record
    return list(latest.values())


def append_result(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())  # each result survives whatever stops the benchmark next


def make_record(run: Run, budget: Budget, outcome: Outcome, threads: int) -> dict[str, Any]:
    return {
        **run_identity(run, budget), "dataset": run.dataset.name, "scale": budget.scale.name,
        "loop": loop_of(run.recipe), "test_accuracy": outcome.test_accuracy,
        "final_test_accuracy": outcome.final_test_accuracy,
        "best_val_accuracy": outcome.best_val_accuracy, "wall_s": round(outcome.train_seconds, 2),
        "test_s": round(outcome.test_seconds, 2), "status": outcome.status,
        "torch": str(torch.__version__), "resnet_app": app_version, "threads": threads,
        "machine": machine_description(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- the table ---------------------------------------------------------------------------------------

def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_tables(records: list[dict[str, Any]]) -> str:
    """One table per budget (epochs, batch, size, data scale): runs of different budgets never share a row."""
    budgets: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        key = (record["epochs"], record["batch_size"], record["image_size"], record["scale"])
        budgets.setdefault(key, []).append(record)
    parts = []
    for (epochs, batch, size, scale), group in budgets.items():
        parts.append(f"{epochs} epoch(s), batch {batch}, {size} px, {scale} data scale; test accuracy in %:\n")
        parts.append(_table(group))
        machines = sorted({f"{r['machine']}, torch {r['torch']}, {r['threads']} thread(s)" for r in group})
        parts.append("\n" + "\n".join(f"Machine: {m}" for m in machines) + "\n")
    return "\n".join(parts)


def _table(records: list[dict[str, Any]]) -> str:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        rows.setdefault((record["dataset"], record["recipe"]), []).append(record)
    lines = ["| dataset | recipe | mean test acc | worst seed | best seed | spread | last epoch: mean | seeds "
             "| mean wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (dataset, recipe), runs in rows.items():
        # A run that produced no model (diverged in its first epoch) counts as 0 %: it is a real failure.
        accuracies = [r["test_accuracy"] or 0.0 for r in runs]
        failed = sum(r["status"] != "completed" for r in runs)
        seeds = f"{len(runs)}" + (f" ({failed} not completed)" if failed else "")
        finals = [r.get("final_test_accuracy") or 0.0 for r in runs]
        lines.append(f"| {dataset} | {recipe} | {percent(statistics.mean(accuracies))} | {percent(min(accuracies))} "
                     f"| {percent(max(accuracies))} | {percent(max(accuracies) - min(accuracies))} "
                     f"| {percent(statistics.mean(finals))} | {seeds} "
                     f"| {statistics.mean(r['wall_s'] for r in runs):.1f} |")
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    all_recipes = list(ARTICLE_RECIPES) + list(APP_RECIPES)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, help="datasets and results.jsonl (default: a new temp folder)")
    parser.add_argument("--datasets", nargs="+", choices=list(quality_data.BUILDERS),
                        default=list(quality_data.BUILDERS))
    parser.add_argument("--recipes", nargs="+", choices=all_recipes, metavar="NAME",
                        help=f"recipes to run (default all; --quick: {', '.join(QUICK_RECIPES)}): "
                             f"{', '.join(repr(r) for r in all_recipes)}")
    parser.add_argument("--seeds", nargs="+", type=int, help="training seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--epochs", type=int, help="default 4; --quick: 1")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, help="default 32; --quick: 16")
    parser.add_argument("--data-seed", type=int, default=0, help="the seed the datasets are made from (default 0)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke test: few images, 1 seed, 1 epoch, 16 px")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table of --work-dir's results; run nothing")
    parser.add_argument("--list-recipes", action="store_true",
                        help="print the recipes and whether this engine runs them")
    args = parser.parse_args(argv)
    quick = args.quick
    args.recipes = args.recipes or (list(QUICK_RECIPES) if quick else all_recipes)
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    args.epochs = args.epochs or (1 if quick else 4)
    args.image_size = args.image_size or (16 if quick else 32)
    if args.table_only and args.work_dir is None:
        parser.error("--table-only needs the --work-dir of the benchmark whose results to print")
    return args


def list_recipes() -> None:
    for name, settings in ARTICLE_RECIPES.items():
        print(f"{name!r}: the article's loop, {settings}")
    for name, settings in APP_RECIPES.items():
        print(f"{name!r}: the app's Trainer, TrainConfig defaults + {settings}")
    print()
    runnable_recipes(list(APP_RECIPES))


def prepare_datasets(names: list[str], root: Path, budget: Budget,
                     data_seed: int) -> list[quality_data.PreparedDataset]:
    prepared = []
    for name in names:
        started = time.perf_counter()
        try:
            dataset = quality_data.prepare_dataset(name, root, budget.scale, budget.image_size, data_seed)
        except quality_data.MissingDependency as exc:
            print(f"dataset {name!r} skipped: {exc}")
            continue
        train = sum(1 for _ in dataset.train_dir.rglob("*.png"))
        test = sum(1 for _ in dataset.test_dir.rglob("*.png"))
        print(f"dataset {name}: {train} train / {test} test images in {dataset.train_dir.parent} "
              f"({time.perf_counter() - started:.1f} s)")
        prepared.append(dataset)
    return prepared


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_recipes:
        list_recipes()
        return 0
    if args.table_only:
        records = load_results(args.work_dir / RESULTS_FILE)
        print(markdown_tables(records) if records else f"no results in {args.work_dir / RESULTS_FILE}")
        return 0 if records else 1

    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="resnet-quality-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    scale = quality_data.QUICK_SCALE if args.quick else quality_data.DEFAULT_SCALE
    budget = Budget(args.epochs, args.batch_size, args.image_size, scale)
    print(f"work dir: {work_dir} (pass --work-dir {work_dir} to continue or to print the table again)")
    print(f"budget: {budget.describe()}; seeds {args.seeds}; {threads} torch thread(s); {machine_description()}")

    recipes = runnable_recipes(args.recipes)
    datasets = prepare_datasets(args.datasets, work_dir / "data", budget, args.data_seed)
    if not recipes or not datasets:
        print("nothing to run")
        return 1

    results_path = work_dir / RESULTS_FILE
    done = {run_key(r) for r in load_results(results_path)}
    this_invocation = []
    runs = [Run(d, r, s) for d in datasets for r in recipes for s in args.seeds]
    for number, run in enumerate(runs, 1):
        label = f"[{number}/{len(runs)}] {run.dataset.name} | {run.recipe} | seed {run.seed}"
        key = run_key(run_identity(run, budget))
        this_invocation.append(key)
        if key in done:
            print(f"{label}: already in {results_path.name}, skipped")
            continue
        outcome = run_once(run, budget, work_dir)
        append_result(results_path, make_record(run, budget, outcome, threads))
        val = f", best val {percent(outcome.best_val_accuracy)} %" if outcome.best_val_accuracy is not None else ""
        status = "" if outcome.status == "completed" else f" ({outcome.status})"
        print(f"{label}: test {percent(outcome.test_accuracy)} %{val}; "
              f"{outcome.train_seconds:.1f} s training, {outcome.test_seconds:.1f} s testing{status}")

    wanted = set(this_invocation)
    print()
    print(markdown_tables([r for r in load_results(results_path) if run_key(r) in wanted]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
