"""Labelling: one image put into a data set's class folder (DATA/<class>/), logged so that it can be
undone, after a crash or a restart as well as now.

The log is DATA/.resnet-app/label-log.jsonl (a hidden folder: the data set scan skips it, so it is never
taken for a class). One JSON object per line; a line is written and fsynced BEFORE the file it names is
touched (the intent), and whether the file was placed (or put back) is read from the disk, as the sort
does (sort_log.py, DESIGN habit 12):

- {"label-log": 1} first;
- {"op": "label", "id", "source", "destination", "folder", "action": "moved"|"copied", "size",
  "new_folder"}: the file is about to be placed at `destination` (a free name, claimed by
  files.place_file: never over anything); `new_folder`: the class folder did not exist and is made now;
- {"op": "cancel", "id"}: that label did not happen (its name was taken meanwhile, or the write failed);
- {"op": "undo", "id"}: the label is about to be undone (a move: the file goes back; a copy: the copy
  is deleted, only while it is byte for byte its original, so the user's only copy is never deleted);
- {"op": "undo-cancel", "id"}: that undo could not be done (the file stays labelled).

Opening a log (LabelLog) first finishes what a crash interrupted: a move whose file is in both places
(linked, not yet unlinked) loses its source; an undo logged but not done is done; temp files of an
interrupted copy and class folders made for a label that never happened (empty) go. A line torn by a
crash is skipped and counted; the next line starts on a fresh line.
"""
from __future__ import annotations

import filecmp
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_app.core.files import free_names, fsync_dir, place_file, remove_placing_leftovers
from resnet_app.core.use.sort_names import class_folder_name

LOG_FOLDER = ".resnet-app"  # hidden: the data set scan skips it
LOG_NAME = "label-log.jsonl"
HEADER = {"label-log": 1}
MOVED, COPIED = "moved", "copied"
# What the disk says of a label (LabelLog.state)
PLACED = "placed"  # the file is in its class folder (a move: and gone from where it was)
HALF_MOVED = "half-moved"  # a move cut short: the file is in both places (the same file)
NOT_PLACED = "not placed"  # never placed (a crash before it), or put back by an undo
GONE = "gone"  # a move's file is in neither place: deleted or moved away since


class LabelError(ValueError):
    """The label (or undo) can't be done; the message is for the user as it is."""


@dataclass
class LabelAction:
    """One image labelled: from `source` to `destination` in the class folder `folder`."""

    id: str
    source: Path
    destination: Path
    folder: str  # the class folder's name (the class, as training will call it)
    moved: bool
    size: int  # bytes: a file of another size at `destination` is not ours
    new_folder: bool = False  # the class folder was made for this label
    undone: bool = False  # an undo was logged (and not cancelled)

    def record(self) -> dict[str, Any]:
        return {"op": "label", "id": self.id, "source": str(self.source), "destination": str(self.destination),
                "folder": self.folder, "action": MOVED if self.moved else COPIED, "size": self.size,
                "new_folder": self.new_folder}


@dataclass
class UndoOutcome:
    action: LabelAction | None
    done: bool
    message: str


@dataclass
class Recovery:
    """What opening a log finished of an interrupted label or undo."""

    finished_moves: int = 0  # moves whose source was still there: removed now
    finished_undos: int = 0  # undos logged but not done: done now
    cancelled_undos: int = 0  # undos logged that can't be done: the file stays labelled
    removed_leftovers: int = 0  # temp files and empty folders an interrupted label left

    def lines(self) -> list[str]:
        parts = []
        if self.finished_moves:
            parts.append(f"{self.finished_moves} interrupted move(s) finished")
        if self.finished_undos:
            parts.append(f"{self.finished_undos} interrupted undo(s) finished")
        if self.cancelled_undos:
            parts.append(f"{self.cancelled_undos} undo(s) could not be finished: the files stay labelled")
        if self.removed_leftovers:
            parts.append(f"{self.removed_leftovers} leftover(s) of an interrupted label removed")
        return parts


@dataclass
class LogContents:
    path: Path
    actions: list[LabelAction] = field(default_factory=list)  # in order; cancelled ones and those whose
    # destination a later label took (so never placed there, or undone) are left out
    torn: int = 0  # lines that could not be read (torn by a crash), skipped


def label_log_path(data_root: str | Path) -> Path:
    return Path(data_root) / LOG_FOLDER / LOG_NAME


def read_label_log(path: str | Path) -> LogContents:
    """Every line of a label log, each parsed on its own (see the module's text)."""
    path = Path(path)
    contents = LogContents(path)
    if not path.is_file():
        return contents
    by_id: dict[str, LabelAction] = {}
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        first = f.readline()
        if _torn_header(first):
            return contents  # killed while its first line was written: nothing was labelled yet
        if _parse(first) != HEADER:
            raise LabelError(f"{path} is not a label log written by resnet-app (it starts {first[:60]!r}); move "
                             "it away to label into this folder")
        for line in f:
            record = _parse(line) if line.endswith("\n") else None
            if not isinstance(record, dict) or "op" not in record:
                contents.torn += 1 if line.strip() else 0
                continue
            action = by_id.get(str(record.get("id")))
            if record["op"] == "label":
                action = _action_of(record)
                if action is not None:
                    by_id[action.id] = action
            elif action is None:
                continue
            elif record["op"] == "cancel":
                del by_id[action.id]
            elif record["op"] in ("undo", "undo-cancel"):
                action.undone = record["op"] == "undo"
    # A later label's destination: an earlier label there was never placed (place_file never overwrites)
    # or was undone, so it is left out.
    owner = {action.destination: action.id for action in by_id.values()}
    contents.actions = [action for action in by_id.values() if owner[action.destination] == action.id]
    return contents


def _action_of(record: dict[str, Any]) -> LabelAction | None:
    try:
        return LabelAction(str(record["id"]), Path(record["source"]), Path(record["destination"]),
                           str(record["folder"]), record["action"] == MOVED, int(record["size"]),
                           bool(record.get("new_folder")))
    except (KeyError, TypeError, ValueError):
        return None


def _torn_header(first: str) -> bool:
    return not first.endswith("\n") and (json.dumps(HEADER) + "\n").startswith(first)


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _same_content(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class LabelLog:
    """A data set folder's label log: label files into it, undo them; opening it finishes what a crash
    interrupted (`recovery` says what)."""

    def __init__(self, data_root: str | Path) -> None:
        self.data_root = Path(data_root).expanduser().absolute()
        if not self.data_root.is_dir():
            raise LabelError(f"{self.data_root}: no such folder (choose the data set folder to label into)")
        self.path = label_log_path(self.data_root)
        contents = read_label_log(self.path)
        self.actions: list[LabelAction] = contents.actions
        self.torn = contents.torn
        self.recovery = self._finish_interrupted()

    # reading ----------------------------------------------------------------------------------------

    def state(self, action: LabelAction) -> str:
        """PLACED, HALF_MOVED, NOT_PLACED or GONE, read from the disk."""
        try:
            here = action.destination.is_file() and action.destination.stat().st_size == action.size
        except OSError:
            here = False
        there = os.path.lexists(action.source)
        if not action.moved:
            return PLACED if here else NOT_PLACED
        if here and there:
            return HALF_MOVED if _same_content(action.source, action.destination) else PLACED
        if here:
            return PLACED
        return NOT_PLACED if there else GONE

    def labelled(self, inside: str | Path | None = None) -> list[LabelAction]:
        """The labels in force (placed, not undone), oldest first; with `inside`, only those of images
        that came from that folder."""
        folder = None if inside is None else Path(inside).expanduser().absolute()
        return [a for a in self.actions if not a.undone and self.state(a) == PLACED
                and (folder is None or _is_inside(a.source, folder))]

    def labelled_sources(self, inside: str | Path | None = None) -> set[Path]:
        return {a.source for a in self.labelled(inside)}

    def class_folders(self) -> list[str]:
        """The data set's classes: its visible sub-folders, by name."""
        try:
            return sorted(entry.name for entry in os.scandir(self.data_root)
                          if entry.is_dir() and not entry.name.startswith("."))
        except OSError:
            return []

    # labelling --------------------------------------------------------------------------------------

    def label(self, source: str | Path, class_name: str, move: bool = False) -> LabelAction:
        """Put `source` into the class folder of `class_name` (made when new): a copy, or the file itself
        with `move`. Logged (fsynced) before the file is placed; never over anything (a taken name gets
        `name-2.ext`). LabelError when it can't be done; nothing is changed then."""
        source = Path(source).expanduser().absolute()
        if not source.is_file():
            raise LabelError(f"{source} is not there any more (moved or deleted)")
        folder_name = class_folder_name(class_name)
        folder = self.data_root / folder_name
        if _is_inside(source, folder):
            raise LabelError(f"{source.name} is in the class folder {folder_name} already")
        new_folder = not folder.is_dir()
        try:
            size = source.stat().st_size
            for candidate in free_names(folder / source.name):
                if os.path.lexists(candidate):
                    continue
                action = LabelAction(uuid.uuid4().hex[:12], source, candidate, folder_name, move, size, new_folder)
                self._write(action.record())
                try:
                    if new_folder:
                        folder.mkdir(exist_ok=True)
                        fsync_dir(self.data_root)
                    place_file(candidate, source=source, move=move, rename=False)
                except FileExistsError:
                    self._write({"op": "cancel", "id": action.id})  # taken meanwhile: the next free name
                    continue
                except OSError:
                    self._write({"op": "cancel", "id": action.id})
                    if new_folder:
                        _remove_empty(folder)
                    raise
                self.actions.append(action)
                return action
        except OSError as exc:
            raise LabelError(f"could not put {source.name} into {folder}: {exc.strerror or exc}") from exc
        raise LabelError(f"no free name for {source.name} in {folder}")

    # undoing ----------------------------------------------------------------------------------------

    def undo(self, action_id: str) -> UndoOutcome:
        """Undo one label: a moved file goes back where it was; a copy is deleted, only while its
        original is still there, byte for byte the same. Logged before it is done."""
        action = next((a for a in self.actions if a.id == action_id), None)
        if action is None:
            return UndoOutcome(None, False, "that label is not in the log")
        if action.undone:
            return UndoOutcome(action, False, f"{action.source.name} was put back already")
        problem = self._why_not_undoable(action)
        if problem:
            return UndoOutcome(action, False, problem)
        self._write({"op": "undo", "id": action.id})
        action.undone = True
        try:
            self._put_back(action)
        except OSError as exc:
            self._write({"op": "undo-cancel", "id": action.id})
            action.undone = False
            return UndoOutcome(action, False, f"could not undo {action.destination.name}: {exc.strerror or exc}")
        return UndoOutcome(action, True, (f"{action.destination.name} moved back to {action.source.parent}"
                                          if action.moved else f"the copy {action.destination} deleted"))

    def undo_last(self) -> UndoOutcome:
        """Undo the newest label still in force."""
        last = next((a for a in reversed(self.actions) if not a.undone and self.state(a) == PLACED), None)
        if last is None:
            return UndoOutcome(None, False, "nothing to undo")
        return self.undo(last.id)

    def _why_not_undoable(self, action: LabelAction) -> str | None:
        state = self.state(action)
        if state != PLACED:
            return f"{action.destination} is not there any more (moved or deleted since): nothing to undo"
        if action.moved:
            if os.path.lexists(action.source):
                return (f"another file is at {action.source} now; the labelled one stays at "
                        f"{action.destination}")
            return None
        if not action.source.is_file():
            return (f"the original of {action.destination} is gone, so the copy stays: it may be the only one "
                    "left")
        if not _same_content(action.source, action.destination):
            return f"{action.destination} was changed since it was copied, so it stays"
        return None

    def _put_back(self, action: LabelAction) -> None:
        """The undo itself, after its log line; also what finishing an interrupted undo does."""
        state = self.state(action)
        if action.moved and state == HALF_MOVED:
            os.unlink(action.destination)  # the same file is at the source already
            fsync_dir(action.destination.parent)
        elif action.moved and state == PLACED:
            place_file(action.source, source=action.destination, move=True, rename=False)
        elif not action.moved and state == PLACED:
            if not (action.source.is_file() and _same_content(action.source, action.destination)):
                raise OSError(f"the original of {action.destination} is gone or differs, so the copy stays")
            os.unlink(action.destination)
            fsync_dir(action.destination.parent)
        if action.new_folder:
            _remove_empty(action.destination.parent)

    # after a crash ----------------------------------------------------------------------------------

    def _finish_interrupted(self) -> Recovery:
        recovery = Recovery()
        for action in self.actions:
            state = self.state(action)
            if not action.undone and action.moved and state == HALF_MOVED:
                fsync_dir(action.destination.parent)  # the file is durable in its class before the source goes
                os.unlink(action.source)
                fsync_dir(action.source.parent)
                recovery.finished_moves += 1
            elif action.undone and state in (PLACED, HALF_MOVED):
                try:
                    self._put_back(action)
                    recovery.finished_undos += 1
                except OSError:
                    self._write({"op": "undo-cancel", "id": action.id})
                    action.undone = False
                    recovery.cancelled_undos += 1
        folders = {action.destination.parent for action in self.actions}
        for folder in folders:
            recovery.removed_leftovers += len(remove_placing_leftovers(folder)) if folder.is_dir() else 0
        in_use = {a.destination.parent for a in self.actions if not a.undone and self.state(a) == PLACED}
        for folder in {a.destination.parent for a in self.actions if a.new_folder} - in_use:
            recovery.removed_leftovers += _remove_empty(folder)
        return recovery

    # the log itself ---------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        """Append one line and fsync it (the log and its folder made first when new)."""
        new = not self.path.is_file() or _torn_header(_first_line(self.path))
        if new:
            self.path.parent.mkdir(exist_ok=True)
        # A new log, or one whose header a crash tore (it holds nothing else), is written from the start.
        with open(self.path, "w" if new else "a", encoding="ascii", newline="\n") as f:
            if new:
                f.write(json.dumps(HEADER) + "\n")
            elif not _ends_with_newline(self.path):
                f.write("\n")  # a line torn by a crash: start a fresh one after it
            # ensure_ascii: any path (a line break, a quote, bytes that are not UTF-8) stays on one line.
            f.write(json.dumps(record, ensure_ascii=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.path.parent)
            fsync_dir(self.data_root)


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.readline()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _remove_empty(folder: Path) -> int:
    """Remove `folder` if it is empty (1), else leave it (0)."""
    try:
        folder.rmdir()
    except OSError:
        return 0
    fsync_dir(folder.parent)
    return 1


def undo_last(log: LabelLog | str | Path) -> UndoOutcome:
    """Undo the newest label in force of a data set folder (or of its open LabelLog)."""
    return (log if isinstance(log, LabelLog) else LabelLog(log)).undo_last()


def classes_offered(data_classes: Iterable[str], model_classes: Iterable[str]) -> list[str]:
    """The classes to label into, as folder names: the model's first (in its order), then the data
    set's other folders (by name), each once."""
    offered: list[str] = []
    for name in [*(class_folder_name(c) for c in model_classes), *sorted(data_classes)]:
        if name not in offered:
            offered.append(name)
    return offered
