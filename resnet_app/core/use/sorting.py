"""Sorting a folder of photos with a model: each image is copied (or moved) into DEST/<class>/, the
unsure ones into DEST/_unsure/ and the unreadable ones into DEST/_unreadable/; every file is written
to DEST/sort-log.jsonl (sort_log.py), from which `undo_sort` puts moved files back.

Nothing is ever overwritten, duplicated or lost, whatever happens (kill -9, a full disk, Ctrl+C): it
goes as a database changes its files (docs/decisions.md):

- intent: the file's row (source, the free name chosen in DEST) is appended to the log and fsynced;
- act: files.place_file puts the file there, never over anything (a name taken meanwhile gets a
  "cancel" row and the next free name, `photo-2.jpg`); a copy is a real copy (reflink or bytes), never
  a hard link; a move is a link + unlink within one file system, else a copy synced (file and
  folder) before the original goes;
- done is read from the disk: a sort into the same DEST again (after a crash) finishes a move whose
  file is placed, skips a copy already there, and sorts the rest; undo puts back what is in DEST.

Files in any folder a sort into DEST wrote into (the log says which, whatever the model) are never
sorted again, so SOURCE may contain DEST or lie inside it.
"""
from __future__ import annotations

import filecmp
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_app.core.data.scan import SkippedFile
from resnet_app.core.files import PLACING_SUFFIX, free_names, fsync_dir, place_file, remove_placing_leftovers
from resnet_app.core.use.classifier import find_images
from resnet_app.core.use.sort_log import (
    COPIED,
    LEGACY_COLUMNS,
    LOG_NAME,
    MOVED,
    LogContents,
    SortError,
    SortLog,
    find_log,
    read_log,
)
from resnet_app.core.use.sort_names import (
    UNREADABLE_FOLDER,
    UNSURE_FOLDER,
    ClassFolderClash,
    class_folder_name,
    class_folders,
)

__all__ = ["COPIED", "LEGACY_COLUMNS", "LOG_NAME", "MOVED", "UNREADABLE_FOLDER", "UNSURE_FOLDER", "SortError",
           "SortSummary", "UndoSummary", "class_folder_name", "read_log", "sort_folder", "undo_sort", "PLACING_SUFFIX"]
# --- results -------------------------------------------------------------------------------------

@dataclass
class SortedFile:
    source: Path
    destination: Path
    label: str  # the predicted class ("" for an unreadable file)
    confidence: float | None
    folder: str  # the class's folder, UNSURE_FOLDER or UNREADABLE_FOLDER
    note: str = ""  # why a file is unreadable


@dataclass
class SortSummary:
    dest: Path
    log_path: Path
    moved: bool
    total: int  # images found to sort
    per_class: dict[str, int] = field(default_factory=dict)  # class -> images sorted into its folder
    unsure: int = 0
    unreadable: int = 0
    already_sorted: int = 0  # images inside DEST's sort folders, left alone
    skipped: list[SkippedFile] = field(default_factory=list)  # not images, left where they are
    not_removed: list[dict[str, str]] = field(default_factory=list)  # moved files whose source stayed (copied)
    stopped: bool = False
    error: str | None = None  # a file could not be written: the sort stopped there
    links: list[str] = field(default_factory=list)  # links met in SOURCE, and what was done with each
    earlier_placed: int = 0  # left out: an earlier sort into DEST placed them (the log and the disk say so)
    finished: int = 0  # moves an interrupted sort had placed but not finished: their sources removed now
    renamed: int = 0  # placed under a numbered name (name-2.jpg): the name was taken in the folder
    torn_rows: int = 0  # log lines torn by a crash, skipped

    @property
    def sorted(self) -> int:
        return sum(self.per_class.values())

    @property
    def done(self) -> int:
        return self.sorted + self.unsure + self.unreadable

    def summary_line(self) -> str:
        classes = len([n for n in self.per_class.values() if n])
        line = (f"{self.sorted} sorted into {classes} class{'es' if classes != 1 else ''}, {self.unsure} unsure, "
                f"{self.unreadable} unreadable")
        if self.stopped:
            line = f"stopped after {self.done} of {self.total} images: " + line
        elif self.error:
            line = f"stopped after {self.done} of {self.total} images by an error: " + line
        return line

    def detail_lines(self) -> list[str]:
        lines = [f"{'moved' if self.moved else 'copied'} into {self.dest}; the log is {self.log_path}"]
        if self.already_sorted:
            lines.append(f"{self.already_sorted} image(s) already in {self.dest}'s sort folders were left alone")
        if self.earlier_placed:
            lines.append(f"{self.earlier_placed} image(s) were left out: an earlier sort into {self.dest} already "
                         "placed them (see its log)")
        if self.finished:
            lines.append(f"{self.finished} image(s) an interrupted sort had placed were finished: their "
                         "sources removed, not placed twice")
        if self.renamed:
            lines.append(f"{self.renamed} image(s) got a numbered name (name-2.jpg...): their name was taken "
                         "in the class folder; nothing was overwritten")
        lines += self.links
        if self.torn_rows:
            lines.append(f"{self.torn_rows} line(s) of the log were torn by a crash and skipped")
        shown = [item for item in self.skipped if not item.reason.startswith("hidden")]
        if shown:
            lines.append(f"{len(shown)} file(s) that are not images were left where they are")
        lines += [f"could not remove {item['path']} after copying it ({item['error']}): it is in both places"
                  for item in self.not_removed]
        if self.error:
            lines.append(self.error)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "log": str(self.log_path), "action": MOVED if self.moved else COPIED,
                "images": self.total, "sorted": self.sorted, "per_class": dict(self.per_class),
                "unsure": self.unsure, "unreadable": self.unreadable, "already_sorted": self.already_sorted,
                "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped
                            if not s.reason.startswith("hidden")],
                "not_removed": list(self.not_removed), "stopped": self.stopped, "error": self.error,
                "links": list(self.links), "earlier_placed": self.earlier_placed, "finished": self.finished,
                "renamed": self.renamed, "torn_rows": self.torn_rows,
                "summary": self.summary_line()}



def _counted(count: int, noun: str) -> str:
    """'1 moved file', '20 moved files' (issue 21 item 13: "Restored 20 moved file(s)")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"

@dataclass
class UndoSummary:
    log_path: Path
    restored: int = 0  # moved files put back where they were
    already_back: int = 0  # rows whose file is already at its source (an earlier undo, or never moved)
    copies_left: int = 0  # copied files: their sources were never touched, so the copies stay
    problems: list[dict[str, str]] = field(default_factory=list)  # files left alone, with why
    torn_rows: int = 0  # log lines torn by a crash, skipped

    def summary_line(self) -> str:
        line = f"restored {_counted(self.restored, 'moved file')}"
        if self.already_back:
            line += f", {self.already_back} already back"
        if self.copies_left:
            line += f"; {_counted(self.copies_left, 'copied file')} left in place (their originals were never moved)"
        if self.problems:
            line += f"; {len(self.problems)} left alone (see below)"
        if self.torn_rows:
            line += f"; {_counted(self.torn_rows, 'torn log line')} skipped"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"log": str(self.log_path), "restored": self.restored, "already_back": self.already_back,
                "copies_left": self.copies_left, "problems": list(self.problems), "torn_rows": self.torn_rows,
                "summary": self.summary_line()}


# --- folders -------------------------------------------------------------------------------------

def sort_folders(dest: Path, class_names: list[str]) -> list[Path]:
    """The folders of DEST a sort with these classes writes into: one per class, unsure, unreadable."""
    return [dest / class_folder_name(name) for name in class_names] + [dest / UNSURE_FOLDER, dest / UNREADABLE_FOLDER]


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _earlier(dest: Path) -> LogContents:
    """What earlier sorts into DEST logged (nothing when there is no log yet)."""
    log = find_log(dest)
    return read_log(log) if log is not None else LogContents(dest / LOG_NAME)


def _same_content(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


# --- sorting -------------------------------------------------------------------------------------

@dataclass
class _Item:
    path: Path  # what is read and placed (a link's target when a move takes the target)
    shown: Path  # the file as found in SOURCE
    move: bool
    note: str = ""


def sort_folder(classifier, source: str | Path, dest: str | Path, *, move: bool = False,
                min_confidence: float | None = None, batch_size: int = 32,
                progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> SortSummary:
    """Copy (or move, `move=True`) every image under `source` into `dest`/<class>/, `dest`/_unsure/
    (top probability under `min_confidence`, by default the model's own threshold) or
    `dest`/_unreadable/, logging each in `dest`/sort-log.jsonl before it is placed.

    `progress(done, total)` after each image; `should_stop()` is checked after each image, and a
    stopped sort finishes the file in hand. Raises SortError when the sort can't start (no images, two
    classes sharing a folder, `dest` not writable: nothing is touched then). A write that fails
    part-way (a full disk) stops the sort: `error` says so, and what was placed is in the log.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise SortError(f"the minimum confidence must be from 0 to 1 (e.g. 0.6 for 60 %), got {min_confidence}")
    source, dest = Path(source).expanduser().resolve(), Path(dest).expanduser().resolve()
    if not source.exists():
        raise SortError(f"{source}: no such file or folder")
    try:
        folders = class_folders(list(classifier.class_names))
    except ClassFolderClash as exc:
        raise SortError(str(exc)) from None
    earlier = _earlier(dest)
    outputs = sorted(set(sort_folders(dest, list(classifier.class_names))) | earlier.folders)
    inside = next((folder for folder in outputs if _is_inside(source, folder)), None)
    if inside is not None:
        raise SortError(f"{source} is inside {inside}, a folder a sort into {dest} writes into; choose another "
                        "source or destination")
    found, skipped = find_images([source])
    images = [p for p in found if not any(_is_inside(p.resolve(), folder) for folder in outputs)]
    logs = {dest / LOG_NAME, dest / "sort-log.csv"}
    skipped = [s for s in skipped if s.path.resolve() not in logs
               and not any(_is_inside(s.path.resolve(), folder) for folder in outputs)]
    if not images:
        raise SortError(f"no images to sort in {source}" + (" (those there are already sorted)" if found else ""))
    summary = SortSummary(dest, dest / LOG_NAME, move, len(images), {name: 0 for name in classifier.class_names},
                          already_sorted=len(found) - len(images), skipped=skipped, torn_rows=earlier.torn)
    items = _items(images, source, move, summary)
    log = _open_log(dest, dest / LOG_NAME)
    try:
        log.write({"op": "sort", "folders": [str(f) for f in sort_folders(dest, list(classifier.class_names))],
                   "action": MOVED if move else COPIED, "model": str(getattr(classifier, "source", ""))})
        items = _finish_earlier(items, earlier, summary)
        summary.total = len(items)
        if not items:
            return summary
        _sort_items(classifier, items, dest, folders, log, summary, min_confidence, batch_size, progress, should_stop)
    finally:
        log.close()
    return summary


def _items(images: list[Path], source: Path, move: bool, summary: SortSummary) -> list[_Item]:
    """What to place for each image found. A link is followed: its target's content is copied (a link
    in DEST would dangle, or tie DEST to SOURCE); only a move whose target is inside SOURCE moves the
    target itself, once, however many links point at it."""
    items: list[_Item] = []
    taken: set[Path] = set()
    for path in images:
        if not path.is_symlink():
            items.append(_Item(path, path, move))
            taken.add(path.resolve())
            continue
        target = path.resolve()
        if not target.is_file():
            summary.skipped.append(SkippedFile(path, "a link to nothing (its target is gone)"))
            continue
        if move and _is_inside(target, source):
            if target not in taken and not any(item.path == target for item in items):
                items.append(_Item(target, path, True, f"link {path}: its target was moved"))
                summary.links.append(f"{path}: a link; its target {target} (inside SOURCE) was moved, the link left")
            continue
        items.append(_Item(path, path, False, f"link to {target}: its content was copied"))
        summary.links.append(f"{path}: a link to {target}; its content was copied"
                             + (", nothing moved" if move else ""))
    # A target also found as itself is placed once.
    seen: set[Path] = set()
    unique = []
    for item in items:
        key = item.path.resolve() if item.move else item.shown
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _finish_earlier(items: list[_Item], earlier: LogContents, summary: SortSummary) -> list[_Item]:
    """Leave out the files an earlier sort into DEST placed (the log's row, checked on the disk): a copy
    there already is not made twice; a move whose file is placed but whose source is still here (a crash
    between the two) is finished now, its file synced first. The rest are sorted."""
    latest = {Path(row["source"]): row for row in earlier.rows}
    rest = []
    for item in items:
        row = latest.get(item.path)
        destination = Path(row["destination"]) if row else None
        if destination is None or not destination.is_file() or not _same_content(item.path, destination):
            rest.append(item)
            continue
        if item.move and row.get("action") == MOVED:
            fsync_dir(destination.parent)
            try:
                os.unlink(item.path)
            except OSError as exc:
                summary.not_removed.append({"path": str(item.path), "error": exc.strerror or str(exc)})
            summary.finished += 1
        else:
            summary.earlier_placed += 1
    return rest


def _sort_items(classifier, items: list[_Item], dest: Path, folders: dict[str, str], log: SortLog,
                summary: SortSummary, min_confidence, batch_size, progress, should_stop) -> None:
    threshold = classifier.unsure_below if min_confidence is None else min_confidence
    by_path = {item.path: item for item in items}
    predictions = classifier.predict_paths([item.path for item in items], top_k=1, batch_size=batch_size,
                                           should_stop=should_stop)
    try:
        for prediction in predictions:
            item = by_path[Path(prediction.path)]
            label, confidence, folder, note = _destination_of(prediction, threshold, folders)
            try:
                placed = _place_logged(item, dest / folder, log, label, confidence, folder, note)
            except OSError as exc:
                summary.error = (f"could not write {dest / folder / item.path.name}: {exc.strerror or exc}. "
                                 f"The files before it are sorted (see {log.path}); {item.shown} and the ones "
                                 "after it are where they were.")
                break
            if placed.name != item.path.name:
                summary.renamed += 1
            _count(summary, label, folder)
            if progress is not None:
                progress(summary.done, summary.total)
            if should_stop is not None and should_stop():
                break
        summary.stopped = summary.error is None and summary.done < summary.total
    finally:
        predictions.close()  # its image-loading threads end now, not when garbage-collected


def _place_logged(item: _Item, folder: Path, log: SortLog, label: str, confidence: float | None, folder_name: str,
                  note: str) -> Path:
    """Log the intent (fsynced), then place: a name taken between the two gets a cancel row and the next."""
    folder.mkdir(parents=True, exist_ok=True)
    size = item.path.stat().st_size
    for candidate in free_names(folder / item.path.name):
        if os.path.lexists(candidate):
            continue
        log.write({"op": "place", "source": str(item.path), "destination": str(candidate), "class": label,
                   "confidence": None if confidence is None else round(confidence, 6), "folder": folder_name,
                   "action": MOVED if item.move else COPIED, "size": size, "note": "; ".join(filter(None, [note,
                                                                                                    item.note]))})
        log.sync()
        try:
            return place_file(candidate, source=item.path, move=item.move, rename=False)
        except FileExistsError:
            log.write({"op": "cancel", "destination": str(candidate)})  # not ours: undo leaves it alone
    raise OSError(f"no free name for {item.path.name} in {folder}")


def _open_log(dest: Path, log_path: Path) -> SortLog:
    """The log, opened before anything is placed: a destination that can't be written into is
    refused now, with nothing touched."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        return SortLog(log_path)
    except OSError as exc:
        raise SortError(f"can't write into {dest} ({exc.strerror or exc}); nothing was copied or moved") from exc


def _destination_of(prediction, threshold: float, folders: dict[str, str]) -> tuple[str, float | None, str, str]:
    if not prediction.ok:
        return "", None, UNREADABLE_FOLDER, prediction.error or ""
    label, confidence = prediction.top_k[0]
    return label, confidence, UNSURE_FOLDER if confidence < threshold else folders[label], ""


def _count(summary: SortSummary, label: str, folder: str) -> None:
    if folder == UNREADABLE_FOLDER:
        summary.unreadable += 1
    elif folder == UNSURE_FOLDER:
        summary.unsure += 1
    else:
        summary.per_class[label] = summary.per_class.get(label, 0) + 1


# --- undo ----------------------------------------------------------------------------------------

def undo_sort(log_path: str | Path, progress: Callable[[int, int], None] | None = None) -> UndoSummary:
    """Put every file the sorts logged as moved back where it was, newest first, never overwriting: a
    file now at its old place that is not the same file is left alone and listed. Copies are left
    (their originals never moved). What was placed is read from the disk, so a log whose last files were
    never placed (a crash) undoes as well; the temp files a crash left are removed, and so are the
    folders the sorts made and left empty. Safe to run again."""
    log_path = Path(log_path).expanduser()
    contents = read_log(log_path)
    rows = contents.rows
    summary = UndoSummary(log_path, torn_rows=contents.torn)
    for done, row in enumerate(reversed(rows), 1):
        if row.get("action") == MOVED:
            _restore(Path(row["source"]), Path(row["destination"]), row.get("size"), summary)
        else:
            summary.copies_left += 1
        if progress is not None:
            progress(done, len(rows))
    for folder in sorted(contents.folders, key=lambda p: len(p.parts), reverse=True):
        try:
            remove_placing_leftovers(folder)
            folder.rmdir()  # only if empty
        except OSError:
            pass
    return summary


def _restore(source: Path, destination: Path, size: Any, summary: UndoSummary) -> None:
    if not destination.exists():
        if source.exists():
            summary.already_back += 1  # put back already, or never placed (a crash before it)
        else:
            summary.problems.append({"path": str(source), "problem": f"{destination} is gone (deleted or moved "
                                                                     "since the sort)"})
        return
    try:
        if source.exists():
            # Both there: the sort stopped between placing the file and removing its source (the
            # same file, or an identical copy), or another file took the old name since.
            if _same_content(source, destination):
                os.unlink(destination)
                summary.already_back += 1
            else:
                summary.problems.append({"path": str(source), "problem": f"another file is there now; the sorted "
                                                                         f"one stays at {destination}"})
            return
        if isinstance(size, int) and destination.stat().st_size != size:
            summary.problems.append({"path": str(source), "problem": f"{destination} is not the file the sort "
                                                                     "placed (its size differs); left alone"})
            return
        place_file(source, source=destination, move=True, rename=False)  # synced before the sorted one goes
    except OSError as exc:
        summary.problems.append({"path": str(source), "problem": f"could not move {destination} back "
                                                                 f"({exc.strerror or exc})"})
        return
    summary.restored += 1
