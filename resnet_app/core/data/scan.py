"""Find and check a folder-of-folders image dataset: the samples, what was left out and why, and a report.

Layout: ``root/<class name>/**/<image>``. One sub-folder per class; images may sit
at any depth inside their class folder. Everything the scan leaves out is reported
with a reason, so the user can see why an image was not used.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_app.core.data.images import is_image_file, not_an_image_reason
from resnet_app.core.data.near_duplicates import (
    NearDuplicateGroups,
    check_and_hash_image,
    find_groups,
    summarise_groups,
)
from resnet_app.core.data.splits import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    grouped_split,
    lopsided_warning,
    split_layout,
)

ProgressCallback = Callable[[int, int], None]

IMBALANCE_RATIO_LIMIT = 3.0   # largest / smallest class above this -> warning
TINY_CLASS_LIMIT = 10         # fewer images than this in a class -> warning
SUMMARY_MAX_SKIPPED = 20      # keep the CLI summary readable for messy folders
SUMMARY_GROUP_PATHS = 5       # paths shown of each group of copies or near-duplicates
_HASH_CHUNK = 1 << 20


class DatasetError(ValueError):
    """The dataset cannot be used; the message is meant for the user as-is."""


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class DatasetReport:
    root: Path
    classes: list[str] = field(default_factory=list)
    samples: list[tuple[Path, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)  # byte-identical, in different classes
    # byte-identical, in one class: harmless to train on, but they must not straddle the split
    copies: list[list[Path]] = field(default_factory=list)
    # groups of near-duplicates (not just byte-identical copies), in counts and a bounded sample (checked
    # scans only): the default split keeps each whole
    near_duplicates: NearDuplicateGroups = field(default_factory=NearDuplicateGroups)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_unusable(self) -> None:
        if self.errors:
            raise DatasetError("\n".join(self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "classes": list(self.classes),
            "counts": dict(self.counts),
            "num_samples": len(self.samples),
            "samples": [[str(path), label] for path, label in self.samples],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            "duplicates": [[str(p) for p in group] for group in self.duplicates],
            "copies_within_classes": [[str(p) for p in group] for group in self.copies],
            "near_duplicate_groups": self.near_duplicates.to_dict(self.classes),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }

    def summary_lines(self) -> list[str]:
        lines = [f"Dataset: {self.root}"]
        if self.classes:
            lines.append(f"{len(self.classes)} classes, {len(self.samples)} images:")
            width = max(len(name) for name in self.classes)
            lines += [f"  {name:<{width}}  {self.counts.get(name, 0)}" for name in self.classes]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)}:")
            for item in self.skipped[:SUMMARY_MAX_SKIPPED]:
                lines.append(f"  {self._display(item.path)}: {item.reason}")
            if len(self.skipped) > SUMMARY_MAX_SKIPPED:
                lines.append(f"  ... and {len(self.skipped) - SUMMARY_MAX_SKIPPED} more")
        if self.duplicates:
            lines.append("Identical images in different classes:")
            for group in self.duplicates:
                lines.append("  " + "  =  ".join(self._display(p) for p in group))
        near = self.near_duplicates
        if near.groups:
            lines.append(f"Near-duplicates (the same picture resized, re-saved or retouched, or frames of one clip): "
                         f"{near.groups} group{'s' if near.groups != 1 else ''} of {near.images} images, the largest "
                         f"{near.largest}; the default split keeps each group on one side")
            for group in near.sample:
                classes = ", ".join(f"{self.classes[label]} {count}"
                                    for label, count in sorted(group.class_counts.items()))
                lines.append(f"  {group.size} images ({classes}): {self._listing(group.paths, group.size, '  ~  ')}")
            if near.groups > len(near.sample):
                lines.append(f"  ... and {near.groups - len(near.sample)} more groups")
        if self.copies:
            lines.append("Identical copies within a class (kept on one side of the validation split):")
            for group in self.copies[:SUMMARY_MAX_SKIPPED]:
                lines.append("  " + self._listing(group, len(group), "  =  "))
            if len(self.copies) > SUMMARY_MAX_SKIPPED:
                lines.append(f"  ... and {len(self.copies) - SUMMARY_MAX_SKIPPED} more groups")
        lines += [f"Warning: {w}" for w in self.warnings]
        lines += [f"Error: {e}" for e in self.errors]
        lines.append("Ready to train." if self.ok else "Not usable until the errors above are fixed.")
        return lines

    def _listing(self, paths: list[Path], size: int, joint: str) -> str:
        """The first few of a group's paths (a group may hold thousands)."""
        shown = joint.join(self._display(p) for p in paths[:SUMMARY_GROUP_PATHS])
        return shown + (f"{joint}... {size - SUMMARY_GROUP_PATHS} more" if size > SUMMARY_GROUP_PATHS else "")

    def _display(self, path: Path) -> str:
        """Paths relative to the root are much shorter to read in a terminal."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# --------------------------------------------------------------------------- scan


def scan_dataset(
    root: str | os.PathLike[str],
    *,
    check_images: bool = True,
    class_names: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetReport:
    """Scan ``root`` (one sub-folder per class) and report what can be trained on.

    Problems are collected in the report rather than raised, so a UI can show all of
    them at once; call ``report.raise_if_unusable()`` to refuse an unusable dataset.

    ``class_names`` fixes the class list and order (use the training classes when
    scanning a separate validation folder): a missing class folder is a warning, a
    folder that is not one of the classes is an error.

    ``progress(done, total)`` is called from the calling thread while images are
    checked; raising from it aborts the scan (the way to cancel).
    """
    if class_names is not None and len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names has duplicates: {class_names}")
    root = Path(os.path.abspath(os.path.expanduser(root)))
    report = DatasetReport(root=root)
    if not root.exists():
        report.errors.append(f"Dataset folder not found: {root}")
        return report
    if not root.is_dir():
        report.errors.append(f"Not a folder: {root}. Choose the folder that holds one sub-folder per class.")
        return report

    folders = _find_class_folders(root, report.skipped)
    report.classes = _choose_classes(root, folders, class_names, report)
    labels = {name: index for index, name in enumerate(report.classes)}

    # Class folders (and the root) count as already visited, so a link from one
    # class into another class, or back up to the root, is reported, not rescanned.
    ancestors = {_identity(root)}
    claimed_dirs = {_identity(folders[name]) for name in folders} | ancestors
    candidates: list[tuple[Path, int, int]] = []  # (path, label, size)
    for name in report.classes:
        if name in folders:
            for path, size in _walk_class_folder(folders[name], ancestors, claimed_dirs, report.skipped):
                candidates.append((path, labels[name], size))

    hashes: dict[Path, Any] = {}
    usable = _check_candidates(candidates, report.skipped, progress, hashes) if check_images else candidates
    if not check_images and progress is not None:
        progress(len(candidates), len(candidates))

    report.samples = sorted(((path, label) for path, label, _ in usable), key=lambda s: (s[1], str(s[0])))
    report.counts = {name: 0 for name in report.classes}
    for _, label in report.samples:
        report.counts[report.classes[label]] += 1
    report.duplicates, report.copies = _find_duplicates(usable)
    if check_images:  # doctor and the app's check; training's own scan skips it
        lopsided = _add_near_duplicate_groups(report, hashes)
    _add_class_errors(report, folders, class_names is not None)
    _add_warnings(report)
    if check_images:
        report.warnings += lopsided
    layout = split_layout(root) if class_names is None else None
    if layout is not None:
        report.warnings.insert(0, f"This folder holds a training folder ({layout[0].name}) and a validation "
                                  f"folder ({layout[1].name}), not classes: training uses {layout[0].name} "
                                  f"for training and {layout[1].name} for validation.")
    return report


def _identity(path: Path | str) -> tuple[int, int]:
    """(device, inode) of the target: equal for every link to the same file/folder."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _entry_kind(entry: os.DirEntry[str]) -> str:
    """'dir', 'file', 'broken link', 'link loop' or 'other'. Follows symlinks."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "link loop"
        return "other"
    if entry.is_symlink():
        # is_dir/is_file are False for links whose target is gone or that loop.
        try:
            os.stat(entry.path)
        except OSError as err:
            return "link loop" if err.errno == errno.ELOOP else "broken link"
    return "other"


_KIND_REASONS = {
    "broken link": "broken symlink (target missing)",
    "link loop": "symlink loop",
    "other": "not a regular file",
}


def _visible_entries(directory: Path, skipped: list[SkippedFile]) -> Iterable[tuple[Path, str]]:
    """(path, kind) of the folder's entries in name order; hidden ones (.DS_Store, ._*, .git) and an
    unreadable folder are recorded as skipped instead."""
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        skipped.append(SkippedFile(directory, f"unreadable folder: {err.strerror or err}"))
        return
    for entry in entries:
        kind = _entry_kind(entry)
        if entry.name.startswith("."):
            skipped.append(SkippedFile(Path(entry.path), "hidden folder" if kind == "dir" else "hidden file"))
        else:
            yield Path(entry.path), kind


def _find_class_folders(root: Path, skipped: list[SkippedFile]) -> dict[str, Path]:
    """Sub-folders of root by name; everything else at the top level is skipped."""
    folders: dict[str, Path] = {}
    seen: dict[tuple[int, int], str] = {_identity(root): "."}
    for path, kind in _visible_entries(root, skipped):
        if kind == "file":
            skipped.append(SkippedFile(path, "not inside a class folder"))
        elif kind != "dir":
            skipped.append(SkippedFile(path, _KIND_REASONS[kind]))
        else:
            ident = _identity(path)
            if ident in seen:
                other = seen[ident]
                reason = "symlink loop" if other == "." else f"same folder as class '{other}' (symlink)"
                skipped.append(SkippedFile(path, reason))
            else:
                seen[ident] = path.name
                folders[path.name] = path
    return folders


def _choose_classes(
    root: Path, folders: dict[str, Path], class_names: list[str] | None, report: DatasetReport
) -> list[str]:
    if class_names is None:
        return sorted(folders)
    for name in class_names:
        if name not in folders:
            report.warnings.append(f"Class '{name}' has no folder in {root}.")
    expected = ", ".join(class_names)
    for name in sorted(set(folders) - set(class_names)):
        report.errors.append(
            f"Folder '{name}' in {root} is not one of the training classes ({expected}). "
            "Rename or remove it."
        )
    return list(class_names)


def _walk_class_folder(
    class_dir: Path,
    ancestors: set[tuple[int, int]],
    claimed_dirs: set[tuple[int, int]],
    skipped: list[SkippedFile],
) -> Iterable[tuple[Path, int]]:
    """Yield (image path, size) found under class_dir, at any depth.

    Symlinks are followed, but every folder is entered at most once (by identity),
    which is what keeps a link to an ancestor from recursing forever. An explicit
    stack avoids Python's recursion limit on very deep trees.
    """
    seen_files: dict[tuple[int, int], Path] = {}
    # Each stack item carries the identities of the folders enclosing it, to tell a
    # loop (link to an enclosing folder) from a second link to a folder seen elsewhere.
    stack = [(class_dir, frozenset(ancestors | {_identity(class_dir)}))]
    while stack:
        directory, enclosing = stack.pop()
        subdirs = []
        for path, kind in _visible_entries(directory, skipped):
            if kind == "dir":
                ident = _identity(path)
                if ident in enclosing:
                    skipped.append(SkippedFile(path, "symlink loop (links to a folder that contains it)"))
                elif ident in claimed_dirs:
                    skipped.append(SkippedFile(path, "links to a folder that is already scanned"))
                else:
                    claimed_dirs.add(ident)
                    subdirs.append((path, enclosing | {ident}))
            elif kind != "file":
                skipped.append(SkippedFile(path, _KIND_REASONS[kind]))
            elif not is_image_file(path):
                skipped.append(SkippedFile(path, not_an_image_reason(path)))
            else:
                try:
                    st = os.stat(path)
                except OSError as err:  # vanished or lost permission since the listing
                    skipped.append(SkippedFile(path, f"unreadable: {err.strerror or err}"))
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in seen_files:
                    # A link to a file already in this class would count it twice.
                    skipped.append(SkippedFile(path, f"same file as {seen_files[ident]} (link)"))
                else:
                    seen_files[ident] = path
                    yield path, st.st_size
        stack.extend(reversed(subdirs))  # reversed so folders are walked in name order


CHECK_WINDOW = 256  # files handed to the checking threads at a time


def _check_candidates(
    candidates: list[tuple[Path, int, int]],
    skipped: list[SkippedFile],
    progress: ProgressCallback | None,
    hashes: dict[Path, Any],
) -> list[tuple[Path, int, int]]:
    """Decode-check every candidate; keep those that load, skip the rest with the reason. The same
    decode gives each image's near-duplicate hash (into `hashes`, by path).

    Checking is the slow part of a scan (disk + decode). Pillow releases the GIL while
    decoding, so a few threads give a real speed-up, also on network drives.
    """
    total = len(candidates)
    if progress is not None:
        progress(0, total)
    if not candidates:
        return []
    reasons: list[str | None] = [None] * total
    workers = max(2, min(8, os.cpu_count() or 1))
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan-check")
    done = 0
    try:
        # A window of files at a time, not a future per file for the whole set: the queue stays small
        # (memory), and a thread of the app that waits for the GIL doesn't wait behind 100,000 submits.
        for start in range(0, total, CHECK_WINDOW):
            window = candidates[start:start + CHECK_WINDOW]
            for index, result in enumerate(executor.map(check_and_hash_image, [path for path, _, _ in window]),
                                           start=start):
                reasons[index], hashes[candidates[index][0]] = result
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        # If progress raised (cancel), don't make the caller wait for the whole queue.
        executor.shutdown(wait=True, cancel_futures=True)
    usable = []
    for candidate, reason in zip(candidates, reasons, strict=True):
        if reason is None:
            usable.append(candidate)
        else:
            skipped.append(SkippedFile(candidate[0], f"unreadable: {reason}"))
    return usable


def _find_duplicates(usable: list[tuple[Path, int, int]]) -> tuple[list[list[Path]], list[list[Path]]]:
    """(groups of byte-identical files in different classes, groups of copies within one class).

    Only files whose size occurs more than once are hashed, which is usually very few, so this stays
    cheap on big folders.
    """
    by_size: dict[int, list[tuple[Path, int]]] = defaultdict(list)
    for path, label, size in usable:
        by_size[size].append((path, label))
    across, within = [], []
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        by_hash: dict[str, list[tuple[Path, int]]] = defaultdict(list)
        for path, label in same_size:
            digest = _sha1_of(path)
            if digest is not None:
                by_hash[digest].append((path, label))
        for same_content in by_hash.values():
            labels = {label for _, label in same_content}
            if len(labels) >= 2:
                across.append(sorted(path for path, _ in same_content))
            elif len(same_content) >= 2:
                within.append(sorted(path for path, _ in same_content))
    return sorted(across), sorted(within)


def _add_near_duplicate_groups(report: DatasetReport, hashes: dict[Path, Any]) -> list[str]:
    """The near-duplicate groups (from the hashes the decode check computed), less those that are only a
    set of byte-identical copies (listed already), and the classes that the default split can't validate
    honestly because most of their images are one group."""
    groups = find_groups([hashes.get(path) for path, _ in report.samples]) or []
    copy_set = {path: number for number, group in enumerate(report.duplicates + report.copies) for path in group}
    near = [group for group in groups
            if len({copy_set.get(report.samples[i][0], -1 - i) for i in group}) > 1]
    report.near_duplicates = summarise_groups(near, report.samples)
    paths = [[report.samples[i][0] for i in group] for group in near]
    split = grouped_split(report.samples, DEFAULT_VAL_FRACTION, DEFAULT_SEED, report.copies + paths)[2]
    return [lopsided_warning(report.classes[label], largest, size) for label, largest, size in split.lopsided]


def _sha1_of(path: Path) -> str | None:
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return None  # vanished or unreadable since the walk: not worth failing the scan
    return digest.hexdigest()


def _add_class_errors(report: DatasetReport, folders: dict[str, Path], forced: bool) -> None:
    root = report.root
    if not report.classes:
        report.errors.append(
            f"No class folders in {root}. Put each class's images in its own sub-folder, "
            f"e.g. {root / 'cats'} and {root / 'dogs'}."
        )
        return
    if len(report.classes) == 1:
        report.errors.append(
            f"Only one class ('{report.classes[0]}') in {root}: training needs at least two "
            "class folders."
        )
    for name in report.classes:
        # A missing folder with forced classes was already a warning.
        if name in folders and report.counts[name] == 0:
            report.errors.append(f"Class '{name}' has no usable images (folder {folders[name]}).")
    if forced and not report.samples and not any(name in folders for name in report.classes):
        report.errors.append(f"None of the classes ({', '.join(report.classes)}) has a folder in {root}.")


def _add_warnings(report: DatasetReport) -> None:
    nonempty = {name: n for name, n in report.counts.items() if n > 0}
    if len(nonempty) >= 2:
        largest = max(nonempty, key=nonempty.__getitem__)
        smallest = min(nonempty, key=nonempty.__getitem__)
        ratio = nonempty[largest] / nonempty[smallest]
        if ratio > IMBALANCE_RATIO_LIMIT:
            report.warnings.append(
                f"Classes are imbalanced: '{largest}' has {nonempty[largest]} images, "
                f"'{smallest}' only {nonempty[smallest]} ({ratio:.1f}x)."
            )
    for name, n in nonempty.items():
        if n < TINY_CLASS_LIMIT:
            report.warnings.append(
                f"Class '{name}' has only {n} image{'s' if n != 1 else ''}; "
                f"at least {TINY_CLASS_LIMIT} are recommended."
            )
    unreadable = sum(1 for s in report.skipped if s.reason.startswith("unreadable:"))
    if unreadable:
        report.warnings.append(f"{unreadable} image file(s) could not be read and were left out.")
    if report.duplicates:
        report.warnings.append(
            f"{len(report.duplicates)} image(s) appear, byte-identical, in more than one class."
        )
    across = report.near_duplicates.across_classes
    if across:
        report.warnings.append(f"{across} group(s) of near-duplicate images are filed under different classes: "
                               "some of their images are probably mislabelled.")
    if report.copies:
        copies = sum(len(group) - 1 for group in report.copies)
        report.warnings.append(
            f"{copies} image(s) are byte-identical copies of another in the same class; they are kept on "
            "one side of the training/validation split, so validation never tests on a copy of a "
            "training image."
        )
