"""Review: the images of a folder in the order worth labelling, the ones the model is least sure of first.

The images a model is least sure of are the ones most worth labelling next (uncertainty sampling;
Settles, "Active Learning Literature Survey", 2009). "Least sure" is the margin between the top two
calibrated probabilities: 0.02 between cat and dog says more about where the model is lost than a
top probability of 0.40 spread over five classes. Files that can't be read come last, with their reason.

The ranking holds a few numbers per image (its top 3 and the margin), so it grows with the folder, not
faster; the images themselves are read a batch at a time through Classifier.output_batches.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from resnet_app.core.use.classifier import NOT_NUMBERS, Classifier

TOP = 3  # classes shown per image


@dataclass
class ReviewItem:
    """One image of a review: what the model says of it, and how sure it is (the margin)."""

    path: Path
    top_k: list[tuple[str, float]] = field(default_factory=list)  # calibrated, most probable first
    margin: float | None = None  # top probability minus the second (1.0 for a one-class model)
    error: str | None = None  # why the file could not be read

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "top_k": [[label, probability] for label, probability in self.top_k],
                "margin": self.margin, "error": self.error}


def rank_for_review(classifier: Classifier, paths: Iterable[str | Path], batch_size: int = 64,
                    should_stop: Callable[[], bool] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[ReviewItem] | None:
    """Every path as a ReviewItem: the readable ones by margin, smallest first (ties in path order),
    then the unreadable ones. None if stopped part-way."""
    paths = [Path(p) for p in paths]
    readable: list[ReviewItem] = []
    unreadable: list[ReviewItem] = []
    done = 0
    top = min(TOP, len(classifier.class_names))
    for batch in classifier.output_batches(paths, batch_size, should_stop):
        unreadable += [ReviewItem(batch.paths[i], error=reason) for i, reason in sorted(batch.errors.items())]
        probabilities, usable = batch.probabilities(), batch.usable().tolist()
        values, indices = probabilities.topk(top, dim=1)
        for row, i in enumerate(batch.read):
            if not usable[row]:
                unreadable.append(ReviewItem(batch.paths[i], error=NOT_NUMBERS))
                continue
            top_k = [(classifier.class_names[j], float(v))
                     for v, j in zip(values[row].tolist(), indices[row].tolist(), strict=True)]
            margin = top_k[0][1] - (top_k[1][1] if len(top_k) > 1 else 0.0)
            readable.append(ReviewItem(batch.paths[i], top_k, margin))
        done += len(batch.paths)
        if progress is not None:
            progress(done, len(paths))
    if done < len(paths):
        return None
    readable.sort(key=lambda item: item.margin)  # stable: equal margins keep the folder's order
    return readable + unreadable


def describe_item(item: ReviewItem) -> str:
    """One line: the file, its margin and the model's top 3 (or why it could not be read)."""
    if not item.ok:
        return f"{item.path}: ERROR {item.error}"
    labels = ", ".join(f"{label} {probability:.1%}" for label, probability in item.top_k)
    return f"{item.path}: margin {item.margin:.1%}: {labels}"
