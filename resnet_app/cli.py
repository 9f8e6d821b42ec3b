"""The `resnet-app` command line: parsing and printing only; all work is done by resnet_app.core.

Exit codes (documented in the README): 0 success; 1 the command ran but not everything succeeded
(some files could not be classified, training diverged, the dataset is unusable); 2 usage errors and
inputs that can't be used at all (a model file that can't be loaded, a missing folder); 130 training
interrupted with Ctrl+C (a checkpoint was saved first).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resnet_app import __version__
from resnet_app.core.train.events import plural
from resnet_app.runtime import freeze_startup_heap

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A user-facing error: printed as 'resnet-app: error: ...' with an exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --- output helpers --------------------------------------------------------------------------------

class Output:
    """Human text goes to stdout, or to stderr when --json keeps stdout for machine-readable lines."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.human = sys.stderr if json_mode else sys.stdout

    def say(self, text: str = "") -> None:
        print(text, file=self.human, flush=True)

    def json(self, obj: Any) -> None:
        """One line of strict JSON: NaN and infinities become null; a file name that is not valid UTF-8
        (a lone surrogate, from os.fsdecode) is written as \\udcXX escapes, which JSON readers turn back
        into the same name."""
        from resnet_app.core.files import finite_json

        obj = finite_json(obj)
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
        if _has_surrogates(text):
            text = json.dumps(obj, ensure_ascii=True, allow_nan=False)
        print(text, flush=True)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class ProgressBar:
    """A one-line bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.visible = False

    def show(self, label: str, done: int, total: int, suffix: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        filled = int(self.WIDTH * done / total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{label} [{bar}] {done}/{total} {suffix}\033[K")
        self.stream.flush()
        self.visible = True

    def clear(self) -> None:
        if self.visible:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.visible = False


# --- train -----------------------------------------------------------------------------------------

# Settings a resumed run may change: a resumed run is the same run (docs/decisions.md).
RESUME_MAY_CHANGE = ("epochs", "device", "loader_processes", "nproc")


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings given on the command line (argparse leaves the others None)."""
    from resnet_app.core.train.settings import train_settings

    return {spec.name: getattr(args, spec.name) for spec in train_settings()
            if spec.on_cli and getattr(args, spec.name) is not None}


def _train_config(given: dict[str, Any]):
    from resnet_app.core.train.settings import TrainConfig

    try:
        return TrainConfig(**given)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _make_trainer(args: argparse.Namespace):
    """A Trainer, or with several processes (--nproc, --nnodes) the launcher that runs one in each
    (core/train/distributed/): the same face either way."""
    from resnet_app.core.train.settings import setting_named
    from resnet_app.core.train.trainers import make_trainer, resume_trainer

    given = _given_settings(args)
    nproc = given.pop("nproc", None)  # how the run is launched, not one of its settings
    if args.resume:
        fixed = [setting_named(name).cli_flags[0] for name in given if name not in RESUME_MAY_CHANGE]
        if fixed:
            raise CliError(f"{', '.join(fixed)} can't change when resuming: a resumed run keeps the settings "
                           f"it started with (only --epochs, --device, --workers and --nproc may change). Start "
                           "a new run to train with other settings.")
        from resnet_app.core.train.distributed.launcher import checkpoint_config

        saved = checkpoint_config(args.resume)
        plan = _launch_plan(args, nproc, given.get("device", saved.device), saved_nproc=saved.nproc)
        if plan.distributed:
            return _distributed_run(plan, resume=args.resume, out_dir=args.out, data_dir=args.data_dir, changes=given)
        trainer = resume_trainer(args.resume, out_dir=args.out, data_dir=args.data_dir, **given)
        trainer.config.nproc = 1  # (a run trained by several processes goes on in one: recorded)
        return trainer
    if args.data_dir is None:
        raise CliError("give the data folder (DATA_DIR), or --resume CHECKPOINT")
    config = _train_config(given)
    out_dir = args.out or Path("runs") / Path(args.data_dir).name
    plan = _launch_plan(args, nproc, config.device)
    if plan.distributed:
        return _distributed_run(plan, config=config, data_dir=args.data_dir, out_dir=out_dir)
    return make_trainer(config, args.data_dir, out_dir)


def _launch_plan(args: argparse.Namespace, nproc, device: str, saved_nproc=None):
    """How many processes, on how many machines (core/train/distributed/ checks them against this one)."""
    from resnet_app.core.train.distributed.launcher import launch_plan

    try:
        plan = launch_plan(nproc, device, nnodes=args.nnodes, node_rank=args.node_rank,
                           rdzv_endpoint=args.rdzv_endpoint, saved_nproc=saved_nproc)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if not plan.distributed:
        for note in plan.notes:  # (the distributed launcher says its own as its first messages)
            Output(args.json).say(note)
    return plan


def _distributed_run(plan, **run):
    from resnet_app.core.train.distributed.launcher import DistributedRun

    try:
        return DistributedRun(plan, **run)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


class TrainPrinter:
    """Prints a run as the article did ('[epoch, batch] loss: x.xxx'), plus a bar and epoch summaries."""

    def __init__(self, out: Output, log_every: int):
        self.out, self.log_every = out, log_every
        self.bar = ProgressBar()
        self.running_loss, self.running_count = 0.0, 0
        self.end = None  # the RunEnd event: its summary is the run's last line, as in the app

    def attach(self, trainer) -> None:
        for event in ("run_start", "batch_end", "epoch_end", "checkpoint_saved", "message", "run_end"):
            trainer.add_callback(event, getattr(self, f"on_{event}"))

    def on_run_start(self, e) -> None:
        self.every = self.log_every or max(1, e.batches_per_epoch // 4)
        self.out.say(e.summary())

    def on_batch_end(self, e) -> None:
        self.running_loss += e.loss
        self.running_count += 1
        if e.batch % self.every == 0:
            self.bar.clear()
            self.out.say("[%d, %5d] loss: %.3f" % (e.epoch, e.batch, self.running_loss / self.running_count))
            self.running_loss, self.running_count = 0.0, 0
        self.bar.show(f"epoch {e.epoch}", e.batch, e.batches, f"loss {e.loss:.3f}")

    def on_epoch_end(self, e) -> None:
        self.bar.clear()
        self.running_loss, self.running_count = 0.0, 0
        self.out.say(e.summary())

    def on_checkpoint_saved(self, e) -> None:
        if e.kind == "best":
            self.out.say(e.summary())

    def on_message(self, e) -> None:
        self.bar.clear()
        self.out.say(e.summary())

    def on_run_end(self, e) -> None:
        self.bar.clear()
        self.end = e


def _stop_on_first_ctrl_c(trainer, out: Output) -> Callable[[], None]:
    """First Ctrl+C asks the trainer to stop after the batch (saving a checkpoint); a second one quits."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        out.say("\nstopping after this batch and saving a checkpoint (Ctrl+C again to quit at once)")
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def cmd_train(args: argparse.Namespace) -> int:
    out = Output(args.json)
    trainer = _make_trainer(args)
    printer = TrainPrinter(out, args.log_every)
    printer.attach(trainer)
    restore_sigint = _stop_on_first_ctrl_c(trainer, out)
    freeze_startup_heap()  # no 200 ms full garbage collections in the middle of training (runtime.py)
    try:
        result = trainer.fit()
    finally:
        restore_sigint()
    summary = printer.end.summary() if printer.end is not None else f"Training {result.status}."
    out.say(summary)
    if result.message and result.message not in summary:  # (a stopped run's message is its summary)
        out.say(result.message)
    if result.model_path:
        out.say(f"model: {result.model_path}")
    if result.checkpoint_path:
        out.say(f"checkpoint: {result.checkpoint_path}")
    if args.json:
        out.json({"status": result.status, "model": str(result.model_path) if result.model_path else None,
                  "checkpoint": str(result.checkpoint_path) if result.checkpoint_path else None,
                  "best_val_accuracy": result.best_val_accuracy, "epochs": result.epochs_completed,
                  "run_dir": str(trainer.out_dir), "message": result.message, "unit": result.unit})
    return {"completed": EXIT_OK, "stopped": EXIT_INTERRUPTED}.get(result.status, EXIT_PARTIAL)


# --- predict and eval ------------------------------------------------------------------------------

def load_classifier(model: str, device: str):
    from resnet_app.core.use.classifier import Classifier

    if model == "imagenet":
        return Classifier.imagenet(model, device=device)
    return Classifier.from_file(model, device=device)  # a .pth of ImageNet's weights included


def _format_prediction(prediction) -> str:
    if not prediction.ok:
        return f"{prediction.path}: ERROR {prediction.error}"
    labels = ", ".join(f"{label} {probability:.1%}" for label, probability in prediction.top_k)
    return f"{prediction.path}: {labels}" + (" (unsure)" if prediction.unsure else "")


def cmd_predict(args: argparse.Namespace) -> int:
    from resnet_app.core.use.classifier import find_images, write_predictions_csv

    out = Output(args.json)
    classifier = load_classifier(args.model, args.device)
    if args.min_confidence is not None:  # else the model file's own threshold (none: never unsure)
        classifier.unsure_below = args.min_confidence
    paths, skipped = find_images(args.paths)
    _report_skipped(out, skipped)
    if not paths:
        raise CliError("no image files found in the given paths")
    predictions = []
    for prediction in classifier.predict_paths(paths, top_k=args.top_k, batch_size=args.batch_size):
        predictions.append(prediction)
        if args.json:
            out.json(prediction.to_dict())
        else:
            out.say(_format_prediction(prediction))
    if args.csv:
        write_predictions_csv(args.csv, predictions, min(args.top_k, len(classifier.class_names)))
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"{failed} of {plural(len(predictions), 'file')} could not be classified", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


def _report_skipped(out: Output, skipped) -> None:
    """Files left out of the folders searched, each with its reason (hidden files only counted): not a
    failure, so the exit code does not change, but nothing is left out silently."""
    shown = [item for item in skipped if not item.reason.startswith("hidden")]
    for item in shown:
        if out.json_mode:
            out.json({"path": str(item.path), "top_k": [], "error": None, "skipped": item.reason})
        else:
            out.say(f"{item.path}: skipped: {item.reason}")
    if skipped:
        hidden = len(skipped) - len(shown)
        ignored = f", {plural(hidden, 'hidden file')} ignored" if hidden else ""
        print(f"{plural(len(shown), 'file')} skipped as not images{ignored}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from resnet_app.core.use.evaluation import evaluate_folder

    out = Output(args.json)
    classifier = load_classifier(args.model, args.device)
    report = _with_progress_bar("eval", lambda progress: evaluate_folder(classifier, args.data_dir, progress=progress))
    _print_report(out, report)
    return EXIT_PARTIAL if report.unreadable else EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from resnet_app.core.use.classifier import find_images
    from resnet_app.core.use.review import describe_item, rank_for_review

    out = Output(args.json)
    classifier = load_classifier(args.model, args.device)
    paths, skipped = find_images([args.source])
    if not paths:
        raise CliError(f"{args.source}: no image files found (searched recursively)")
    items = _with_progress_bar("review", lambda progress: rank_for_review(
        classifier, paths, batch_size=args.batch_size, progress=progress))
    readable = [item for item in items if item.ok]
    shown = readable[:args.top] if args.top else readable
    for item in shown + [item for item in items if not item.ok]:  # unreadable files last, all of them
        if args.json:
            out.json(item.to_dict())
        else:
            out.say(describe_item(item))
    _report_skipped(out, skipped)
    failed = len(items) - len(readable)
    left = f", {len(readable) - len(shown)} more not listed (--top {args.top})" if len(shown) < len(readable) else ""
    print(f"{plural(len(readable), 'image')} ranked, least sure first{left}"
          + (f"; {failed} could not be read" if failed else ""), file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from resnet_app.core.use.export import ExportCheckFailed, export_model

    out = Output(args.json)
    bar = ProgressBar()
    try:
        result = export_model(args.model, args.format, args.out, check_images=args.check_images,
                              progress=lambda step, steps, text: bar.show("export", step, steps, text))
    except ExportCheckFailed as exc:  # exported, but it does not answer as the app does: not kept
        raise CliError(str(exc), EXIT_PARTIAL) from exc
    finally:
        bar.clear()
    for line in result.summary_lines():
        out.say(line)
    if args.json:
        out.json(result.to_dict())
    return EXIT_OK


def _with_progress_bar(label: str, work: Callable[[Callable[[int, int], None]], Any]) -> Any:
    bar = ProgressBar()
    try:
        return work(lambda done, total: bar.show(label, done, total))
    finally:
        bar.clear()


def _print_report(out: Output, report) -> None:
    """A report object with to_dict() (for --json) and summary_lines() (for people)."""
    if out.json_mode:
        out.json(report.to_dict())
    else:
        for line in report.summary_lines():
            out.say(line)


# --- sort ------------------------------------------------------------------------------------------

class _StopRequest:
    """What Ctrl+C sets during a sort: the sort finishes the file in hand, logs, and stops."""

    def __init__(self) -> None:
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True


def cmd_sort(args: argparse.Namespace) -> int:
    from resnet_app.core.use.sorting import sort_folder, undo_sort

    out = Output(args.json)
    if args.undo:
        if args.model or args.source or args.into or args.move or args.min_confidence is not None:
            raise CliError("--undo takes only the log: resnet-app sort --undo DEST/sort-log.jsonl")
        result = _with_progress_bar("undo", lambda progress: undo_sort(args.undo, progress=progress))
        out.say(result.summary_line())
        for problem in result.problems:
            out.say(f"  {problem['path']}: {problem['problem']}")
        if args.json:
            out.json(result.to_dict())
        return EXIT_PARTIAL if result.problems else EXIT_OK
    if not (args.model and args.source and args.into):
        raise CliError("give MODEL, SOURCE and --into DEST (or --undo DEST/sort-log.jsonl)")
    classifier = load_classifier(args.model, args.device)
    request = _StopRequest()
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum, frame):
        out.say("\nstopping after this image (Ctrl+C again to quit at once; the log lists what was sorted)")
        request.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stop)
    try:
        summary = _with_progress_bar("sorting", lambda progress: sort_folder(
            classifier, args.source, args.into, move=args.move, min_confidence=args.min_confidence,
            batch_size=args.batch_size, progress=progress, should_stop=lambda: request.stop_requested))
    finally:
        signal.signal(signal.SIGINT, previous)
    out.say(summary.summary_line())
    for line in summary.detail_lines():
        out.say(line)
    if args.json:
        out.json(summary.to_dict())
    if summary.stopped:
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if summary.error or summary.unreadable or summary.not_removed else EXIT_OK


# --- doctor, sample-data, gui, selftest ------------------------------------------------------------

def cmd_doctor(args: argparse.Namespace) -> int:
    from resnet_app.core.data.scan import scan_dataset

    out = Output(args.json)
    if not Path(args.data_dir).is_dir():
        raise CliError(f"{args.data_dir}: not a folder")
    report = _with_progress_bar("checking", lambda progress: scan_dataset(args.data_dir, progress=progress))
    _print_report(out, report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_sample_data(args: argparse.Namespace) -> int:
    from resnet_app.core.data.sample_data import generate_sample_dataset

    try:
        folder = generate_sample_dataset(args.dir, images_per_class=args.per_class, seed=args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    classes = sorted(p.name for p in Path(folder).iterdir() if p.is_dir())
    count = sum(1 for c in classes for _ in (Path(folder) / c).iterdir())
    print(f"wrote {count} images in {len(classes)} classes ({', '.join(classes)}) to {folder}")
    print(f"next: resnet-app train {folder} --out runs/sample --epochs 5")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from resnet_app.ui.app import run_app
    except ImportError as exc:
        raise CliError(f"the desktop app is not available in this build ({exc}); "
                       "use the subcommands: resnet-app --help") from exc
    return run_app()


def cmd_selftest(args: argparse.Namespace) -> int:
    try:
        from resnet_app.ui.selftest import run_selftest
    except ImportError as exc:
        raise CliError(f"the self-test needs the desktop app, which is not available in this build ({exc})") from exc
    return run_selftest(soak_minutes=args.soak_minutes)


# --- parser ----------------------------------------------------------------------------------------

def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (e.g. 0.6), got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per training setting of the table in core/train/settings.py, checked by the table.

    Every default is None, so that the command knows which settings were given (a resumed run refuses
    the others); TrainConfig supplies the defaults, and the help says what they are.
    """
    from resnet_app.core.train.settings import train_settings

    groups: dict[str, Any] = {}
    for spec in train_settings():
        if not spec.on_cli:
            continue
        target = parser
        if spec.group:  # e.g. --val-fraction or --val-dir, not both
            if spec.group not in groups:
                groups[spec.group] = parser.add_mutually_exclusive_group()
            target = groups[spec.group]
        text = spec.help
        if spec.kind is bool:  # --flip / --no-flip, whatever the default
            target.add_argument(*spec.cli_flags, dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=None, help=_escape_percent(f"{text} (default: {spec.display(spec.default)})"))
        else:
            target.add_argument(*spec.cli_flags, dest=spec.name, type=_setting_parser(spec), default=None,
                                choices=spec.choices or None, metavar=_metavar(spec),
                                help=_escape_percent(f"{text} (default: {_cli_default(spec)})"))


def _cli_default(spec) -> str:
    # A share is typed as a fraction on the command line (0.2), though the app shows it as 20 %.
    return f"{spec.default:g}" if spec.percent else spec.display(spec.default)


def _escape_percent(text: str) -> str:
    return text.replace("%", "%%")  # argparse expands %(default)s-style fields in help


def _setting_parser(spec) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return spec.coerce(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = spec.name  # argparse names the type in some messages
    return parse


def _metavar(spec) -> str | None:
    if spec.choices:
        return None  # argparse shows {a,b,c}
    if spec.metavar:
        return spec.metavar
    word = {int: "N", float: "F", str: "TEXT"}.get(spec.kind, "VALUE")
    return f"{word}|auto" if spec.has_automatic and spec.automatic_value == "auto" else word


def build_parser() -> argparse.ArgumentParser:
    from resnet_app.core.model.devices import DEVICE_CHOICES

    parser = argparse.ArgumentParser(
        prog="resnet-app",
        description="Classify images and train ResNet18 on your own folders of images. "
                    "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"resnet-app {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train ResNet18 on a folder with one sub-folder per class")
    train.add_argument("data_dir", metavar="DATA_DIR", nargs="?", type=Path,
                       help="folder with one sub-folder of images per class (optional with --resume)")
    train.add_argument("--out", type=Path, help="run folder for model.safetensors, last.pt, metrics.csv, run.json "
                                                "(default: runs/<data folder name>)")
    add_setting_options(train)
    train.add_argument("--resume", type=Path, metavar="CHECKPOINT", help="continue the run saved in this last.pt")
    # Across machines (with --nproc per machine): passed to torchrun; docs/distributed.md.
    train.add_argument("--nnodes", type=_positive_int, default=1, metavar="M",
                       help="machines training together (default 1); each runs this command with its --node-rank")
    train.add_argument("--node-rank", type=int, default=0, metavar="R",
                       help="this machine's number, 0 to M-1; node 0 shows the progress and writes the run's files")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="node 0's address and a free TCP port there, the same on every machine")
    train.add_argument("--log-every", type=int, default=0, metavar="N",
                       help="print the running loss every N batches (default: four times per epoch)")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    train.set_defaults(handler=cmd_train)

    predict = sub.add_parser("predict", help="classify images or folders of images")
    predict.add_argument("model", metavar="MODEL",
                         help="a model file (.safetensors), a checkpoint (.pt), or 'imagenet'")
    predict.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--top-k", type=_positive_int, default=3)
    predict.add_argument("--batch-size", type=_positive_int, default=32)
    predict.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    predict.add_argument("--json", action="store_true", help="one JSON object per input file per line")
    predict.add_argument("--csv", type=Path, metavar="FILE", help="also write the results to this CSV file")
    predict.add_argument("--min-confidence", type=_probability, metavar="P",
                         help="mark predictions whose top probability is under P (0-1) as unsure (default: the "
                              "threshold chosen on the validation set when the model was trained)")
    predict.set_defaults(handler=cmd_predict)

    review = sub.add_parser(
        "review", help="list a folder's images least sure first: the ones most worth labelling next")
    review.add_argument("model", metavar="MODEL", help="a model file (.safetensors), a checkpoint (.pt), or an export")
    review.add_argument("source", metavar="SOURCE", help="a folder of images (searched recursively), or one image")
    review.add_argument("--top", type=_positive_int, metavar="N", help="list only the N least sure images")
    review.add_argument("--batch-size", type=_positive_int, default=32)
    review.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    review.add_argument("--json", action="store_true",
                        help="one JSON object per line: path, top_k (calibrated), margin, error")
    review.set_defaults(handler=cmd_review)

    evaluate = sub.add_parser(
        "eval", help="accuracy, per-class precision/recall and confusion matrix on a labelled folder")
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data_dir", metavar="DATA_DIR", type=Path)
    evaluate.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    export = sub.add_parser(
        "export", help="export a model to ONNX or TorchScript to use outside the app, checked against the app")
    export.add_argument("model", metavar="MODEL", help="a model file (.safetensors) or a checkpoint (.pt)")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="(default: onnx)")
    export.add_argument("--out", type=Path, metavar="FILE",
                        help="the file to write (default: next to MODEL, NAME.onnx or NAME.torchscript.pt); "
                             "FILE.json and, for ONNX, predict_onnx.py go next to it")
    export.add_argument("--check-images", type=_positive_int, default=32, metavar="N",
                        help="images the export is checked on against the app's own predictions (default 32)")
    export.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    export.set_defaults(handler=cmd_export)

    doctor = sub.add_parser("doctor", help="check a dataset folder: classes, counts, unreadable files, duplicates")
    doctor.add_argument("data_dir", metavar="DATA_DIR", type=Path)
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)

    sort = sub.add_parser("sort", help="copy (or move) images into DEST/<class>/ by the model's answer; "
                                       "--undo puts moved files back")
    sort.add_argument("model", metavar="MODEL", nargs="?", help="a model file (.safetensors) or a checkpoint (.pt)")
    sort.add_argument("source", metavar="SOURCE", nargs="?", type=Path, help="an image folder (searched recursively)")
    sort.add_argument("--into", type=Path, metavar="DEST",
                      help="where the class folders, _unsure/, _unreadable/ and sort-log.jsonl go")
    sort.add_argument("--move", action="store_true", help="move the images instead of copying them")
    sort.add_argument("--min-confidence", type=_probability, metavar="P",
                      help="images whose top probability is under P (0-1) go to _unsure/ (default: the threshold "
                           "chosen on the validation set when the model was trained)")
    sort.add_argument("--undo", type=Path, metavar="LOG",
                      help="put back the files a sort moved, from its sort-log.jsonl")
    sort.add_argument("--batch-size", type=_positive_int, default=32)
    sort.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES))
    sort.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    sort.set_defaults(handler=cmd_sort)

    sample = sub.add_parser("sample-data", help="write a small generated dataset of drawn shapes to try the app")
    sample.add_argument("dir", metavar="DIR", type=Path)
    sample.add_argument("--per-class", type=_positive_int, default=60, help="images per class (default 60)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=cmd_sample_data)

    selftest = sub.add_parser("selftest", help="start the app offscreen, train briefly, classify, and report")
    selftest.add_argument("--soak-minutes", type=float, default=0.0, metavar="M",
                          help="then train through the app for M minutes and stop (a long session in little; "
                               "counts the signals sent)")
    selftest.set_defaults(handler=cmd_selftest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # File names that are not valid UTF-8 print as \udcXX escapes instead of failing the command.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", cmd_gui)
    from resnet_app.core.errors import TrainingError, user_errors

    try:
        return handler(args)
    except TrainingError as exc:  # training started but could not go on
        print(f"resnet-app: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except CliError as exc:
        print(f"resnet-app: error: {exc}", file=sys.stderr)
        return exc.code
    except user_errors() as exc:  # the user's input, not our bug: one line, never a traceback
        print(f"resnet-app: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nresnet-app: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
