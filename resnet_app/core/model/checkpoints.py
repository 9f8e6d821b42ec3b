"""Atomic, safe persistence: training checkpoints (last.pt) and shareable model files (.safetensors).

Writes go through files.atomic_write, so a process killed at any moment leaves either the old file or
the new one, never a torn one. Reads never execute code: checkpoints go through torch.load(weights_only=True) with no
fallback, and model files are safetensors (tensors plus string metadata, no pickle at all).
"""
from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from resnet_app.core.files import atomic_write, copy_file_atomic
from resnet_app.core.model.architectures import ARCHITECTURES, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

CHECKPOINT_FORMAT = "resnet-app-checkpoint"
MODEL_FORMAT = "resnet-app-model"
FORMAT_VERSION = 1
MODEL_FILE_SUFFIXES = (".safetensors", ".pt", ".pth")
CALIBRATION_KEY = "calibration"  # the model file's metadata key for its temperature and unsure threshold
# The temperature is searched within these bounds: past them the fit follows noise (a handful of
# validation images), and 1/20 or 20x the logits is already extreme. A model file's must be inside.
TEMPERATURE_RANGE = (0.05, 20.0)


class CheckpointError(ValueError):
    """A checkpoint or model file can't be loaded; the message names the file and the reason."""


# --- training checkpoints (last.pt) ----------------------------------------------------------------

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save a training checkpoint atomically. `state` must hold only plain data (tensors, numbers,
    strings, lists, dicts) so that it loads back under weights_only=True."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint, refusing anything that would need code to load."""
    path = Path(path)
    payload = _torch_load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ResNet App checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer ResNet App (format {payload['format_version']}, "
            f"this one reads {FORMAT_VERSION})"
        )
    return payload


def _torch_load_weights_only(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals it doesn't know: exactly what a malicious pickle needs.
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than plain weights, "
            "and loading it could run code. Only open files from people you trust, as model files "
            "(.safetensors)."
        ) from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc


# --- model files (model.safetensors) ---------------------------------------------------------------

@dataclass
class ModelFile:
    """A trained model as shared: weights plus what is needed to use them."""

    state_dict: dict[str, torch.Tensor]
    arch: str
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # versions, training config, dataset, dates

    def metadata(self) -> dict[str, str]:
        """safetensors metadata is str -> str; every value is JSON so types survive the round trip."""
        fields = {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "metrics": self.metrics,
            **shareable_extra(self.extra),
        }
        return {key: json.dumps(value) for key, value in fields.items()}


REQUIRED_MODEL_KEYS = ("arch", "class_names", "image_size", "mean", "std")
_FIXED_KEYS = (*REQUIRED_MODEL_KEYS, "metrics", "format", "format_version")


# --- what a model file may say about the computer it was made on (issue 24) -------------------------
# A model file is made to be shared, and what it is trained on is often photos of people: it names no
# folder of the computer it was made on. The data folder is named by its own name only, the weights a
# run started from and a validation folder by their file or folder names; run.json and last.pt, which
# stay with the run, keep the full paths that Resume and the Runs list need.

_PATH_SETTINGS = ("val_dir", "pretrained")  # the training settings (config) that hold a path
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|[\\/]{2})")


def path_name(value: str) -> str:
    """The last part of a path written on any system ("C:\\x\\flowers" and "/home/a/flowers": "flowers")."""
    return PureWindowsPath(value).name or PurePosixPath(value).name or value


def _looks_absolute(value: str) -> bool:
    return value.startswith(("/", "~")) or bool(_WINDOWS_ABSOLUTE.match(value))


def _without_paths(value: Any) -> Any:
    """`value` with every absolute path in it (at any depth) replaced by its last part."""
    if isinstance(value, str):
        return path_name(value) if _looks_absolute(value) else value
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    return value


def shareable_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A model file's extra metadata as it is written: no path of the computer it was made on.

    "dataset" keeps the data folder's name and the image counts, not its path ("root") nor the
    fingerprint of its files' paths ("train_files": resuming compares it, through last.pt). The
    settings' paths (validation folder, pretrained weights) become names ("imagenet" stays as it is);
    any other absolute path, at any depth, becomes its last part. Older files, which kept the full
    paths, still load as they were: this applies to what is written.
    """
    extra = dict(extra)
    dataset = extra.get("dataset")
    if isinstance(dataset, dict):
        root = dataset.get("root")
        named = {"name": path_name(root)} if isinstance(root, str) and root else {}
        extra["dataset"] = {**named, **{k: v for k, v in dataset.items() if k not in ("root", "train_files")}}
    config = extra.get("config")
    if isinstance(config, dict):
        extra["config"] = {k: path_name(v) if k in _PATH_SETTINGS and isinstance(v, str) else v
                           for k, v in config.items()}
    return _without_paths(extra)


def dataset_name(extra: dict[str, Any]) -> str | None:
    """The name of the folder a model was trained on, from its metadata, new ("name") or old ("root")."""
    dataset = extra.get("dataset")
    if not isinstance(dataset, dict):
        return None
    name = dataset.get("name") or (path_name(dataset["root"]) if isinstance(dataset.get("root"), str) else None)
    return name if isinstance(name, str) and name else None


def save_model_file(path: str | Path, model_file: ModelFile) -> Path:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_file.state_dict.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=model_file.metadata())
    return Path(path)


def load_model_file(path: str | Path) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        state_dict = load_file(str(path), device="cpu")
        raw = _read_safetensors_metadata(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid .safetensors model file ({exc})") from exc
    meta = _decode_metadata(path, raw)
    check_model_description(path, meta["arch"], meta["class_names"], meta["image_size"], meta["mean"], meta["std"])
    extra = {k: v for k, v in meta.items() if k not in _FIXED_KEYS}
    return ModelFile(
        state_dict=state_dict,
        arch=meta["arch"],
        class_names=list(meta["class_names"]),
        image_size=int(meta["image_size"]),
        mean=[float(v) for v in meta["mean"]],
        std=[float(v) for v in meta["std"]],
        metrics=meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {},
        extra=extra,
    )


def copy_model_file(source: str | Path, target: str | Path) -> Path:
    """A copy of a model file under another name ("Save model as"), as shareable as a new file: a file
    from an older version, whose metadata holds folder paths, is written anew without them (the
    weights and everything else unchanged); any other is copied byte for byte."""
    source = Path(source)
    try:
        raw = _read_safetensors_metadata(source)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: not a valid .safetensors model file ({exc})") from exc
    meta = _decode_metadata(source, raw)
    extra = {k: v for k, v in meta.items() if k not in _FIXED_KEYS}
    if shareable_extra(extra) == extra:
        return copy_file_atomic(source, target)
    return save_model_file(target, load_model_file(source))


def check_model_description(source: str | Path, arch: Any, class_names: Any, image_size: Any, mean: Any,
                            std: Any) -> None:
    """Refuse, naming the field, a model description that can't be used safely: a file may have been
    edited by hand or by someone hostile (an image size of 100000 would take the machine's memory)."""

    def refuse(what: str, value: Any, expected: str) -> CheckpointError:
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        return CheckpointError(f"{source}: the model's {what} is {shown}; expected {expected}")

    if arch not in ARCHITECTURES:
        raise refuse("architecture", arch, f"one of {', '.join(ARCHITECTURES)}")
    if (not isinstance(class_names, list) or not class_names
            or not all(isinstance(n, str) and n for n in class_names)):
        raise refuse("class names", class_names, "a list of names")
    if len(set(class_names)) != len(class_names):
        raise refuse("class names", class_names, "names that are all different")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not (
            MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
        raise refuse("image size", image_size, f"a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
    for what, values, positive in (("mean", mean, False), ("std", std, True)):
        if not (isinstance(values, list) and len(values) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        and (v > 0 or not positive) for v in values)):
            raise refuse(what, values, f"three {'positive ' if positive else ''}numbers, one per colour channel")


# --- calibration (use/calibration.py fits it; the Classifier applies it) ---------------------------

def stored_calibration(source: str | Path, extra: dict[str, Any]) -> tuple[float, float]:
    """(temperature, unsure threshold) stored in a model file's metadata; (1.0, 0.0) if none.

    A file may have been edited by hand or by someone hostile: values that can't be used are refused,
    naming the field, as check_model_description does for the others.
    """
    stored = extra.get(CALIBRATION_KEY)
    if stored is None:
        return 1.0, 0.0
    if not isinstance(stored, dict):
        raise CheckpointError(f"{source}: the model's calibration is {stored!r:.60}; expected a table of numbers")
    temperature = stored.get("temperature", 1.0)
    threshold = stored.get("unsure_below", 0.0)
    if not _is_number(temperature) or not (TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]):
        raise CheckpointError(f"{source}: the model's calibration temperature is {temperature!r:.60}; expected a "
                              f"number from {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}")
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise CheckpointError(f"{source}: the model's unsure threshold is {threshold!r:.60}; expected a number "
                              "from 0 to 1")
    return float(temperature), float(threshold)


def calibration_note(extra: dict[str, Any]) -> str | None:
    """Why the model carries no calibration, as training wrote it ("only 12 validation images..."); None
    when it is calibrated or nothing was said."""
    stored = extra.get(CALIBRATION_KEY)
    note = stored.get("not_fitted") if isinstance(stored, dict) else None
    return note[:300] if isinstance(note, str) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def _decode_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    try:
        meta = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: model metadata is not valid JSON ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(
            f"{path}: a .safetensors file without ResNet App metadata (arch, class names); "
            "it was not saved by ResNet App"
        )
    missing = [key for key in REQUIRED_MODEL_KEYS if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: model metadata lacks {', '.join(missing)}")
    return meta


def describe_model_file(path: str | Path) -> str:
    """'flowers · 5 classes · 91.2 % · 28 Nov 2026' for a model file, from its metadata alone (no weights
    are read); a file that isn't one of ours is named by its folder and name."""
    path = Path(path)
    fallback = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    if path.suffix.lower() != ".safetensors":
        return fallback
    try:
        meta = _decode_metadata(path, _read_safetensors_metadata(path))
    except (CheckpointError, SafetensorError, OSError, ValueError):
        return fallback
    parts = [dataset_name(meta) or path.parent.name or fallback]
    if isinstance(meta.get("class_names"), list):
        parts.append(f"{len(meta['class_names'])} classes")
    accuracy = (meta.get("metrics") or {}).get("val_accuracy") if isinstance(meta.get("metrics"), dict) else None
    if isinstance(accuracy, (int, float)):
        parts.append(f"{accuracy:.1%}")
    if isinstance(meta.get("created"), str):
        parts.append(meta["created"][:10])
    if path.name != "model.safetensors":  # a name the user gave it says most
        parts.insert(0, path.stem)
    return " · ".join(parts)
