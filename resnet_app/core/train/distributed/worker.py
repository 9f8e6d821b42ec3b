"""A training process of a distributed run (one per GPU, started by torchrun): it builds the usual Trainer,
gives it a DistributedWorld, and writes its events to the channel (transport.py) for the launcher.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import torch

from resnet_app.core.errors import TrainingError
from resnet_app.core.train.distributed.transport import (
    ERROR,
    EVENT_TYPES,
    EVENTS_FILE,
    RESULT,
    EventStream,
    event_record,
    read_control,
    read_json,
    write_json,
)
from resnet_app.core.train.distributed.world import DEFAULT_TIMEOUT_S, DistributedWorld, is_peer_lost
from resnet_app.core.train.events import EVENTS, RunControl

CONTROL_POLL_S = 0.2  # each worker reads the control file this often (in a thread of its own)


class RunRefused(ValueError):
    """The processes refused the run's data or settings (the message is the one a single process gives)."""


class ControlWatcher(threading.Thread):
    """Reads this machine's control file (and watches the launcher) for one worker; the world agrees
    on what it finds with the other processes at the next step."""

    def __init__(self, channel: Path, control: RunControl, spec: dict[str, Any]) -> None:
        super().__init__(daemon=True, name="resnet-app-control")
        self.channel, self.control = channel, control
        same_machine = spec.get("parent_host") == socket.gethostname()
        self.launcher = spec.get("parent_pid") if same_machine else None
        self.agent = os.getppid()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(CONTROL_POLL_S):
            if self.control.stop_requested:
                continue
            state = read_control(self.channel)
            # A launcher that is gone (the app was killed) or an agent that is gone: stop with a checkpoint.
            orphaned = (self.launcher is not None and not _alive(self.launcher)) or os.getppid() != self.agent
            if state.get("stop") or orphaned:
                self.control.request_stop()
            elif state.get("pause"):
                self.control.request_pause()
            else:
                self.control.request_resume()

    def stop(self) -> None:
        self._done.set()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _worker_trainer(spec: dict[str, Any]):
    from resnet_app.core.train.loop import Trainer
    from resnet_app.core.train.settings import TrainConfig
    from resnet_app.core.train.trainers import make_trainer, resume_trainer

    if spec.get("resume"):
        trainer = resume_trainer(spec["resume"], out_dir=spec.get("out_dir"), data_dir=spec.get("data_dir"),
                                 **spec.get("changes", {}))
    else:
        trainer = make_trainer(TrainConfig.from_dict(spec["config"]), spec["data_dir"], spec["out_dir"])
    if not isinstance(trainer, Trainer):
        raise RunRefused("quick training (the last layer only) takes seconds in one process: leave out --nproc")
    return trainer


def _error_kind(exc: BaseException) -> str:
    from resnet_app.core.errors import user_errors

    if isinstance(exc, TrainingError):
        return "training"
    return "user" if isinstance(exc, user_errors()) else "bug"


def run_worker(spec_path: Path) -> int:
    """One training process (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE)."""
    from resnet_app.core.errors import user_message
    from resnet_app.core.model.devices import resolve_device
    from resnet_app.runtime import freeze_startup_heap

    spec = read_json(spec_path)
    if not isinstance(spec, dict):
        print(f"resnet-app: error: can't read the run's settings from {spec_path}", file=sys.stderr)
        return 2
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    size, local_size = _env_int("WORLD_SIZE", 1), _env_int("LOCAL_WORLD_SIZE", 1)
    channel = Path(spec["channel"])
    write_json(channel / f"rank-{rank}.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                                "local_rank": local_rank})
    stream = EventStream(channel / (EVENTS_FILE if rank == 0 else f"messages-{rank}.jsonl"))
    watcher: ControlWatcher | None = None
    world: DistributedWorld | None = None
    try:
        trainer = _worker_trainer(spec)
        device = trainer.config.device
        on_gpu = device in ("auto", "cuda") and torch.cuda.is_available()
        if on_gpu and local_rank >= torch.cuda.device_count():
            raise TrainingError(f"process {rank} has no GPU of its own ({torch.cuda.device_count()} visible)")
        device_type = "cuda" if on_gpu else resolve_device("cpu" if device == "auto" else device).type
        world = DistributedWorld(rank, local_rank, size, local_size, device_type, trainer.config.sync_batchnorm)
        trainer.world, world.events = world, trainer.events
        trainer.config.nproc = size  # the checkpoint records how many processes trained it
        if rank == 0:
            for name in EVENT_TYPES:
                if name in EVENTS:
                    trainer.add_callback(name, stream.writer(name))
        else:  # the others stay quiet but for their warnings (a file of their shard that can't be read)
            trainer.add_callback("message", lambda m: stream.write({**event_record("message", m), "rank": rank})
                                 if m.level != "info" else None)
        watcher = ControlWatcher(channel, world.local, spec)
        watcher.start()
        world.join(float(spec.get("timeout_s") or DEFAULT_TIMEOUT_S))
        freeze_startup_heap()
        result = trainer.fit()
        if rank == 0:
            stream.write({"event": RESULT, "data": {**dataclasses.asdict(result), "rank": rank}})
        world.close()
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is told to the launcher, then the process ends
        stream.write({"event": ERROR, "rank": rank, "data": {
            "rank": rank, "kind": _error_kind(exc), "message": user_message(exc), "peer_lost": is_peer_lost(exc)}})
        if _error_kind(exc) == "bug":
            traceback.print_exc()
        return 1
    finally:
        if watcher is not None:
            watcher.stop()
        stream.close()


def _alive(pid: int) -> bool:
    if os.name == "nt":  # (os.kill(pid, 0) there would send a Ctrl+C)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
