"""Nothing lost, nothing misleading (issue 10): a run's figures, files and folder on real tiny runs."""
from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading

import pytest
import torch

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.run_files import RunFiles, RunFolderBusy
from resnet_app.core.train.settings import TrainConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return generate_sample_dataset(tmp_path_factory.mktemp("data") / "shapes", images_per_class=6, image_size=16)


def tiny_config(**overrides):
    values = dict(epochs=2, batch_size=4, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu",
                  seed=3)
    return TrainConfig(**{**values, **overrides})


def test_a_resumed_epochs_train_loss_covers_the_whole_epoch(tiny_data, tmp_path):
    straight = Trainer(tiny_config(), tiny_data, tmp_path / "straight")
    straight.fit()
    first = Trainer(tiny_config(), tiny_data, tmp_path / "split")
    first.add_callback("batch_end", lambda e: first.request_stop() if e.step == 6 else None)  # epoch 2, batch 2
    assert first.fit().status == "stopped"
    resumed = Trainer.from_checkpoint(tmp_path / "split" / "last.pt")
    resumed.fit()
    assert resumed.history[1]["train_loss"] == pytest.approx(straight.history[1]["train_loss"], abs=1e-6)


@pytest.mark.parametrize("data_loading, any_draw", [("decoded", True), ("streaming", False)])
def test_other_threads_drawing_random_numbers_do_not_change_a_run(tiny_data, tmp_path, data_loading, any_draw):
    """The app loads models (random initial weights) while a run trains: the run must not notice. With
    decoded images the run draws from its own generators only, so no draw anywhere can change it;
    streaming uses torchvision's transforms, which draw from torch's global generator under the
    engine's lock: other engine code (model building) can't interleave, foreign code could (rng.py)."""
    quiet = Trainer(tiny_config(data_loading=data_loading), tiny_data, tmp_path / "quiet")
    quiet.fit()
    busy = Trainer(tiny_config(data_loading=data_loading), tiny_data, tmp_path / "busy")
    done = threading.Event()

    def draw_meanwhile():
        while not done.is_set():
            build_model("resnet18-cifar", 4)  # what loading a model does
            if any_draw:
                torch.rand(1000)

    other = threading.Thread(target=draw_meanwhile)
    other.start()
    try:
        busy.fit()
    finally:
        done.set()
        other.join()
    a, b = quiet.model.state_dict(), busy.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_validation_loss_is_divergence_and_its_weights_are_never_saved(tiny_data, tmp_path):
    """SGD at lr 10, constant, no smoothing: epoch 1 validates at a huge but finite loss, epoch 2 at NaN
    (measured)."""
    from resnet_app.core.model.checkpoints import load_checkpoint, load_model_file

    result = Trainer(tiny_config(optimizer="sgd", lr=10.0, epochs=3, schedule="none", label_smoothing=0.0), tiny_data,
                     tmp_path / "run").fit()
    assert result.status == "diverged" and "validation loss became nan in epoch 2" in result.message
    assert load_model_file(result.model_path).metrics["epoch"] == 1  # not the NaN epoch's weights
    assert load_checkpoint(result.checkpoint_path)["epoch"] == 1
    text = (tmp_path / "run" / "run.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"run.json holds {name}"))


def test_counts_are_of_the_images_really_used(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for name in ("circle_0000.png", "circle_0001.png", "square_0002.png"):
        folder = data / name.split("_")[0]
        (folder / name).write_bytes(b"broken")
    trainer = Trainer(tiny_config(epochs=1), data, tmp_path / "run")
    starts, said = [], []
    trainer.add_callback("run_start", starts.append)
    trainer.add_callback("message", lambda m: said.append(m.text))
    trainer.fit()
    broken = {"circle_0000.png", "circle_0001.png", "square_0002.png"}
    used_train = sum(path.name not in broken for path, _ in trainer.train_samples)
    used_val = sum(path.name not in broken for path, _ in trainer.val_samples)
    assert used_train + used_val == 24 - 3
    assert (starts[0].train_size, starts[0].val_size) == (used_train, used_val)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (run["train_size"], run["val_size"]) == (starts[0].train_size, starts[0].val_size)
    assert sorted(os.path.basename(item["path"]) for item in run["unreadable"]) == [
        "circle_0000.png", "circle_0001.png", "square_0002.png"]
    assert sum("3 files could not be read" in text for text in said) == 1


def test_a_new_run_never_writes_into_a_folder_holding_another_run(tiny_data, tmp_path):
    first = Trainer(tiny_config(epochs=1), tiny_data, tmp_path / "run").fit()
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    import shutil

    other = generate_sample_dataset(tmp_path / "two", images_per_class=6, image_size=16)
    for name in ("star", "triangle"):  # another dataset: two classes
        shutil.rmtree(other / name)
    said = []
    second_trainer = Trainer(tiny_config(epochs=1), other, tmp_path / "run")
    second_trainer.add_callback("message", lambda m: said.append(m.text))
    second = second_trainer.fit()
    assert second.model_path == tmp_path / "run-2" / "model.safetensors"
    assert any("holds another run" in text and "run-2" in text for text in said)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before  # untouched
    assert first.model_path == tmp_path / "run" / "model.safetensors"


def test_a_run_folder_in_use_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
    busy = RunFiles(tmp_path / "run")
    busy.claim_existing()
    with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}"):
        RunFiles(tmp_path / "run").claim_existing()
    fresh = RunFiles(tmp_path / "run")
    assert fresh.claim_new() == tmp_path / "run-2"  # a new run goes elsewhere
    busy.release()
    fresh.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run" / ".run.lock").write_text(dead.stdout)  # a crashed run's lock
    RunFiles(tmp_path / "run").claim_existing()


def _limit_file_size():
    # Writes beyond 4 MiB fail with EFBIG (a real OS error, as a full disk gives ENOSPC).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 2**20, 4 * 2**20))


def test_a_full_disk_ends_the_run_with_a_message_and_no_traceback(tiny_data, tmp_path):
    """resnet18-cifar weights take 45 MB: with files capped at 4 MiB, saving fails as on a full disk."""
    env = {**os.environ, "RESNET_APP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "resnet_app", "train", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs",
         "1", "--image-size", "16", "--batch-size", "8", "--device", "cpu", "--json"],
        capture_output=True, text=True, env=env, preexec_fn=_limit_file_size, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert "could not save" in done.stderr and "the disk is full" in done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["status"] == "failed" and summary["model"] is None
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "could not save" in run["message"]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_json_output_never_holds_nan(tmp_path):
    """A model whose weights are NaN (a tampered file) gives errors per image, never NaN in JSON."""
    from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD
    from resnet_app.core.model.checkpoints import ModelFile, save_model_file

    model = build_model("resnet18-cifar", 2)
    with torch.no_grad():
        model.linear.weight.fill_(math.nan)
    path = tmp_path / "nan.safetensors"
    save_model_file(path, ModelFile(model.state_dict(), "resnet18-cifar", ["a", "b"], 16, list(IMAGENET_MEAN),
                                    list(IMAGENET_STD)))
    images = generate_sample_dataset(tmp_path / "img", images_per_class=1, image_size=16)
    done = subprocess.run([sys.executable, "-m", "resnet_app", "predict", str(path), str(images), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    for line in done.stdout.splitlines():
        row = json.loads(line, parse_constant=lambda name: pytest.fail(f"predict --json printed {name}"))
        assert row["top_k"] == [] and "no usable" in row["error"]


def _model_file_with(tmp_path, **changes):
    """A valid model file whose metadata fields are then replaced by `changes` (as a hand edit would)."""
    import json as json_module

    from safetensors.torch import save_file

    from resnet_app.core.model.architectures import IMAGENET_MEAN, IMAGENET_STD
    from resnet_app.core.model.checkpoints import ModelFile

    described = ModelFile(build_model("resnet18-cifar", 4).state_dict(), "resnet18-cifar", ["a", "b", "c", "d"], 32,
                          list(IMAGENET_MEAN), list(IMAGENET_STD))
    metadata = described.metadata()
    metadata.update({key: json_module.dumps(value) for key, value in changes.items()})
    path = tmp_path / "edited.safetensors"
    save_file({k: v.contiguous() for k, v in described.state_dict.items()}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("changes, named", [
    ({"image_size": 100000}, "image size"), ({"image_size": "big"}, "image size"), ({"image_size": 0}, "image size"),
    ({"image_size": -5}, "image size"), ({"mean": [0.5, 0.5]}, "mean"), ({"std": [0.2, 0.0, 0.2]}, "std"),
    ({"class_names": "abcd"}, "class names"), ({"class_names": ["a", "a", "b", "c"]}, "class names"),
    ({"arch": "resnet50"}, "architecture"), ({"class_names": ["a", "b"]}, "weights don't fit"),
])
def test_a_tampered_model_file_is_refused_naming_the_field(tmp_path, changes, named):
    from resnet_app.core.model.checkpoints import CheckpointError
    from resnet_app.core.use.classifier import Classifier

    path = _model_file_with(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=named) as refused:
        Classifier.from_file(path, device="cpu")
    assert str(path) in str(refused.value)
    done = subprocess.run([sys.executable, "-m", "resnet_app", "predict", str(path), str(path)],
                          capture_output=True, text=True, timeout=120) if named == "image size" else None
    if done is not None:  # the command line: exit code 2, one line, no traceback
        assert done.returncode == 2 and "Traceback" not in done.stderr and named in done.stderr


def test_a_checkpoint_without_arch_or_class_names_is_refused(tmp_path):
    from resnet_app.core.model.checkpoints import CheckpointError, save_checkpoint
    from resnet_app.core.use.classifier import Classifier

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "model": build_model("resnet18-cifar", 2).state_dict()})
    with pytest.raises(CheckpointError, match="architecture"):
        Classifier.from_file(path, device="cpu")


def test_predict_and_eval_take_a_local_imagenet_weights_file(tmp_path):
    """The README says: pass the weights file's path instead of 'imagenet'."""
    weights = tmp_path / "resnet18-weights.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), weights)
    images = generate_sample_dataset(tmp_path / "img", images_per_class=1, image_size=16)
    done = subprocess.run([sys.executable, "-m", "resnet_app", "predict", str(weights), str(images), "--json",
                           "--top-k", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 4 and all(len(row["top_k"]) == 2 for row in rows)
    from resnet_app.core.model.pretrained import imagenet_class_names

    assert rows[0]["top_k"][0]["label"] in imagenet_class_names()


def test_copies_within_a_class_stay_on_one_side_of_the_split(tmp_path):
    import shutil

    from resnet_app.core.data.scan import scan_dataset
    from resnet_app.core.train.events import EventHub
    from resnet_app.core.train.run_data import prepare_run_data

    data = generate_sample_dataset(tmp_path / "data", images_per_class=12, image_size=16)
    star = data / "star"
    for n in range(4):  # four copies of one star, and three of another
        shutil.copy(star / "star_0000.png", star / f"copy_a{n}.png")
    for n in range(3):
        shutil.copy(star / "star_0001.png", star / f"copy_b{n}.png")
    report = scan_dataset(data, check_images=False)
    assert len(report.copies) == 2 and "byte-identical copies" in " ".join(report.warnings)
    groups = [{str(p) for p in group} for group in report.copies]
    for seed in range(20):
        data_split = prepare_run_data(TrainConfig(seed=seed, val_fraction=0.25), data, EventHub())
        val = {str(path) for path, _ in data_split.val_samples}
        assert all(group <= val or not (group & val) for group in groups), f"copies split apart (seed {seed})"
    doctor = subprocess.run([sys.executable, "-m", "resnet_app", "doctor", str(data), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert len(json.loads(doctor.stdout)["copies_within_classes"]) == 2


def test_a_validation_folder_that_is_the_training_folder_is_refused(tiny_data, tmp_path):
    from resnet_app.core.data.scan import DatasetError

    with pytest.raises(DatasetError, match="shares 24 of its 24 images with the training folder"):
        Trainer(tiny_config(val_dir=str(tiny_data)), tiny_data, tmp_path / "run").fit()


def test_resuming_on_changed_files_of_the_same_number_warns(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    Trainer(tiny_config(epochs=1), data, tmp_path / "run").fit()
    (data / "star" / "star_0005.png").rename(data / "star" / "renamed.png")  # same count, other files
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "last.pt", epochs=2)
    said = []
    resumed.add_callback("message", lambda m: said.append(m.text))
    resumed.fit()
    assert any("not the ones the checkpoint was trained on" in text for text in said)


def test_a_train_and_val_layout_is_used_as_such(tmp_path):
    from resnet_app.core.model.checkpoints import load_checkpoint

    root = tmp_path / "dataset"
    generate_sample_dataset(root / "train", images_per_class=6, image_size=16)
    generate_sample_dataset(root / "val", images_per_class=3, image_size=16, seed=1)
    trainer = Trainer(tiny_config(epochs=1), root, tmp_path / "run")
    said = []
    trainer.add_callback("message", lambda m: said.append(m.text))
    trainer.fit()
    assert trainer.classes == ["circle", "square", "star", "triangle"]  # not "train" and "val"
    assert (len(trainer.train_samples), len(trainer.val_samples)) == (24, 12)
    assert any("training on train/, validating on val/" in text for text in said)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["config"]["val_dir"] == str(root / "val")  # a resume validates on the same images


def test_mixed_precision_follows_what_the_gpu_computes_itself():
    from resnet_app.core.model.devices import mixed_precision

    assert mixed_precision(torch.device("cpu")) is None
    assert mixed_precision(torch.device("cuda", 0), bf16_in_hardware=True) == "bf16"
    assert mixed_precision(torch.device("cuda", 0), bf16_in_hardware=False) == "fp16"  # pre-Ampere


def test_validation_out_of_memory_halves_the_validation_batch(tiny_data, tmp_path):
    """A GPU's out-of-memory error, raised here by the real model for big validation batches."""
    trainer = Trainer(tiny_config(epochs=1, batch_size=8), tiny_data, tmp_path / "run")
    validated = []

    def refuse_big_validation_batches(module, inputs):
        if not module.training:
            if len(inputs[0]) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")
            validated.append(len(inputs[0]))

    said = []
    trainer.add_callback("message", lambda m: said.append(m.text))
    trainer.add_callback("run_start", lambda e: trainer.model.register_forward_pre_hook(refuse_big_validation_batches))
    result = trainer.fit()
    assert result.status == "completed" and result.history[0]["val_accuracy"] is not None
    assert set(validated) == {2} and sum(validated) == 8
    assert any("validating with batch size 2" in text for text in said)
