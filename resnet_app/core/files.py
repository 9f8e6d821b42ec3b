"""Writing a file whole or not at all, and placing a new file without ever overwriting (place_file),
for every part of the engine. atomic_write: a temporary file in the destination
folder, flushed and fsynced, then moved over the old one with os.replace (and the folder fsynced), so a
process killed at any moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


# --- placing a file without ever overwriting -------------------------------------------------------
#
# One way, for every caller (sort and its undo, Evaluate's "move to class", export's script, pasted
# images, run folders' names): a file appears under its name whole or not at all, and never over
# anything already there, whatever another program does at the same moment.

PLACING_SUFFIX = ".placing.tmp"  # the temp files place_file writes; a killed one leaves `.NAME.*.placing.tmp`
MAX_NAME_TRIES = 10_000
# Errors that mean "no hard links here": another file system (EXDEV), or one without them (FAT, exFAT,
# many network shares).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES, errno.ENOSYS}
_FICLONE = 0x40049409  # Linux ioctl: share the source's blocks (btrfs, XFS, bcachefs): a reflink


def numbered_name(name: str, number: int) -> str:
    """The one naming rule for a taken name: `photo.jpg`, `photo-2.jpg`, `photo-3.jpg`... (a folder:
    `run`, `run-2`...). A name that starts with a dot and has no other (`.jpg`) is all stem."""
    if number <= 1:
        return name
    stem, suffix = os.path.splitext(name)
    return f"{stem}-{number}{suffix}"


def free_names(target: Path):
    """`target`, then `target`'s numbered names, in order (checked by the caller, claimed atomically)."""
    for number in range(1, MAX_NAME_TRIES):
        yield target.with_name(numbered_name(target.name, number))


def fsync_dir(directory: str | Path) -> None:
    """Make the names in `directory` (a new file, a removed one) durable; a no-op where folders can't be
    opened (Windows)."""
    _fsync_dir(Path(directory))


def copy_bytes(source: str | Path, target: str | Path) -> None:
    """Copy `source`'s content (following a link) into `target`, a new or empty file: a reflink where the
    file system offers one (Linux FICLONE), else the bytes (shutil.copyfile: copy_file_range/sendfile).
    Never a hard link: editing the copy never changes the original. Times and mode are copied too."""
    try:
        import fcntl  # POSIX only

        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except (ImportError, OSError):
        shutil.copyfile(source, target)
    with contextlib.suppress(OSError):
        shutil.copystat(source, target)


def place_file(target: str | Path, *, source: str | Path | None = None, data: bytes | None = None,
               write: Callable[[Path], None] | None = None, move: bool = False, rename: bool = True,
               sync: bool = True) -> Path:
    """Put a new file at `target` and return where it went. Nothing is ever overwritten.

    The content is one of: `source` (copied; `move=True` moves it), `data` (bytes), or `write(tmp)`
    (a callable that writes a temp path, e.g. an image encoder). When `target` is taken, `rename=True`
    takes the first free numbered name (`photo-2.jpg`, see numbered_name); `rename=False` raises
    FileExistsError instead.

    How: a move within one file system is os.link(source, target) then unlink(source); anything else is
    written whole into a temp file beside the target, fsynced, then linked to the target name. link()
    fails if the name exists, so the name is claimed atomically and the file appears complete. Where
    there are no hard links (FAT), the name is claimed by an exclusive create (O_EXCL) and our temp file
    replaces our own empty claim. With `sync` the file and its folder are fsynced before a moved
    source is removed, so a crash never leaves the only copy unwritten.
    """
    if sum(x is not None for x in (source, data, write)) != 1:
        raise ValueError("place_file needs one of source, data or write")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for candidate in (free_names(target) if rename else [target]):
        if rename and os.path.lexists(candidate):
            continue  # taken now; a name free now may still be taken before the claim, which then fails
        try:
            _place_once(candidate, source, data, write, move, sync)
        except FileExistsError:
            if not rename:
                raise
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {target.name} in {target.parent}", str(target))


def _place_once(target: Path, source, data, write, move: bool, sync: bool) -> None:
    if move and source is not None and not os.path.islink(source):
        try:
            os.link(source, target)  # FileExistsError if the name is taken
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        else:
            if sync:
                _fsync_dir(target.parent)
            os.unlink(source)
            return
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PLACING_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if source is not None:
            copy_bytes(source, tmp)
        elif data is not None:
            tmp.write_bytes(data)
        else:
            write(tmp)
        if sync:
            _fsync_file(tmp)
        _claim(tmp, target)
        if sync:
            _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    if move and source is not None:
        os.unlink(source)


def _claim(tmp: Path, target: Path) -> None:
    """Give the whole file `tmp` the name `target`, only if that name is free (FileExistsError if not)."""
    try:
        os.link(tmp, target)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    claim = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError if taken
    os.close(claim)
    os.replace(tmp, target)  # over our own empty claim


def remove_placing_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temp files a killed place_file left in `folder` (ours only: .NAME.*.placing.tmp)."""
    removed = []
    for stale in Path(folder).glob(f".*{PLACING_SUFFIX}"):
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed
