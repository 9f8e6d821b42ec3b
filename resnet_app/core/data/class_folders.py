"""A data set's class folders as the Data set tab edits them: list classes and their images, and copy
images in without ever overwriting (core.files.place_file). Plain Python; run in a worker for big folders."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from resnet_app.core.data.images import is_image_file
from resnet_app.core.files import place_file


def _visible(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return [entry for entry in it if not entry.name.startswith(".")]  # .DS_Store, .git: as the scan
    except OSError:
        return []


def class_images(folder: str | os.PathLike[str]) -> list[str]:
    """The images of one class folder (in its sub-folders too), as paths relative to it, in name order."""
    root = Path(folder)
    found: list[str] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        for entry in _visible(directory):
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif is_image_file(entry.name) and entry.is_file():
                found.append(os.path.relpath(entry.path, root))
    return sorted(found, key=str.casefold)


def list_classes(root: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """(class folder name, number of images) for each visible sub-folder of a data set, in name order."""
    folders = [entry.name for entry in _visible(Path(root)) if entry.is_dir(follow_symlinks=False)]
    return [(name, len(class_images(Path(root) / name))) for name in sorted(folders, key=str.casefold)]


def image_sources(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """Images among dropped or chosen paths (a folder gives the images inside it, at any depth), and the
    files that are not images (skipped, to be named to the user)."""
    images: list[Path] = []
    skipped: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            images += [path / relative for relative in class_images(path)]
        elif is_image_file(path) and path.is_file():
            images.append(path)
        else:
            skipped.append(path)
    return images, skipped


@dataclass
class CopyResult:
    placed: list[Path] = field(default_factory=list)  # where each copy went (a taken name: name-2.ext)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # source, why


def copy_images(sources: Iterable[Path], class_dir: str | os.PathLike[str],
                should_stop: Callable[[], bool] = lambda: False) -> CopyResult:
    """Copy each image into the class folder; never moves a source, never overwrites a file."""
    result = CopyResult()
    target_dir = Path(class_dir)
    for source in sources:
        if should_stop():
            break
        try:
            result.placed.append(place_file(target_dir / source.name, source=source, move=False, rename=True))
        except OSError as err:
            result.failed.append((source, err.strerror or str(err)))
    return result
