"""A sort's log, DEST/sort-log.jsonl: one JSON object per line, written and fsynced BEFORE the file it
names is placed (the intent), so a crash at any moment leaves no placed file that the log does not
name; whether a logged file was placed is read from the disk (resume and undo do).

Lines: {"sort-log": 1} first; then per sort {"op": "sort", "folders": [...], ...} (the folders it may
write into: every later sort into DEST counts them as sorted, whatever its model); per file
{"op": "place", "source", "destination", "class", "confidence", "folder", "action", "size", "note"};
{"op": "cancel", "destination"} when that name was taken between the choice and the claim. Each line
is parsed on its own: a line torn by a crash (whatever it holds) is skipped and counted, never hiding
the lines after it. Logs of older versions (sort-log.csv) are read the same way, line by line.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_NAME = "sort-log.jsonl"
LEGACY_LOG_NAME = "sort-log.csv"
LEGACY_COLUMNS = ["source", "destination", "class", "confidence", "action", "note"]
HEADER = {"sort-log": 1}
MOVED, COPIED = "moved", "copied"


class SortError(ValueError):
    """The sort can't start (or the log can't be read); the message is for the user as it is."""


@dataclass
class LogContents:
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)  # the place rows, in order, cancelled ones out
    folders: set[Path] = field(default_factory=set)  # every folder a sort wrote (or meant to write) into
    torn: int = 0  # lines that could not be read (torn by a crash), skipped


def _line_to_dict_legacy(line: str) -> dict[str, Any] | None:
    cells = next(csv.reader([line]), [])
    if len(cells) != len(LEGACY_COLUMNS):
        return None
    row: dict[str, Any] = dict(zip(LEGACY_COLUMNS, cells, strict=True))
    row["op"] = "place"
    return row


def read_log(path: str | Path) -> LogContents:
    """Every line of a sort log, each parsed on its own (see the module's text)."""
    path = Path(path)
    if not path.is_file():
        raise SortError(f"{path}: no such sort log")
    # surrogateescape: a path that is not valid UTF-8 comes back byte for byte.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        first = f.readline()
        legacy = first.rstrip("\r\n") == ",".join(LEGACY_COLUMNS)
        if not legacy and _parse(first) != HEADER:
            raise SortError(f"{path} is not a sort log written by resnet-app (it starts {first[:60]!r}); move it "
                            "away or choose another destination")
        contents = LogContents(path)
        place_rows: list[dict[str, Any] | None] = []
        last_for: dict[str, int] = {}  # destination -> its latest place row
        # A row of the old CSV logs held on one line unless a path had a line break in it.
        for line in f:
            complete = line.endswith("\n")
            record = (_line_to_dict_legacy(line.rstrip("\r\n")) if legacy else _parse(line)) if complete else None
            if not isinstance(record, dict) or "op" not in record:
                contents.torn += 1 if line.strip() else 0
                continue
            if record["op"] == "sort":
                contents.folders.update(Path(p) for p in record.get("folders", []))
            elif record["op"] == "place" and record.get("source") and record.get("destination"):
                last_for[str(record["destination"])] = len(place_rows)
                place_rows.append(record)
            elif record["op"] == "cancel" and str(record.get("destination")) in last_for:
                place_rows[last_for.pop(str(record.get("destination")))] = None  # that name was not ours
    for row in place_rows:
        if row is None:
            continue
        contents.rows.append(row)
        contents.folders.add(Path(row["destination"]).parent)
    return contents


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def find_log(dest: Path) -> Path | None:
    """DEST's log: the JSON-lines one, else one an older version wrote."""
    for name in (LOG_NAME, LEGACY_LOG_NAME):
        if (dest / name).is_file():
            return dest / name
    return None


class SortLog:
    """DEST/sort-log.jsonl, appended to (every sort into DEST adds to it); `sync` puts it on disk."""

    def __init__(self, path: Path):
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            read_log(path)  # refuses a file that is not ours
        self.file = open(path, "a", encoding="ascii", newline="\n")  # noqa: SIM115 (closed by close())
        if not exists:
            self.write(HEADER)
        elif not _ends_with_newline(path):
            self.file.write("\n")  # a line torn by a crash: start a fresh one after it
        self.sync()

    def write(self, record: dict[str, Any]) -> None:
        # ensure_ascii: any path (a line break, a quote, bytes that are not UTF-8) stays on one line.
        self.file.write(json.dumps(record, ensure_ascii=True) + "\n")

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
