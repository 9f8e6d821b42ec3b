"""torchvision's ImageNet ResNet18 weights, known by their content, wherever the file comes from.

torchvision's release file ResNet18_Weights.IMAGENET1K_V1 (`resnet18-f37072fd.pth`, 46,830,571 bytes)
has one SHA-256, RELEASE_SHA256. A weights file is "the release" when its whole SHA-256 is that one,
whatever its name or folder (torchvision's cache, the installed app's bundle, a path the user gives).
torch.hub checks a file only while it downloads it, and only against the 8 hex digits in its name; so
anything saved later under that name in the cache passed as ImageNet's own weights. Now:

- a file named as the release (or as any torch.hub download, `NAME-<hex>.pth`) whose content is not
  what its name says is refused, naming the file and what to do;
- any other file is what it is: callers say "ImageNet-layout weights from FILE, not torchvision's
  release" (describe_weights), and record `official: false` beside its SHA-256.

Hashing 45 MB takes a few tenths of a second, so each file is hashed once: its SHA-256 is remembered
for its (resolved path, size, modification time in ns, inode), in memory and in a small JSON file in the
app's cache folder (written whole or not at all; a damaged one is ignored). A changed file has another
size or time and is hashed again. The hash is remembered rather than a yes/no, so that the verdict
always follows RELEASE_SHA256 and the runs that record the weights' SHA-256 need no second reading.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torchvision

from resnet_app.core.data.decoded_cache import default_cache_dir
from resnet_app.core.files import write_text_atomic
from resnet_app.core.model.architectures import ModelError

IMAGENET_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
RELEASE_NAME = Path(urlparse(IMAGENET_WEIGHTS.url).path).name  # resnet18-f37072fd.pth
RELEASE_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
RELEASE_BYTES = 46_830_571
# torch.hub's naming of downloads: the file name ends in the first hex digits of its SHA-256.
HASHED_NAME = re.compile(r"-([a-f0-9]{6,64})\.pth?$")
HASHES_FILE = "weights-sha256.json"  # in the app's cache folder
HASHES_FORMAT = 1
MAX_REMEMBERED = 64  # files; the oldest entries go first
_HASH_CHUNK = 1 << 20

_lock = threading.Lock()
_in_memory: dict[str, tuple[int, int, int, str]] = {}  # resolved path -> (size, mtime_ns, inode, sha256)


@dataclass(frozen=True)
class WeightsIdentity:
    """What a weights file is: its SHA-256, and whether that is torchvision's release."""

    path: Path
    sha256: str
    official: bool

    def describe(self) -> str:
        return describe_weights(self.path.name, self.sha256, self.official)


def describe_weights(name: str, sha256: str, official: bool) -> str:
    """The one wording for weights everywhere they are named (the Train tab, run logs, Classify)."""
    if official:
        return f"torchvision's ImageNet release {name} (SHA-256 {sha256[:12]}…)"
    return f"ImageNet-layout weights from {name}, not torchvision's release (SHA-256 {sha256[:12]}…)"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identify_weights(path: str | Path) -> WeightsIdentity:
    """The file's SHA-256 (hashed once per file version) and whether it is torchvision's release.

    ModelError, naming the file and what to do, when its name claims content it lacks: the release's
    name on other bytes, or a torch.hub-style `-<hex>.pth` name whose hex its SHA-256 does not start with.
    """
    path = Path(path)
    sha256 = weights_sha256(path)
    official = sha256 == RELEASE_SHA256
    if not official and path.name == RELEASE_NAME:
        raise ModelError(
            f"{path}: this file has the name of torchvision's ImageNet ResNet18 release but not its content "
            f"(SHA-256 {sha256[:12]}…, the release's is {RELEASE_SHA256[:12]}…): a damaged, incomplete or "
            "replaced download. Delete it and download the weights again, or choose another copy.")
    named = HASHED_NAME.search(path.name)
    if not official and named and not sha256.startswith(named.group(1)):
        raise ModelError(
            f"{path}: the file is damaged or incomplete: its name says its SHA-256 starts with "
            f"{named.group(1)}, but it starts with {sha256[:len(named.group(1))]}. Delete it and download "
            "it again, or choose another copy.")
    return WeightsIdentity(path, sha256, official)


def weights_sha256(path: str | Path) -> str:
    """The SHA-256 of `path`, from memory or the cache folder's record when the file is unchanged."""
    path = Path(path)
    key, stat = _key(path)
    known = _in_memory.get(key) or _remembered_on_disk().get(key)
    if known is not None and known[:3] == stat:
        _in_memory[key] = known
        return known[3]
    sha256 = file_sha256(path)
    if _key(path)[1] == stat:  # not changed while it was read: safe to remember
        remember_sha256(path, sha256)
    return sha256


def remember_sha256(path: str | Path, sha256: str) -> None:
    """Record `sha256` as the content of `path` as it is now (a file just hashed, or just downloaded)."""
    key, stat = _key(Path(path))
    with _lock:
        _in_memory[key] = (*stat, sha256)
        known = _remembered_on_disk()
        known.pop(key, None)
        known[key] = (*stat, sha256)  # newest last
        kept = list(known.items())[-MAX_REMEMBERED:]
        files = {k: {"size": s, "mtime_ns": m, "inode": i, "sha256": h} for k, (s, m, i, h) in kept}
        try:
            write_text_atomic(_hashes_path(), json.dumps({"format": HASHES_FORMAT, "files": files}, indent=1) + "\n")
        except OSError:
            pass  # a read-only or full cache folder: the file is hashed again next time, nothing worse


def forget_in_memory() -> None:
    """Drop what this process remembers (the record in the cache folder stays): for tests."""
    _in_memory.clear()


def _key(path: Path) -> tuple[str, tuple[int, int, int]]:
    """(resolved path, (size, modification time in ns, inode)): a file replaced by a rename, as a
    download is, has another inode even within the clock's tick."""
    stat = path.stat()
    return str(path.resolve()), (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _hashes_path() -> Path:
    return default_cache_dir() / HASHES_FILE


def _remembered_on_disk() -> dict[str, tuple[int, int, str]]:
    """The cache folder's record; empty when it is missing or damaged (it is only a shortcut)."""
    try:
        data = json.loads(_hashes_path().read_text(encoding="utf-8"))
        files = data["files"] if data.get("format") == HASHES_FORMAT else {}
        return {str(k): (v["size"], v["mtime_ns"], v["inode"], v["sha256"]) for k, v in files.items()
                if all(isinstance(v.get(n), int) for n in ("size", "mtime_ns", "inode"))
                and isinstance(v.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", v["sha256"])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
