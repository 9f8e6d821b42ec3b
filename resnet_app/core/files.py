"""Writing a file whole or not at all, for every part of the engine: a temporary file in the destination
folder, flushed and fsynced, then moved over the old one with os.replace (and the folder fsynced), so a
process killed at any moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds it replaces `path` atomically.

    The temp file sits in the same folder because os.replace is only atomic within one file system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories can't be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temp files that a killed process left behind in `folder` (ours only: .NAME.*.tmp)."""
    removed = []
    for stale in Path(folder).glob(".*.tmp"):
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def copy_file_atomic(source: str | Path, target: str | Path) -> Path:
    """Copy a file so that `target` is either its old self or the whole copy, never half of one."""
    with atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
