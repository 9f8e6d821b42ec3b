"""Training on several GPUs, and across machines, with PyTorch's own DistributedDataParallel (DDP).

A run is data preparation + a loop + its files; under DDP all three are the usual ones (run_data.py,
training.py, run_files.py), run by one process per GPU, and this module adds only what joins them:

- the launcher, `DistributedRun`, in the app's or the command line's own process. It writes the run's
  settings as JSON (never a pickle), starts torchrun as `python -m resnet_app.core.distributed launch`
  in a process group of its own (so a Ctrl+C in the terminal reaches the launcher, which stops the run
  with a checkpoint, and not the workers), and follows the first process's event stream, re-emitting
  every event through its own EventHub. Its listeners (the command line's printer, the app's worker)
  see a Trainer: `add_callback`, `fit()`, `request_stop/pause/resume()`, `out_dir`.
- the agent, `run_launcher`: torchrun's own `run()` in that subprocess (the frozen app calls it the
  same way: frozen.py), which notes which process failed and how (failures.json).
- the workers, `run_worker`: one per GPU (`python -u -m resnet_app.core.distributed worker`). Each
  builds the usual Trainer and gives it a `DistributedWorld`; the first writes every event as one JSON
  object per line, the others only their warnings.
- the world: the hooks the Trainer calls (marked "world:" in training.py). `ONE_PROCESS` is the
  default, where every hook is the identity; `DistributedWorld` shards the data, wraps the model in
  DDP, sums validation counts, and makes every decision that ends or pauses the loop a collective one,
  so that all processes take the same number of steps and stop at the same one.

The launcher and the workers talk through one folder (the channel, a temp folder of the launcher's
machine): spec.json (settings), control.json (stop and pause requests, polled by every worker and
agreed among them at each step), events.jsonl (the first process's events), messages-<rank>.jsonl
(other processes' warnings), rank-<rank>.json (each process's pid), failures.json (the agent's
account of a crash) and launcher.log (everything the processes printed). docs/distributed.md tells
the user's side; docs/decisions.md why it is built this way.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet_app.core.batch_size import AUTO, REFERENCE_BATCH, scaled_learning_rate
from resnet_app.core.devices import describe_device as _describe_device
from resnet_app.core.errors import TrainingError
from resnet_app.core.events import (
    EVENTS,
    BatchEnd,
    CheckpointSaved,
    DataProgress,
    EpochEnd,
    EventHub,
    Message,
    Paused,
    RunControl,
    RunEnd,
    RunStart,
    TrainResult,
)

# (The modules of the data and the files are imported where used: torchrun's agent imports this module
# and needs none of them, nor torchvision, which they import: seconds at the start of every run.)
MODULE = "resnet_app.core.distributed"  # what the launcher and torchrun run: `python -m MODULE launch|worker`
SPEC_FILE, CONTROL_FILE, EVENTS_FILE = "spec.json", "control.json", "events.jsonl"
LAST_CHECKPOINT = "last.pt"  # run_files.LAST_CHECKPOINT
FAILURES_FILE, LOG_FILE = "failures.json", "launcher.log"
RESULT, ERROR = "__result__", "__error__"  # stream records that are not Trainer events

POLL_S = 0.05  # the launcher reads the event stream this often
CONTROL_POLL_S = 0.2  # each worker reads the control file this often (in a thread of its own)
PAUSE_POLL_S = 0.2  # while paused, the processes agree on "still paused?" this often
LOSS_READ_STEPS = 16  # on GPUs, losses are read every this many steps (time would differ per process)
SHUTDOWN_GRACE_S = 60.0  # after the first process is done, the others have this long to end
TERMINATE_WAIT_S = 15.0  # after SIGTERM, the agent has this long to stop its workers
# How long a collective may wait for a slow or lost process before it fails (each process decodes its
# shard before the first one). RESNET_APP_DDP_TIMEOUT_S overrides it (the tests use seconds).
DEFAULT_TIMEOUT_S = 1800.0

EVENT_TYPES: dict[str, type] = {
    "data_progress": DataProgress, "run_start": RunStart, "batch_end": BatchEnd, "epoch_end": EpochEnd,
    "checkpoint_saved": CheckpointSaved, "paused": Paused, "message": Message, "run_end": RunEnd,
}


class ProcessFailed(TrainingError):
    """A training process ended without finishing the run (it crashed, or was killed)."""


class RunRefused(ValueError):
    """The processes refused the run's data or settings (the message is the one a single process gives)."""


class PeerLost(TrainingError):
    """Another process stopped answering a collective (it crashed, was killed, or its machine went away)."""


# --- the event stream ------------------------------------------------------------------------------

def event_record(name: str, payload: Any) -> dict[str, Any]:
    """An event as one JSON object: {"event": name, "data": the dataclass's fields}."""
    return {"event": name, "data": dataclasses.asdict(payload)}


def event_from_record(record: dict[str, Any]) -> tuple[str, Any] | None:
    """(name, dataclass) of an event record; None for other records and unknown events."""
    name = record.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    return name, cls(**{k: v for k, v in record.get("data", {}).items() if k in known})


class EventStream:
    """One process's side of the stream: JSON lines appended to a file, each flushed as written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()  # events may come from the control thread's requests too

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str)  # NaN stays NaN: json reads it back
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def writer(self, name: str):
        return lambda payload: self.write(event_record(name, payload))

    def close(self) -> None:
        with self._lock:
            self._file.close()


class StreamReader:
    """The launcher's side: the complete lines appended to a stream file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # an unfinished line waits for its end
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # (never written so: each line is one json.dumps)
        return records


def write_control(channel: Path, stop: bool, pause: bool) -> None:
    from resnet_app.core.checkpoints import write_text_atomic

    write_text_atomic(channel / CONTROL_FILE, json.dumps({"stop": stop, "pause": pause}))


def read_control(channel: Path) -> dict[str, Any]:
    try:
        return json.loads((channel / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, value: Any) -> None:
    from resnet_app.core.checkpoints import write_text_atomic

    write_text_atomic(path, json.dumps(value, indent=1, default=str))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- the plan: how many processes, on which machines -------------------------------------------------

def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class LaunchPlan:
    """How a run is started: `nproc` processes on this machine, on `nnodes` machines in all."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # HOST:PORT of node 0, across machines
    notes: list[str] = field(default_factory=list)  # said at the start of the run

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def torchrun_args(self, spec_path: Path) -> list[str]:
        """torchrun's arguments: one machine with a free port (--standalone), or a static rendezvous at
        node 0's HOST:PORT, where node ranks fix the process ranks (process 0 runs on node 0)."""
        args = ["--nproc-per-node", str(self.nproc), "--max-restarts", "0", "--monitor-interval", "0.2"]
        if self.nnodes == 1:
            args += ["--standalone"]
        else:
            args += ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
                     "--rdzv-backend", "static", "--rdzv-endpoint", str(self.rdzv_endpoint)]
        return args + ["-m", MODULE, "worker", str(spec_path)]


def launch_plan(nproc: int | str | None, device: str = "auto", *, nnodes: int = 1, node_rank: int = 0,
                rdzv_endpoint: str | None = None, saved_nproc: int | str | None = None) -> LaunchPlan:
    """Check the process options against this machine. `nproc` None: a resumed run's own count
    (`saved_nproc`, the processes it trained with in all), else 1. Raises ValueError for the user."""
    notes: list[str] = []
    gpus = visible_gpus()
    on_gpus = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank must be from 0 to {nnodes - 1} with --nnodes {nnodes}, not {node_rank}")
    if nnodes > 1:
        host, _, port = (rdzv_endpoint or "").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("training across machines needs --rdzv-endpoint HOST:PORT (node 0's address and a "
                             "free port there) and --node-rank on every machine: see docs/distributed.md")
    if nproc is None:
        saved = saved_nproc if isinstance(saved_nproc, int) else 1
        nproc = max(1, saved // nnodes) if saved % nnodes == 0 else 1
    if nproc == AUTO:
        nproc = gpus if on_gpus and gpus else 1
        if not on_gpus:
            notes.append("--nproc auto: no GPU to train on here, so one process")
    nproc = int(nproc)
    plan = LaunchPlan(nproc, nnodes, node_rank, rdzv_endpoint, notes)
    if not plan.distributed:
        if isinstance(saved_nproc, int) and saved_nproc > 1:
            notes.append(_count_change_note(saved_nproc, 1))
        return plan
    if device == "mps":
        raise ValueError("several processes need NVIDIA GPUs (or --device cpu); Apple's GPU trains in one process")
    if device.startswith("cuda:"):
        raise ValueError(f"--device {device} names one GPU, but each of the {nproc} processes takes a GPU of its own: "
                         "use --device cuda, and CUDA_VISIBLE_DEVICES to choose which GPUs")
    if on_gpus and nproc > gpus:
        raise ValueError(f"--nproc {nproc} asks for one GPU per process, but {gpus} GPU(s) are visible here")
    if not on_gpus:
        notes.append(f"no GPU: {nproc} processes train on the CPU (the gloo backend); that tries out distributed "
                     "training, it is not faster than one process")
    if isinstance(saved_nproc, int) and saved_nproc != plan.world_size:
        notes.append(_count_change_note(saved_nproc, plan.world_size))
    return plan


def checkpoint_config(checkpoint: str | Path):
    """The settings a checkpoint's run trained with (its process count and device among them)."""
    from resnet_app.core.checkpoints import load_checkpoint
    from resnet_app.core.config import TrainConfig

    return TrainConfig.from_dict(load_checkpoint(checkpoint)["config"])


def _count_change_note(before: int, now: int) -> str:
    return (f"this run was trained by {before} process(es) and goes on with {now}: each process now sees other "
            "images, so the resumed run is not exactly the unbroken one (its global batch size and learning "
            "rate stay, and the epoch in progress ends after the same share of its images)")


# --- the launcher (the app's or the command line's process) ------------------------------------------

class DistributedRun(RunControl):
    """A run trained by several processes, seen as a Trainer: `add_callback`, `fit()`, stop and pause.

    `fit()` blocks (the command line's main thread, or the app's worker thread) while it follows the
    processes; requests may come from any thread and reach every process at the same step.
    """

    def __init__(self, plan: LaunchPlan, *, config=None, data_dir: str | Path | None = None,
                 out_dir: str | Path | None = None, resume: str | Path | None = None,
                 changes: dict[str, Any] | None = None, python: Sequence[str] | None = None) -> None:
        super().__init__()
        if config is None and resume is None:
            raise ValueError("a distributed run needs settings or a checkpoint to resume")
        if config is not None and config.freeze_backbone:
            raise ValueError("training the last layer only takes seconds in one process: leave out --nproc")
        self.plan, self.config = plan, config
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self.resume = Path(resume).expanduser().resolve() if resume else None
        wanted = out_dir or (self.resume.parent if self.resume else None)
        self._out_dir = Path(wanted).expanduser().resolve() if wanted else None
        self.changes = dict(changes or {})
        self.python = list(python or [sys.executable])  # the frozen app: its own executable (frozen.py)
        self.events = EventHub()
        self.channel: Path | None = None
        self._process: subprocess.Popen | None = None
        self._written: tuple[bool, bool] | None = None
        self._result: TrainResult | None = None
        self._errors: list[dict[str, Any]] = []
        self._saved_last = False
        # Every process scans the folder and warns alike: another process's message is shown only when
        # the first did not say it, and waits until the first has said its own (at its run_start).
        self._said: set[str] = set()
        self._held: list[tuple[Any, Message]] | None = []

    def add_callback(self, event: str, callback) -> None:
        self.events.add_callback(event, callback)

    @property
    def out_dir(self) -> Path:
        assert self._out_dir is not None
        return self._out_dir

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    # the run --------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self.channel = channel = Path(tempfile.mkdtemp(prefix="resnet-app-ddp-"))
        spec_path = channel / SPEC_FILE
        _write_json(spec_path, self._spec(channel))
        self._send_requests()
        for note in self.plan.notes:
            self.events.say(note)
        command = [*self.python, "-m", MODULE, "launch", str(channel), *self.plan.torchrun_args(spec_path)]
        with open(channel / LOG_FILE, "wb") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=self._environment(), **_own_process_group())
            try:
                code = self._follow(self._process, channel)
            except BaseException:  # a listener failed, or a second Ctrl+C: no process is left behind
                self.terminate()
                raise
        result = self._outcome(code, channel)  # raises when the run failed: the channel keeps its log
        shutil.rmtree(channel, ignore_errors=True)
        return result

    def _spec(self, channel: Path) -> dict[str, Any]:
        timeout = float(os.environ.get("RESNET_APP_DDP_TIMEOUT_S") or DEFAULT_TIMEOUT_S)
        return {
            "format": 1, "channel": str(channel), "timeout_s": timeout,
            "config": self.config.to_dict() if self.config is not None else None,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "out_dir": str(self._out_dir) if self._out_dir else None,
            "resume": str(self.resume) if self.resume else None, "changes": self.changes,
            "parent_pid": os.getpid(), "parent_host": socket.gethostname(),
        }

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # torchrun would give each process one thread; the CPU's cores shared among them serve better.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.plan.nproc)))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _send_requests(self) -> None:
        state = (self.stop_requested, self.paused)
        if state != self._written and self.channel is not None:
            write_control(self.channel, *state)
            self._written = state

    def _follow(self, process: subprocess.Popen, channel: Path) -> int:
        readers: dict[Path, StreamReader] = {}
        done_since: float | None = None
        while True:
            self._send_requests()
            exited = process.poll() is not None  # read after: what the processes wrote before ending is read
            for path in sorted(channel.glob("*.jsonl")):
                readers.setdefault(path, StreamReader(path))
            for path, reader in readers.items():
                for record in reader.read():
                    self._handle(record, from_first=path.name == EVENTS_FILE)
            if exited:
                return int(process.returncode)
            if self._result is not None or self._errors:
                # The first process is done (or one failed): the others should follow at once. One stuck
                # in a collective with a process that is gone (NCCL may wait for its timeout) is stopped.
                done_since = done_since or time.monotonic()
                if time.monotonic() - done_since > SHUTDOWN_GRACE_S:
                    self.terminate()
            time.sleep(POLL_S)

    def _handle(self, record: dict[str, Any], from_first: bool) -> None:
        name = record.get("event")
        if name == RESULT:
            self._result = _result_from(record["data"])
            return
        if name == ERROR:
            self._errors.append(record["data"])
            return
        event = event_from_record(record)
        if event is None or event[0] not in EVENTS:
            return
        name, payload = event
        if name == "message":
            if not from_first:
                self._other_process_says(payload, record.get("rank", "?"))
                return
            self._said.add(payload.text)
        if name == "run_start" and getattr(payload, "run_dir", ""):
            self._out_dir = Path(payload.run_dir)  # a new run moves to a free folder: this one
        if name == "checkpoint_saved" and payload.kind == "last":
            self._out_dir, self._saved_last = Path(payload.path).parent, True
        self.events.emit(name, payload)
        if name == "run_start":
            self._say_held()

    def _other_process_says(self, message: Message, rank: Any) -> None:
        if self._held is not None:
            self._held.append((rank, message))
        elif message.text not in self._said:
            self._said.add(message.text)
            self.events.emit("message", Message(f"process {rank}: {message.text}", message.level))

    def _say_held(self) -> None:
        held, self._held = self._held or [], None
        for rank, message in held:
            self._other_process_says(message, rank)

    def terminate(self) -> None:
        """Stop the processes now, without a checkpoint (a stop request saves one: request_stop)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)  # torchrun's agent stops its workers, then itself
        try:
            process.wait(timeout=TERMINATE_WAIT_S)
        except subprocess.TimeoutExpired:
            _signal_group(process, getattr(signal, "SIGKILL", signal.SIGTERM))
            for pid in self._worker_pids():  # the agent could not stop them: workers have sessions of their own
                _kill(pid)
            process.wait()

    def _worker_pids(self) -> list[int]:
        if self.channel is None:
            return []
        here = socket.gethostname()
        infos = [_read_json(path) for path in self.channel.glob("rank-*.json")]
        return [info["pid"] for info in infos if isinstance(info, dict) and info.get("host") == here]

    # the end ----------------------------------------------------------------------------------------

    def _outcome(self, code: int, channel: Path) -> TrainResult:
        self._say_held()
        if self._result is not None:
            if code != 0 and self._result.status == "completed":
                self.events.say(f"the run completed, but not every process ended cleanly (see {channel / LOG_FILE})",
                                "warning")
            return self._result
        if code == 0 and self.plan.node_rank != 0:
            return TrainResult("completed", 0, None, None, None, [],
                               f"this machine's {self.plan.nproc} process(es) (node {self.plan.node_rank}) finished; "
                               "node 0 shows the run's progress and writes its files")
        raise self._failure(code, channel)

    def _failure(self, code: int, channel: Path) -> Exception:
        errors = sorted(self._errors, key=lambda e: e.get("rank", 0))
        cause = next((e for e in errors if not e.get("peer_lost")), None)
        if cause is not None and cause.get("kind") == "user":
            return RunRefused(cause["message"])  # the data or a setting: every process says the same
        account = _read_json(channel / FAILURES_FILE) or {}
        failures = account.get("failures", [])
        # A process killed from outside first: the agent ends the others with SIGTERM once one has failed.
        killed = sorted((f for f in failures if int(f.get("exitcode", 0)) < 0),
                        key=lambda f: (f.get("signal") == "SIGTERM", f["rank"] != account.get("first"), f["rank"]))
        if cause is not None:
            what = f"process {cause.get('rank')} stopped with an error: {cause['message']}"
        elif killed:
            f = killed[0]
            what = f"the training process of rank {f['rank']} (pid {f['pid']}) was killed ({f.get('signal')})"
        elif failures:
            f = failures[0]
            what = f"the training process of rank {f['rank']} (pid {f['pid']}) ended with exit code {f['exitcode']}"
        elif errors:
            what = errors[0]["message"]
        else:
            what = f"the training processes ended with exit code {code}"
        checkpoint = self.last_path if (self._saved_last or self.resume) and self._out_dir else None
        if checkpoint is not None and checkpoint.is_file():
            then = (f" The run stopped; its last good checkpoint is kept: {checkpoint} "
                    f"(resnet-app train --resume {checkpoint} goes on from there).")
        else:
            then = " The run stopped before its first checkpoint."
        return ProcessFailed(f"{what}.{then} What the processes printed is in {channel / LOG_FILE}")


def _result_from(data: dict[str, Any]) -> TrainResult:
    paths = {key: Path(data[key]) if data.get(key) else None for key in ("model_path", "checkpoint_path")}
    return TrainResult(data["status"], data["epochs_completed"], data.get("best_val_accuracy"),
                       paths["model_path"], paths["checkpoint_path"], list(data.get("history", [])),
                       data.get("message", ""))


def _own_process_group() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "nt":
            process.terminate()
        else:
            os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except (ProcessLookupError, PermissionError, OSError):
        pass


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


# --- the world: what the Trainer asks of the processes -----------------------------------------------

class OneProcess:
    """The world of a run in one process: each hook is the identity, or what the loop did before."""

    rank, size, is_main = 0, 1, True

    def prepare_model(self, model):
        return model

    def wrap_model(self, model):
        return model

    def shard_data(self, data, seed: int):
        return data

    def stop_requested_here(self, control: RunControl) -> bool:
        return control.stop_requested

    def after_batch_sources(self, sources, classes: list[str]) -> None:
        pass

    def agree_auto_batch(self, choice, config, events: EventHub) -> tuple[int, float]:
        raise AssertionError("one process takes its automatic batch as chosen")

    def local_batch(self, batch: int) -> int:
        return batch

    def global_batch(self, batch: int) -> int:
        return batch

    def local_count(self, count: int) -> int:
        return count

    def global_count(self, count: int) -> int:
        return count

    def agree_at_batch(self, control: RunControl, empty: bool) -> bool:
        return empty

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def read_due(self, losses) -> bool:
        return losses.due_for_read()

    def autosave_due(self, last_autosave: float, interval_s: float) -> bool:
        return time.monotonic() - last_autosave > interval_s

    def wait_while_paused(self, control: RunControl) -> None:
        control.wait_while_paused()

    def before_validation(self, model) -> None:
        pass

    def sum_validation(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int):
        return loss_sum, correct, count

    def describe_device(self, device: torch.device) -> str:
        return _describe_device(device)

    def describe(self, trainer) -> None:
        pass

    def quiet_files(self, files):
        return files


ONE_PROCESS = OneProcess()


@functools.cache
def quiet_run_files() -> type:
    """RunFiles as every process but the first sees them: the same paths, never written."""
    from resnet_app.core.run_files import RunFiles

    class QuietRunFiles(RunFiles):
        def prepare(self) -> None:
            pass

        def save_checkpoint(self, state: dict[str, Any]) -> Path:
            return self.last_path

        def save_model(self, model, config, classes, record, data_summary, extra=None) -> Path:
            return self.model_path

        def write_metrics(self, history) -> None:
            pass

        def write_summary(self, summary) -> None:
            pass

    return QuietRunFiles


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
        self._autosave = False
        self._last_autosave = time.monotonic()
        self._odd_batch_said = False

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

    def prepare_model(self, model):
        if not self.sync_batchnorm:
            return model  # plain batch-norm: each GPU's statistics over its own share of the batch
        if self.device_type != "cuda":
            self._say("synchronised batch-norm needs GPUs (torch's SyncBatchNorm): batch-norm stays per process",
                      "warning")
            return model
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap_model(self, model):
        from torch.nn.parallel import DistributedDataParallel

        # broadcast_buffers (the default): batch-norm's running statistics are the first process's,
        # sent to the others at each forward pass, so every process holds the model the first saves.
        with self._collective():
            return DistributedDataParallel(model, device_ids=[self.local_rank] if self.device_type == "cuda" else None)

    # the data -----------------------------------------------------------------------------------------

    def shard_data(self, data, seed: int):
        from resnet_app.core.run_data import shard_run_data

        return shard_run_data(data, self.rank, self.size, seed)

    def stop_requested_here(self, control: RunControl) -> bool:
        # While decoding (before the loop's first collective) a stop asked on this machine is taken at once.
        return control.stop_requested or self.local.stop_requested

    def after_batch_sources(self, sources, classes: list[str]) -> None:
        """Give every shard the same number of steps an epoch (the longest shard's images, the shorter
        ones wrapping round), and refuse a class no shard could read, as one process would."""
        from resnet_app.core.batches import DecodedBatches, shard_batches
        from resnet_app.core.run_data import refuse_empty_classes

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

    # batch sizes and counts: the checkpoint holds global ones, so any process count resumes it -------

    def local_batch(self, batch: int) -> int:
        local = max(1, batch // self.size)
        if local * self.size != batch and not self._odd_batch_said:
            self._odd_batch_said = True
            self._say(f"batch size {batch} is not a multiple of the {self.size} processes: each takes {local}, "
                      f"{local * self.size} in all", "warning")
        return local

    def global_batch(self, batch: int) -> int:
        return batch * self.size

    def local_count(self, count: int) -> int:
        return math.ceil(count / self.size)

    def global_count(self, count: int) -> int:
        return count * self.size

    # the loop's decisions, taken together ----------------------------------------------------------

    def agree_at_batch(self, trainer, empty: bool) -> bool:
        due = time.monotonic() - self._last_autosave > trainer.config.checkpoint_every_s
        stop, pause, any_empty, save = self._agree(self.local.stop_requested, self.local.paused, empty, due)
        self._apply(trainer, stop, pause)
        self._autosave = save
        return any_empty

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

    def read_due(self, losses) -> bool:
        return len(losses.pending) >= LOSS_READ_STEPS  # the same step on every process

    def autosave_due(self, last_autosave: float, interval_s: float) -> bool:
        due, self._autosave = self._autosave, False
        if due:
            self._last_autosave = time.monotonic()
        return due

    def wait_while_paused(self, control: RunControl) -> None:
        while True:
            time.sleep(PAUSE_POLL_S)
            stop, pause = self._agree(self.local.stop_requested, self.local.paused)
            if stop or not pause:
                self._apply(control, stop, pause)
                return

    # validation ------------------------------------------------------------------------------------------

    def before_validation(self, model) -> None:
        import torch.distributed as dist

        with self._collective():
            for buffer in model.buffers():  # batch-norm statistics: the first process's, the ones it saves
                dist.broadcast(buffer, src=0)

    def sum_validation(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int):
        import torch.distributed as dist

        packed = torch.stack([loss_sum.double(), correct.double(),
                              torch.tensor(float(count), dtype=torch.float64, device=loss_sum.device)])
        with self._collective():
            dist.all_reduce(packed)
        return packed[0], packed[1].round().long(), int(packed[2].item())

    # words ---------------------------------------------------------------------------------------------

    def describe_device(self, device: torch.device) -> str:
        return f"{self.size} × {_describe_device(device)}"

    def describe(self, trainer) -> None:
        nodes = self.size // max(1, self.local_size)
        where = "one machine" if nodes == 1 else f"{nodes} machines"
        total = self.global_batch(trainer.batch_size)
        norm = "synchronised over all GPUs" if self.sync_batchnorm and self.device_type == "cuda" else "per process"
        self._say(f"distributed training: {self.size} processes on {where} ({self.backend}); each trains on its "
                  f"share of the {len(trainer.data.train_samples)} training images ({trainer.sources.train.size} "
                  f"an epoch) and validates on its share of the {len(trainer.data.val_samples)} others; batch "
                  f"{total} in all = {self.size} × {trainer.batch_size}; learning rate {trainer.base_lr:.3g} for the "
                  f"batch of {total}; batch-norm {norm}")

    def quiet_files(self, files):
        return quiet_run_files()(files.out_dir)


# --- the workers ----------------------------------------------------------------------------------------

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
    from resnet_app.core.config import TrainConfig
    from resnet_app.core.trainers import make_trainer, resume_trainer
    from resnet_app.core.training import Trainer

    if spec.get("resume"):
        trainer = resume_trainer(spec["resume"], out_dir=spec.get("out_dir"), data_dir=spec.get("data_dir"),
                                 **spec.get("changes", {}))
    else:
        trainer = make_trainer(TrainConfig.from_dict(spec["config"]), spec["data_dir"], spec["out_dir"])
    if not isinstance(trainer, Trainer):
        raise RunRefused("training the last layer only takes seconds in one process: leave out --nproc")
    return trainer


def _error_kind(exc: BaseException) -> str:
    from resnet_app.core.errors import user_errors

    if isinstance(exc, TrainingError):
        return "training"
    return "user" if isinstance(exc, user_errors()) else "bug"


def run_worker(spec_path: Path) -> int:
    """One training process (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE)."""
    from resnet_app.core.devices import resolve_device
    from resnet_app.core.errors import user_message
    from resnet_app.runtime import freeze_startup_heap

    spec = _read_json(spec_path)
    if not isinstance(spec, dict):
        print(f"resnet-app: error: can't read the run's settings from {spec_path}", file=sys.stderr)
        return 2
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    size, local_size = _env_int("WORLD_SIZE", 1), _env_int("LOCAL_WORLD_SIZE", 1)
    channel = Path(spec["channel"])
    _write_json(channel / f"rank-{rank}.json", {"pid": os.getpid(), "host": socket.gethostname(),
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


# --- the agent ------------------------------------------------------------------------------------------

def run_launcher(channel: Path, torchrun_args: list[str]) -> int:
    """torchrun in this process (as `torchrun ARGS` would run it), noting in failures.json which process
    failed and how: the launcher's message names it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as exc:
        first, _ = exc.get_first_failure()
        failures = [{"rank": rank, "local_rank": f.local_rank, "pid": f.pid, "exitcode": f.exitcode,
                     "signal": f.signal_name() if f.exitcode < 0 else None}
                    for rank, f in sorted(exc.failures.items())]
        _write_json(channel / FAILURES_FILE, {"first": first, "failures": failures})
        print(exc.format_msg(), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m resnet_app.core.distributed launch CHANNEL TORCHRUN-ARGS... | worker SPEC`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "launch":
        return run_launcher(Path(args[1]), args[2:])
    if len(args) == 2 and args[0] == "worker":
        code = run_worker(Path(args[1]))
        if code:
            # A failed process ends now: a collective's threads (NCCL's watchdog) must not hold it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    print("usage: python -m resnet_app.core.distributed launch CHANNEL TORCHRUN-ARGS... | worker SPEC\n"
          "(started by `resnet-app train --nproc N`; see docs/distributed.md)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from resnet_app.core.distributed import main as _main  # the module's own copy, not this __main__ one

    sys.exit(_main())
