"""The world of a run: the processes training it together, as the Trainer (loop.py) sees them.

The Trainer is the one-process loop; it asks its world only these (marked "world:" in loop.py), and
reads `size` (how many processes) and `is_main` (the first, which writes the run's files):

- `shard(trainer, make_sources)`: this process's batch sources, every shard taking the same steps;
- `wrap(model)`: (the model, what training steps call): DistributedDataParallel under DDP;
- `agree_auto_batch(...)`: an automatic batch size all processes take (asked only when size > 1);
- `agree(trainer, empty, save_due)`: at each step, together: stop, pause, (skip, save, read losses);
- `wait_while_paused(trainer)`: wait while paused, and go on together;
- `mean_loss(loss)`: the batch loss over all processes;
- `validate(model, score)`: the validation sums over all shards;
- `describe(trainer)`: say how the processes share the work.

`ONE_PROCESS` is the world of a run in one process, where every hook is the identity or what the loop
did before. `DistributedWorld` is one process's view of a DDP run: it shards the data, wraps the model
in DDP, reduces losses and validation sums, and makes every decision that ends or pauses the loop a
collective one, so that all processes take the same number of steps and stop at the same one.
"""
from __future__ import annotations

import datetime
import time
from contextlib import contextmanager

import torch

from resnet_app.core.errors import TrainingError
from resnet_app.core.train.batch_size import REFERENCE_BATCH, scaled_learning_rate
from resnet_app.core.train.events import EventHub, RunControl

PAUSE_POLL_S = 0.2  # while paused, the processes agree on "still paused?" this often
LOSS_READ_STEPS = 16  # on GPUs, losses are read every this many steps (time would differ per process)
# How long a collective may wait for a slow or lost process before it fails (each process decodes its
# shard before the first one). RESNET_APP_DDP_TIMEOUT_S overrides it (the tests use seconds).
DEFAULT_TIMEOUT_S = 1800.0


class PeerLost(TrainingError):
    """Another process stopped answering a collective (it crashed, was killed, or its machine went away)."""


class OneProcess:
    """The world of a run in one process: each hook is the identity, or what the loop did before."""

    rank, size, is_main = 0, 1, True

    def wrap(self, model):
        return model, model

    def shard(self, trainer, make_sources):
        return make_sources(trainer.data, lambda: trainer.stop_requested)

    def agree_auto_batch(self, choice, config, events: EventHub) -> tuple[int, float]:
        raise AssertionError("one process takes its automatic batch as chosen")

    def agree(self, trainer, empty: bool, save_due: bool) -> tuple[bool, bool, bool]:
        return empty, save_due, trainer.epoch_losses.due_for_read()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def wait_while_paused(self, control: RunControl) -> None:
        control.wait_while_paused()

    def validate(self, model, score):
        return score()

    def describe(self, trainer) -> None:
        pass


ONE_PROCESS = OneProcess()


PEER_LOST_SIGNS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out",
                   "timeout", "socket", "nccl", "recvbytes", "sendbytes", "remote process exited")


def is_peer_lost(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another process is gone (not this one's fault)."""
    if isinstance(exc, PeerLost):
        return True
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (isinstance(exc, dist_error) or any(s in text for s in PEER_LOST_SIGNS))


class DistributedWorld:
    """One process's view of a DDP run: its rank, its GPU, the collectives the Trainer's hooks need.

    Collectives that decide the loop's course (stop, pause, skip, save) run on a CPU group (gloo) over
    small integer tensors, so they never wait for the GPU; losses and validation sums are reduced on the
    training device (NCCL) without a host sync.
    """

    def __init__(self, rank: int, local_rank: int, size: int, local_size: int, device_type: str,
                 sync_batchnorm: bool = False) -> None:
        self.rank, self.local_rank, self.size, self.local_size = rank, local_rank, size, local_size
        self.device_type, self.sync_batchnorm = device_type, sync_batchnorm
        self.local = RunControl()  # this machine's requests (the control file), agreed at each step
        self.events: EventHub | None = None
        self.backend = "nccl" if device_type == "cuda" else "gloo"
        self.control_group = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # the process group --------------------------------------------------------------------------------

    def join(self, timeout_s: float) -> None:
        """Join the other processes (torchrun's environment: MASTER_ADDR, RANK, WORLD_SIZE...)."""
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s)
        if self.device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(self.backend, timeout=timeout)
        # The loop's decisions go through a CPU group: with NCCL, a gloo group beside it.
        self.control_group = dist.new_group(backend="gloo", timeout=timeout) if self.backend == "nccl" else None

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    @contextmanager
    def _collective(self):
        try:
            yield
        except RuntimeError as exc:
            if is_peer_lost(exc):
                raise PeerLost(f"another training process stopped answering ({exc})") from exc
            raise

    def _agree(self, *flags: bool) -> list[bool]:
        """Each flag true on any process (one all_reduce of a few integers on the CPU group)."""
        import torch.distributed as dist

        tensor = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        with self._collective():
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.control_group)
        return [bool(v) for v in tensor.tolist()]

    def _reduce_cpu(self, values: list[int], op: str) -> list[int]:
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.long)
        with self._collective():
            dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=self.control_group)
        return tensor.tolist()

    def _say(self, text: str, level: str = "info") -> None:
        if self.events is not None:
            self.events.say(text, level)

    # the model ----------------------------------------------------------------------------------------

    def wrap(self, model):
        """(the model, what training steps call): SyncBatchNorm if asked, then DistributedDataParallel
        (gradients averaged over the processes); validation keeps the plain model."""
        from torch.nn.parallel import DistributedDataParallel

        if self.sync_batchnorm and self.device_type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif self.sync_batchnorm:
            self._say("synchronised batch-norm needs GPUs (torch's SyncBatchNorm): batch-norm stays per process",
                      "warning")
        # (Else plain batch-norm: each GPU's statistics over its own share of the batch.)
        # broadcast_buffers (the default): batch-norm's running statistics are the first process's,
        # sent to the others at each forward pass, so every process holds the model the first saves.
        with self._collective():
            return model, DistributedDataParallel(model, device_ids=[self.local_rank] if self.device_type == "cuda"
                                                  else None)

    # the data -----------------------------------------------------------------------------------------

    def shard(self, trainer, make_sources):
        """This process's batch sources: made by `make_sources(data, should_stop)` from its shard of the
        run's images, then given the same number of steps an epoch as every other shard (the longest
        shard's images, the shorter ones wrapping round); a class no shard could read is refused, as
        one process would refuse it."""
        from resnet_app.core.data.batches import DecodedBatches, shard_batches
        from resnet_app.core.train.run_data import refuse_empty_classes, shard_run_data

        # While decoding (before the loop's first collective) a stop asked on this machine is taken at once.
        sources = make_sources(shard_run_data(trainer.data, self.rank, self.size, trainer.config.seed),
                               lambda: trainer.stop_requested or self.local.stop_requested)
        classes = trainer.classes
        train = sources.train
        counts = [0] * (len(classes) + 1)
        if isinstance(train, DecodedBatches):  # streaming: unreadable files are found as they come
            counts[:len(classes)] = torch.bincount(train.labels.cpu(), minlength=len(classes)).tolist()
        else:
            counts[-1] = 1
        longest, negative_shortest = self._reduce_cpu([train.count, -train.count], "MAX")
        totals = self._reduce_cpu(counts, "SUM")
        if not totals[-1]:
            refuse_empty_classes(torch.nonzero(torch.tensor(totals[:-1])).flatten(), classes)
        if -negative_shortest == 0:
            raise TrainingError(f"a process's share of the training images holds none that could be read: "
                                f"train with fewer than {self.size} processes")
        shard_batches(train, self.rank, longest)
        return sources

    def agree_auto_batch(self, choice, config, events: EventHub) -> tuple[int, float]:
        """Batch size auto: the smallest of the processes' choices (each fits its GPU), the learning rate
        scaled to the global batch as one process scales it to its own."""
        local = self._reduce_cpu([choice.batch_size], "MIN")[0]
        total = local * self.size
        lr = (scaled_learning_rate(config.learning_rate, total, config.optimizer) if config.lr is None
              else config.learning_rate)
        text = f"batch size auto: {local} a process (each GPU's choice, the smallest), {total} in all"
        if config.lr is None and total != REFERENCE_BATCH:
            text += f"; learning rate scaled from {config.learning_rate:g} at batch {REFERENCE_BATCH} to {lr:.3g}"
        events.say(text)
        return local, lr

    # the loop's decisions, taken together ----------------------------------------------------------

    def agree(self, trainer, empty: bool, save_due: bool) -> tuple[bool, bool, bool]:
        """At each step, together: stop or pause (asked on any machine), (skip a batch empty on any process,
        save a checkpoint due on any, read the losses after this step). Losses are read every
        LOSS_READ_STEPS steps, the same on every process (a time would differ per process)."""
        stop, pause, any_empty, save = self._agree(self.local.stop_requested, self.local.paused, empty, save_due)
        self._apply(trainer, stop, pause)
        return any_empty, save, len(trainer.epoch_losses.pending) + 1 >= LOSS_READ_STEPS

    def _apply(self, control: RunControl, stop: bool, pause: bool) -> None:
        if stop:
            control.request_stop()
        elif pause:
            control.request_pause()
        elif control.paused:
            control.request_resume()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = loss.detach().float().clone()
        with self._collective():
            dist.all_reduce(total)  # on the device, queued: no host sync
        return total / self.size

    def wait_while_paused(self, control: RunControl) -> None:
        while True:
            time.sleep(PAUSE_POLL_S)
            stop, pause = self._agree(self.local.stop_requested, self.local.paused)
            if stop or not pause:
                self._apply(control, stop, pause)
                return

    # validation ------------------------------------------------------------------------------------------

    def validate(self, model, score):
        """(loss sum, right answers, images) over every shard: `score()` sums this process's share, with
        the first process's batch-norm statistics (the ones it saves) in every process's model."""
        import torch.distributed as dist

        with self._collective():
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        loss_sum, correct, count = score()
        packed = torch.stack([loss_sum.double(), correct.double(),
                              torch.tensor(float(count), dtype=torch.float64, device=loss_sum.device)])
        with self._collective():
            dist.all_reduce(packed)
        return packed[0], packed[1].round().long(), int(packed[2].item())

    # words ---------------------------------------------------------------------------------------------

    def describe(self, trainer) -> None:
        nodes = self.size // max(1, self.local_size)
        where = "one machine" if nodes == 1 else f"{nodes} machines"
        total = trainer.batch_size * self.size
        norm = "synchronised over all GPUs" if self.sync_batchnorm and self.device_type == "cuda" else "per process"
        self._say(f"distributed training: {self.size} processes on {where} ({self.backend}); each trains on its "
                  f"share of the {len(trainer.data.train_samples)} training images ({trainer.sources.train.size} "
                  f"an epoch) and validates on its share of the {len(trainer.data.val_samples)} others; batch "
                  f"{total} in all = {self.size} × {trainer.batch_size}; learning rate {trainer.base_lr:.3g} for the "
                  f"batch of {total}; batch-norm {norm}")

