"""Screenshots of the real main window: train briefly on sample data, classify a few images, grab both tabs.

Run under a real X server, e.g.:
    xvfb-run -a -s "-screen 0 1400x950x24" .venv/bin/python docs/screenshots/take_screenshots.py
Writes docs/screenshots/: train-running.png (mid-run), train.png (finished), classify.png (a row selected),
evaluate-cells.png (a confusion cell's images), review.png (the Review tab labelling new images, least sure
first), train-quick.png (ImageNet-layout weights, quick mode) and small-800x600*.png (the Train, Classify and
Evaluate tabs in an 800x600 window), each under 300 KB.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer

HERE = Path(__file__).resolve().parent
MAX_BYTES = 300_000


def wait(condition, timeout_s: float = 600) -> bool:
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    timer.start(50)
    loop.exec()
    timer.stop()
    return condition()


def pause(seconds: float) -> None:
    end = time.monotonic() + seconds
    wait(lambda: time.monotonic() > end)


def save(widget, path: Path) -> None:
    pixmap = widget.grab()
    pixmap.save(str(path), "PNG")
    if path.stat().st_size > MAX_BYTES:  # a palette PNG is much smaller and looks the same for a UI
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB, {pixmap.width()}x{pixmap.height()})")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="resnet-app-shots-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    from resnet_app.core.data.sample_data import generate_sample_dataset
    from resnet_app.ui.app import create_app
    from resnet_app.ui.main_window import MainWindow

    create_app()
    window = MainWindow()
    window.resize(1280, 820)
    window.show()
    data = generate_sample_dataset(tmp / "shapes", images_per_class=40, image_size=64)
    train = window.train_tab
    train.apply_settings({"arch": "resnet18-cifar", "epochs": 5, "batch_size": 16, "image_size": 32, "lr": None,
                          "optimizer": "adam", "val_fraction": 0.2, "output_folder": str(tmp / "runs")})
    window.tabs.setCurrentWidget(train)
    train.set_data_folder(str(data))
    train.start_training()
    wait(lambda: train.plot.point_count >= 12 or not train.running)
    save(window, HERE / "train-running.png")
    if not wait(lambda: not train.running):
        print("training did not finish")
        return 1
    pause(1.0)
    save(window, HERE / "train.png")

    classify = window.classify_tab
    wait(lambda: classify.classifier is not None, 60)
    window.tabs.setCurrentWidget(classify)
    pick = []
    for name in ("circle", "square", "star", "triangle"):
        pick += sorted((data / name).glob("*.png"))[-3:]
    bad = tmp / "holiday-photo.jpg"
    bad.write_bytes(b"not really a photo")
    classify.handle_paths(pick + [bad])
    wait(lambda: classify.results.rowCount() >= len(pick) + 1 and not classify.busy, 120)
    from PySide6.QtWidgets import QMessageBox

    for box in window.findChildren(QMessageBox):  # "your first model is ready": shown once, not in the shot
        box.close()
    classify.table.setFocus()
    classify.table.selectRow(1)
    pause(1.0)
    save(window, HERE / "classify.png")
    # Evaluate: the run's model was evaluated on its data when training finished; a wrong cell's images.
    evaluate = window.evaluate_view
    window.tabs.setCurrentWidget(evaluate)
    wait(lambda: evaluate.report is not None and not evaluate.busy, 120)
    report = evaluate.report
    wrong = max(((t, p) for t in range(len(report.classes)) for p in range(len(report.classes)) if t != p),
                key=lambda cell: report.confusion[cell[0]][cell[1]])
    evaluate.show_cell(evaluate.confusion.index_of_cell(*wrong))
    pause(1.5)
    save(window, HERE / "evaluate-cells.png")

    shoot_review(window, data, tmp)
    shoot_dataset(window, tmp / "my-shapes")

    window.resize(800, 600)
    for tab, name in ((train, "small-800x600.png"), (classify, "small-800x600-classify.png"),
                      (evaluate, "small-800x600-evaluate.png")):
        window.tabs.setCurrentWidget(tab)
        pause(1.0)
        save(window, HERE / name)

    # The Train tab in quick mode: ImageNet-layout weights chosen (a stand-in made here: no download).
    import torch

    from resnet_app.core.model.architectures import build_model

    weights = tmp / "resnet18-imagenet-layout.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), weights)
    window.resize(1280, 820)
    window.tabs.setCurrentWidget(train)
    train.start_box.use_file(str(weights))
    pause(1.0)
    save(window, HERE / "train-quick.png")
    window.close()
    wait(lambda: not window.isVisible(), 30)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def shoot_review(window, data: Path, tmp: Path) -> None:
    """The Review tab: new shapes ranked least sure first by the run's model, three of them labelled into a
    copy of the data set."""
    from resnet_app.core.data.sample_data import generate_sample_dataset
    from resnet_app.core.use.sort_names import class_folder_name

    fresh = generate_sample_dataset(tmp / "new-shapes", images_per_class=6, image_size=64, seed=5)
    unlabelled = tmp / "new photos"
    unlabelled.mkdir()
    for image in sorted(fresh.rglob("*.png")):
        shutil.copy(image, unlabelled / f"photo-{len(list(unlabelled.iterdir())) + 1:03d}.png")
    dataset = tmp / "my-shapes"
    shutil.copytree(data, dataset)
    review = window.review_view
    window.tabs.setCurrentWidget(review)
    review.set_images_folder(unlabelled)
    review.data_edit.setText(str(dataset))
    review.start()
    wait(lambda: review.queue is not None and not review.busy, 120)
    for _ in range(3):
        entry = review.current()
        review.label_current(review.classes.index(class_folder_name(entry.item.top_k[0][0])) + 1)  # as the model says
    wait(lambda: not review.preview.busy, 30)
    pause(1.0)
    save(window, HERE / "review.png")
    window.statusBar().clearMessage()  # "photo-020.png → triangle" belongs to this shot only


def shoot_dataset(window, dataset: Path) -> None:
    """The Data set tab on the data set the Review shot labelled into, its second class chosen."""
    tab = window.dataset_tab
    window.tabs.setCurrentWidget(tab)
    tab.open_dataset(dataset)
    wait(lambda: tab.class_list.count() >= 4 and not window.runner.busy, 60)
    tab.class_list.setCurrentRow(1)
    wait(lambda: tab.images.rowCount() > 0 and not window.runner.busy, 60)
    pause(2.0)  # the thumbnails arrive from their thread
    save(window, HERE / "dataset.png")


if __name__ == "__main__":
    sys.exit(main())
