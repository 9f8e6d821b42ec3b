"""Every path feeds the network the same pixels: prediction (and eval, and the app, which use the same
Classifier), train-time validation on the decoded (fast) path, and on the streaming path.

The tensors must be equal bit for bit, at every image size, for images of every shape, PNG and JPEG
(decoded at a reduced JPEG draft scale when the size allows it). A crop one pixel off, or a different
resize size, changes almost every value; so does normalising in another order of float operations.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from resnet_app.core.data import decode_worker
from resnet_app.core.data.batch_augment import BatchAugmenter
from resnet_app.core.data.batches import DecodedBatches, StreamingBatches
from resnet_app.core.data.datasets import ImageFileDataset
from resnet_app.core.data.decoded_cache import load_or_decode, stored_size
from resnet_app.core.data.transforms import decode_size_hint, eval_transform, is_small
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD
from resnet_app.core.use.classifier import Classifier

CPU = torch.device("cpu")

# Small (squashed) sizes, the 32/48/224 that happened to agree before, and sizes whose offsets have
# every combination of parities (160 was off by (1, 1) on every landscape and portrait image).
SIZES = [16, 32, 48, 64, 65, 96, 100, 128, 160, 200, 224, 256, 299, 384]

# (width, height): landscape, portrait, square, tiny, odd, one pixel off square, very wide and tall,
# and large enough that JPEG decoding drops to a draft scale (1/2 to 1/8) at most sizes.
SHAPES = [(640, 480), (480, 640), (300, 300), (1, 1), (2, 3), (333, 517), (517, 333), (257, 256),
          (255, 257), (50, 30), (901, 37), (37, 901), (1200, 900)]


def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    """A gradient with noise on top: a shift of one pixel or a different filter changes the values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(1, width - 1), y * 255 / max(1, height - 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shapes")
    paths = []
    for seed, (width, height) in enumerate(SHAPES):
        image = Image.fromarray(_pixels(width, height, seed))
        for suffix in ("png", "jpg"):
            path = folder / f"{width}x{height}.{suffix}"
            image.save(path, quality=90)
            paths.append(path)
    # Stored landscape, shown portrait: EXIF orientation is applied after the draft-scale decode.
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = folder / "rotated_900x600.jpg"
    Image.fromarray(_pixels(900, 600, 99)).save(rotated, quality=90, exif=exif.tobytes())
    return paths + [rotated]


def _predicted(paths: list[Path], size: int) -> torch.Tensor:
    """What Classifier.predict_paths feeds the model (predict, eval and the app all go through it)."""
    classifier = Classifier(nn.Identity(), ["a", "b"], arch="resnet18", image_size=size, mean=IMAGENET_MEAN,
                            std=IMAGENET_STD, source="test", device="cpu")
    fed = []

    def logits(batch: torch.Tensor) -> torch.Tensor:
        fed.append(batch)
        return torch.zeros(len(batch), 2)

    classifier.logits = logits
    predictions = list(classifier.predict_paths(paths, top_k=1, batch_size=len(paths)))
    assert all(p.ok for p in predictions), [p.error for p in predictions if not p.ok]
    return torch.cat(fed)


def _validated_decoded(paths: list[Path], size: int, cache_dir: Path) -> torch.Tensor:
    """Train-time validation on the decoded path: decoded once, then BatchAugmenter.eval per batch."""
    decoded = load_or_decode([(p, 0) for p in paths], size, processes=1, cache_dir=cache_dir)
    assert not decoded.failures and decoded.images.shape[-1] == stored_size(size)
    augmenter = BatchAugmenter(size, IMAGENET_MEAN, IMAGENET_STD, small=is_small(size))
    return torch.cat([images for images, _, _ in DecodedBatches(decoded, augmenter, CPU).evaluation(8)])


def _validated_streaming(paths: list[Path], size: int) -> torch.Tensor:
    """Train-time validation on the streaming path: eval_transform on each file, through a DataLoader."""
    dataset = ImageFileDataset([(p, 0) for p in paths], eval_transform(size, IMAGENET_MEAN, IMAGENET_STD),
                               size_hint=decode_size_hint(size))
    return torch.cat([images for images, _, _ in StreamingBatches(dataset, 0, CPU).evaluation(8)])


def _differing(paths: list[Path], a: torch.Tensor, b: torch.Tensor) -> list[str]:
    return [p.name for p, x, y in zip(paths, a, b, strict=True) if not torch.equal(x, y)]


@pytest.mark.parametrize("size", SIZES)
def test_every_path_gives_bit_identical_tensors(images, tmp_path, size):
    predicted = _predicted(images, size)
    assert predicted.shape == (len(images), 3, size, size)
    for name, tensors in (("decoded validation", _validated_decoded(images, size, tmp_path)),
                          ("streaming validation", _validated_streaming(images, size))):
        assert tensors.shape == predicted.shape, name
        assert _differing(images, tensors, predicted) == [], f"{name} differs from predict at {size} px"


def test_the_fast_crop_lands_where_torchvisions_does_at_every_size():
    # The decoded path crops twice (a stored square, then its centre); torchvision once. For every
    # size and every parity of the margins, the two must start at the same pixel, and the stored
    # square must fit. Measured on index ramps: the crop's first value is its offset.
    for size in range(16, 513):
        stored = stored_size(size)
        inner = decode_worker.centre_crop_offset(stored, size)
        for length in range(stored, stored + 12):
            ramp = torch.arange(length).view(1, 1, length)
            theirs = int(v2.functional.center_crop(ramp, [1, size])[0, 0, 0])
            window = decode_worker._stored_window_offset(length, stored, size)
            assert 0 <= window <= length - stored, (size, length)
            assert window + inner == theirs, (size, length)


def test_the_resize_size_is_torchvisions_at_every_size():
    shapes = SHAPES + [(67, 116), (116, 67), (134, 232), (3, 1000), (999, 1000)]
    for size in range(16, 513):
        stored = stored_size(size)
        for width, height in shapes:
            box = tv_tensors.BoundingBoxes([[0, 0, 1, 1]], format="XYXY", canvas_size=(height, width))
            height_after, width_after = v2.functional.resize(box, [stored]).canvas_size  # no pixels involved
            ours = decode_worker.resized_shorter_side(width, height, stored)
            assert ours == (width_after, height_after), (size, width, height)


def test_the_decoder_finds_the_crop_size_from_the_stored_size():
    # decode_chunk passes only the stored size; decode_stored recovers the crop from it.
    for size in range(65, 2049):
        assert decode_worker._eval_crop_for(decode_size_hint(size)) == size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_validation_on_the_gpu_gives_the_same_tensors(images, tmp_path):
    # Training validates on the GPU; prediction's tensors are made on the CPU. Each step of the
    # normalisation is one correctly rounded float32 operation on either device, so they agree exactly.
    size = 160
    decoded = load_or_decode([(p, 0) for p in images], size, processes=1, cache_dir=tmp_path)
    augmenter = BatchAugmenter(size, IMAGENET_MEAN, IMAGENET_STD, small=is_small(size))
    on_gpu = torch.cat([b for b, _, _ in DecodedBatches(decoded, augmenter, torch.device("cuda")).evaluation(8)])
    assert torch.equal(on_gpu.cpu(), _predicted(images, size))
