"""The CUDA-only parts of the fast path, on a real GPU. Skipped where there is none (CI here).

Run on a GPU machine with `python -m pytest tests/gpu -v` (benchmarks/device_check.sh does).
What the CPU can check of the same code (crop/flip/resized-crop distributions, decoded pixels,
accuracy of the fast path against the plain one) is tested in tests/core on every run.
"""
import gc
import math
from contextlib import nullcontext

import pytest
import torch

from resnet_app.core.data.batch_augment import BatchAugmenter, random_crop_with_padding, random_horizontal_flip
from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model import architectures
from resnet_app.core.train import batch_size as bs
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=60, image_size=32)


def bf16():
    return torch.autocast("cuda", dtype=torch.bfloat16)


@pytest.mark.parametrize("arch, size, batches", [("resnet18-cifar", 32, (128, 256)), ("resnet18", 224, (32, 64))])
def test_the_activation_estimate_covers_a_real_training_step(arch, size, batches):
    # The estimate (bytes autograd saves, per image) times the headroom must cover what one more image
    # adds to the peak of a real bf16 channels_last training step, and not overstate it wildly either.
    # Per image = the difference of the peaks at two batch sizes, as the probe does (fixed costs such
    # as bf16 weight copies and cuDNN workspaces cancel out).
    model = architectures.build_model(arch, 10).to(CUDA, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    estimate = bs.activation_bytes_per_image(model, size, CUDA, bf16)

    def peak_increase(batch: int) -> int:
        images = torch.randn(batch, 3, size, size, device=CUDA).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch,), device=CUDA)

        def step():
            with bf16():
                loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # optimiser state and this shape's cuDNN choices exist after a first step
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    small, large = batches
    per_image = (peak_increase(large) - peak_increase(small)) / (large - small)
    print(f"{arch} {size} px: estimate {estimate / 2**20:.2f} MiB/image, measured {per_image / 2**20:.2f}")
    assert per_image <= estimate * bs.HEADROOM
    assert per_image >= estimate * 0.5


def test_a_training_step_never_waits_for_the_gpu(shapes, tmp_path):
    # torch's sync debug mode raises on any operation that makes the host wait for the device. The
    # decoded batches, augmentation and step must have none; loss reads happen every 0.25 s only.
    config = TrainConfig(epochs=1, batch_size=32, image_size=32, device="cuda", val_fraction=0.2, seed=0)
    trainer = Trainer(config, shapes, tmp_path / "run")
    trainer._setup()
    assert trainer.sources.train.kind == "decoded" and trainer.sources.train.images.device.type == "cuda"
    batches = trainer.sources.train.epoch(config.seed, 0, 0, 32)
    images, labels, _ = next(batches)  # the first batch copies the epoch's order once,
    trainer._train_step(images, labels, 0, 0.0)  # and the first step lets cuDNN pick its algorithms
    losses = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, labels, _ in batches:
            losses.append(trainer._train_step(images, labels, 0, 0.5))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(losses) >= 4 and all(math.isfinite(v) for v in torch.stack(losses).tolist())


def test_fast_path_on_the_gpu_trains_and_resumes(shapes, tmp_path):
    config = TrainConfig(epochs=3, image_size=32, device="cuda", seed=0)  # batch size auto
    trainer = Trainer(config, shapes, tmp_path / "run")
    starts = []
    trainer.add_callback("run_start", starts.append)
    result = trainer.fit()
    assert starts[0].data_loading == "decoded" and "CUDA" in starts[0].device
    assert starts[0].batch_size == 16  # 192 training images / 8 updates an epoch = 24 -> 16
    assert result.status == "completed" and result.best_val_accuracy > 0.4  # 4 classes: chance is 0.25
    resumed = Trainer.from_checkpoint(result.checkpoint_path, epochs=4)
    assert resumed.fit().epochs_completed == 4


def test_gpu_and_cpu_augmentation_draw_the_same_crops_and_flips():
    # The random draws come from a CPU generator on both devices, so the results are equal, not
    # merely alike.
    batch = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    on_cpu = random_horizontal_flip(random_crop_with_padding(batch, 4, torch.Generator().manual_seed(5)),
                                    generator=torch.Generator().manual_seed(6))
    on_gpu = random_horizontal_flip(random_crop_with_padding(batch.to(CUDA), 4, torch.Generator().manual_seed(5)),
                                    generator=torch.Generator().manual_seed(6))
    assert torch.equal(on_cpu, on_gpu.cpu())
    big = torch.randint(0, 256, (16, 3, 256, 256), dtype=torch.uint8)
    augmenter = BatchAugmenter(224, architectures.IMAGENET_MEAN, architectures.IMAGENET_STD, small=False)
    cpu_crops = augmenter.train(big, torch.Generator().manual_seed(7))
    gpu_crops = augmenter.train(big.to(CUDA), torch.Generator().manual_seed(7))
    torch.testing.assert_close(gpu_crops.cpu(), cpu_crops, atol=2e-2, rtol=0)  # bilinear on another device


def test_out_of_memory_is_survived_for_real(shapes, tmp_path):
    # Leave the run 1.5 GiB of GPU memory: one batch of all 240 images at 224 px (~11 MiB each in bf16,
    # ~2.6 GiB) can't fit, a quarter of it can. The cap binds new allocations only, so first hand back
    # what the caching allocator holds from earlier tests.
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1.5 * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    try:
        config = TrainConfig(arch="resnet18", epochs=1, batch_size=2048, image_size=224, device="cuda",
                             val_fraction=0.0, seed=0)
        trainer = Trainer(config, shapes, tmp_path / "run")
        said = []
        trainer.add_callback("message", lambda m: said.append(m.text))
        result = trainer.fit()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert result.status == "completed"
    assert any("ran out of memory" in text for text in said)


def test_the_probe_sees_bf16_halve_the_activations_on_the_gpu():
    # On the CPU the same probe gives the fp32 figure: twice what bf16 autocast keeps on the GPU.
    model = architectures.build_model("resnet18-cifar", 10)
    cpu = bs.activation_bytes_per_image(model, 32, torch.device("cpu"), nullcontext)
    gpu = bs.activation_bytes_per_image(model.to(CUDA), 32, CUDA, bf16)
    assert gpu / cpu == pytest.approx(0.5, rel=0.1)
