"""What the Review view works through: the ranking worker, the queue of images (least sure first) and
the undoable commands (label, skip) that go on its QUndoStack.

The queue is plain Python: which images are labelled (by which logged action), how often each was
skipped, and which one comes next (the least sure not yet labelled, skipped ones after the others).
Labels themselves are done by core.use.labelling through the view (the host), which logs each one
before the file moves, so the stack can be rebuilt from the log after a restart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import Signal
from PySide6.QtGui import QUndoCommand

from resnet_app.core.use.classifier import Classifier, find_images
from resnet_app.core.use.labelling import LabelAction
from resnet_app.core.use.review import ReviewItem, rank_for_review
from resnet_app.ui.workers import ThrottledProgress, Worker

RANK_BATCH = 32  # images per forward pass: Cancel waits for at most one batch


class RankWorker(Worker):
    """Loads the model (unless given a Classifier), finds the folder's images and ranks them, least sure
    first; stopping is checked after each batch."""

    model_loaded = Signal(object)  # Classifier
    progress = Signal(int, int)  # images done, images in all
    ranked = Signal(object)  # list[ReviewItem]
    cancelled = Signal()

    def __init__(self, folder: Path, model_path: str | None = None, classifier: Classifier | None = None,
                 device: str = "auto") -> None:
        super().__init__()
        self.folder, self.model_path, self.classifier, self.device = folder, model_path, classifier, device

    def work(self) -> None:
        classifier = self.classifier or Classifier.from_file(self.model_path, device=self.device)
        self.model_loaded.emit(classifier)
        paths, _skipped = find_images([self.folder])
        items = rank_for_review(classifier, paths, RANK_BATCH, should_stop=lambda: self.stop_requested,
                                progress=ThrottledProgress(self.progress.emit))
        if items is None or self.stop_requested:
            self.cancelled.emit()
            return
        self.ranked.emit(items)


@dataclass
class Entry:
    path: Path
    item: ReviewItem | None  # the model's top 3 (None: labelled before this ranking, so not ranked)
    action_id: str | None = None  # the label in force, from the log
    folder: str | None = None  # the class it is labelled as
    skips: int = 0


class ReviewQueue:
    """The images of one review, in the order they are offered: images labelled before this ranking
    first (so that undoing one shows it again), then the ranked ones, least sure first."""

    def __init__(self, items: list[ReviewItem], labelled: list[LabelAction]) -> None:
        self.entries: dict[Path, Entry] = {}
        self.unreadable: list[ReviewItem] = []
        for action in labelled:
            self.entries[action.source] = Entry(action.source, None, action.id, action.folder)
        for item in items:
            if not item.ok:
                self.unreadable.append(item)
            elif item.path in self.entries:
                self.entries[item.path].item = item  # a copy labelled before: still in the folder
            else:
                self.entries[item.path] = Entry(item.path, item)

    def current(self) -> Entry | None:
        """The next image to label: the first unlabelled one skipped the fewest times."""
        waiting = [(entry.skips, i, entry) for i, entry in enumerate(self.entries.values())
                   if entry.action_id is None]
        return min(waiting, key=lambda t: t[:2])[2] if waiting else None

    def entry(self, path: Path) -> Entry:
        return self.entries[path]

    @property
    def labelled(self) -> int:
        return sum(1 for entry in self.entries.values() if entry.action_id is not None)

    @property
    def to_go(self) -> int:
        return len(self.entries) - self.labelled

    @property
    def skipped(self) -> int:
        return sum(1 for entry in self.entries.values() if entry.action_id is None and entry.skips)

    def labelled_actions(self) -> list[tuple[Path, str, str]]:
        """(path, class folder, action id) of the labels made before this ranking, for the undo stack."""
        return [(entry.path, entry.folder or "", entry.action_id) for entry in self.entries.values()
                if entry.action_id is not None]


class ReviewHost(Protocol):
    """What the commands need of the Review view: the label and the undo themselves, and a skip."""

    def apply_label(self, path: Path, folder: str) -> LabelAction | None: ...

    def apply_undo(self, path: Path, action_id: str) -> bool: ...

    def apply_skip(self, path: Path, step: int) -> None: ...


class LabelCommand(QUndoCommand):
    """Label one image into a class folder; undo puts it back (a move) or deletes the copy. A command
    made from the log (`action_id` given) is done already: its first redo does nothing."""

    def __init__(self, host: ReviewHost, path: Path, folder: str, action_id: str | None = None) -> None:
        super().__init__(f"Label {path.name} as {folder}")
        self.host, self.path, self.folder, self.action_id = host, path, folder, action_id
        self._done_already = action_id is not None

    def redo(self) -> None:
        if self._done_already:
            self._done_already = False
            return
        action = self.host.apply_label(self.path, self.folder)
        if action is None:
            self.setObsolete(True)  # off the stack: nothing was labelled
            return
        self.action_id = action.id

    def undo(self) -> None:
        if self.action_id is None or not self.host.apply_undo(self.path, self.action_id):
            self.setObsolete(True)  # it stays labelled (the view said why)


class SkipCommand(QUndoCommand):
    """Skip one image for now: it comes back after the others."""

    def __init__(self, host: ReviewHost, path: Path) -> None:
        super().__init__(f"Skip {path.name}")
        self.host, self.path = host, path

    def redo(self) -> None:
        self.host.apply_skip(self.path, 1)

    def undo(self) -> None:
        self.host.apply_skip(self.path, -1)
