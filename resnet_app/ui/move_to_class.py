"""Evaluate's "move to class": a file moved to another class folder of the evaluated data set, as an
undoable command (the view's figures follow each move and undo)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtGui import QUndoCommand

from resnet_app.core.files import place_file


class MoveHost(Protocol):
    """What a move needs of the view it serves (the Evaluate view): the report's classes, and two calls
    back with the outcome."""

    report: Any  # an EvalReport

    def file_moved(self, old: str, new: str, class_index: int, advance: bool = False) -> None: ...

    def move_failed(self, message: str) -> None: ...


def move_file(source: Path, target: Path, *, rename: bool = True) -> Path:
    """Move one file to `target`, or (`rename`) to the first free `stem-2.ext`...; returns where it went.
    Never overwrites, even a file that appears at that moment: files.place_file claims the name."""
    return place_file(target, source=source, move=True, rename=rename)


class MoveImageCommand(QUndoCommand):
    """Move an image to another class folder of the evaluated dataset (undo moves it back)."""

    def __init__(self, view: MoveHost, path: str, from_index: int, to_index: int, data_root: Path) -> None:
        classes = view.report.classes
        super().__init__(f"Move {Path(path).name} from {classes[from_index]} to {classes[to_index]}")
        self.view, self.from_index, self.to_index = view, from_index, to_index
        self.source = Path(path)
        self.folder = data_root / classes[to_index]
        self.target: Path | None = None
        self.made_folder = False

    def redo(self) -> None:
        try:
            if not self.folder.is_dir():
                self.folder.mkdir()
                self.made_folder = True
            self.target = move_file(self.source, self.folder / self.source.name)
        except OSError as exc:
            if self.made_folder:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()  # empty: made just now, for this move
                self.made_folder = False
            self.setObsolete(True)  # off the stack: nothing was moved
            self.view.move_failed(f"Could not move {self.source.name} to {self.folder}: {exc.strerror or exc}")
            return
        self.view.file_moved(str(self.source), str(self.target), self.to_index, advance=True)

    def undo(self) -> None:
        try:
            move_file(self.target, self.source, rename=False)
        except OSError as exc:
            self.setObsolete(True)
            self.view.move_failed(f"Could not move {self.target.name} back to {self.source.parent}: "
                                  f"{exc.strerror or exc}")
            return
        if self.made_folder:
            try:
                self.folder.rmdir()  # the folder this move made, if nothing else went into it since
                self.made_folder = False
            except OSError:
                pass
        self.view.file_moved(str(self.target), str(self.source), self.from_index)
