"""Decode each image once: a uint8 tensor of the whole dataset at the training resolution.

Decoding (Pillow) is what limits a ResNet18 on a GPU fed by a DataLoader. Here every image is
decoded once, in parallel processes, into one (N, 3, S, S) uint8 tensor that stays in memory (on the
GPU when it fits) for all epochs, and is kept in the user's cache folder so that the next run on the
same files skips decoding. Augmentation then works on whole batches (batch_augment.py).

The disk cache holds chunks of up to CHUNK decoded images, each row labelled with its file's
fingerprint (path, size, modification time and a hash of the file's first and last 64 KiB). A request
takes its rows from whichever chunks hold its files and decodes only the files found in none, saving
them as new chunks as they finish. So the cache does not depend on the split: every seed and
validation share of a folder, training and validation alike, read the same chunks; a file added to the
folder costs one decode, not a new copy of the set; and a run stopped while decoding keeps the chunks
it finished.

The cache folder is capped (cache_size_limit_bytes), the least recently used entries going first:
reading an entry touches its modification time. features.py keeps its entries in the same folder under
the same rules, through the functions at the end of this module.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from resnet_app.core.data.decode_worker import decode_chunk
from resnet_app.core.data.memory import memory_share_bytes
from resnet_app.core.data.transforms import decode_size_hint, is_small
from resnet_app.core.files import atomic_write

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 1: one .npy + .json per list of files (a new copy per split); 2: chunks of fingerprinted rows
HOST_SHARE = 0.25  # of physical RAM that a decoded set may take
CHUNK = 256  # images per decode task and per cache file: big enough to amortise a process round trip
AHEAD = 2  # decode tasks queued per process: each stays busy, and a stop drops little queued work
POLL_SECONDS = 0.1  # how often a stop request is looked at while processes decode
INLINE_STEP = 16  # images decoded in this process between two looks at a stop request
EDGE_BYTES = 64 * 2**10  # hashed at each end of a file: a file rewritten with the same size and time differs there
FINGERPRINT_THREADS = 4  # fingerprinting waits on the disk; hashlib and reads release the GIL


def stored_size(image_size: int) -> int:
    """Side of the stored square: the input size itself for small images; for large ones the resize
    size (256 for 224), which leaves room for random-resized crops."""
    return decode_size_hint(image_size)


def default_cache_dir() -> Path:
    """The per-user cache folder (RESNET_APP_CACHE_DIR overrides it, as tests do)."""
    if os.environ.get("RESNET_APP_CACHE_DIR"):
        return Path(os.environ["RESNET_APP_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "resnet-app" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "resnet-app"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet-app"


def dataset_bytes(count: int, image_size: int) -> int:
    side = stored_size(image_size)
    return count * 3 * side * side


def memory_budget_bytes(device: torch.device) -> int:
    """How much the decoded set may take where it is used: 40% of free GPU memory on CUDA, else 25% of
    system RAM (host_budget_bytes)."""
    return memory_share_bytes(device, gpu_share=0.4, host_share=HOST_SHARE)


def host_budget_bytes() -> int:
    """How much the decoded set may take in system RAM (where it waits when it does not fit a GPU)."""
    return memory_share_bytes(torch.device("cpu"), gpu_share=0.0, host_share=HOST_SHARE)


@dataclass
class DecodedImages:
    images: torch.Tensor  # (N, 3, S, S) uint8, the readable images only
    labels: torch.Tensor  # (N,) int64
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable files
    from_disk_cache: bool = False  # every file came from the disk cache (none was decoded now)
    seconds: float = 0.0
    cached: int = 0  # how many of the files came from the disk cache

    def to(self, device: torch.device) -> DecodedImages:
        return DecodedImages(self.images.to(device), self.labels.to(device), self.failures,
                             self.from_disk_cache, self.seconds, self.cached)


# --- file fingerprints ------------------------------------------------------------------------------

def file_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """What identifies a file's current content, cheaply: its path, size and modification time, and
    a hash of its first and last EDGE_BYTES (a file rewritten in place with the same size and time,
    as some tools and restores do, still differs there). None if the file can't be read."""
    try:
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            # fsencode: a name that is not valid UTF-8 (as unzipped from a Windows archive) is hashed
            # as its bytes; str.encode() refuses the surrogates that stand for them.
            digest = hashlib.sha256(os.fsencode(path) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            digest.update(file.read(EDGE_BYTES))
            if stat.st_size > EDGE_BYTES:
                file.seek(max(EDGE_BYTES, stat.st_size - EDGE_BYTES))
                digest.update(file.read(EDGE_BYTES))
    except OSError:
        return None
    return digest.hexdigest()[:32]


def file_fingerprints(paths: list[str], should_stop: Callable[[], bool] | None = None) -> list[str | None] | None:
    """file_fingerprint of each path, in order; None if `should_stop` asked to stop part-way."""
    fingerprints: list[str | None] = []
    with ThreadPoolExecutor(max_workers=FINGERPRINT_THREADS) as pool:
        for start in range(0, len(paths), CHUNK):
            if should_stop is not None and should_stop():
                return None
            fingerprints += pool.map(file_fingerprint, paths[start:start + CHUNK])
    return fingerprints


def cache_key(samples: list[tuple[Path, int]], image_size: int) -> str:
    """Changes when any file's path or content (as file_fingerprint sees it), a label, or the
    resolution changes."""
    digest = hashlib.sha256(f"v{CACHE_FORMAT}/{stored_size(image_size)}/{is_small(image_size)}".encode())
    fingerprints = file_fingerprints([str(path) for path, _ in samples])
    for (path, label), fingerprint in zip(samples, fingerprints, strict=True):
        digest.update(b"\n" + os.fsencode(path) + f"\t{label}\t{fingerprint or 'missing'}".encode())
    return digest.hexdigest()[:32]


# --- decoding, with the cache ---------------------------------------------------------------------

def load_or_decode(samples: list[tuple[Path, int]], image_size: int, *, processes: int,
                   cache_dir: Path | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> DecodedImages | None:
    """The decoded images of `samples`, in their order (unreadable files left out and named): the files
    the disk cache holds are read from it, the others decoded now and saved. `progress(done, total)`
    counts the cached files at once, then each decoded chunk. None if `should_stop` asked to stop
    part-way; the chunks finished by then stay in the cache, so the next run decodes only the rest."""
    started = time.perf_counter()
    should_stop = should_stop or _never
    cache_dir = cache_dir or default_cache_dir()
    remove_stale_files(cache_dir)
    store = ChunkStore(cache_dir, stored_size(image_size), is_small(image_size))
    paths = [str(path) for path, _ in samples]
    keys = file_fingerprints(paths, should_stop)
    if keys is None:
        return None
    pixels = np.zeros((len(paths), 3, store.side, store.side), dtype=np.uint8)
    failures: dict[int, str] = {}  # row -> why its file could not be read
    cached = store.fill(keys, pixels, failures)
    missing = [row for row in range(len(paths)) if row not in cached]
    report = _progress_counter(progress, len(cached), len(paths))
    if missing and not _decode_missing(paths, keys, missing, pixels, failures, store, processes, should_stop, report):
        return None
    decoded = _readable_rows(samples, pixels, failures, cached=len(cached))
    decoded.seconds = time.perf_counter() - started
    return decoded


def _never() -> bool:
    return False


def _progress_counter(progress: Callable[[int, int], None] | None, done: int, total: int) -> Callable[[int], None]:
    """A function to call with each count of images done, which reports the running total."""
    if progress is not None and done:
        progress(done, total)

    def add(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)
    return add


def _readable_rows(samples: list[tuple[Path, int]], pixels: np.ndarray, failures: dict[int, str],
                   cached: int) -> DecodedImages:
    keep = np.ones(len(samples), dtype=bool)
    keep[list(failures)] = False
    images = pixels if keep.all() else pixels[keep]  # a copy only when some rows must go
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)[torch.from_numpy(keep)]
    named = [(str(samples[row][0]), reason) for row, reason in sorted(failures.items())]
    return DecodedImages(torch.from_numpy(images), labels, named, from_disk_cache=cached == len(samples),
                         cached=cached)


def _decode_missing(paths: list[str], keys: list[str | None], rows: list[int], into: np.ndarray,
                    failures: dict[int, str], store: ChunkStore, processes: int, should_stop: Callable[[], bool],
                    report: Callable[[int], None]) -> bool:
    """Decode the files of `rows` into those rows of `into`, saving each chunk to the cache as soon as
    it is done. False if stopped part-way."""
    tasks = [rows[start:start + CHUNK] for start in range(0, len(rows), CHUNK)]
    finished = 0
    task_paths = [[paths[row] for row in task] for task in tasks]
    for index, (chunk_pixels, chunk_failures) in _decode_tasks(task_paths, store, processes, should_stop):
        task = tasks[index]
        into[task] = chunk_pixels
        reasons = dict(chunk_failures)
        failures.update({task[i]: reason for i, reason in reasons.items()})
        store.save([keys[row] for row in task], chunk_pixels, reasons)
        finished += 1
        report(len(task))
    return finished == len(tasks)


DecodeResult = tuple[np.ndarray, list[tuple[int, str]]]  # what decode_chunk returns


def _decode_tasks(tasks: list[list[str]], store: ChunkStore, processes: int,
                  should_stop: Callable[[], bool]) -> Iterator[tuple[int, DecodeResult]]:
    """Yield (task index, decode_chunk's result) as tasks finish, from that many processes (or this
    one); stop yielding, at once, when `should_stop()` says so."""
    if processes <= 1 or len(tasks) <= 1:
        yield from _decode_here(tasks, store.side, store.small, should_stop)
    else:
        yield from _decode_in_processes(tasks, store.side, store.small, processes, should_stop)


def _decode_here(tasks: list[list[str]], side: int, small: bool,
                 should_stop: Callable[[], bool]) -> Iterator[tuple[int, DecodeResult]]:
    # A few images at a time, so that a stop is seen within INLINE_STEP decodes, not a whole chunk.
    for index, paths in enumerate(tasks):
        pixels = np.zeros((len(paths), 3, side, side), dtype=np.uint8)
        failures: list[tuple[int, str]] = []
        for start in range(0, len(paths), INLINE_STEP):
            if should_stop():
                return
            part, part_failures = decode_chunk(paths[start:start + INLINE_STEP], side, small)
            pixels[start:start + len(part)] = part
            failures += [(start + i, reason) for i, reason in part_failures]
        yield index, (pixels, failures)


def _decode_in_processes(tasks: list[list[str]], side: int, small: bool, processes: int,
                         should_stop: Callable[[], bool]) -> Iterator[tuple[int, DecodeResult]]:
    # spawn: forking a process that runs Qt or CUDA threads can deadlock.
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))
    queue = iter(enumerate(tasks))
    running: dict[Future, int] = {}
    completed = False
    try:
        while not should_stop():
            # Only AHEAD tasks per process are queued, so that a stop has little to cancel.
            for index, paths in itertools.islice(queue, processes * AHEAD - len(running)):
                running[pool.submit(decode_chunk, paths, side, small)] = index
            if not running:
                completed = True
                return
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
    finally:
        # On a stop, queued tasks are cancelled and processes mid-chunk are not waited for: they finish
        # that chunk on their own (its result is dropped) and exit.
        pool.shutdown(wait=completed, cancel_futures=True)


# --- the chunks of decoded images in the cache folder ---------------------------------------------

MAGIC = b"resnet-app decoded images\n"
_HEADER_LENGTH = struct.Struct("<Q")  # bytes of the JSON header that follows the magic
MAX_HEADER_BYTES = 2**24
ALIGN = 64  # the pixels start at a multiple of this, for memory maps
CHUNK_SUFFIX = ".chunk"


@dataclass
class _Chunk:
    path: Path
    keys: list[str]  # the fingerprint of each row's file
    failures: dict[int, str]  # row -> why its file could not be read (its pixels are zero)
    offset: int  # where the pixels start


class ChunkStore:
    """The cached chunks of one way of decoding (stored side; squashed or cropped) in the cache folder.

    A chunk file is MAGIC, the length of a JSON header, the header {"side", "small", "keys",
    "failures"}, and from the next multiple of ALIGN bytes the rows' pixels, raw (rows, 3, side, side)
    uint8. Raw rows rather than .npz: a request reads only the rows it needs, through a memory map,
    and the exact size the header implies catches a truncated file.
    """

    def __init__(self, folder: Path, side: int, small: bool) -> None:
        self.folder, self.side, self.small = Path(folder), side, small
        self.prefix = f"decoded-v{CACHE_FORMAT}-{side}{'s' if small else 'c'}-"

    def fill(self, keys: list[str | None], into: np.ndarray, failures: dict[int, str]) -> set[int]:
        """Copy the cached rows of `keys` into those rows of `into` (and their failures into
        `failures`); returns the rows filled."""
        wanted: dict[str, list[int]] = defaultdict(list)
        for row, key in enumerate(keys):
            if key is not None:
                wanted[key].append(row)
        filled: set[int] = set()
        if not wanted:
            return filled
        for chunk in self._chunks():
            sources, rows = [], []
            for source, key in enumerate(chunk.keys):
                for row in wanted.pop(key, ()):
                    sources.append(source)
                    rows.append(row)
            if rows and self._copy_rows(chunk, sources, rows, into):
                failures.update({row: chunk.failures[source] for source, row in zip(sources, rows, strict=True)
                                 if source in chunk.failures})
                filled.update(rows)
            if not wanted:
                break  # the other chunks' headers need not be read
        return filled

    def save(self, keys: list[str | None], pixels: np.ndarray, failures: dict[int, str]) -> None:
        """Keep decoded rows as a chunk (rows whose file could not be fingerprinted are left out)."""
        rows = [i for i, key in enumerate(keys) if key is not None]
        if not rows:
            return
        header = {"side": self.side, "small": self.small, "keys": [keys[i] for i in rows],
                  "failures": {str(n): failures[i] for n, i in enumerate(rows) if i in failures}}
        # Named after its rows: two processes that decode the same files write the same file.
        name = hashlib.sha256("".join(header["keys"]).encode()).hexdigest()[:24]
        text = json.dumps(header).encode()  # ASCII: json escapes reasons that hold surrogates
        preamble = MAGIC + _HEADER_LENGTH.pack(len(text)) + text
        try:
            with atomic_write(self.folder / f"{self.prefix}{name}{CHUNK_SUFFIX}") as tmp, open(tmp, "wb") as file:
                file.write(preamble.ljust(_aligned(len(preamble)), b"\0"))
                file.write(np.ascontiguousarray(pixels if len(rows) == len(keys) else pixels[rows]).data)
        except OSError:
            return  # a full disk or a read-only cache folder costs the next run a decode, nothing more
        evict_to_limit(self.folder)

    def _chunks(self) -> Iterator[_Chunk]:
        for path in sorted(self.folder.glob(f"{self.prefix}*{CHUNK_SUFFIX}")):
            try:
                with open(path, "rb") as file:
                    chunk = self._read_header(path, file)
            except FileNotFoundError:
                continue  # evicted meanwhile by another process
            except OSError:
                continue  # unreadable (permissions): not ours to repair
            except (ValueError, RecursionError) as exc:  # RecursionError: json.loads of deeply nested text
                discard_entry(path, str(exc))
                continue
            yield chunk

    def _read_header(self, path: Path, file) -> _Chunk:
        """The chunk's header, checked against its name and its file's size; ValueError if it is damaged."""
        start = file.read(len(MAGIC) + _HEADER_LENGTH.size)
        if len(start) < len(MAGIC) + _HEADER_LENGTH.size or not start.startswith(MAGIC):
            raise ValueError("not a chunk of decoded images")
        (length,) = _HEADER_LENGTH.unpack(start[len(MAGIC):])
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"a header of {length} bytes")
        keys, failures = self._checked_header(json.loads(file.read(length)))
        offset = _aligned(len(start) + length)
        expected = offset + len(keys) * 3 * self.side * self.side
        size = os.fstat(file.fileno()).st_size
        if size != expected:
            raise ValueError(f"{size} bytes where its header implies {expected}")
        return _Chunk(path, keys, failures, offset)

    def _checked_header(self, header: object) -> tuple[list[str], dict[int, str]]:
        if not isinstance(header, dict) or header.get("side") != self.side or header.get("small") != self.small:
            raise ValueError("its header is not of this kind of chunk")
        keys, failures = header.get("keys"), header.get("failures")
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and isinstance(failures, dict)):
            raise ValueError("its header lacks the files' keys or failures")
        rows = {int(row): reason for row, reason in failures.items()}  # int(): ValueError if not a number
        if not all(0 <= row < len(keys) and isinstance(reason, str) for row, reason in rows.items()):
            raise ValueError("its header names failures outside the chunk")
        return keys, rows

    def _copy_rows(self, chunk: _Chunk, sources: list[int], rows: list[int], into: np.ndarray) -> bool:
        try:
            stored = np.memmap(chunk.path, dtype=np.uint8, mode="r", offset=chunk.offset,
                               shape=(len(chunk.keys), 3, self.side, self.side))
            into[rows] = stored[sources]
            del stored  # unmapped now: Windows can't delete or replace a mapped file
        except FileNotFoundError:
            return False  # evicted since its header was read: those files are decoded again
        except (OSError, ValueError) as exc:
            discard_entry(chunk.path, str(exc))
            return False
        touch_entry(chunk.path)
        return True


def _aligned(count: int) -> int:
    return -(-count // ALIGN) * ALIGN


# --- the cache folder: size, limit, eviction, cleaning ----------------------------------------------
# Shared by every cache kept there (decoded chunks here, features in features.py). Ours are the files
# named ENTRY_PREFIXES..., and the temp files atomic_write makes for them (".<name>.<random>.tmp"). The
# folder holds other things too (pasted images): never counted, never deleted.

ENTRY_PREFIXES = ("decoded-", "features-")
STALE_TEMP_SECONDS = 15 * 60  # a temp file this old has lost its writer (a cache write takes seconds)
LIMIT_ENV = "RESNET_APP_CACHE_LIMIT"  # bytes, or with a unit: "500M", "20 GB", "1.5GiB" (powers of 1024)
DISK_SHARE = 0.10  # of the cache disk's size: the default limit
FALLBACK_LIMIT_BYTES = 10 * 2**30  # where the disk's size can't be read
_FORMAT_1_ENTRY = re.compile(r"(decoded|features)-[0-9a-f]{32}\.(npy|json)")  # never read again
_UNIT_BYTES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_limit_bytes: int | None = None  # set_cache_size_limit (the app's setting)


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    used: float  # modification time: when it was last written or read (touch_entry)


def _is_entry(name: str) -> bool:
    return name.startswith(ENTRY_PREFIXES)


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and _is_entry(name[1:])


def _files(folder: Path, wanted: Callable[[str], bool]) -> list[_Entry]:
    try:
        items = list(os.scandir(folder))
    except OSError:  # no folder yet, or unreadable: nothing of ours there
        return []
    files = []
    for item in items:
        try:
            if wanted(item.name) and item.is_file(follow_symlinks=False):
                stat = item.stat(follow_symlinks=False)
                files.append(_Entry(Path(item.path), stat.st_size, stat.st_mtime))
        except OSError:
            continue  # removed meanwhile
    return files


def _remove(path: Path) -> bool:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # in use (Windows) or read-only: left for a later clean
        return False
    return True


def cache_size_bytes(cache_dir: Path | None = None) -> int:
    """Bytes the caches take in the cache folder (decoded images, features, their temp files)."""
    folder = Path(cache_dir or default_cache_dir())
    return sum(entry.size for entry in _files(folder, lambda name: _is_entry(name) or _is_temp(name)))


def clear_cache(cache_dir: Path | None = None) -> int:
    """Delete every cache entry (and stale temp file); returns the bytes freed. The next run on the
    same images decodes them again. Temp files being written now are left to their writers."""
    folder = Path(cache_dir or default_cache_dir())
    freed = sum(entry.size for entry in _files(folder, _is_entry) if _remove(entry.path))
    return freed + remove_stale_files(folder)


def set_cache_size_limit(limit_bytes: int | None) -> None:
    """Cap the cache folder at `limit_bytes` (the app's setting); None: back to RESNET_APP_CACHE_LIMIT,
    or the default (DISK_SHARE of the disk)."""
    global _limit_bytes
    if limit_bytes is not None and limit_bytes < 0:
        raise ValueError(f"a cache size limit can't be negative, got {limit_bytes}")
    _limit_bytes = limit_bytes


def cache_size_limit_bytes(cache_dir: Path | None = None) -> int:
    """The most the caches may take: set_cache_size_limit's value, else RESNET_APP_CACHE_LIMIT's,
    else DISK_SHARE of the size of the disk the cache folder is on."""
    if _limit_bytes is not None:
        return _limit_bytes
    from_environment = _limit_from_environment(os.environ.get(LIMIT_ENV, "").strip())
    return from_environment if from_environment is not None else default_cache_size_limit(cache_dir)


@functools.lru_cache(maxsize=4)  # one warning per value, not one per cache write
def _limit_from_environment(text: str) -> int | None:
    if not text:
        return None
    limit = parse_size(text)
    if limit is None:
        logger.warning("%s=%r is not a size (e.g. 20G or 500MB); the default cache limit applies", LIMIT_ENV, text)
    return limit


def parse_size(text: str) -> int | None:
    """'20G', '500 MB', '1.5GiB' or a number of bytes -> bytes (units are powers of 1024); None if
    it is none of these."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?", text.strip(), re.IGNORECASE)
    if match is None:
        return None
    return int(float(match[1]) * _UNIT_BYTES[match[2].lower()])


def default_cache_size_limit(cache_dir: Path | None = None) -> int:
    """DISK_SHARE of the size (not the free space: the cap must not shrink as the cache fills the
    disk) of the disk the cache folder is on."""
    folder = Path(cache_dir or default_cache_dir())
    while not folder.exists() and folder.parent != folder:  # the folder may not exist yet
        folder = folder.parent
    try:
        return int(shutil.disk_usage(folder).total * DISK_SHARE)
    except OSError:
        return FALLBACK_LIMIT_BYTES


def evict_to_limit(cache_dir: Path | None = None, limit_bytes: int | None = None) -> int:
    """Delete the least recently used entries until the caches fit `limit_bytes` (by default
    cache_size_limit_bytes()); returns the bytes freed."""
    folder = Path(cache_dir or default_cache_dir())
    limit = cache_size_limit_bytes(folder) if limit_bytes is None else limit_bytes
    entries = sorted(_files(folder, _is_entry), key=lambda entry: entry.used)
    excess = sum(entry.size for entry in entries) - limit
    freed = 0
    for entry in entries:
        if freed >= excess:
            break
        if _remove(entry.path):
            freed += entry.size
    return freed


def remove_stale_files(cache_dir: Path) -> int:
    """Delete what no run will read: temp files of ours older than STALE_TEMP_SECONDS (a killed
    writer's; a younger one may be another process's write in progress) and entries of the first cache
    format. Returns the bytes freed."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    stale = _files(Path(cache_dir), lambda name: _is_temp(name) or _FORMAT_1_ENTRY.fullmatch(name) is not None)
    return sum(entry.size for entry in stale
               if (not _is_temp(entry.path.name) or entry.used < cutoff) and _remove(entry.path))


def touch_entry(path: Path) -> None:
    """Mark an entry as just used, for least-recently-used eviction."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only folder: the entry is evicted a little early, nothing worse


def discard_entry(path: Path, why: str) -> None:
    """Delete a damaged or inconsistent entry, saying so once; whoever asked for it rebuilds it."""
    logger.warning("cache: deleted the damaged entry %s (%s); it is being rebuilt", path.name, why)
    _remove(path)
