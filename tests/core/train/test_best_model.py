"""The saved best model is only ever replaced by an epoch that was scored (issue 19 item 8)."""
from __future__ import annotations

import json

from resnet_app.core.data.sample_data import generate_sample_dataset
from resnet_app.core.model.checkpoints import load_model_file
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.run_files import BestModel
from resnet_app.core.train.settings import TrainConfig


def test_an_unscored_epoch_never_beats_a_scored_one():
    best = BestModel()
    assert best.is_beaten_by(None, None)  # no validation at all: the newest weights are the best known
    best.update(3, 0.4, 0.92)
    assert not best.is_beaten_by(None, None)
    assert best.is_beaten_by(0.3, 0.95)


def test_an_epoch_whose_validation_images_cannot_be_read_keeps_the_best_model(tmp_path):
    data = generate_sample_dataset(tmp_path / "train", images_per_class=6, image_size=16)
    val = generate_sample_dataset(tmp_path / "val", images_per_class=2, image_size=16)
    config = TrainConfig(epochs=2, batch_size=8, image_size=16, loader_processes=0, device="cpu",
                         data_loading="streaming", val_dir=str(val))
    trainer = Trainer(config, data, tmp_path / "run")
    said = []
    trainer.add_callback("message", lambda message: said.append(message.text))

    def share_goes_away(event) -> None:  # after epoch 1, the validation folder can't be read
        if event.epoch == 1:
            for image in val.rglob("*.png"):
                image.write_bytes(b"not an image any more")

    trainer.add_callback("epoch_end", share_goes_away)
    result = trainer.fit()
    assert result.status == "completed"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["history"][1]["val_accuracy"] is None and run["best_epoch"] == 1
    assert load_model_file(result.model_path).metrics["epoch"] == 1
    assert any("epoch 2 could not be scored" in text for text in said)
