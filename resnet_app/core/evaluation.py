"""Evaluating a classifier on a labelled folder: accuracy, per-class precision and recall, confusion."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resnet_app.core.data import DatasetError, scan_dataset
from resnet_app.core.inference import Classifier


@dataclass
class EvalReport:
    accuracy: float
    classes: list[str]  # the model's classes: rows (true) and columns (predicted) of `confusion`
    per_class: dict[str, dict[str, float | int | None]]
    confusion: list[list[int]]
    images: int
    unreadable: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # left out of the folder: not images

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "classes": self.classes, "per_class": self.per_class,
                "confusion": self.confusion, "images": self.images, "unreadable": self.unreadable,
                "skipped": self.skipped}

    def summary_lines(self) -> list[str]:
        width = max(len(name) for name in self.classes)
        lines = [f"accuracy: {self.accuracy:.2%} on {self.images} images", "",
                 f"{'class':<{width}}  precision  recall  images"]
        for name in self.classes:
            stats = self.per_class[name]
            precision = "-" if stats["precision"] is None else f"{stats['precision']:.2%}"
            recall = "-" if stats["recall"] is None else f"{stats['recall']:.2%}"
            lines.append(f"{name:<{width}}  {precision:>9}  {recall:>6}  {stats['support']:>6}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
        lines += [f"{name:<{width}}  " + " ".join(f"{n:>5}" for n in row)
                  for name, row in zip(self.classes, self.confusion, strict=True)]
        lines += [f"unreadable: {item['path']}: {item['error']}" for item in self.unreadable]
        lines += [f"skipped: {item['path']}: {item['reason']}" for item in self.skipped]
        return lines


def evaluate_folder(classifier: Classifier, data_dir: str | Path, batch_size: int = 64,
                    progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Classify every image of a folder with one sub-folder per class and compare with its labels.

    The folder's classes must be among the model's (matched by name); it may hold fewer of them.
    """
    report = scan_dataset(data_dir, check_images=False)
    if not report.classes:
        raise DatasetError(f"{data_dir}: no class folders to evaluate on")
    unknown = [name for name in report.classes if name not in classifier.class_names]
    if unknown:
        raise DatasetError(
            f"{data_dir}: class folder(s) {', '.join(unknown)} are not classes of the model "
            f"(it knows: {', '.join(classifier.class_names[:20])}{'...' if len(classifier.class_names) > 20 else ''})"
        )
    index_of = {name: classifier.class_names.index(name) for name in report.classes}
    n = len(classifier.class_names)
    confusion = [[0] * n for _ in range(n)]
    unreadable = []
    paths = [path for path, _ in report.samples]
    truths = [index_of[report.classes[label]] for _, label in report.samples]
    predictions = classifier.predict_paths(paths, top_k=1, batch_size=batch_size)
    for done, (prediction, truth) in enumerate(zip(predictions, truths, strict=True), 1):
        if prediction.ok:
            predicted = classifier.class_names.index(prediction.top_k[0][0])
            confusion[truth][predicted] += 1
        else:
            unreadable.append({"path": str(prediction.path), "error": prediction.error})
        if progress is not None:
            progress(done, len(paths))
    result = _report_from_confusion(classifier.class_names, confusion, unreadable)
    result.skipped = [{"path": str(item.path), "reason": item.reason} for item in report.skipped
                      if not item.reason.startswith("hidden")]
    return result


def _report_from_confusion(classes: list[str], confusion: list[list[int]], unreadable: list) -> EvalReport:
    total = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(len(classes)))
    per_class = {}
    for i, name in enumerate(classes):
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        per_class[name] = {
            "precision": confusion[i][i] / predicted if predicted else None,
            "recall": confusion[i][i] / support if support else None,
            "support": support,
        }
    return EvalReport(correct / total if total else 0.0, list(classes), per_class, confusion, total, unreadable)
