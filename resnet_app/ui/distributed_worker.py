"""The app's side of training on several GPUs (core/train/distributed/; docs/distributed.md).

`DistributedTrainWorker` is a TrainWorker whose "trainer" is the core's `DistributedRun`: the launcher
that starts torchrun in processes of its own and re-emits the first process's events. So the Train
tab gets the very signals a one-process run gives (the live plot, progress, checkpoints, messages,
run_ended, failed), and its Stop, Pause and Resume reach every process. The launcher's `fit()` only
follows files and a child process; it runs in the worker's QThread like any run, so the GUI thread
never waits on it. A process that crashes ends the run with `failed` and its message, which names the
last good checkpoint (kept: rank 0 writes it whole, once, atomically).

The Device box offers "All N GPUs" (`ALL_GPUS`) when there are several. What the Train tab does with it
(its lines, in train_tab.py):

    # device_choices(): after the GPU's own entry
    choices += distributed_device_choices()
    # build_config(): the box's value is not a device of TrainConfig
    device, nproc = split_device_choice(self.settings_form.values()["device"])
    ... self.settings_form.config(..., device=device)
    # start_training() and resume_from_checkpoint(): the worker for that choice
    worker = train_worker_for(nproc, config=config, data_dir=data, out_dir=str(out_dir))
    worker = train_worker_for(nproc, checkpoint=path, resume_epochs=epochs, device=device)
"""
from __future__ import annotations

from resnet_app.core.train.distributed.launcher import DistributedRun, checkpoint_config, launch_plan, visible_gpus
from resnet_app.core.train.settings import TrainConfig
from resnet_app.ui.workers import TrainWorker

ALL_GPUS = "cuda:all"  # the Device box's value for "All N GPUs": device cuda, one process per GPU


def distributed_device_choices(gpus: int | None = None) -> list[tuple[str, str]]:
    """("cuda:all", "All N GPUs") when this machine has several GPUs; nothing otherwise."""
    gpus = visible_gpus() if gpus is None else gpus
    return [(ALL_GPUS, f"All {gpus} GPUs")] if gpus > 1 else []


def split_device_choice(value: str) -> tuple[str, int | str | None]:
    """(TrainConfig's device, process count) for a value of the Device box (None: one process)."""
    return ("cuda", "auto") if value == ALL_GPUS else (value, None)


def train_worker_for(nproc: int | str | None, **run) -> TrainWorker:
    """The worker for a run of `nproc` processes: the usual one for one process (None or 1)."""
    if nproc is None or nproc == 1:
        return TrainWorker(**run)
    return DistributedTrainWorker(nproc=nproc, **run)


class DistributedTrainWorker(TrainWorker):
    """A TrainWorker that trains with several processes (one per GPU, or CPU processes for trying it)."""

    def __init__(self, nproc: int | str = "auto", config: TrainConfig | None = None, data_dir: str | None = None,
                 out_dir: str | None = None, checkpoint: str | None = None, resume_epochs: int | None = None,
                 device: str | None = None) -> None:
        super().__init__(config=config, data_dir=data_dir, out_dir=out_dir, checkpoint=checkpoint,
                         resume_epochs=resume_epochs, device=device)
        self.nproc = nproc

    def _make_trainer(self):
        """The launcher, checked against this machine first (a ValueError is shown as the run's failure);
        the usual Trainer when the machine has one GPU (or none) after all."""
        if self.checkpoint:
            saved = checkpoint_config(self.checkpoint)
            changes = {k: v for k, v in (("epochs", self.resume_epochs), ("device", self.device)) if v is not None}
            plan = launch_plan(self.nproc, changes.get("device", saved.device), saved_nproc=saved.nproc)
            if not plan.distributed:
                return super()._make_trainer()
            return DistributedRun(plan, resume=self.checkpoint, out_dir=self.out_dir, data_dir=self.data_dir,
                                  changes=changes)
        assert self.config is not None
        plan = launch_plan(self.nproc, self.config.device)
        if not plan.distributed:
            return super()._make_trainer()
        return DistributedRun(plan, config=self.config, data_dir=self.data_dir, out_dir=self.out_dir)
