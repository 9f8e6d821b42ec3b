"""The fast data path: decode once (with a disk cache), augment whole batches; same results as the plain path."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from resnet_app.core.data.batch_augment import (
    BatchAugmenter,
    random_crop_with_padding,
    random_horizontal_flip,
    random_resized_crop_boxes,
    resized_crops,
)
from resnet_app.core.data.decoded_cache import cache_key, load_or_decode, stored_size
from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.data.transforms import eval_transform, train_transform
from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig


def _samples(folder):
    return [(p, i) for i, cls in enumerate(sorted(folder.iterdir())) for p in sorted(cls.iterdir())]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_sample_dataset(tmp_path_factory.mktemp("d") / "shapes", images_per_class=5, image_size=40)


@pytest.mark.parametrize("image_size", [16, 96])
def test_decoded_pixels_match_the_evaluation_transform(shapes, tmp_path, image_size):
    samples = _samples(shapes)[:6]
    decoded = load_or_decode(samples, image_size, processes=1, cache_dir=tmp_path)
    augmenter = BatchAugmenter(image_size, IMAGENET_MEAN, IMAGENET_STD, small=image_size <= 64)
    fast = augmenter.eval(decoded.images)
    plain = torch.stack([eval_transform(image_size, IMAGENET_MEAN, IMAGENET_STD)(Image.open(p).convert("RGB"))
                         for p, _ in samples])
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_disk_cache_is_reused_and_invalidated_by_a_changed_file(shapes, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    samples = _samples(data)
    first = load_or_decode(samples, 16, processes=1, cache_dir=tmp_path / "cache")
    second = load_or_decode(samples, 16, processes=1, cache_dir=tmp_path / "cache")
    assert not first.from_disk_cache and second.from_disk_cache
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    Image.new("RGB", (40, 40), "white").save(samples[0][0])  # the user edits a file
    third = load_or_decode(samples, 16, processes=1, cache_dir=tmp_path / "cache")
    assert not third.from_disk_cache
    assert not torch.equal(third.images[0], first.images[0])
    assert cache_key(samples, 16) != cache_key(samples, 32)  # another resolution, another entry


def test_unreadable_files_are_left_out_and_reported(shapes, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    samples = _samples(data)
    samples[2][0].write_bytes(b"plain text where pixels should be")
    decoded = load_or_decode(samples, 16, processes=2, cache_dir=tmp_path / "cache")  # 2 processes
    assert len(decoded.labels) == len(samples) - 1
    [(path, reason)] = decoded.failures  # the one broken file, named, with the loader's reason
    assert path == str(samples[2][0])
    assert "not an image" in reason
    expected_labels = [label for i, (_, label) in enumerate(samples) if i != 2]
    assert decoded.labels.tolist() == expected_labels


def test_batch_crop_offsets_and_flips_match_torchvision():
    # A single bright pixel at the centre of a 16 px image shows where each crop came from.
    size, padding, draws = 16, 2, 4000
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    image[..., 8, 5] = 255
    generator = torch.Generator().manual_seed(0)
    cropped = random_horizontal_flip(random_crop_with_padding(image.expand(draws, -1, -1, -1), padding, generator),
                                     generator=generator)
    ours = [tuple(torch.nonzero(c[0]).tolist()[0]) if c[0].any() else None for c in cropped]
    torch.manual_seed(0)
    reference = v2.Compose([v2.RandomCrop(size, padding=padding), v2.RandomHorizontalFlip()])
    theirs = [reference(image[0]) for _ in range(draws)]
    theirs = [tuple(torch.nonzero(t[0]).tolist()[0]) if t[0].any() else None for t in theirs]
    for name, index in (("row", 0), ("column", 1)):
        ours_values = np.array([p[index] for p in ours if p])
        theirs_values = np.array([p[index] for p in theirs if p])
        assert abs(ours_values.mean() - theirs_values.mean()) < 0.15, name
        assert abs(ours_values.std() - theirs_values.std()) < 0.15, name
    flipped_share = np.mean([p[1] > 7 for p in ours if p])  # column 5 maps to 10 + offset when flipped
    assert abs(flipped_share - 0.5) < 0.03


def test_random_resized_crop_boxes_match_torchvision_statistics():
    height, width, draws = 256, 256, 4000
    boxes = random_resized_crop_boxes(draws, height, width, generator=torch.Generator().manual_seed(1))
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all())
    torch.manual_seed(1)
    blank = torch.zeros(3, height, width)
    reference = torch.tensor([v2.RandomResizedCrop.get_params(blank, [0.08, 1.0], [3 / 4, 4 / 3])
                              for _ in range(draws)], dtype=torch.float64)
    ours_area = (h * w / (height * width))
    theirs_area = reference[:, 2] * reference[:, 3] / (height * width)
    assert abs(ours_area.mean() - theirs_area.mean()) < 0.02
    ours_ratio, theirs_ratio = torch.log(w / h), torch.log(reference[:, 3] / reference[:, 2])
    assert abs(ours_ratio.mean() - theirs_ratio.mean()) < 0.02 and abs(ours_ratio.std() - theirs_ratio.std()) < 0.02


def test_resized_crop_of_the_whole_image_is_the_image():
    batch = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    whole = torch.tensor([[0, 0, 20, 20]] * 2, dtype=torch.float64)
    torch.testing.assert_close(resized_crops(batch, whole, 20), batch.float(), atol=1e-3, rtol=0)


def test_training_pipeline_outputs_match_in_range_and_shape():
    for size, stored in ((32, 32), (224, 256)):
        assert stored_size(size) == stored
        augmenter = BatchAugmenter(size, IMAGENET_MEAN, IMAGENET_STD, small=size <= 64)
        batch = torch.randint(0, 256, (4, 3, stored, stored), dtype=torch.uint8)
        out = augmenter.train(batch, torch.Generator().manual_seed(0))
        plain = train_transform(size, IMAGENET_MEAN, IMAGENET_STD)(v2.ToPILImage()(batch[0]))
        assert out.shape == (4, 3, size, size) and out.dtype == torch.float32 and plain.shape == out.shape[1:]
        low, high = (0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD), (1 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)
        assert out.min() >= low - 1e-4 and out.max() <= high + 1e-4


def test_fast_and_plain_paths_train_on_the_same_batches(shapes, tmp_path):
    # Random crops are where the two paths draw differently (their statistics are compared with
    # torchvision's above). Without them, both must feed the same pixels in the same order, epoch after
    # epoch, and validate on the same pixels. A learning rate of 1e-6 keeps the weights all but fixed,
    # so each batch's loss is a function of that batch alone: every loss of the run must match.
    runs = {}
    for mode in ("decoded", "streaming"):
        config = TrainConfig(epochs=2, batch_size=6, image_size=16, val_fraction=0.2, loader_processes=0,
                             device="cpu", seed=0, data_loading=mode, augment=False, flip=False,
                             optimizer="sgd", lr=1e-6)
        trainer = Trainer(config, shapes, tmp_path / mode)
        starts, batches = [], []
        trainer.add_callback("run_start", starts.append)
        trainer.add_callback("batch_end", lambda e, out=batches: out.append((e.epoch, e.batch, e.images, e.loss)))
        assert trainer.fit().status == "completed"
        assert starts[0].data_loading == mode and starts[0].train_size == 16
        runs[mode] = batches, [(h["val_loss"], h["val_accuracy"]) for h in trainer.history]
    (decoded, decoded_val), (streaming, streaming_val) = runs["decoded"], runs["streaming"]
    assert [b[:3] for b in decoded] == [b[:3] for b in streaming] == [
        (epoch, batch, images) for epoch in (1, 2) for batch, images in ((1, 6), (2, 6), (3, 4))]
    # Pixels agree to 1e-5 (test_decoded_pixels_match_the_evaluation_transform); the losses, measured, to 5e-7.
    assert [b[3] for b in decoded] == pytest.approx([b[3] for b in streaming], abs=1e-5)
    assert [v[1] for v in decoded_val] == [v[1] for v in streaming_val]
    assert [v[0] for v in decoded_val] == pytest.approx([v[0] for v in streaming_val], abs=1e-5)
