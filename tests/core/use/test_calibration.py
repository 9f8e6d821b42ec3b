"""Calibrated confidence: ECE, the fitted temperature, the unsure threshold, the model file, predict and eval."""
import csv
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_app import cli
from resnet_app.core.data.sample_data import SAMPLE_CLASSES, draw_sample, generate_sample_dataset
from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import (
    CALIBRATION_KEY,
    CheckpointError,
    ModelFile,
    load_model_file,
    save_model_file,
    stored_calibration,
)
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig
from resnet_app.core.use.calibration import (
    MIN_CALIBRATION_IMAGES,
    calibrate_logits,
    calibrate_run,
    choose_unsure_threshold,
    expected_calibration_error,
    fit_temperature,
)
from resnet_app.core.use.classifier import Classifier, write_predictions_csv
from resnet_app.core.use.evaluation import evaluate_folder, report_with_rows


def overconfident_logits(n=3000, classes=5, scale=3.0, seed=0):
    """Logits whose labels are drawn from softmax(true logits): the true logits are calibrated, and
    `scale` times them over-confident, by a temperature of `scale`."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(n, classes, generator=g) * 2
    labels = torch.multinomial(torch.softmax(true, 1), 1, generator=g).flatten()
    return true * scale, labels


# --- the measures and the fit (no model) ----------------------------------------------------------

def test_ece_is_the_weighted_gap_between_confidence_and_accuracy_per_bin():
    # Bin (0.8667, 0.9333]: confidences 0.9, 0.9 with one right -> gap 0.4, weight 2/4.
    # Bin (0.2667, 0.3333]: 0.3, 0.3 both wrong -> gap 0.3, weight 2/4.
    assert expected_calibration_error([0.9, 0.9, 0.3, 0.3], [True, False, False, False]) == pytest.approx(0.35)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 lands in the last bin
    assert expected_calibration_error([], []) == 0.0


def test_temperature_fitted_on_overconfident_logits_lowers_ece():
    logits, labels = overconfident_logits(scale=3.0)
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)
    result = calibrate_logits(logits, labels)
    assert result["ece_after"] < result["ece_before"] / 3, result
    assert result["nll_after"] < result["nll_before"]
    # Under-confident logits get a temperature under 1.
    assert fit_temperature(logits / 6, labels) == pytest.approx(0.5, rel=0.1)


def test_unsure_threshold_is_where_accuracy_falls_under_half():
    confidences = [0.3, 0.35, 0.4, 0.45, 0.55, 0.6, 0.7, 0.9]
    correct = [False, False, False, False, True, True, True, True]
    assert choose_unsure_threshold(confidences, correct) == pytest.approx((0.45 + 0.55) / 2)
    # A right answer at 0.4 and a wrong one at 0.45 pool (accuracy can only rise with confidence) to
    # 50 %, which is not under half: the threshold stops below them.
    correct[2] = True
    assert choose_unsure_threshold(confidences, correct) == pytest.approx((0.35 + 0.4) / 2)
    assert choose_unsure_threshold([0.4, 0.9], [True, True]) == 0.0  # never wrong: never unsure
    assert choose_unsure_threshold([0.4, 0.9], [False, False]) == 1.0  # always wrong: always unsure
    # Ties are not split: both 0.5s are on the same side.
    assert choose_unsure_threshold([0.5, 0.5, 0.5, 0.8], [False, False, True, True]) == pytest.approx(0.65)
    # Synthetic calibrated predictions: the threshold is near 0.5 itself.
    logits, labels = overconfident_logits(scale=1.0)
    probabilities = torch.softmax(logits, 1).max(1)
    threshold = choose_unsure_threshold(probabilities.values, probabilities.indices == labels)
    assert 0.35 < threshold < 0.65


def test_no_mistakes_or_too_few_images_keep_temperature_one():
    logits = torch.tensor([[4.0, 0.0], [0.0, 3.0]] * 10)
    labels = torch.tensor([0, 1] * 10)
    result = calibrate_logits(logits, labels)
    assert result["temperature"] == 1.0 and result["unsure_below"] == 0.0 and "not_fitted" in result
    assert calibrate_logits(logits[:4], labels[:4])["temperature"] == 1.0


# --- the model file and the Classifier (an untrained model) ---------------------------------------

CLASSES = ["apple", "banana", "cherry"]


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_model_file(path, ModelFile(build_model("resnet18-cifar", 3).state_dict(), "resnet18-cifar", CLASSES, 32,
                                    [0.5] * 3, [0.25] * 3))
    return path


def colour_images(folder, count=6):
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.new("RGB", (20, 20), tuple(rng.randrange(256) for _ in range(3))).save(path)
        paths.append(path)
    return paths


def test_a_model_without_calibration_is_never_unsure(model_file, tmp_path):
    classifier = Classifier.from_file(model_file, device="cpu")
    assert (classifier.temperature, classifier.unsure_below) == (1.0, 0.0)
    predictions = list(classifier.predict_paths(colour_images(tmp_path / "images")))
    assert not any(p.unsure for p in predictions)
    assert all(p.uncalibrated_confidence == pytest.approx(p.top_k[0][1], abs=1e-6) for p in predictions)


def test_stored_temperature_divides_the_logits_and_threshold_marks_unsure(model_file, tmp_path):
    paths = colour_images(tmp_path / "images")
    plain = Classifier.from_file(model_file, device="cpu")
    batch = torch.stack([plain.preprocess(plain.open_image(p)) for p in paths])
    logits = plain.logits(batch)
    model = load_model_file(model_file)
    model.extra[CALIBRATION_KEY] = {"temperature": 2.5, "unsure_below": 0.9}
    save_model_file(model_file, model)

    calibrated = Classifier.from_file(model_file, device="cpu")
    assert calibrated.temperature == 2.5 and calibrated.unsure_below == 0.9
    assert torch.allclose(calibrated.probabilities(batch), torch.softmax(logits / 2.5, 1), atol=1e-6)
    predictions = list(calibrated.predict_paths(paths, top_k=2))
    for prediction, row in zip(predictions, torch.softmax(logits, 1), strict=True):
        assert prediction.unsure == (prediction.top_k[0][1] < 0.9)
        assert prediction.uncalibrated_confidence == pytest.approx(float(row.max()), abs=1e-5)
        assert prediction.to_dict()["unsure"] is prediction.unsure
    assert all(p.unsure for p in predictions)  # an untrained 3-class model is never 90 % sure at T = 2.5
    calibrated.unsure_below = 0.0  # the user's setting wins
    assert not any(p.unsure for p in calibrated.predict_paths(paths))

    csv_path = tmp_path / "out.csv"
    (tmp_path / "broken.png").write_bytes(b"not an image")
    write_predictions_csv(csv_path, predictions + list(calibrated.predict_paths([tmp_path / "broken.png"])), 2)
    rows = list(csv.reader(open(csv_path, encoding="utf-8")))
    assert rows[0] == ["path", "error", "label_1", "probability_1", "label_2", "probability_2", "unsure"]
    assert [row[-1] for row in rows[1:]] == ["yes"] * len(paths) + [""]  # unreadable: neither


@pytest.mark.parametrize("calibration, field", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "2"}, "temperature"), ({"unsure_below": 1.5}, "unsure threshold"), ("hot", "calibration"),
])
def test_tampered_calibration_is_refused_naming_the_field(model_file, calibration, field):
    model = load_model_file(model_file)
    model.extra[CALIBRATION_KEY] = calibration
    with pytest.raises(CheckpointError, match=field):
        stored_calibration(model_file, model.extra)
    save_model_file(model_file, model)
    with pytest.raises(CheckpointError, match=field):
        Classifier.from_file(model_file, device="cpu")


# --- a shapes model trained for two epochs --------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A tiny shapes model (4 epochs at 16 px), calibrated as a run ends, on its validation images and
    160 more (a run's few validation images are under the minimum)."""
    root = tmp_path_factory.mktemp("shapes")
    data = generate_sample_dataset(root / "data", images_per_class=40, image_size=32)
    trainer = Trainer(TrainConfig(epochs=4, batch_size=8, image_size=16, loader_processes=0, device="cpu"),
                      data, root / "run")
    result = trainer.fit()
    assert result.model_path is not None
    # Calibration needs MIN_CALIBRATION_IMAGES: the run's validation images and more of the same kind.
    more = generate_sample_dataset(root / "more", images_per_class=40, image_size=32, seed=5)
    samples = list(trainer.val_samples) + [(path, SAMPLE_CLASSES.index(path.parent.name))
                                           for path in sorted(more.glob("*/*.png"))]
    assert len(samples) >= MIN_CALIBRATION_IMAGES
    calibration = calibrate_run(result.model_path, samples, "cpu")
    return root, result.model_path, samples, calibration


def out_of_kind_images(folder, count=30):
    """Images of no shape class: random noise, out-of-focus photo-like colour fields, and collages of
    all four shapes at once (evidence for every class)."""
    folder.mkdir()
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"noise{i}.png")
        field = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        field.resize((32, 32), Image.Resampling.BICUBIC).save(folder / f"photo{i}.png")
        collage, shapes = Image.new("RGB", (64, 64)), list(SAMPLE_CLASSES)
        random.Random(i).shuffle(shapes)
        for k, shape in enumerate(shapes):
            collage.paste(draw_sample(shape, 32, random.Random(f"{i}/{k}")), ((k % 2) * 32, (k // 2) * 32))
        collage.resize((32, 32), Image.Resampling.BOX).save(folder / f"collage{i}.png")
        paths += [folder / f"noise{i}.png", folder / f"photo{i}.png", folder / f"collage{i}.png"]
    return paths


def test_run_calibration_is_stored_and_applied(shapes_run):
    _, model_path, val_samples, calibration = shapes_run
    assert calibration["images"] == len(val_samples)
    assert set(calibration) >= {"temperature", "unsure_below", "ece_before", "ece_after"}
    classifier = Classifier.from_file(model_path, device="cpu")
    assert classifier.temperature == pytest.approx(calibration["temperature"])
    assert classifier.unsure_below == pytest.approx(calibration["unsure_below"])
    assert load_model_file(model_path).extra["config"]["epochs"] == 4  # the rest of the metadata is kept


def test_images_of_no_training_class_get_less_confidence_than_validation_images(shapes_run, tmp_path):
    """Noise, photos and collages are none of the shapes: the model is less sure of them on average.
    (Whether they fall under the unsure threshold depends on where it lies; with a threshold fitted on
    enough images, out-of-kind images were unsure about as often as the validation images: 20 % and 21 %.)"""
    _, model_path, val_samples, _ = shapes_run
    classifier = Classifier.from_file(model_path, device="cpu")
    val = list(classifier.predict_paths([path for path, _ in val_samples]))
    strange = list(classifier.predict_paths(out_of_kind_images(tmp_path / "strange")))
    val_confidence = sum(p.top_k[0][1] for p in val) / len(val)
    strange_confidence = sum(p.top_k[0][1] for p in strange) / len(strange)
    print(f"mean confidence: validation {val_confidence:.2f}, out of kind {strange_confidence:.2f}")
    assert strange_confidence < val_confidence, (strange_confidence, val_confidence)


def test_an_overconfident_model_is_calibrated_by_its_temperature(shapes_run, tmp_path):
    root, model_path, val_samples, _ = shapes_run
    # The same model made over-confident: its last layer's outputs times 4.
    model = load_model_file(model_path)
    model.state_dict = {k: v * 4 if k.startswith("linear.") else v for k, v in model.state_dict.items()}
    model.extra.pop(CALIBRATION_KEY, None)
    overconfident = tmp_path / "overconfident.safetensors"
    save_model_file(overconfident, model)
    calibration = calibrate_run(overconfident, val_samples, "cpu")
    assert calibration["temperature"] > 2
    assert calibration["ece_after"] < calibration["ece_before"], calibration
    # eval reports both, on a labelled folder holding the validation images.
    folder = tmp_path / "val"
    for i, (path, label) in enumerate(val_samples):  # (numbered: two source folders may share a name)
        (folder / SAMPLE_CLASSES[label]).mkdir(parents=True, exist_ok=True)
        (folder / SAMPLE_CLASSES[label] / f"{i}-{path.name}").write_bytes(path.read_bytes())
    report = evaluate_folder(Classifier.from_file(overconfident, device="cpu"), folder)
    assert report.temperature == pytest.approx(calibration["temperature"])
    assert report.ece_before == pytest.approx(calibration["ece_before"], abs=1e-4)
    assert report.ece_after == pytest.approx(calibration["ece_after"], abs=1e-4)
    assert any(line.startswith("calibration error:") for line in report.summary_lines())


def test_eval_and_predict_json_carry_calibration_and_unsure(shapes_run, capsys):
    root, model_path, _, calibration = shapes_run
    assert cli.main(["eval", str(model_path), str(root / "data"), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["temperature"] == pytest.approx(calibration["temperature"])
    assert 0 <= report["ece_before"] <= 1 and 0 <= report["ece_after"] <= 1
    assert cli.main(["predict", str(model_path), str(root / "data" / "star"), "--device", "cpu", "--json",
                     "--min-confidence", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 40 and all(row["unsure"] is True for row in rows)


# --- too few validation images; figures after moves (issue 19 item 11) ----------------------------

def test_too_few_images_give_neither_temperature_nor_unsure_threshold():
    """Wrong answers at low confidence would give a threshold; from so few images it would be noise."""
    count = MIN_CALIBRATION_IMAGES - 1
    logits = torch.tensor([[3.0, 0.0]] * count)
    labels = torch.tensor([0] * (count - 4) + [1] * 4)  # four confident mistakes...
    logits[-4:] = torch.tensor([0.1, 0.0])  # ...made unsure: a threshold would sit above them
    result = calibrate_logits(logits, labels)
    assert result["temperature"] == 1.0
    assert result["unsure_below"] == 0.0
    assert str(MIN_CALIBRATION_IMAGES) in result["not_fitted"]


def test_eval_says_why_the_model_has_no_temperature(model_file, tmp_path):
    model = load_model_file(model_file)
    model.extra[CALIBRATION_KEY] = calibrate_logits(torch.tensor([[1.0, 0.0, 0.0]] * 5), torch.tensor([0, 1, 2, 0, 1]))
    save_model_file(model_file, model)
    data = tmp_path / "labelled"
    for name in CLASSES:
        colour_images(data / name, count=2)
    classifier = Classifier.from_file(model_file, device="cpu")
    assert "only 5 validation image(s)" in classifier.calibration_note
    report = evaluate_folder(classifier, data)
    assert any("no fitted temperature: only 5 validation image(s)" in line for line in report.summary_lines())
    assert report.to_dict()["calibration_note"] == classifier.calibration_note


def test_calibration_figures_are_recounted_after_moves(model_file, tmp_path):
    model = load_model_file(model_file)
    model.extra[CALIBRATION_KEY] = {"temperature": 2.0, "unsure_below": 0.34}
    save_model_file(model_file, model)
    data = tmp_path / "labelled"
    for name in CLASSES:
        colour_images(data / name, count=4)
    classifier = Classifier.from_file(model_file, device="cpu")
    report = evaluate_folder(classifier, data)
    # Every file "moved" to the class the model predicts: each answer is now right.
    moved = report_with_rows(report, [replace(row, true_index=row.predicted_index) for row in report.rows])
    confidences = [row.confidence for row in moved.rows]
    assert moved.accuracy == 1.0
    assert moved.ece_after == pytest.approx(expected_calibration_error(confidences, [True] * len(confidences)))
    assert moved.ece_after != pytest.approx(report.ece_after)
    unsure = [c < 0.34 for c in confidences]
    assert moved.unsure == sum(unsure)
    assert moved.sure_accuracy in (None, 1.0) and moved.unsure_accuracy in (None, 1.0)
    # The figures before the temperature come from the same rows, as evaluate_folder counts them.
    assert report_with_rows(report, report.rows).ece_before == pytest.approx(report.ece_before, abs=1e-6)
