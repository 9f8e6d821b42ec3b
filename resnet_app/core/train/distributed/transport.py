"""How the launcher and the training processes talk: files in one folder (the channel), events as JSON lines.

The channel holds spec.json (the run's settings, written by the launcher), control.json (stop and pause
requests, polled by every worker), events.jsonl (the first process's events, one JSON object a line),
messages-<rank>.jsonl (the other processes' warnings), rank-<rank>.json (each process's pid),
failures.json (torchrun's account of a crash) and launcher.log (everything the processes printed).
Plain JSON throughout, never a pickle.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

from resnet_app.core.files import write_text_atomic
from resnet_app.core.train.events import (
    BatchEnd,
    CheckpointSaved,
    DataProgress,
    EpochEnd,
    Message,
    Paused,
    RunEnd,
    RunStart,
)

SPEC_FILE, CONTROL_FILE, EVENTS_FILE = "spec.json", "control.json", "events.jsonl"
FAILURES_FILE, LOG_FILE = "failures.json", "launcher.log"
RESULT, ERROR = "__result__", "__error__"  # stream records that are not Trainer events

EVENT_TYPES: dict[str, type] = {
    "data_progress": DataProgress, "run_start": RunStart, "batch_end": BatchEnd, "epoch_end": EpochEnd,
    "checkpoint_saved": CheckpointSaved, "paused": Paused, "message": Message, "run_end": RunEnd,
}


def event_record(name: str, payload: Any) -> dict[str, Any]:
    """An event as one JSON object: {"event": name, "data": the dataclass's fields}."""
    return {"event": name, "data": dataclasses.asdict(payload)}


def event_from_record(record: dict[str, Any]) -> tuple[str, Any] | None:
    """(name, dataclass) of an event record; None for other records and unknown events."""
    name = record.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    return name, cls(**{k: v for k, v in record.get("data", {}).items() if k in known})


class EventStream:
    """One process's side of the stream: JSON lines appended to a file, each flushed as written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()  # events may come from the control thread's requests too

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str)  # NaN stays NaN: json reads it back
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def writer(self, name: str):
        return lambda payload: self.write(event_record(name, payload))

    def close(self) -> None:
        with self._lock:
            self._file.close()


class StreamReader:
    """The launcher's side: the complete lines appended to a stream file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # an unfinished line waits for its end
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # (never written so: each line is one json.dumps)
        return records


def write_control(channel: Path, stop: bool, pause: bool) -> None:
    write_text_atomic(channel / CONTROL_FILE, json.dumps({"stop": stop, "pause": pause}))


def read_control(channel: Path) -> dict[str, Any]:
    try:
        return json.loads((channel / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=1, default=str))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
