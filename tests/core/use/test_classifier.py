"""Classifier: model files, checkpoints and bare state_dicts; a bad-image corpus; eval reports."""
import pytest
import torch
from image_corpus import make_image_corpus

from resnet_app.core.model.architectures import build_model
from resnet_app.core.model.checkpoints import CheckpointError, ModelFile, save_checkpoint, save_model_file
from resnet_app.core.use.classifier import Classifier, expand_paths
from resnet_app.core.use.evaluation import evaluate_folder

CLASSES = ["apple", "banana", "cherry"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resnet18-cifar", len(CLASSES))
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model_file(path, ModelFile(model.state_dict(), "resnet18-cifar", CLASSES, 32,
                                    [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))
    return path


def test_bad_image_corpus_good_files_classified_bad_ones_reported(model_path, tmp_path):
    expected = make_image_corpus(tmp_path)
    classifier = Classifier.from_file(model_path, device="cpu")
    paths = sorted(tmp_path / name for name in expected)
    predictions = list(classifier.predict_paths(paths, top_k=2, batch_size=4))
    assert [p.path for p in predictions] == paths  # one result per input, in order
    for prediction in predictions:
        should_load = expected[prediction.path.name]
        if should_load:
            assert prediction.error is None, prediction
            assert [label for label, _ in prediction.top_k] != [] and len(prediction.top_k) == 2
            assert all(label in CLASSES for label, _ in prediction.top_k)
            probabilities = [p for _, p in prediction.top_k]
            assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
        else:
            assert prediction.error and prediction.top_k == [], prediction
    assert any(not p.ok for p in predictions) and any(p.ok for p in predictions)


def test_predictions_match_the_model_run_by_hand(model_path, tmp_path):
    from PIL import Image

    from resnet_app.core.data.transforms import eval_transform

    image = Image.new("RGB", (50, 40), (200, 30, 90))
    image.save(tmp_path / "one.png")
    classifier = Classifier.from_file(model_path, device="cpu")
    [prediction] = classifier.predict_paths([tmp_path / "one.png"], top_k=3)
    model = build_model("resnet18-cifar", 3)
    model.load_state_dict(classifier.model.state_dict())
    model.eval()
    x = eval_transform(32, [0.5] * 3, [0.25] * 3)(image).unsqueeze(0)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)[0]
    for label, probability in prediction.top_k:
        assert probability == pytest.approx(expected[CLASSES.index(label)].item(), abs=1e-5)


def test_checkpoint_and_bare_state_dict_load(tmp_path):
    model = build_model("resnet18-cifar", 2)
    save_checkpoint(tmp_path / "last.pt", {"config": {"arch": "resnet18-cifar", "image_size": 24},
                                          "class_names": ["a", "b"], "model": model.state_dict()})
    from_checkpoint = Classifier.from_file(tmp_path / "last.pt", device="cpu")
    assert from_checkpoint.class_names == ["a", "b"] and from_checkpoint.image_size == 24
    # What the article's code saves: torch.save(net.state_dict(), PATH)
    torch.save(model.state_dict(), tmp_path / "article.pth")
    bare = Classifier.from_file(tmp_path / "article.pth", device="cpu")
    assert bare.class_names == ["class 0", "class 1"] and bare.image_size == 32


def test_weights_that_do_not_fit_are_refused(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"config": {"arch": "resnet18"}, "class_names": ["a", "b"],
                                          "model": build_model("resnet18-cifar", 2).state_dict()})
    with pytest.raises(CheckpointError, match="weights don't fit a resnet18"):
        Classifier.from_file(tmp_path / "last.pt", device="cpu")


def test_expand_paths_walks_folders_and_keeps_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ["a/x.jpg", "a/b/y.PNG", "a/notes.txt", "a/.hidden/z.jpg", "a/._w.jpg"]:
        (tmp_path / name).write_bytes(b"")
    found = expand_paths([tmp_path / "a", tmp_path / "a" / "notes.txt", tmp_path / "missing.jpg"])
    assert found == [tmp_path / "a/b/y.PNG", tmp_path / "a/x.jpg", tmp_path / "a/notes.txt", tmp_path / "missing.jpg"]


def test_missing_file_gets_its_own_error(model_path, tmp_path):
    classifier = Classifier.from_file(model_path, device="cpu")
    [prediction] = classifier.predict_paths([tmp_path / "nope.jpg"])
    assert "not found" in prediction.error


def test_evaluate_folder_confusion_and_per_class(model_path, tmp_path):
    from PIL import Image

    for name, colour in [("apple", (255, 0, 0)), ("cherry", (0, 0, 255))]:
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), colour).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cherry" / "broken.png").write_bytes(b"not a png")
    classifier = Classifier.from_file(model_path, device="cpu")
    report = evaluate_folder(classifier, tmp_path)
    assert report.classes == CLASSES and report.images == 6
    assert sum(map(sum, report.confusion)) == 6
    assert sum(report.confusion[CLASSES.index("apple")]) == 3 and sum(report.confusion[1]) == 0
    correct = sum(report.confusion[i][i] for i in range(3))
    assert report.accuracy == pytest.approx(correct / 6)
    assert report.per_class["banana"]["recall"] is None  # no banana images to recall
    assert [u["path"] for u in report.unreadable] == [str(tmp_path / "cherry" / "broken.png")]


def test_evaluate_refuses_classes_the_model_does_not_know(model_path, tmp_path):
    from resnet_app.core.data.scan import DatasetError

    (tmp_path / "durian").mkdir()
    (tmp_path / "apple").mkdir()
    with pytest.raises(DatasetError, match="durian"):
        evaluate_folder(Classifier.from_file(model_path, device="cpu"), tmp_path)
