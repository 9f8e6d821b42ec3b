"""Use the trained model anywhere: export to ONNX or TorchScript, with the preprocessing inside, checked.

One entry point, :func:`export_model`. The exported graph takes what is left after the resize and the
crop: uint8 RGB pixels, (N, 3, S, S) with N free, and does the rest of what the app does, in the app's
order of float operations: x * (1/255) (torchvision's ToDtype), (x - mean) / std (Normalize), the network,
logits / temperature (when the model file has one), softmax. The resize stays outside: ONNX's Resize is not
Pillow's antialiased bilinear filter, which is what the app (through torchvision) uses on its PIL images.

Next to FILE go FILE.json (the metadata and the result of the check) and, for ONNX, predict_onnx.py: a
short script using only onnxruntime, numpy and Pillow that reads, resizes and crops images as the app does
and classifies them, the way a consumer of the file would.

Every export is checked before it is put in place: the written file is run (onnxruntime, or torch.jit for
TorchScript) on a batch of images (some of the model's dataset when the run.json beside the model
file names one that still exists, plus generated images of awkward shapes and modes that exercise every
step of the preprocessing), fed through predict_onnx.py's own preprocessing code, and compared with the
app's Classifier on the same files: the pixels must be identical, the top-1 class identical on every
image, and no probability more than 1e-4 away. Otherwise the export fails and nothing is left at FILE
(the file is written to a temporary name and only moved into place when the check passes).

Decisions (measured on this project's 2-core test machine, torch 2.14, onnxruntime 1.32):
- ONNX through torch.export (`torch.onnx.export(dynamo=True)`, which needs onnx and onnxscript): the older
  TorchScript-based exporter is faster (0.5 s against 4.5 s for ResNet18) but fails on the resnet18-cifar
  network (its global average pooling takes its kernel size from the feature map, which that exporter
  can't make constant once the batch axis is dynamic), and torch deprecates it since 2.9.
- Opset 18: well inside what onnxruntime has supported for years (1.14 on), and the exporter's own
  default level, so nothing has to be converted down.
- TorchScript through torch.jit.trace + torch.jit.save, the metadata in the archive's extra files: a
  TorchScript file is what LibTorch (C++) and `torch.jit.load` read without the app's Python code, which
  is why one asks for this format. torch.jit is deprecated too (its FutureWarning is silenced here); should
  it go, torch.export's .pt2 (Python only) would take its place under another format name.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision.transforms import v2

from resnet_app import __version__
from resnet_app.core.data.images import ImageLoadError, load_image
from resnet_app.core.data.transforms import decode_size_hint, eval_transform, is_small
from resnet_app.core.files import atomic_write, finite_json, free_names, place_file, write_text_atomic
from resnet_app.core.model.checkpoints import CheckpointError, load_model_file
from resnet_app.core.use.classifier import Classifier, find_images
from resnet_app.core.use.onnx_model import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    INPUT_NAME,
    INSTALL_HINT,
    OUTPUT_NAME,
    open_session,
)

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 18
TOLERANCE = 1e-4  # largest difference in any probability between the export and the app
TIE = 1e-6  # two classes this close in the app's own probabilities are a tie: either may come first
CHECK_IMAGES = 32  # images the check runs by default
SCRIPT_NAME = "predict_onnx.py"
TORCHSCRIPT_METADATA = "resnet_app.json"  # the extra file of a TorchScript archive holding the metadata
_REQUIRED = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torchscript": ()}

# torch.jit is deprecated (see the module doc): its warnings say nothing the user can act on.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.(trace|trace_method|save|load)` is deprecated",
                        category=FutureWarning)


class ExportError(ValueError):
    """The model can't be exported: the message says why (and what to install, when a package is missing)."""


class ExportCheckFailed(ExportError):
    """The exported file does not give the app's predictions; it was not kept."""


class ExportCancelled(Exception):
    """Stopped on request between two steps; nothing was written."""


Progress = Callable[[int, int, str], None]  # step, steps, what is being done


# --- results -------------------------------------------------------------------------------------------

@dataclass
class ExportCheck:
    """The exported file against the app, on the same image files."""

    images: int
    from_dataset: int  # of which from the model's dataset; the others were generated
    dataset: str | None  # that folder's name (never its path: FILE.json is made to be sent elsewhere)
    pixels_identical: bool
    top1_identical: int  # images whose top-1 class is the app's
    ties: int  # images whose top two classes the app itself gives within TIE: either order agrees
    max_abs_difference: float
    tolerance: float = TOLERANCE
    mismatches: list[str] = field(default_factory=list)  # file names, for the error message

    @property
    def passed(self) -> bool:
        return (self.pixels_identical and self.top1_identical == self.images
                and self.max_abs_difference <= self.tolerance)

    def line(self) -> str:
        where = (f"{self.from_dataset} from {self.dataset} and {self.images - self.from_dataset} generated"
                 if self.from_dataset else "generated")
        pixels = "" if self.pixels_identical else "; the preprocessed pixels DIFFER from the app's"
        ties = f" ({self.ties} near-ties)" if self.ties else ""
        return (f"checked on {self.images} images ({where}): top-1 identical on {self.top1_identical} of "
                f"{self.images}{ties}, largest probability difference {self.max_abs_difference:.1e} "
                f"(limit {self.tolerance:.0e}){pixels}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class ExportResult:
    path: Path
    format: str
    metadata_path: Path
    script_path: Path | None
    size_bytes: int
    seconds: float
    check: ExportCheck
    metadata: dict[str, Any]
    script_note: str | None = None  # predict_onnx.py was already there: what was done instead

    def summary_lines(self) -> list[str]:
        kind = f"ONNX opset {ONNX_OPSET}" if self.format == "onnx" else "TorchScript"
        lines = [f"exported {self.path} ({kind}, {self.size_bytes / 1e6:.1f} MB) in {self.seconds:.1f} s",
                 self.check.line(), f"metadata: {self.metadata_path}"]
        if self.script_note:
            lines.append(self.script_note)
        if self.script_path is not None:
            lines.append(f"classify with it: python {self.script_path} {self.path} IMAGE...")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "metadata": str(self.metadata_path),
                "script": str(self.script_path) if self.script_path else None, "size_bytes": self.size_bytes,
                "seconds": round(self.seconds, 2), "check": self.check.to_dict(), "script_note": self.script_note}


# --- the exported network ------------------------------------------------------------------------------

class Deployable(nn.Module):
    """uint8 RGB pixels (N, 3, S, S) -> class probabilities (N, classes): the app after the crop."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float], temperature: float = 1.0):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.temperature = float(temperature)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32) * (1.0 / 255.0)  # v2.ToDtype(float32, scale=True), the same operation
        x = (x - self.mean) / self.std  # v2.Normalize
        logits = self.network(x)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


# --- what is exported, and where -----------------------------------------------------------------------

def missing_packages(fmt: str) -> list[str]:
    return [name for name in _REQUIRED.get(fmt, ()) if importlib.util.find_spec(name) is None]


def default_output(model: str | Path, fmt: str) -> Path:
    """Next to the model file: model.onnx, or model.torchscript.pt."""
    model = Path(model)
    return model.with_name(model.stem + (".onnx" if fmt == "onnx" else ".torchscript.pt"))


def model_temperature(classifier: Classifier, source: str | Path, extra: dict[str, Any]) -> float:
    """The temperature the app divides this model's logits by before the softmax; 1.0 when it has none.

    The Classifier reads it from the model file and checks it (calibration.py, metadata key
    "calibration"); a Classifier without calibration support falls back to reading that key here.
    """
    applied = getattr(classifier, "temperature", None)
    if applied is not None:
        return float(applied)
    stored = extra.get("calibration")
    value = stored.get("temperature") if isinstance(stored, dict) else extra.get("temperature")
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"{source}: the model's temperature is {value!r:.60}; expected a positive number")
    return float(value)


def _check_output_path(source: Path, out: Path, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ExportError(f"{out}: the export would replace the model it is made from; choose another --out")
    suffix = out.suffix.lower()
    if fmt == "onnx" and suffix != ".onnx":
        raise ExportError(f"{out}: an ONNX file's name must end in .onnx (predict and other tools go by it)")
    if fmt == "torchscript" and suffix in (".onnx", ".safetensors", ".json", ".py"):
        raise ExportError(f"{out}: a {suffix} name would be mistaken for another kind of file; use .pt")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give the file to write")


def preprocessing(image_size: int) -> dict[str, Any]:
    """The resize rule, as data (predict_onnx.py reads it) and in words."""
    if is_small(image_size):
        return {"rule": "squash", "size": image_size,
                "text": f"resize to {image_size}x{image_size} (aspect ratio not kept) with Pillow's BILINEAR"}
    resize = decode_size_hint(image_size)
    return {"rule": "shorter_side", "size": resize, "crop": image_size,
            "text": (f"resize the shorter side to {resize} px with Pillow's BILINEAR, the longer to "
                     f"int({resize} * long / short) (truncated, as torchvision does), then take the centre "
                     f"{image_size}x{image_size}, its offsets round((side - {image_size}) / 2) with halves "
                     "to even (Python's round, as torchvision's CenterCrop)")}


def describe_export(classifier: Classifier, source: Path, fmt: str, temperature: float,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """The metadata that goes into the exported file and FILE.json."""
    size = classifier.image_size
    normalize = classifier.transform.transforms[-1]  # the normalisation the Classifier really applies
    if not isinstance(normalize, v2.Normalize):
        raise RuntimeError("transforms.eval_transform no longer ends with Normalize: update export.py")
    mean, std = [float(v) for v in normalize.mean], [float(v) for v in normalize.std]
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION,
        "arch": classifier.arch, "class_names": list(classifier.class_names), "image_size": size,
        "mean": mean, "std": std, "temperature": temperature,
        # The confidence under which the app shows a prediction as "unsure" (calibration.py); 0: never.
        "unsure_below": float(getattr(classifier, "unsure_below", 0.0)),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["N", 3, size, size], "layout": "NCHW",
                  "channels": "RGB", "range": [0, 255]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", len(classifier.class_names)],
                   "meaning": "class probabilities (softmax), in the order of class_names"},
        "in_graph": "x / 255, (x - mean) / std, the network, logits / temperature, softmax",
        "preprocessing": preprocessing(size),
        "image_loading": "EXIF orientation applied; transparent pixels composited on white; converted to RGB "
                         "(16-bit and float greys scaled to 8 bits); JPEGs decoded at the smallest DCT scale "
                         "whose shorter side is still at least preprocessing.size (Pillow's draft)",
        "app_version": __version__, "torch_version": str(torch.__version__),
        "exporter": (f"torch.onnx.export (dynamo), opset {ONNX_OPSET}" if fmt == "onnx"
                     else "torch.jit.trace"),
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "source_model": source.name, "metrics": finite_json(metrics),  # strict JSON: NaN -> null
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- the entry point -----------------------------------------------------------------------------------

def export_model(model: str | Path, fmt: str = "onnx", out: str | Path | None = None, *,
                 check_images: int = CHECK_IMAGES, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> ExportResult:
    """Export the model file (or checkpoint) `model` to `out` in format `fmt` ("onnx" or "torchscript"),
    check it against the app, and write FILE.json (and predict_onnx.py for ONNX) next to it.

    Raises ExportError (packages missing, bad output name), CheckpointError (the model can't be read),
    ExportCheckFailed (the export does not give the app's predictions: nothing is left at `out`), or
    ExportCancelled when `should_stop` says so between steps.
    """
    started = time.perf_counter()
    source = Path(model)
    out = Path(out) if out is not None else default_output(source, fmt)
    _check_output_path(source, out, fmt)
    missing = missing_packages(fmt)
    if missing:
        raise ExportError(f"exporting to {fmt.upper()} needs {', '.join(missing)}, not installed here: {INSTALL_HINT}")
    if source.suffix.lower() == ".onnx":
        raise ExportError(f"{source}: already an ONNX export; export from the model file (.safetensors)")
    steps = 4

    def step(number: int, text: str) -> None:
        if should_stop is not None and should_stop():
            raise ExportCancelled()
        if progress is not None:
            progress(number, steps, text)

    step(0, "reading the model")
    classifier = Classifier.from_file(source, device="cpu")
    extra, metrics = {}, dict(classifier.metrics)
    if source.suffix.lower() == ".safetensors":
        extra = load_model_file(source).extra  # already read once by the Classifier: it loads
    temperature = model_temperature(classifier, source, extra)
    metadata = describe_export(classifier, source, fmt, temperature, metrics)
    wrapper = Deployable(classifier.model, metadata["mean"], metadata["std"], temperature).eval()

    with tempfile.TemporaryDirectory(prefix="resnet-app-export-") as scratch:
        step(1, "choosing images for the check")
        root = dataset_root(source, extra)
        paths, from_dataset = check_paths(root, classifier.image_size, check_images, Path(scratch))
        with atomic_write(out) as tmp:
            step(1, f"exporting to {'ONNX' if fmt == 'onnx' else 'TorchScript'}")
            example = torch.zeros(2, 3, classifier.image_size, classifier.image_size, dtype=torch.uint8)
            if fmt == "onnx":
                _write_onnx(wrapper, example, tmp, metadata)
            else:
                _write_torchscript(wrapper, example, tmp, metadata)
            step(2, f"checking the export on {len(paths)} images")
            check = check_export(tmp, fmt, classifier, temperature, paths, from_dataset,
                                 root.name if root else None)
            if not check.passed:
                raise ExportCheckFailed(f"the exported model does not give the app's predictions, so it was not "
                                        f"kept: {check.line()}"
                                        + (f"; differing: {', '.join(check.mismatches[:5])}" if check.mismatches
                                           else ""))
            step(3, "writing the metadata")
            digest, size = _sha256(tmp), tmp.stat().st_size
    # In place from here on: the metadata and the script follow it.
    metadata_path = out.with_name(out.name + ".json")
    write_text_atomic(metadata_path, json.dumps({"file": out.name, "sha256": digest, "size_bytes": size,
                                                 **metadata, "check": check.to_dict()}, indent=2) + "\n")
    script_path, script_note = (place_script(out.with_name(SCRIPT_NAME)) if fmt == "onnx" else (None, None))
    if progress is not None:
        progress(steps, steps, "done")
    return ExportResult(out, fmt, metadata_path, script_path, size, time.perf_counter() - started, check, metadata,
                        script_note)


def place_script(wanted: Path) -> tuple[Path, str | None]:
    """Write predict_onnx.py at `wanted`, never over a file already there (the user may have edited
    it): an identical one is kept as it is; another one stays, and ours goes under the next free name
    (predict_onnx-2.py). Returns where the script is, and a note for the user when it is not `wanted`."""
    for candidate in free_names(wanted):
        try:
            if candidate.read_bytes() == PREDICT_SCRIPT.encode("utf-8"):
                placed = candidate  # this very script, from an earlier export
                break
        except FileNotFoundError:
            try:
                placed = place_file(candidate, data=PREDICT_SCRIPT.encode("utf-8"), rename=False)
                break
            except FileExistsError:
                continue  # someone wrote it just now: leave theirs
        except OSError:
            continue
    else:
        raise ExportError(f"no free name for {SCRIPT_NAME} in {wanted.parent}")
    if placed == wanted:
        return placed, None
    return placed, f"{wanted} was already there and differs from this export's script: it was left as it is, " \
                   f"and the script was written as {placed.name}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- writing the two formats ---------------------------------------------------------------------------

def _write_onnx(wrapper: Deployable, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> None:
    batch = torch.export.Dim("N", min=1)
    try:
        program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                    opset_version=ONNX_OPSET, optimize=True, verbose=False)
    except Exception as exc:  # the exporter's many failure types: say it in one line, keep the cause
        raise ExportError(f"the ONNX exporter failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") \
            from exc
    for key, value in metadata.items():
        program.model.metadata_props[key] = json.dumps(value)
    program.save(str(path), external_data=False)  # one file: ResNet18 is ~45 MB, far below protobuf's 2 GB


def _write_torchscript(wrapper: Deployable, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata, indent=2)})


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    files = {TORCHSCRIPT_METADATA: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[TORCHSCRIPT_METADATA])


# --- the check -----------------------------------------------------------------------------------------

RUN_SUMMARY = "run.json"  # train/run_files.RUN_JSON: the run's summary, beside the run's model file


def dataset_root(source: Path, extra: dict[str, Any]) -> Path | None:
    """The folder the model was trained on, when it is still there: from the run.json beside the model
    file (a model file names no folder path, issue 24), or from a model file of an older version, which
    kept it. None for a model file saved elsewhere, or when the folder is gone."""
    candidates = []
    try:
        summary = json.loads((source.parent / RUN_SUMMARY).read_text(encoding="utf-8"))
        if isinstance(summary, dict):
            candidates.append(summary.get("root"))
    except (OSError, ValueError):
        pass
    dataset = extra.get("dataset")
    candidates.append(dataset.get("root") if isinstance(dataset, dict) else None)
    for root in candidates:
        if isinstance(root, str) and root and Path(root).is_dir():
            return Path(root)
    return None


def check_paths(root: Path | None, image_size: int, count: int, scratch: Path) -> tuple[list[Path], int]:
    """Up to `count` - 8 images spread over the model's dataset `root` (when it is still there), and
    generated images for the rest: odd shapes and sizes, JPEGs big enough to decode at a draft scale,
    EXIF rotation, transparency. Returns the paths and how many came from the dataset."""
    generated_count = min(8, count) if root is not None else count
    chosen: list[Path] = []
    if root is not None:
        found = find_images([root])[0]
        wanted = min(len(found), count - generated_count)
        chosen = [found[i * len(found) // wanted] for i in range(wanted)] if wanted else []
    return chosen + generate_check_images(scratch, generated_count, image_size), len(chosen)


# Landscape and portrait JPEGs big enough to decode at a draft scale (1/2 to 1/8), one pixel off square,
# tiny, very wide, a single pixel.
_SHAPES = [(400, 300), (333, 517), (257, 256), (50, 30), (301, 37), (1, 1), (640, 480), (37, 90)]


def generate_check_images(folder: Path, count: int, image_size: int) -> list[Path]:
    """`count` images that exercise every step of the preprocessing (deterministic)."""
    from resnet_app.core.data.sample_data import SAMPLE_CLASSES, draw_sample

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        width, height = _SHAPES[i % len(_SHAPES)]
        if i % 4 == 3:  # a drawn shape, the kind of picture a model of the sample data knows
            image = draw_sample(SAMPLE_CLASSES[i % len(SAMPLE_CLASSES)], max(8, image_size), random.Random(i))
            image = image.resize((width, height)) if width * height > 1 else image
        else:
            rng = np.random.default_rng(i)
            y, x = np.mgrid[0:height, 0:width]
            base = np.stack([x * 255 / max(1, width - 1), y * 255 / max(1, height - 1), (x + y) % 256], axis=-1)
            image = Image.fromarray(np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8))
        path = folder / f"check_{i:02d}_{width}x{height}"
        if i % 8 == 2:  # transparency: composited on white
            rgba = image.convert("RGBA")
            rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
            rgba.save(path := path.with_suffix(".png"))
        elif i % 8 == 6:  # stored landscape, shown portrait: EXIF orientation after the draft decode
            exif = Image.Exif()
            exif[0x0112] = 6
            image.save(path := path.with_suffix(".jpg"), quality=90, exif=exif.tobytes())
        elif i % 2:
            image.save(path := path.with_suffix(".jpg"), quality=90)
        else:
            image.save(path := path.with_suffix(".png"))
        paths.append(path)
    return paths


def load_script(text: str | None = None) -> types.ModuleType:
    """predict_onnx.py as a module (its main() does not run): the check uses its own preprocessing."""
    module = types.ModuleType("predict_onnx")
    exec(compile(text or PREDICT_SCRIPT, SCRIPT_NAME, "exec"), module.__dict__)  # our own text, never a file's
    return module


def check_export(path: Path, fmt: str, classifier: Classifier, temperature: float, paths: list[Path],
                 from_dataset: int, dataset: str | None) -> ExportCheck:
    """Run the exported file on `paths` (preprocessed by predict_onnx.py's code) and the app's Classifier
    on the same files; compare pixels, top-1 classes and probabilities."""
    script = load_script()
    plain = eval_transform(classifier.image_size, [0.0] * 3, [1.0] * 3)  # the app's pixels, on 0..1
    resize = preprocessing(classifier.image_size)
    app_inputs, app_pixels, script_pixels, names = [], [], [], []
    for p in paths:
        try:
            image = load_image(p, classifier.size_hint)
        except ImageLoadError:
            continue  # the app can't read it either: a dataset's broken file is not the export's business
        app_inputs.append(classifier.transform(image))
        app_pixels.append((plain(image) * 255).round().to(torch.uint8))
        try:
            script_pixels.append(torch.from_numpy(np.ascontiguousarray(
                script.pixels(str(p), classifier.image_size, resize))))
        except Exception as exc:  # noqa: BLE001 - the app reads this file: the script must too
            raise ExportCheckFailed(f"{SCRIPT_NAME} could not read {p}, which the app reads "
                                    f"({type(exc).__name__}: {exc})") from exc
        names.append(p.name)
    if not names:
        raise ExportError("no image could be read for the check")
    pixels = torch.stack(script_pixels)
    identical = torch.equal(pixels, torch.stack(app_pixels))
    expected = _app_probabilities(classifier, torch.stack(app_inputs), temperature)
    if not torch.isfinite(expected).all():
        raise ExportError(f"{classifier.source}: the model gives no usable answer (its outputs are not numbers): "
                          "it is damaged or its training diverged")
    got = _exported_probabilities(path, fmt, pixels)
    difference = (got - expected).abs().max().item() if torch.isfinite(got).all() else math.inf
    app_top, got_top = expected.argmax(dim=1), got.argmax(dim=1)
    agree, ties, mismatches = 0, 0, []
    for i, name in enumerate(names):
        a, g = int(app_top[i]), int(got_top[i])
        if a == g:
            agree += 1
        elif expected[i, a] - expected[i, g] <= TIE:  # the app itself can't tell these two apart
            agree, ties = agree + 1, ties + 1
        else:
            mismatches.append(name)
    return ExportCheck(len(names), min(from_dataset, len(names)), dataset, identical,
                       agree, ties, float(difference), mismatches=mismatches)


@torch.no_grad()
def _app_probabilities(classifier: Classifier, batch: torch.Tensor, temperature: float) -> torch.Tensor:
    """What the app answers. A Classifier that applies the model's temperature itself (it then says so in
    its `temperature` attribute) is used as it is; otherwise the temperature is applied to its logits."""
    if temperature == float(getattr(classifier, "temperature", 1.0) or 1.0):
        return classifier.probabilities(batch)
    logits = classifier.model(batch.to(classifier.device)).float().cpu()
    return torch.softmax(logits / temperature, dim=1)


def _exported_probabilities(path: Path, fmt: str, pixels: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        session = open_session(path)
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels.numpy()})
        return torch.from_numpy(np.asarray(out, dtype=np.float32))
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(pixels).float()


# --- predict_onnx.py ------------------------------------------------------------------------------------
# Written next to every ONNX export, and run by the check above (load_script): what it does to an image is
# what was compared with the app. The resize and crop arithmetic is decode_worker's (torchvision's); the
# loading is images.load_image's, less its safety checks and its error messages.

PREDICT_SCRIPT = '''\
"""Classify images with a model exported by ResNet App, exactly as the app does (checked at export).

    python predict_onnx.py MODEL.onnx IMAGE...    (needs only onnxruntime, numpy and Pillow)

Prints one JSON line per image: {"path", "top_k": [{"label", "probability"}, ...], "unsure"} or
{"path", "error"}; "unsure": the top probability is under the model's threshold, as the app shows it.
The model takes uint8 RGB pixels (N, 3, S, S) and does the rest (/255, normalisation, network, softmax).
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load_rgb(path, shorter_side):
    """Decode as the app does: JPEG draft scale, EXIF rotation, transparency on white, RGB."""
    with Image.open(path) as im:
        im.draft("RGB", (shorter_side, shorter_side))  # JPEG only: DCT scaling, shorter side kept >= this
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:
            im = im.copy()  # broken EXIF: the pixels as stored
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = (im.convert("LA") if im.mode == "La" else im).convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I", "F"):  # 16-bit or float grey -> 8 bits
        im = im if im.mode == "F" else im.convert("I")
        low, high = im.getextrema()
        full = [top for top in ((1, 255) if im.mode == "F" else (65535,)) if low >= 0 and high <= top]
        if not full and high == low:
            return Image.new("RGB", im.size, (128, 128, 128))
        scale = 255 / full[0] if full else 255 / (high - low)
        offset = 0.0 if full else -low * scale
        return im.point(lambda v: v * scale + offset + 0.5).convert("L").convert("RGB")
    return im.convert("RGB")


def pixels(path, image_size, resize):
    """(3, S, S) uint8: a squash to a square (rule "squash"), or the shorter side resized as torchvision
    does (the longer side truncated), then the centre crop with torchvision's half-to-even offsets."""
    if resize["rule"] == "squash":
        im = load_rgb(path, image_size).resize((image_size, image_size), Image.Resampling.BILINEAR)
    else:
        im = load_rgb(path, resize["size"])
        w, h = im.size
        long = int(resize["size"] * max(w, h) / min(w, h))
        im = im.resize((resize["size"], long) if w <= h else (long, resize["size"]), Image.Resampling.BILINEAR)
        left, top = (int(round((side - image_size) / 2.0)) for side in im.size)
        im = im.crop((left, top, left + image_size, top + image_size))
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def main(model, *paths, top_k=3):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()
            if k in ("class_names", "image_size", "preprocessing", "unsure_below")}
    names = meta["class_names"]
    for path in paths:
        try:
            image = pixels(path, meta["image_size"], meta["preprocessing"])[None]
        except Exception as exc:  # this file only: the others go on
            print(json.dumps({"path": path, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        probabilities = session.run(None, {session.get_inputs()[0].name: image})[0][0]
        best = np.argsort(-probabilities, kind="stable")[:top_k]
        answers = [{"label": names[i], "probability": float(probabilities[i])} for i in best]
        unsure = answers[0]["probability"] < meta.get("unsure_below", 0.0)
        print(json.dumps({"path": path, "top_k": answers, "unsure": unsure}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
'''
