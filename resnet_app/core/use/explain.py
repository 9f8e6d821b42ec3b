"""Why this class: Grad-CAM (Selvaraju et al. 2017) for a Classifier, with a forward hook on the layers.

The class-activation map of class c at a layer with activations A (channels k, positions ij) is
ReLU(sum_k w_k A_k) with w_k the mean over positions of d score_c / d A_k: where the layer's features
push the class's score up. The map is taken at the deepest stage whose map is still at least
MIN_MAP_SIDE positions wide (resnet18-cifar at 32 px: layer3, 8x8; at 16 px: layer2, 8x8;
torchvision's resnet18 at 224 px: layer4, 7x7), then drawn back over the whole image as displayed.

Thread safety: the Classifier's model may be running predictions in another thread meanwhile (the
Classify tab). The forward hook keeps only activations made by the thread that asked for the map, and
the gradient is taken with torch.autograd.grad on the kept activation: no backward hook on a module,
nothing written to the parameters' `.grad`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from resnet_app.core.data.transforms import decode_size_hint, is_small
from resnet_app.core.use.classifier import Classifier

STAGES = ("layer1", "layer2", "layer3", "layer4")  # both ResNet18 layouts name their stages so
MIN_MAP_SIDE = 7  # positions; torchvision's resnet18 gives 7x7 at 224 px, which still localises


class GradCam(NamedTuple):
    heatmap: np.ndarray  # float32, height x width of the requested size, 0..1 (1 = the strongest evidence)
    class_index: int  # the class the map explains (the predicted one unless one was asked for)
    probability: float  # the model's probability of that class for this image
    layer: str  # the stage the map was taken at ("layer3")


def grad_cam(classifier: Classifier, image_path: str | Path, class_index: int | None = None,
             size: tuple[int, int] | None = None) -> GradCam:
    """The Grad-CAM heat map of `class_index` (default: the predicted class) for one image file.

    `size` is (width, height) of the image as it will be shown (default: its own size as loaded); the
    map covers the whole image: squashed like the model's input for small images, and for large ones
    the centre crop the model sees, with zero outside it. Raises ImageLoadError for an unreadable file.
    """
    image = classifier.open_image(image_path)
    width, height = size or image.size
    batch = classifier.preprocess(image).unsqueeze(0).to(classifier.device)
    activations, logits = _forward_keeping_stages(classifier.model, batch)
    layer, activation = _deepest_wide_stage(activations)
    # The probability shown is the Classifier's: after its temperature, when it has one (calibration).
    temperature = float(getattr(classifier, "temperature", 1.0))
    probabilities = torch.softmax(logits.detach().float() / temperature, dim=1)[0]
    if class_index is None:
        class_index = int(probabilities.argmax())
    if not 0 <= class_index < logits.shape[1]:
        raise ValueError(f"class index {class_index} is out of range for {logits.shape[1]} classes")
    (gradient,) = torch.autograd.grad(logits[0, class_index], activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # one weight per channel
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True)).float()
    top = float(cam.max())
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    heatmap = _onto_image(cam, classifier.image_size, image.size, (width, height))
    return GradCam(heatmap, class_index, float(probabilities[class_index]), layer)


def _forward_keeping_stages(model: torch.nn.Module, batch: torch.Tensor) -> tuple[dict, torch.Tensor]:
    owner = threading.get_ident()
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output) -> None:
            if threading.get_ident() == owner:  # another thread's predictions pass by untouched
                kept[name] = output
        return hook

    handles = [getattr(model, name).register_forward_hook(keep(name)) for name in STAGES if hasattr(model, name)]
    try:
        with torch.enable_grad():
            logits = model(batch.requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    return kept, logits


def _deepest_wide_stage(activations: dict[str, torch.Tensor]) -> tuple[str, torch.Tensor]:
    if not activations:
        raise ValueError("Grad-CAM needs a ResNet with layer1..layer4 stages")
    names = [name for name in STAGES if name in activations]
    wide = [name for name in names if min(activations[name].shape[-2:]) >= MIN_MAP_SIDE]
    name = wide[-1] if wide else names[0]
    return name, activations[name]


def _onto_image(cam: torch.Tensor, image_size: int, loaded: tuple[int, int], shown: tuple[int, int]) -> np.ndarray:
    """The model-input map (1x1xhxw) drawn where the model's input lies in the shown image."""
    width, height = shown
    if is_small(image_size):  # the whole image, squashed to a square
        return _resized(cam, width, height)
    # Large images: the shorter side resized to decode_size_hint (image_size * 256/224), then a centre
    # square of image_size: that square is image_size / hint of the shorter side, in the middle.
    side = min(loaded) * image_size / decode_size_hint(image_size)
    box_w, box_h = side / loaded[0] * width, side / loaded[1] * height
    left, top = round((width - box_w) / 2), round((height - box_h) / 2)
    inner = _resized(cam, max(1, round(box_w)), max(1, round(box_h)))
    heatmap = np.zeros((height, width), dtype=np.float32)
    region = heatmap[max(0, top):top + inner.shape[0], max(0, left):left + inner.shape[1]]
    region[...] = inner[:region.shape[0], :region.shape[1]]
    return heatmap


def _resized(cam: torch.Tensor, width: int, height: int) -> np.ndarray:
    resized = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)
