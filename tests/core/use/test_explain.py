"""Grad-CAM: a model trained to spot a red square in the top-left corner looks there; maps fit the image."""
import random
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD, build_model
from resnet_app.core.model.checkpoints import ModelFile, save_model_file
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.use.classifier import Classifier
from resnet_app.core.use.explain import grad_cam

SIDE = 32
SQUARE = (2, 2, 10, 10)  # left, top, right, bottom (exclusive) in pixels: inside the top-left quadrant


def noise_image(rng: random.Random, square: bool) -> Image.Image:
    pixels = np.array([[[rng.randrange(256) for _ in range(3)] for _ in range(SIDE)] for _ in range(SIDE)],
                      dtype=np.uint8)
    if square:
        left, top, right, bottom = SQUARE
        pixels[top:bottom, left:right] = (230, 20, 20)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def corner_model(tmp_path_factory):
    """resnet18-cifar at 32 px trained on noise with or without a red square in the top-left corner."""
    root = tmp_path_factory.mktemp("corner")
    rng = random.Random(0)
    for name in ("plain", "square"):
        (root / "data" / name).mkdir(parents=True)
        for i in range(24):
            noise_image(rng, name == "square").save(root / "data" / name / f"{i:03d}.png")
    config = TrainConfig(arch="resnet18-cifar", epochs=2, batch_size=16, image_size=SIDE, flip=False,
                         loader_processes=0, device="cpu", val_fraction=0.25)
    result = Trainer(config, root / "data", root / "run").fit()
    return Classifier.from_file(result.model_path, device="cpu"), root


def test_heat_map_of_the_square_class_peaks_in_its_corner(corner_model, tmp_path):
    classifier, _ = corner_model
    square = classifier.class_names.index("square")
    rng = random.Random(1)  # images the model has not seen
    peaks_in_corner = 0
    for i in range(4):
        path = tmp_path / f"test{i}.png"
        noise_image(rng, square=True).save(path)
        cam = grad_cam(classifier, path, class_index=square)
        assert cam.class_index == square and cam.layer == "layer3"  # 8x8 at 32 px
        assert cam.heatmap.shape == (SIDE, SIDE) and cam.heatmap.dtype == np.float32
        assert 0.0 <= cam.heatmap.min() and cam.heatmap.max() <= 1.0
        y, x = np.unravel_index(int(cam.heatmap.argmax()), cam.heatmap.shape)
        peaks_in_corner += int(x < SIDE // 2 and y < SIDE // 2)
    assert peaks_in_corner >= 3, f"the map peaked in the top-left quadrant for {peaks_in_corner} of 4 images"


def test_default_class_is_the_predicted_one_and_size_is_the_display_size(corner_model, tmp_path):
    classifier, _ = corner_model
    path = tmp_path / "one.png"
    noise_image(random.Random(2), square=True).save(path)
    [prediction] = classifier.predict_paths([path], top_k=1)
    cam = grad_cam(classifier, path, size=(200, 120))
    assert classifier.class_names[cam.class_index] == prediction.top_k[0][0]
    assert cam.probability == pytest.approx(prediction.top_k[0][1], abs=1e-5)
    assert cam.heatmap.shape == (120, 200)
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(classifier, path, class_index=5)


def test_large_images_map_only_the_centre_crop_and_leave_the_model_clean(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 3)
    file = tmp_path / "big.safetensors"
    save_model_file(file, ModelFile(model.state_dict(), "resnet18", ["a", "b", "c"], 96,
                                    list(IMAGENET_MEAN), list(IMAGENET_STD)))
    classifier = Classifier.from_file(file, device="cpu")
    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 300, 3), dtype=np.uint8)).save(path)
    cam = grad_cam(classifier, path, class_index=1)
    assert cam.heatmap.shape == (100, 300) and cam.layer == "layer2"  # 12x12 at 96 px; layer3 would be 6x6
    # The model sees the centre square of 100 / (256/224) = 87.5 px: nothing outside it.
    assert cam.heatmap[:, :100].max() == 0 and cam.heatmap[:, 200:].max() == 0
    assert cam.heatmap[:, 110:190].max() > 0
    assert all(p.grad is None for p in classifier.model.parameters())  # no gradients left on the model
    assert not classifier.model._forward_hooks and not classifier.model.layer2._forward_hooks


def test_predictions_in_another_thread_do_not_disturb_the_map(corner_model, tmp_path):
    classifier, root = corner_model
    path = tmp_path / "one.png"
    noise_image(random.Random(3), square=True).save(path)
    expected = grad_cam(classifier, path).heatmap
    others = sorted((root / "data" / "plain").glob("*.png"))[:16]
    stop = threading.Event()

    def predict_meanwhile() -> None:
        while not stop.is_set():
            list(classifier.predict_paths(others, top_k=1, batch_size=8))

    thread = threading.Thread(target=predict_meanwhile)
    thread.start()
    try:
        maps = [grad_cam(classifier, path).heatmap for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    for heatmap in maps:
        np.testing.assert_allclose(heatmap, expected, atol=1e-5)
