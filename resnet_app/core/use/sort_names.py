"""Class name -> folder name for a sort, one rule safe on Linux, Windows and macOS; two classes that
would share a folder there (`cat` and `cat.`, `a:b` and `a_b`, `Cat` and `cat`) are refused up front."""
from __future__ import annotations

import unicodedata

UNSURE_FOLDER = "_unsure"
UNREADABLE_FOLDER = "_unreadable"
# Windows refuses these as a name, with any extension ("con.txt" too), in any case.
RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in "123456789¹²³"),
                  *(f"LPT{n}" for n in "123456789¹²³")}
FORBIDDEN = set('/\\:*?"<>|')


class ClassFolderClash(ValueError):
    """Two classes of a model would share one folder on some system."""


def class_folder_name(label: str) -> str:
    """A class's folder in DEST. Separators and characters Windows forbids (and control characters)
    become "_"; leading and trailing spaces and trailing dots go (Windows drops them itself); a
    reserved Windows name (CON, nul.txt, COM1...) gets a "_" before it; an empty name is "_class", and
    one starting with "." (hidden, or "..") or naming a special folder gets "_class " before it. NFC,
    as macOS stores names."""
    name = unicodedata.normalize("NFC", label)
    name = "".join("_" if ch in FORBIDDEN or ord(ch) < 32 or ord(ch) == 127 else ch for ch in name)
    name = name.strip(" ").rstrip(". ")
    if not name:
        return "_class"
    if name.split(".")[0].rstrip(" ").upper() in RESERVED_NAMES:
        name = f"_{name}"
    if name in (UNSURE_FOLDER, UNREADABLE_FOLDER) or name.startswith("."):
        name = f"_class {name}"
    return name


def folder_key(folder: str) -> str:
    """Two folder names with the same key are one folder on macOS or Windows (case-insensitive)."""
    return unicodedata.normalize("NFC", folder).casefold()


def class_folders(class_names: list[str]) -> dict[str, str]:
    """class -> its folder; ClassFolderClash, naming them, when two classes would share one."""
    folders: dict[str, str] = {}
    by_key: dict[str, list[str]] = {}
    for label in class_names:
        folders[label] = class_folder_name(label)
        by_key.setdefault(folder_key(folders[label]), []).append(label)
    clashes = [labels for labels in by_key.values() if len(labels) > 1]
    if clashes:
        described = "; ".join(" and ".join(repr(label) for label in labels) + f" would share the folder "
                              f"{folders[labels[0]]!r}" for labels in clashes)
        raise ClassFolderClash(f"the model's classes {described} (on Windows or macOS at least), so the sort "
                               "would mix them; nothing was sorted. Rename the classes (retrain, or edit the "
                               "model's class names) so that each has a folder of its own")
    return folders
