"""Sorting a folder of photos with a model: each image is copied (or moved) into DEST/<class>/, the
unsure ones into DEST/_unsure/ and the unreadable ones into DEST/_unreadable/, and every file placed
is written to DEST/sort-log.csv, from which `undo_sort` puts moved files back.

Nothing is ever overwritten and nothing is lost, whatever happens (a crash, a full disk, Ctrl+C):

- a file is first placed at its destination under a name that is free (`photo.jpg`, else
  `photo-2.jpg`, ...): a hard link where the file system allows it (instant, no second copy), else
  a copy; the name is claimed atomically (os.link, or an exclusive create), so even another program
  writing into DEST at the same time can't be overwritten;
- then its row is appended to the log and the log is flushed to disk (fsync, once per batch);
- only then, when moving, is the source removed.

So every source that is gone is in the log, and undo finds it; a crash between placing and removing
leaves the file in both places (undo then removes the extra one). Files already inside DEST's sort
folders are never sorted again, so SOURCE may contain DEST or lie inside it.
"""
from __future__ import annotations

import csv
import errno
import filecmp
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_app.core.data.scan import SkippedFile
from resnet_app.core.use.classifier import find_images

UNSURE_FOLDER = "_unsure"
UNREADABLE_FOLDER = "_unreadable"
LOG_NAME = "sort-log.csv"
LOG_COLUMNS = ["source", "destination", "class", "confidence", "action", "note"]
MOVED, COPIED = "moved", "copied"
MAX_NAME_TRIES = 10_000


class SortError(ValueError):
    """The sort can't start (or the log can't be read); the message is for the user as it is."""


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
                "summary": self.summary_line()}


@dataclass
class UndoSummary:
    log_path: Path
    restored: int = 0  # moved files put back where they were
    already_back: int = 0  # rows whose file is already at its source (an earlier undo, or never moved)
    copies_left: int = 0  # copied files: their sources were never touched, so the copies stay
    problems: list[dict[str, str]] = field(default_factory=list)  # files left alone, with why

    def summary_line(self) -> str:
        line = f"restored {self.restored} moved file(s)"
        if self.already_back:
            line += f", {self.already_back} already back"
        if self.copies_left:
            line += f"; {self.copies_left} copied file(s) left in place (their originals were never moved)"
        if self.problems:
            line += f"; {len(self.problems)} left alone (see below)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"log": str(self.log_path), "restored": self.restored, "already_back": self.already_back,
                "copies_left": self.copies_left, "problems": list(self.problems), "summary": self.summary_line()}


# --- folders -------------------------------------------------------------------------------------

def class_folder_name(label: str) -> str:
    """A class's folder in DEST: its name, made safe (a model file could hold any text, "../x" too)."""
    name = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in label).strip().rstrip(".")
    if not name or name in (".", ".."):
        name = "_class"
    if name in (UNSURE_FOLDER, UNREADABLE_FOLDER) or name.startswith("."):
        name = f"_class {name}"
    return name


def sort_folders(dest: Path, class_names: list[str]) -> list[Path]:
    """The folders of DEST a sort writes into: one per class, and the unsure and unreadable ones."""
    return [dest / class_folder_name(name) for name in class_names] + [dest / UNSURE_FOLDER, dest / UNREADABLE_FOLDER]


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# --- placing files without overwriting -----------------------------------------------------------

def _candidate_names(name: str) -> list[str]:
    stem, suffix = os.path.splitext(name)
    if stem == "":  # ".jpg"-like names: the whole name is the stem
        stem, suffix = name, ""
    return [name] + [f"{stem}-{n}{suffix}" for n in range(2, MAX_NAME_TRIES)]


def _link_or_copy_new(source: Path, target: Path) -> None:
    """Make `target` a new file with `source`'s content; FileExistsError if `target` exists (it is
    never replaced). A hard link where possible; else a copy written beside the target and claimed
    by an exclusive create, so a half-copied file never shows under the target's name."""
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        # Another file system (EXDEV), or one without hard links (FAT, exFAT, many network shares).
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES,
                             errno.ENOSYS):
            raise
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        claim = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError if taken
        os.close(claim)
        os.replace(tmp, target)  # over our own empty claim
    finally:
        tmp.unlink(missing_ok=True)


def place_new(source: Path, folder: Path) -> Path:
    """Put a copy (or hard link) of `source` into `folder` under its own name, or the first free
    `name-2`, `name-3`...; returns where. The source is left as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in _candidate_names(source.name):
        target = folder / name
        try:
            _link_or_copy_new(source, target)
            return target
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, f"no free name for {source.name} in {folder}")


# --- the log -------------------------------------------------------------------------------------

class SortLog:
    """DEST/sort-log.csv, appended to (a second sort into DEST adds to it) and flushed to disk before
    any source it lists is removed."""

    def __init__(self, path: Path):
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            _check_log_header(path)
        # surrogateescape: a file name that is not valid UTF-8 is logged byte for byte, so undo finds it.
        self.file = open(path, "a", newline="", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self.writer = csv.writer(self.file)
        if not exists:
            self.writer.writerow(LOG_COLUMNS)
        elif not _ends_with_newline(path):
            self.file.write("\r\n")  # a row torn by a crash: start a fresh line after it
        self.sync()

    def add(self, item: SortedFile, action: str) -> None:
        confidence = "" if item.confidence is None else f"{item.confidence:.6f}"
        self.writer.writerow([str(item.source), str(item.destination), item.label, confidence, action, item.note])

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _fsync_folders(folders: set[Path]) -> None:
    if os.name != "posix":  # folders can't be opened this way on Windows
        return
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


def _check_log_header(path: Path) -> None:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        header = next(csv.reader(f), None)
    if header != LOG_COLUMNS:
        raise SortError(f"{path} is not a sort log written by resnet-app (its columns are {header}); move it "
                        "away or choose another destination")


def read_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a sort log; a row torn by a crash (fewer cells than columns) is left out."""
    path = Path(path)
    if not path.is_file():
        raise SortError(f"{path}: no such sort log")
    _check_log_header(path)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))[1:]
    return [dict(zip(LOG_COLUMNS, row, strict=True)) for row in rows if len(row) == len(LOG_COLUMNS)]


# --- sorting -------------------------------------------------------------------------------------

def sort_folder(classifier, source: str | Path, dest: str | Path, *, move: bool = False,
                min_confidence: float | None = None, batch_size: int = 32,
                progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> SortSummary:
    """Copy (or move, `move=True`) every image under `source` into `dest`/<class>/, `dest`/_unsure/
    (top probability under `min_confidence`, by default the model's own threshold) or
    `dest`/_unreadable/, logging each in `dest`/sort-log.csv.

    `progress(done, total)` after each image; `should_stop()` is checked after each image, and a
    stopped sort finishes the file in hand and logs everything placed. Raises SortError when the
    sort can't start (no images, `dest` not writable: nothing is touched then). A write that fails
    part-way (a full disk) stops the sort: `error` says so, and what was placed is in the log.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise SortError(f"the minimum confidence must be from 0 to 1 (e.g. 0.6 for 60 %), got {min_confidence}")
    source, dest = Path(source).expanduser().resolve(), Path(dest).expanduser().resolve()
    if not source.exists():
        raise SortError(f"{source}: no such file or folder")
    outputs = sort_folders(dest, list(classifier.class_names))
    inside = next((folder for folder in outputs if _is_inside(source, folder)), None)
    if inside is not None:
        raise SortError(f"{source} is inside {inside}, a folder this sort writes into; choose another source "
                        "or destination")
    found, skipped = find_images([source])
    images = [p for p in found if not any(_is_inside(p.resolve(), folder) for folder in outputs)]
    log_path = dest / LOG_NAME
    skipped = [s for s in skipped if s.path.resolve() != log_path
               and not any(_is_inside(s.path.resolve(), folder) for folder in outputs)]
    if not images:
        raise SortError(f"no images to sort in {source}" + (" (those there are already sorted)" if found else ""))
    log = _open_log(dest, log_path)
    threshold = classifier.unsure_below if min_confidence is None else min_confidence
    summary = SortSummary(dest, log_path, move, len(images), {name: 0 for name in classifier.class_names},
                          already_sorted=len(found) - len(images), skipped=skipped)
    pending: list[SortedFile] = []
    predictions = classifier.predict_paths(images, top_k=1, batch_size=batch_size, should_stop=should_stop)
    try:
        for prediction in predictions:
            item = _destination_of(prediction, threshold, dest)
            try:
                item.destination = place_new(item.source, dest / item.folder)
            except OSError as exc:
                summary.error = (f"could not write {dest / item.folder / item.source.name}: {exc.strerror or exc}. "
                                 f"The files before it are sorted (see {log_path}); {item.source} and the ones "
                                 "after it are where they were.")
                break
            pending.append(item)
            _count(summary, item)
            if len(pending) >= batch_size:
                _commit(pending, log, move, summary)
            if progress is not None:
                progress(summary.done, summary.total)
            if should_stop is not None and should_stop():
                break
        summary.stopped = summary.error is None and summary.done < summary.total
    finally:
        predictions.close()  # its image-loading threads end now, not when garbage-collected
        _commit(pending, log, move, summary)
        log.close()
    return summary


def _open_log(dest: Path, log_path: Path) -> SortLog:
    """The log, opened before anything is placed: a destination that can't be written into is
    refused now, with nothing touched."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        return SortLog(log_path)
    except OSError as exc:
        raise SortError(f"can't write into {dest} ({exc.strerror or exc}); nothing was copied or moved") from exc


def _destination_of(prediction, threshold: float, dest: Path) -> SortedFile:
    if not prediction.ok:
        return SortedFile(prediction.path, dest, "", None, UNREADABLE_FOLDER, prediction.error or "")
    label, confidence = prediction.top_k[0]
    folder = UNSURE_FOLDER if confidence < threshold else class_folder_name(label)
    return SortedFile(prediction.path, dest, label, confidence, folder)


def _count(summary: SortSummary, item: SortedFile) -> None:
    if item.folder == UNREADABLE_FOLDER:
        summary.unreadable += 1
    elif item.folder == UNSURE_FOLDER:
        summary.unsure += 1
    else:
        summary.per_class[item.label] = summary.per_class.get(item.label, 0) + 1


def _commit(pending: list[SortedFile], log: SortLog, move: bool, summary: SortSummary) -> None:
    """Log the files placed, flush the log to disk, and only then remove their sources (moving)."""
    if not pending:
        return
    for item in pending:
        log.add(item, MOVED if move else COPIED)
    log.sync()
    # The new names in DEST's folders become durable with the log, before any source goes.
    _fsync_folders({log.path.parent} | {item.destination.parent for item in pending})
    if move:
        for item in pending:
            try:
                os.unlink(item.source)
            except FileNotFoundError:
                pass
            except OSError as exc:
                summary.not_removed.append({"path": str(item.source), "error": exc.strerror or str(exc)})
    pending.clear()


# --- undo ----------------------------------------------------------------------------------------

def undo_sort(log_path: str | Path, progress: Callable[[int, int], None] | None = None) -> UndoSummary:
    """Put every file a sort moved back where it was, newest first, never overwriting: a file now at
    its old place that is not the same file is left alone and listed. Copies are left (their
    originals never moved). Safe to run again: files already back are counted, not touched. Folders
    the sort made and left empty are removed."""
    log_path = Path(log_path).expanduser()
    rows = read_log(log_path)
    summary = UndoSummary(log_path)
    emptied: set[Path] = set()
    for done, row in enumerate(reversed(rows), 1):
        if row["action"] == MOVED:
            _restore(Path(row["source"]), Path(row["destination"]), summary, emptied)
        else:
            summary.copies_left += 1
        if progress is not None:
            progress(done, len(rows))
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            pass
    return summary


def _restore(source: Path, destination: Path, summary: UndoSummary, emptied: set[Path]) -> None:
    if not destination.exists():
        if source.exists():
            summary.already_back += 1
        else:
            summary.problems.append({"path": str(source), "problem": f"{destination} is gone (deleted or moved "
                                                                     "since the sort)"})
        return
    try:
        if source.exists():
            # Both there: the sort stopped between placing the file and removing its source (the
            # same file, or an identical copy), or another file took the old name since.
            if os.path.samefile(source, destination) or filecmp.cmp(source, destination, shallow=False):
                os.unlink(destination)
                summary.already_back += 1
            else:
                summary.problems.append({"path": str(source), "problem": f"another file is there now; the sorted "
                                                                         f"one stays at {destination}"})
            return
        source.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy_new(destination, source)
        os.unlink(destination)
    except OSError as exc:
        summary.problems.append({"path": str(source), "problem": f"could not move {destination} back "
                                                                 f"({exc.strerror or exc})"})
        return
    summary.restored += 1
    emptied.add(destination.parent)
