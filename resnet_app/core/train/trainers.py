"""Which loop trains a run: the full trainer, or the quick one (the last layer only, over cached features).

The command line and the app ask here, with the settings (or a checkpoint), and get an object with the
same face either way: `add_callback`, `fit()`, and stop/pause requests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_app.core.model.checkpoints import load_checkpoint
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.quick import QuickTrainer
from resnet_app.core.train.settings import TrainConfig


def make_trainer(config: TrainConfig, data_dir: str | Path, out_dir: str | Path) -> Trainer | QuickTrainer:
    return (QuickTrainer if config.quick else Trainer)(config, data_dir, out_dir)


def resume_trainer(checkpoint: str | Path, **changes: Any) -> Trainer | QuickTrainer:
    """The trainer that goes on with the run saved in `checkpoint`; `changes` as Trainer.from_checkpoint."""
    state = load_checkpoint(checkpoint)
    quick = TrainConfig.from_dict(state["config"]).quick  # (saved as "freeze_backbone" by older versions)
    return (QuickTrainer if quick else Trainer).from_checkpoint(checkpoint, state=state, **changes)
