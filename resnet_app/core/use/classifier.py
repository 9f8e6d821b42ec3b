"""Classification: a Classifier made from a model file, a checkpoint or ImageNet weights gives the
top-k labels for image paths, batched, with the validation preprocessing stored in the model file.

A file that can't be read gets an error on its own Prediction and the others go on.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from resnet_app.core.data.images import ImageLoadError, is_image_file, load_image, not_an_image_reason
from resnet_app.core.data.scan import SkippedFile
from resnet_app.core.data.transforms import decode_size_hint, eval_transform
from resnet_app.core.files import atomic_write
from resnet_app.core.model import architectures
from resnet_app.core.model.checkpoints import (
    CheckpointError,
    calibration_note,
    check_model_description,
    load_checkpoint,
    load_model_file,
    stored_calibration,
)
from resnet_app.core.model.devices import describe_device, resolve_device
from resnet_app.core.model.pretrained import apply_pretrained, load_pretrained
from resnet_app.core.use.onnx_model import metadata_number, open_export, uint8_eval_transform


@dataclass
class Prediction:
    path: Path
    top_k: list[tuple[str, float]] = field(default_factory=list)  # (label, probability), most likely first
    error: str | None = None
    # The top probability is under the classifier's threshold (Classifier.unsure_below): shown as "unsure".
    unsure: bool = False
    # The top probability before the model's temperature (calibration.py): eval's calibration error "before".
    uncalibrated_confidence: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "top_k": [{"label": label, "probability": round(prob, 6)} for label, prob in self.top_k],
            "error": self.error,
            "unsure": self.unsure,
        }


def write_predictions_csv(path: str | Path, predictions: Sequence[Prediction], top_k: int) -> int:
    """Write `path,error,label_1,probability_1,...,unsure` rows, atomically; returns the number of rows.

    The one CSV format of the CLI's `predict --csv` and the app's Export CSV. `unsure` is last, so the
    columns before it stay where they were; it is "yes" or "no" ("" for a file that could not be read).
    """
    header = (["path", "error"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "probability")]
              + ["unsure"])
    # surrogateescape: a file name that is not valid UTF-8 (as unzipped from an old Windows archive) is
    # written byte for byte, so the CSV's path finds the file.
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in predictions:
            cells = [value for label, prob in p.top_k[:top_k] for value in (label, f"{prob:.6f}")]
            cells += [""] * (2 * top_k - len(cells))  # keep `unsure` in its column
            writer.writerow([str(p.path), p.error or ""] + cells + ["" if not p.ok else "yes" if p.unsure else "no"])
    return len(predictions)


NOT_NUMBERS = "the model gives no usable answer for this image (its outputs are not numbers)"


@dataclass
class OutputBatch:
    """The model's outputs for one batch of image files (Classifier.output_batches)."""

    paths: list[Path]
    read: list[int]  # positions in `paths` of the images that could be read, in order: the rows of `logits`
    errors: dict[int, str]  # position in `paths` -> why that file could not be read
    logits: torch.Tensor  # (len(read), classes) float32 on the CPU, before the temperature
    temperature: float = 1.0  # the classifier's calibration (calibration.py)

    def probabilities(self) -> torch.Tensor:
        """Calibrated probabilities of every class: softmax(logits / temperature)."""
        return torch.softmax(self.logits / self.temperature, dim=1)

    def usable(self) -> torch.Tensor:
        """Per row: are the outputs numbers (not NaN or infinite, as a damaged or diverged model gives)?"""
        return torch.isfinite(self.logits).all(dim=1)

    def uncalibrated_confidence(self) -> torch.Tensor:
        """Per row: the top probability without the temperature."""
        return torch.softmax(self.logits, dim=1).max(dim=1).values

    def read_paths(self) -> list[Path]:
        return [self.paths[i] for i in self.read]


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[SkippedFile]]:
    """The files to classify in ``paths``, and what was left out of the folders among them, with why.

    A file named explicitly is kept whatever its extension, so that a wrong file gets an error of its
    own instead of vanishing. Folders are searched recursively, in sorted order; inside them only image
    extensions count (images.IMAGE_EXTENSIONS). Everything else met inside a folder -- other files,
    hidden files and folders, links to folders (not followed), folders that can't be read -- is
    returned as skipped, with the same reasons the dataset scan gives, so callers can count and list it.
    """
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images, left_out = _images_under(path)
            found.extend(images)
            skipped.extend(left_out)
        else:
            found.append(path)
    return found, skipped


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The files of :func:`find_images`, without the list of what was skipped."""
    return find_images(paths)[0]


def _images_under(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    images: list[Path] = []
    skipped: list[SkippedFile] = []

    def unreadable(err: OSError) -> None:
        skipped.append(SkippedFile(Path(err.filename or folder), f"unreadable folder: {err.strerror or err}"))

    # os.walk doesn't follow links to folders (which could loop); they are listed as skipped instead.
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        directory = Path(dirpath)
        entered = []
        for name in sorted(dirnames):
            if name.startswith("."):
                skipped.append(SkippedFile(directory / name, "hidden folder"))
            elif (directory / name).is_symlink():
                skipped.append(SkippedFile(directory / name, "link to a folder (not followed)"))
            else:
                entered.append(name)
        dirnames[:] = entered
        for name in sorted(filenames):
            path = directory / name
            if name.startswith("."):
                skipped.append(SkippedFile(path, "hidden file"))
            elif is_image_file(name):
                images.append(path)
            else:
                skipped.append(SkippedFile(path, not_an_image_reason(path)))
    return sorted(images), sorted(skipped, key=lambda item: item.path)


class Classifier:
    """A model ready to classify, with its class names and preprocessing."""

    def __init__(self, model: nn.Module, class_names: Sequence[str], *, arch: str, image_size: int,
                 mean: Sequence[float], std: Sequence[float], source: str, device: str = "auto",
                 metrics: dict | None = None, temperature: float = 1.0, unsure_below: float = 0.0,
                 calibration_note: str | None = None):
        if len(class_names) == 0:
            raise CheckpointError(f"{source}: the model has no class names")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.arch, self.image_size, self.source = arch, image_size, source
        self.metrics = metrics or {}
        self.transform = eval_transform(image_size, mean, std)
        self.size_hint = decode_size_hint(image_size)
        # Calibration (calibration.py): logits are divided by the temperature before the softmax, and a
        # top probability under `unsure_below` is "unsure" (0: never). The app and CLI may change the
        # threshold (a setting); the model file gives the defaults.
        self.temperature = float(temperature)
        self.unsure_below = float(unsure_below)
        self.calibration_note = calibration_note  # why there is no calibration, when training said why

    # construction ----------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> Classifier:
        """From a model file (.safetensors), a training checkpoint / state_dict (.pt, .pth), or a model
        exported to ONNX by `resnet-app export` (.onnx, run by onnxruntime: OnnxClassifier, below)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            return OnnxClassifier.from_file(path, device)
        if path.suffix.lower() == ".safetensors":
            return cls._from_model_file(path, device)
        return cls._from_torch_file(path, device)

    @classmethod
    def _from_model_file(cls, path: Path, device: str) -> Classifier:
        model_file = load_model_file(path)
        model = _model_with_weights(path, model_file.arch, len(model_file.class_names), model_file.state_dict)
        temperature, unsure_below = stored_calibration(path, model_file.extra)
        return cls(model, model_file.class_names, arch=model_file.arch, image_size=model_file.image_size,
                   mean=model_file.mean, std=model_file.std, source=str(path), device=device,
                   metrics=model_file.metrics, temperature=temperature, unsure_below=unsure_below,
                   calibration_note=calibration_note(model_file.extra))

    @classmethod
    def _from_torch_file(cls, path: Path, device: str) -> Classifier:
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            if "not a ResNet App checkpoint" not in str(exc):
                raise
            return cls._from_plain_state_dict(path, device)
        config = state.get("config") if isinstance(state.get("config"), dict) else {}
        arch, class_names = config.get("arch"), state.get("class_names")
        image_size = config.get("image_size") or architectures.DEFAULT_IMAGE_SIZE.get(arch)
        check_model_description(path, arch, class_names, image_size, list(architectures.IMAGENET_MEAN),
                                list(architectures.IMAGENET_STD))
        if not isinstance(state.get("model"), dict):
            raise CheckpointError(f"{path}: the checkpoint holds no model weights")
        model = _model_with_weights(path, arch, len(class_names), state["model"])
        return cls(model, class_names, arch=arch, image_size=image_size, mean=architectures.IMAGENET_MEAN,
                   std=architectures.IMAGENET_STD, source=str(path), device=device)

    @classmethod
    def _from_plain_state_dict(cls, path: Path, device: str) -> Classifier:
        """A bare state_dict: the article's (torch.save(model.state_dict(), ...), resnet18-cifar at
        32 px), or torchvision's ResNet18 layout at 224 px (ImageNet's own file, or a fine-tune of it).

        Such a file holds no class names: ImageNet's when it has ImageNet's 1,000 outputs, else numbered.
        """
        state_dict = torch.load(path, map_location="cpu", weights_only=True)  # already known to load safely
        if isinstance(state_dict, dict) and "fc.weight" in state_dict:
            return cls.imagenet(path, device=device) if state_dict["fc.weight"].shape[0] == 1000 else \
                cls._numbered(path, "resnet18", state_dict, state_dict["fc.weight"].shape[0], 224, device)
        if not isinstance(state_dict, dict) or "linear.weight" not in state_dict:
            raise CheckpointError(f"{path}: neither a ResNet App checkpoint nor a ResNet18 state_dict "
                                  "(the article's or torchvision's)")
        return cls._numbered(path, "resnet18-cifar", state_dict, state_dict["linear.weight"].shape[0], 32, device)

    @classmethod
    def _numbered(cls, path: Path, arch: str, state_dict: dict, num_classes: int, image_size: int,
                  device: str) -> Classifier:
        model = _model_with_weights(path, arch, num_classes, state_dict)
        names = [f"class {i}" for i in range(num_classes)]
        return cls(model, names, arch=arch, image_size=image_size, mean=architectures.IMAGENET_MEAN,
                   std=architectures.IMAGENET_STD, source=str(path), device=device)

    @classmethod
    def imagenet(cls, weights: str | Path = "imagenet", device: str = "auto") -> Classifier:
        """torchvision's ResNet18 with ImageNet weights: "imagenet" downloads (or uses the cache)."""
        pretrained = load_pretrained(weights)
        model = architectures.build_model("resnet18", len(pretrained.class_names))
        apply_pretrained(model, pretrained, len(pretrained.class_names))
        return cls(model, pretrained.class_names, arch="resnet18", image_size=224, mean=architectures.IMAGENET_MEAN,
                   std=architectures.IMAGENET_STD, source=pretrained.source, device=device)

    # description -----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return Path(self.source).name or self.source

    def describe(self) -> str:
        return (f"{self.name}: {self.arch}, {len(self.class_names)} classes, {self.image_size} px, "
                f"on {describe_device(self.device)}")

    # prediction ------------------------------------------------------------------------------------

    def predict_paths(self, paths: Iterable[str | Path], top_k: int = 5, batch_size: int = 32,
                      should_stop: Callable[[], bool] | None = None) -> Iterator[Prediction]:
        """Yield a Prediction per path, in order, a batch at a time; `should_stop` is checked per batch."""
        top_k = max(1, min(top_k, len(self.class_names)))
        for batch in self.output_batches(paths, batch_size, should_stop):
            yield from self._predictions(batch, top_k)

    def output_batches(self, paths: Iterable[str | Path], batch_size: int = 32,
                       should_stop: Callable[[], bool] | None = None) -> Iterator[OutputBatch]:
        """The one way to run the model over many image files: an OutputBatch per `batch_size` paths, in
        order, with the model's outputs for the images that could be read and the reason for the others.
        `should_stop` is checked before each batch. Predict, evaluate, calibration, sort and review all
        read their numbers from here."""
        paths = [Path(p) for p in paths]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for start in range(0, len(paths), batch_size):
                if should_stop is not None and should_stop():
                    return
                yield self._output_batch(paths[start:start + batch_size], pool)

    def open_image(self, path: str | Path):
        """The image file decoded as this model needs it (a PIL image); raises ImageLoadError."""
        return load_image(path, self.size_hint)

    def preprocess(self, image) -> torch.Tensor:
        """One image (PIL) as the model's input: resized, cropped and normalised as in validation."""
        return self.transform(image)

    def _read(self, path: Path) -> torch.Tensor | str:
        try:
            return self.preprocess(self.open_image(path))
        except ImageLoadError as exc:
            return exc.reason

    def _output_batch(self, paths: list[Path], pool: ThreadPoolExecutor) -> OutputBatch:
        # Pillow releases the GIL while decoding, so threads load a batch in parallel.
        loaded = list(pool.map(self._read, paths))
        read = [i for i, item in enumerate(loaded) if isinstance(item, torch.Tensor)]
        errors = {i: item for i, item in enumerate(loaded) if isinstance(item, str)}
        logits = (self.logits(torch.stack([loaded[i] for i in read])) if read
                  else torch.empty(0, len(self.class_names)))
        return OutputBatch(paths, read, errors, logits, self.temperature)

    def _predictions(self, batch: OutputBatch, top_k: int) -> list[Prediction]:
        results = [Prediction(path, error=batch.errors.get(i)) for i, path in enumerate(batch.paths)]
        if not batch.read:
            return results
        probabilities = batch.probabilities()
        values, indices = probabilities.topk(top_k, dim=1)
        usable = batch.usable().tolist()
        uncalibrated = batch.uncalibrated_confidence().tolist()
        for row, i in enumerate(batch.read):
            if not usable[row]:  # NaN or infinite outputs: a damaged or diverged model
                results[i].error = NOT_NUMBERS
                continue
            results[i].top_k = [(self.class_names[j], float(v))
                                for v, j in zip(values[row].tolist(), indices[row].tolist(), strict=True)]
            results[i].unsure = results[i].top_k[0][1] < self.unsure_below
            results[i].uncalibrated_confidence = uncalibrated[row]
        return results

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated softmax over classes (logits / the temperature) for a batch of preprocessed
        images; returned on the CPU."""
        return torch.softmax(self.logits(batch) / self.temperature, dim=1)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's raw outputs (float32, on the CPU) for a batch of preprocessed images."""
        batch = batch.to(self.device)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch).float().cpu()


class OnnxClassifier(Classifier):
    """A Classifier whose network is an exported .onnx file run by onnxruntime.

    Only the parts of Classifier that touch torch modules differ: construction, `logits` (the batch is
    uint8 pixels, the graph normalises and applies the softmax) and `describe`.
    """

    def __init__(self, session, metadata: dict[str, Any], source: str, device: torch.device) -> None:
        # Not Classifier.__init__: there is no torch module to move to a device.
        self.session, self.metadata = session, metadata
        self.model = None
        self.device = device
        self.class_names = list(metadata["class_names"])
        self.arch, self.image_size, self.source = metadata["arch"], int(metadata["image_size"]), source
        # Already inside the graph; kept for what Classifier reports (the confidence before it, "unsure").
        self.temperature = metadata_number(source, metadata, "temperature", 1.0)
        self.unsure_below = metadata_number(source, metadata, "unsure_below", 0.0)
        self.calibration_note = None
        self.metrics = metadata.get("metrics") if isinstance(metadata.get("metrics"), dict) else {}
        self.transform = uint8_eval_transform(self.image_size)
        self.size_hint = decode_size_hint(self.image_size)
        self._check_signature()

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> OnnxClassifier:
        session, metadata, torch_device = open_export(path, device)
        return cls(session, metadata, str(path), torch_device)

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        size = self.image_size
        if (len(inputs) != 1 or inputs[0].type != "tensor(uint8)" or len(inputs[0].shape) != 4
                or list(inputs[0].shape[1:]) != [3, size, size]):
            raise CheckpointError(f"{self.source}: the graph takes {[(i.name, i.type, i.shape) for i in inputs]}; "
                                  f"expected one uint8 image batch of shape (N, 3, {size}, {size})")
        classes = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].shape else None
        if len(outputs) != 1 or (isinstance(classes, int) and classes != len(self.class_names)):
            raise CheckpointError(f"{self.source}: the graph gives {[(o.name, o.shape) for o in outputs]}; "
                                  f"expected one batch of {len(self.class_names)} probabilities")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def describe(self) -> str:
        where = "GPU (CUDA)" if self.device.type == "cuda" else "CPU"
        return (f"{self.name}: {self.arch}, {len(self.class_names)} classes, {self.image_size} px, "
                f"ONNX Runtime on the {where}")

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of uint8 (N, 3, S, S) pixels, up to a constant per row (which no softmax
        sees): the graph gives calibrated probabilities p = softmax(logits / T), so T * log p."""
        pixels = np.ascontiguousarray(batch.cpu().numpy(), dtype=np.uint8)
        (out,) = self.session.run([self.output_name], {self.input_name: pixels})
        probabilities = torch.from_numpy(np.asarray(out, dtype=np.float32))
        # A probability that underflowed to 0 stays a finite (very negative) logit; NaN stays NaN.
        return self.temperature * probabilities.clamp_min(torch.finfo(torch.float32).tiny).log()


def _model_with_weights(path: Path, arch: str, num_classes: int, state_dict: dict) -> nn.Module:
    try:
        model = architectures.build_model(arch, num_classes)
        model.load_state_dict(state_dict)
    except (architectures.ModelError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights don't fit a {arch} with {num_classes} classes ({exc})") from exc
    return model
