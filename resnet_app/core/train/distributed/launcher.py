"""Training on several GPUs, and across machines, with PyTorch's own DistributedDataParallel (DDP).

A run is data preparation + a loop + its files; under DDP all three are the usual ones (run_data.py,
loop.py, run_files.py), run by one process per GPU, and this package adds only what joins them:

- the launcher (this module), `DistributedRun`, in the app's or the command line's own process. It
  writes the run's settings as JSON (never a pickle), starts torchrun as `python -m MODULE launch` in a
  process group of its own (so a Ctrl+C in the terminal reaches the launcher, which stops the run with
  a checkpoint, and not the workers), and follows the first process's event stream, re-emitting every
  event through its own EventHub. Its listeners (the command line's printer, the app's worker) see a
  Trainer: `add_callback`, `fit()`, `request_stop/pause/resume()`, `out_dir`.
- the agent, `run_launcher` (this module): torchrun's own `run()` in that subprocess (the frozen app
  calls it the same way: frozen.py), which notes which process failed and how (failures.json).
- the workers, `run_worker` (worker.py): one per GPU (`python -u -m MODULE worker`). Each builds the
  usual Trainer and gives it a `DistributedWorld`; the first writes every event as one JSON object per
  line, the others only their warnings.
- the world (world.py): the hooks the Trainer calls (marked "world:" in loop.py). `ONE_PROCESS` is the
  default, where every hook is the identity; `DistributedWorld` shards the data, wraps the model in
  DDP, sums validation counts, and makes every decision that ends or pauses the loop a collective one,
  so that all processes take the same number of steps and stop at the same one.

The launcher and the workers talk through one folder, the channel (transport.py: a temp folder of the
launcher's machine, its files, and events as JSON lines). docs/distributed.md tells the user's side;
docs/decisions.md why it is built this way.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet_app.core.errors import TrainingError
from resnet_app.core.train.batch_size import AUTO
from resnet_app.core.train.distributed.transport import (
    ERROR,
    EVENTS_FILE,
    FAILURES_FILE,
    LOG_FILE,
    RESULT,
    SPEC_FILE,
    StreamReader,
    event_from_record,
    read_json,
    write_control,
    write_json,
)
from resnet_app.core.train.distributed.worker import RunRefused, run_worker
from resnet_app.core.train.distributed.world import DEFAULT_TIMEOUT_S
from resnet_app.core.train.events import EVENTS, EventHub, Message, RunControl, TrainResult

# (The modules of the data and the files are imported where used: torchrun's agent imports this module
# and needs none of them, nor torchvision, which they import: seconds at the start of every run.)
MODULE = "resnet_app.core.train.distributed.launcher"  # `python -m MODULE launch|worker`: the agent, the workers
LAST_CHECKPOINT = "last.pt"  # run_files.LAST_CHECKPOINT
POLL_S = 0.05  # the launcher reads the event stream this often
SHUTDOWN_GRACE_S = 60.0  # after the first process is done, the others have this long to end
TERMINATE_WAIT_S = 15.0  # after SIGTERM, the agent has this long to stop its workers


class ProcessFailed(TrainingError):
    """A training process ended without finishing the run (it crashed, or was killed)."""


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
    from resnet_app.core.model.checkpoints import load_checkpoint
    from resnet_app.core.train.settings import TrainConfig

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
        if config is not None and config.quick:
            raise ValueError("quick training (the last layer only) takes seconds in one process: leave out --nproc")
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
        write_json(spec_path, self._spec(channel))
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
        infos = [read_json(path) for path in self.channel.glob("rank-*.json")]
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
        account = read_json(channel / FAILURES_FILE) or {}
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
        write_json(channel / FAILURES_FILE, {"first": first, "failures": failures})
        print(exc.format_msg(), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m resnet_app.core.train.distributed.launcher launch CHANNEL TORCHRUN-ARGS... | worker SPEC`."""
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
    print("usage: python -m resnet_app.core.train.distributed.launcher launch CHANNEL TORCHRUN-ARGS... | worker SPEC\n"
          "(started by `resnet-app train --nproc N`; see docs/distributed.md)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from resnet_app.core.train.distributed.launcher import main as _main  # the module's own copy, not this __main__ one

    sys.exit(_main())
