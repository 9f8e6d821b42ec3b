"""A model exported to ONNX by ResNet App (export.py): reading it for prediction through onnxruntime.

`Classifier.from_file("model.onnx")` returns an OnnxClassifier (classifier.py), made from what this
module reads, with the same `predict_paths`, class names and description as any Classifier, so
`resnet-app predict model.onnx ...` (and eval, and the app) check an export on new images with the
commands they already know. The images are read and resized by the app's
own code (the loader, then torchvision's resize and crop, stopped before the float conversion); the
graph does the rest: /255, normalisation, the network, the temperature and the softmax.

Everything the graph needs to be used is in its metadata_props, one JSON value per key, as in the
.safetensors model files: a file without them (an ONNX model from elsewhere) is refused, because its class
names and preprocessing are unknown. onnxruntime is an optional dependency (`resnet-app[export]`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from resnet_app.core.data.transforms import eval_transform
from resnet_app.core.model.checkpoints import CheckpointError, check_model_description
from resnet_app.core.model.devices import DeviceError

EXPORT_FORMAT = "resnet-app-export"
EXPORT_FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
INSTALL_HINT = 'pip install "resnet-app[export]"'


def decode_metadata(source: str | Path, raw: dict[str, str]) -> dict[str, Any]:
    """The export's metadata from its string map (ONNX metadata_props); refuses foreign or damaged files."""
    if "format" not in raw:
        raise CheckpointError(f"{source}: an ONNX file without ResNet App metadata (class names, image size, "
                              "preprocessing); only files written by `resnet-app export` can be used here")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value  # a key some other tool added: kept as text, never needed
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{source}: not a ResNet App export (format {meta.get('format')!r})")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > EXPORT_FORMAT_VERSION:
        raise CheckpointError(f"{source}: written by a newer ResNet App (export format "
                              f"{meta.get('format_version')!r}, this one reads {EXPORT_FORMAT_VERSION})")
    check_model_description(source, meta.get("arch"), meta.get("class_names"), meta.get("image_size"),
                            meta.get("mean"), meta.get("std"))
    return meta


def uint8_eval_transform(image_size: int) -> v2.Compose:
    """The app's evaluation transform up to the uint8 tensor: resize (and crop), then PILToTensor.

    Taken from eval_transform itself, so that it can't drift from what Classifier feeds its network;
    the float conversion and the normalisation that it leaves out are inside the exported graph.
    """
    steps = list(eval_transform(image_size, [0.0] * 3, [1.0] * 3).transforms)
    if not (isinstance(steps[-1], v2.Normalize) and isinstance(steps[-2], v2.ToDtype)
            and isinstance(steps[-3], v2.PILToTensor)):
        raise RuntimeError("transforms.eval_transform changed: update onnx_model.uint8_eval_transform")
    return v2.Compose(steps[:-2])


def _onnxruntime(source: str | Path):
    try:
        import onnxruntime
    except ImportError as exc:
        raise CheckpointError(f"{source}: using ONNX files needs onnxruntime, which is not installed: "
                              f"{INSTALL_HINT}") from exc
    return onnxruntime


def _providers(ort, device: str) -> tuple[list[str], torch.device]:
    """ONNX Runtime's own choice of hardware: CUDA when its GPU build is installed and asked for (or
    'auto'), else the CPU. Apple's MPS has no ONNX Runtime provider here."""
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device.startswith("cuda"):
        if not has_cuda:
            raise DeviceError("this ONNX Runtime has no CUDA support (install onnxruntime-gpu for it); "
                              "use --device cpu or auto")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], torch.device("cuda")
    if device != "cpu":
        raise DeviceError(f"ONNX models run on the CPU or with CUDA, not on {device!r}; use --device cpu or auto")
    return ["CPUExecutionProvider"], torch.device("cpu")


def open_session(path: str | Path, providers: list[str] | None = None):
    """An onnxruntime InferenceSession for `path`, with errors that name the file."""
    ort = _onnxruntime(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types, one per failure
        raise CheckpointError(f"{path}: not a readable ONNX model ({str(exc).strip()[:300]})") from exc


def metadata_number(source: str, metadata: dict[str, Any], key: str, default: float) -> float:
    """A number the export's metadata holds (its temperature, its unsure threshold), refused if it is not one."""
    value = metadata.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise CheckpointError(f"{source}: the model's {key} is {value!r:.60}; expected a number")
    return float(value)


def open_export(path: str | Path, device: str = "auto") -> tuple[Any, dict[str, Any], torch.device]:
    """(onnxruntime session, checked metadata, the device it runs on) for an export written by ResNet App."""
    path = Path(path)
    providers, torch_device = _providers(_onnxruntime(path), device)
    session = open_session(path, providers)
    metadata = decode_metadata(path, dict(session.get_modelmeta().custom_metadata_map))
    return session, metadata, torch_device
