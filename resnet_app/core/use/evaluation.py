"""Evaluating a classifier on a labelled folder: accuracy, per-class precision and recall, confusion,
and how well its confidence is calibrated (expected calibration error before and after its temperature)."""
from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from resnet_app.core.data.scan import DatasetError, scan_dataset
from resnet_app.core.use.calibration import ECE_BINS, expected_calibration_error
from resnet_app.core.use.classifier import NOT_NUMBERS, Classifier


@dataclass
class EvalRow:
    """One image of an evaluation: its file, its label, what the model said, and how wrong that was."""

    path: str
    true_index: int  # into the model's classes (EvalReport.classes), from the image's class folder
    predicted_index: int
    probabilities: array  # array("f"): the model's probability of each of its classes for this image

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.predicted_index])

    def confidence_without_temperature(self, temperature: float) -> float:
        """The top probability the model gives before its temperature: softmax(logits) = softmax(T * log p)."""
        top = self.confidence
        if temperature == 1.0 or top <= 0:
            return top
        return 1.0 / sum((max(float(p), 0.0) / top) ** temperature for p in self.probabilities)

    @property
    def loss(self) -> float:
        """Cross-entropy of the true class, in nats (a probability under 1e-12 counts as 1e-12)."""
        return -math.log(max(float(self.probabilities[self.true_index]), 1e-12))

    @property
    def correct(self) -> bool:
        return self.true_index == self.predicted_index


@dataclass
class EvalReport:
    accuracy: float
    classes: list[str]  # the model's classes: rows (true) and columns (predicted) of `confusion`
    per_class: dict[str, dict[str, float | int | None]]
    confusion: list[list[int]]
    images: int
    unreadable: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # left out of the folder: not images
    rows: list[EvalRow] = field(default_factory=list)  # one per readable image, in folder order; not in to_dict
    # Calibration (calibration.py): expected calibration error (0..1, ECE_BINS equal-width bins) of the
    # top probability without the model's temperature and with it; 1.0 and 0.0 for an uncalibrated model.
    temperature: float = 1.0
    ece_before: float | None = None
    ece_after: float | None = None
    unsure_below: float = 0.0  # the threshold used: a top probability under it is "unsure"
    unsure: int = 0  # images whose prediction was unsure
    unsure_accuracy: float | None = None  # accuracy on those images
    sure_accuracy: float | None = None  # and on the others
    calibration_note: str | None = None  # why the model carries no temperature, when training said why

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "classes": self.classes, "per_class": self.per_class,
                "confusion": self.confusion, "images": self.images, "unreadable": self.unreadable,
                "skipped": self.skipped, "temperature": self.temperature, "ece_before": self.ece_before,
                "ece_after": self.ece_after, "ece_bins": ECE_BINS, "unsure_below": self.unsure_below,
                "unsure": self.unsure, "unsure_accuracy": self.unsure_accuracy, "sure_accuracy": self.sure_accuracy,
                "calibration_note": self.calibration_note}

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
        column = min(12, max(5, *(len(name) for name in self.classes)))  # a long name is cut in the header
        lines.append(f"{'':<{width}}  " + " ".join(f"{name[:column]:>{column}}" for name in self.classes))
        lines += [f"{name:<{width}}  " + " ".join(f"{n:>{column}}" for n in row)
                  for name, row in zip(self.classes, self.confusion, strict=True)]
        lines += ["", *self.calibration_lines()]
        lines += [f"unreadable: {item['path']}: {item['error']}" for item in self.unreadable]
        lines += [f"skipped: {item['path']}: {item['reason']}" for item in self.skipped]
        return lines

    def calibration_lines(self) -> list[str]:
        if self.ece_before is None or self.ece_after is None:
            return []
        if self.temperature == 1.0:
            why = f": {self.calibration_note}" if self.calibration_note else ""
            lines = [f"calibration error: {self.ece_before:.2%} (the model has no fitted temperature{why})"]
        else:
            lines = [f"calibration error: {self.ece_before:.2%} before, {self.ece_after:.2%} after "
                     f"temperature {self.temperature:.3g}"]
        if self.unsure_below > 0:
            lines.append(f"unsure (top probability under {self.unsure_below:.1%}): {self.unsure} of {self.images} "
                         f"images; accuracy {_percent(self.unsure_accuracy)} on them, "
                         f"{_percent(self.sure_accuracy)} on the others")
        return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


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
    rows: list[EvalRow] = []
    done = 0
    # Every class's probability, so each row can give its loss, also under another label (a moved file).
    for batch in classifier.output_batches(paths, batch_size):
        truth_of = truths[done:done + len(batch.paths)]
        for i, reason in batch.errors.items():
            unreadable.append({"path": str(batch.paths[i]), "error": reason})
        probabilities, usable = batch.probabilities(), batch.usable().tolist()
        for row, i in enumerate(batch.read):
            if not usable[row]:
                unreadable.append({"path": str(batch.paths[i]), "error": NOT_NUMBERS})
                continue
            truth = truth_of[i]
            probability_row = array("f", probabilities[row].tolist())
            predicted = int(probabilities[row].argmax())
            confusion[truth][predicted] += 1
            rows.append(EvalRow(str(batch.paths[i]), truth, predicted, probability_row))
        done += len(batch.paths)
        if progress is not None:
            progress(done, len(paths))
    result = _report_from_confusion(classifier.class_names, confusion, unreadable)
    result.rows = rows
    result.skipped = [{"path": str(item.path), "reason": item.reason} for item in report.skipped
                      if not item.reason.startswith("hidden")]
    result.temperature = float(classifier.temperature)
    result.unsure_below = float(classifier.unsure_below)
    result.calibration_note = classifier.calibration_note
    return _with_calibration_figures(result)


def _with_calibration_figures(result: EvalReport) -> EvalReport:
    """`result` with its calibration figures (ECE before and after the temperature, unsure counts)
    counted from its rows, under its temperature and unsure threshold."""
    rows = result.rows
    correct = [row.correct for row in rows]
    after = [row.confidence for row in rows]
    before = [row.confidence_without_temperature(result.temperature) for row in rows]
    unsure = [confidence < result.unsure_below for confidence in after]
    result.ece_before = expected_calibration_error(before, correct) if rows else None
    result.ece_after = expected_calibration_error(after, correct) if rows else None
    result.unsure = sum(unsure)
    unsure_right = [right for right, flag in zip(correct, unsure, strict=True) if flag]
    sure_right = [right for right, flag in zip(correct, unsure, strict=True) if not flag]
    result.unsure_accuracy = sum(unsure_right) / len(unsure_right) if unsure_right else None
    result.sure_accuracy = sum(sure_right) / len(sure_right) if sure_right else None
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


def report_with_rows(report: EvalReport, rows: list[EvalRow]) -> EvalReport:
    """The report again for `rows` (some relabelled: a file moved to another class folder): accuracy,
    per-class figures, confusion and the calibration figures recounted; the model's temperature and
    threshold, the unreadable and skipped files as they were."""
    n = len(report.classes)
    confusion = [[0] * n for _ in range(n)]
    for row in rows:
        confusion[row.true_index][row.predicted_index] += 1
    counted = _report_from_confusion(report.classes, confusion, report.unreadable)
    return _with_calibration_figures(replace(
        report, accuracy=counted.accuracy, per_class=counted.per_class, confusion=confusion,
        images=counted.images, rows=list(rows)))
