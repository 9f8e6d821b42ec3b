"""Several processes (issue 14), on the CPU: torchrun, gloo, 2 processes, 16 px images of three colours.

Every launch has a deadline (fit_within) and every collective a timeout (RESNET_APP_DDP_TIMEOUT_S), so a
bug fails the test instead of hanging it. A launch costs seconds of start-up (three Pythons importing
torch), so there are four: an unbroken run on two "machines" (two launchers meeting at a static
rendezvous, one process each), which serves several tests; a run stopped mid-epoch and its resumption
on one machine, which must end with the unbroken run's weights bit for bit; and a run whose second
process is killed.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_app.core.data.batches import EpochSampler, shard_batches
from resnet_app.core.model.checkpoints import load_checkpoint
from resnet_app.core.train.distributed.launcher import DistributedRun, LaunchPlan, ProcessFailed, launch_plan
from resnet_app.core.train.distributed.transport import StreamReader, event_from_record, event_record
from resnet_app.core.train.events import BatchEnd, EpochEnd, Message, RunStart
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig

ROOT = Path(__file__).resolve().parents[3]
RUN_DEADLINE_S = 240  # one launch: start-up, 3 epochs of 3 steps, shut-down (seconds on a busy 2-core machine)
COLLECTIVE_TIMEOUT_S = "60"  # a process left waiting for a lost one fails after this


@pytest.fixture(scope="module", autouse=True)
def ddp_environment():
    saved = {name: os.environ.get(name) for name in ("RESNET_APP_DDP_TIMEOUT_S", "OMP_NUM_THREADS")}
    os.environ["RESNET_APP_DDP_TIMEOUT_S"] = COLLECTIVE_TIMEOUT_S
    os.environ["OMP_NUM_THREADS"] = "1"  # two processes on the 2 cores: one thread each
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """3 classes (red, green, blue) x 24 noisy 16 px images: learnt in an epoch, so accuracies compare."""
    root = tmp_path_factory.mktemp("data") / "colours"
    rng = np.random.default_rng(0)
    for index, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 90, (16, 16, 3))
            pixels[..., index] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def config(**overrides) -> TrainConfig:
    # 54 training images (27 a process), a global batch of 8 (4 a process): 7 steps an epoch.
    # A constant rate: 14 steps are too few for one cycle's warm-up to learn the colours in, and the
    # tests compare processes, not recipes.
    values = dict(epochs=2, batch_size=8, image_size=16, val_fraction=0.25, loader_processes=0, device="cpu",
                  seed=1, schedule="none", label_smoothing=0.0)
    return TrainConfig(**{**values, **overrides})


def record(run) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    for name in ("run_start", "batch_end", "epoch_end", "checkpoint_saved", "message", "run_end"):
        run.add_callback(name, lambda payload, name=name: events.append((name, payload)))
    return events


def fit_within(run: DistributedRun, seconds: float = RUN_DEADLINE_S):
    """run.fit() with a deadline: past it, the processes are stopped and the test fails."""
    outcome: dict[str, object] = {}

    def target():
        try:
            outcome["result"] = run.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        run.terminate()
        thread.join(60)
        pytest.fail(f"the distributed run did not end within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_machines(colours, tmp_path_factory):
    """One unbroken run of 2 processes on two "machines": node 0's (result, events), node 1's, the run
    folder. Node ranks fix the process ranks, so it is the same run as 2 processes on one machine."""
    out = tmp_path_factory.mktemp("runs") / "two"
    endpoint = f"127.0.0.1:{_free_port()}"
    runs = [DistributedRun(LaunchPlan(1, nnodes=2, node_rank=rank, rdzv_endpoint=endpoint), config=config(),
                           data_dir=colours, out_dir=out) for rank in (0, 1)]
    events = [record(run) for run in runs]
    outcomes: list[object] = [None, None]

    def fit(i: int) -> None:
        try:
            outcomes[i] = fit_within(runs[i])
        except BaseException as exc:  # noqa: BLE001 - raised below, in the test's thread
            outcomes[i] = exc

    threads = [threading.Thread(target=fit, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_DEADLINE_S + 90)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return (outcomes[0], events[0]), (outcomes[1], events[1]), out


# --- real runs -------------------------------------------------------------------------------------

def test_two_processes_train_like_one(two_machines, colours, tmp_path):
    (result, events), (second, second_events), out = two_machines
    assert result.status == "completed" and result.epochs_completed == 2
    for name in ("model.safetensors", "last.pt", "metrics.csv", "run.json"):
        assert (out / name).is_file(), name
    texts = [e.text for name, e in events if name == "message"]
    # The run's first lines say how the processes share the images, the batch and the learning rate.
    assert any("2 processes on 2 machines" in t and "batch 8 in all = 2 × 4" in t and "learning rate 0.001" in t
               for t in texts), texts
    start = next(e for name, e in events if name == "run_start")
    assert start.batch_size == 8 and start.device.startswith("2 × CPU") and start.batches_per_epoch == 7
    steps = [e.step for name, e in events if name == "batch_end"]
    assert steps == list(range(1, 15))  # 7 global batches an epoch, each told once (by the first process)
    assert not any(t.startswith("process 1:") for t in texts)  # its warnings were the first's: said once
    saved = load_checkpoint(out / "last.pt")
    assert saved["config"]["nproc"] == 2 and saved["batch_size"] == 8 and saved["epoch"] == 2
    # Node 1 trains, and shows nothing of the run but that node 0 has it.
    assert second.status == "completed" and "node 0" in second.message and second.model_path is None
    assert [name for name, _ in second_events if name != "message"] == []

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes had (two threads on a busy 2-core machine crawl)
    try:
        one = Trainer(config(), colours, tmp_path / "one").fit()  # the same settings in one process
    finally:
        torch.set_num_threads(threads)
    # 18 validation images: within 2 of them ("within noise"), and both learnt the colours.
    assert one.history[-1]["val_accuracy"] >= 0.9 and result.history[-1]["val_accuracy"] >= 0.9
    assert abs(one.history[-1]["val_accuracy"] - result.history[-1]["val_accuracy"]) <= 2 / 18 + 1e-9


def test_a_stop_mid_epoch_resumes_exactly_at_two_processes(two_machines, colours, tmp_path):
    *_, unbroken = two_machines
    run = DistributedRun(LaunchPlan(2), config=config(), data_dir=colours, out_dir=tmp_path / "split")
    run.add_callback("batch_end", lambda e: run.request_stop() if e.step == 9 else None)  # epoch 2's 2nd batch
    stopped = fit_within(run)
    assert stopped.status == "stopped"
    checkpoint = load_checkpoint(tmp_path / "split" / "last.pt")
    assert checkpoint["epoch"] == 1 and 0 < checkpoint["samples_done"] < 54  # in the middle of epoch 2

    # Resumed by the command line, which takes the process count the run was trained with.
    from resnet_app.cli import main

    assert main(["train", "--resume", str(tmp_path / "split" / "last.pt")]) == 0
    resumed, straight = load_checkpoint(tmp_path / "split" / "last.pt"), load_checkpoint(unbroken / "last.pt")
    assert resumed["epoch"] == 2 and resumed["config"]["nproc"] == 2
    assert same_weights(resumed["model"], straight["model"])
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in straight["history"]]


def test_a_killed_process_ends_the_run_with_its_message_and_an_intact_checkpoint(colours, tmp_path):
    run = DistributedRun(LaunchPlan(2), config=config(), data_dir=colours, out_dir=tmp_path / "run")

    def kill_the_second(event: EpochEnd) -> None:
        if event.epoch == 1:
            pid = json.loads((run.channel / "rank-1.json").read_text())["pid"]
            os.kill(pid, signal.SIGKILL)

    run.add_callback("epoch_end", kill_the_second)
    with pytest.raises(ProcessFailed) as failed:
        fit_within(run)
    message = str(failed.value)
    assert "rank 1" in message and "SIGKILL" in message, message
    assert f"last good checkpoint is kept: {tmp_path / 'run' / 'last.pt'}" in message
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")  # loads: written whole, once, atomically
    assert checkpoint["epoch"] >= 1
    for info in (run.channel / "rank-0.json", run.channel / "rank-1.json"):  # no process is left running
        with pytest.raises(ProcessLookupError):
            os.kill(json.loads(info.read_text())["pid"], 0)


# One process of a DDP run started by hand (as worker.py starts it, without the launcher), which keeps its
# own weights when the run ends: the launcher's runs keep only the first process's.
RANK_SCRIPT = """
import json, sys
import torch
from resnet_app.core.train.distributed.world import DistributedWorld
from resnet_app.core.train.loop import Trainer
from resnet_app.core.train.settings import TrainConfig

rank, settings, data, out, kept = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
trainer = Trainer(TrainConfig.from_dict(settings), data, out)
world = DistributedWorld(rank, rank, 2, 2, "cpu")
trainer.world, world.events = world, trainer.events
said = []
trainer.add_callback("message", lambda message: said.append(message.text))
world.join(60)
result = trainer.fit()
torch.save({"status": result.status, "model": trainer.model.state_dict(), "said": said}, f"{kept}/rank-{rank}.pt")
world.close()
"""


def test_a_ddp_fine_tune_starts_every_process_from_the_same_last_layer(colours, tmp_path):
    """Each process trains the last layer first on its own shard's features; the first process's must be
    the one every process starts the full phase from (DDP sends the weights only once, as it wraps them)."""
    from resnet_app.core.model.architectures import build_model

    weights = tmp_path / "resnet18-random.pth"
    torch.save(build_model("resnet18", 1000, generator=torch.Generator().manual_seed(0)).state_dict(), weights)
    settings = json.dumps(config(arch="resnet18", pretrained=str(weights), epochs=1).to_dict())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(rank), settings, str(colours),
                                   str(tmp_path / "run"), str(tmp_path)], cwd=ROOT,
                                  env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in (0, 1)]
    try:
        outputs = [process.communicate(timeout=RUN_DEADLINE_S)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], outputs
    first, second = (torch.load(tmp_path / f"rank-{rank}.pt", weights_only=True) for rank in (0, 1))
    assert first["status"] == second["status"] == "completed"
    for kept in (first, second):  # each process's features are of its own shard (27 of the 54 images)
        assert any(t.startswith("27 training features (centre) computed") for t in kept["said"]), kept["said"]
    for key in ("fc.weight", "fc.bias"):
        assert torch.equal(first["model"][key], second["model"][key]), key
    parameters = dict(build_model("resnet18", 3).named_parameters())
    assert same_weights({k: v for k, v in first["model"].items() if k in parameters},
                        {k: v for k, v in second["model"].items() if k in parameters})


# --- the frozen app ----------------------------------------------------------------------------------

def _frozen_python(code: str, bundle: Path) -> subprocess.CompletedProcess:
    prelude = f"import sys\nsys.frozen = True\nsys._MEIPASS = {str(bundle)!r}\nfrom resnet_app import frozen\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_the_frozen_app_runs_the_distributed_processes_itself(tmp_path):
    """The installed app has no Python to run `-m MODULE`: started so by torchrun or the launcher, it runs
    the module itself (PyInstaller issue 7756's pattern)."""
    from resnet_app.frozen import python_module_invocation

    assert python_module_invocation(["-u", "-m", "resnet_app.core.train.distributed.launcher", "worker", "s.json"]) == (
        "resnet_app.core.train.distributed.launcher", ["worker", "s.json"])
    assert python_module_invocation(["-m", "torch.distributed.run", "--standalone"]) == (
        "torch.distributed.run", ["--standalone"])
    assert python_module_invocation(["train", "data"]) is None
    assert python_module_invocation(["-m", "os"]) is None  # only the modules of a distributed run

    worker = _frozen_python(f"frozen.setup(['-u', '-m', 'resnet_app.core.train.distributed.launcher', 'worker', "
                            f"{str(tmp_path / 'missing.json')!r}])\nprint('not reached')", tmp_path)
    assert worker.returncode == 2 and "can't read the run's settings" in worker.stderr
    assert "not reached" not in worker.stdout
    torchrun = _frozen_python("frozen.setup(['-m', 'torch.distributed.run', '--help'])", tmp_path)
    assert torchrun.returncode == 0 and "--nproc-per-node" in torchrun.stdout, torchrun.stderr


# --- the parts, without processes --------------------------------------------------------------------

def test_events_travel_as_json_lines_and_come_back_as_the_same_dataclasses(tmp_path):
    events = [("run_start", RunStart(["a", "b"], 10, 2, "2 × CPU", 3, 1, 2, 0, "decoded", 8, 1e-3)),
              ("batch_end", BatchEnd(1, 1, 2, float("nan"), 1, 8)),
              ("epoch_end", EpochEnd(1, 3, 0.5, None, None, 1.0, 10.0, 1e-3, 0)),
              ("message", Message("skipped x.png: broken", "warning"))]
    path = tmp_path / "events.jsonl"
    reader = StreamReader(path)
    lines = [json.dumps(event_record(name, payload)) + "\n" for name, payload in events]
    text = "".join(lines)
    path.write_text(text[:-5])  # the last line is still being written
    first = reader.read()
    with open(path, "a") as f:
        f.write(text[-5:])
    back = [event_from_record(r) for r in first + reader.read()]
    assert [name for name, _ in back] == [name for name, _ in events]
    assert back[0][1] == events[0][1] and back[2][1] == events[2][1] and back[3][1] == events[3][1]
    assert np.isnan(back[1][1].loss)


def test_shards_cover_the_images_once_and_take_the_same_steps():
    from resnet_app.core.data.scan import DatasetReport
    from resnet_app.core.train.run_data import RunData, shard_run_data

    samples = [(Path(f"{i}.png"), i % 3) for i in range(37)]
    data = RunData(Path("."), ["a", "b", "c"], samples, samples[:5], DatasetReport.__new__(DatasetReport))
    shards = [shard_run_data(data, rank, 3, seed=7) for rank in range(3)]
    assert sorted(s for shard in shards for s in shard.train_samples) == sorted(samples)
    assert {len(shard.train_samples) for shard in shards} == {12, 13}
    assert sorted(s for shard in shards for s in shard.val_samples) == sorted(samples[:5])
    # A shorter shard's epoch wraps round to the longest shard's length.
    order = EpochSampler(12, seed=1, epoch=0, length=13).order()
    assert len(order) == 13 and sorted(order[:12]) == list(range(12)) and order[12] == order[0]
    assert EpochSampler(12, seed=1, epoch=0).order() == order[:12]  # one process: unchanged

    class Source:
        shard, epoch_length = 0, None

    source = Source()
    shard_batches(source, 2, 13)
    assert (source.shard, source.epoch_length) == (2, 13)


def test_launch_plans_are_checked_against_this_machine():
    assert launch_plan(None, "cpu") == LaunchPlan(1)
    plan = launch_plan("auto", "cpu")
    assert plan.nproc == 1 and "one process" in plan.notes[0]
    plan = launch_plan(2, "cpu")
    assert plan.distributed and "gloo" in plan.notes[0]
    assert launch_plan(None, "cpu", saved_nproc=2).nproc == 2  # a resumed run keeps its count
    assert "not exactly the unbroken one" in launch_plan(3, "cpu", saved_nproc=2).notes[-1]
    for kwargs, message in (({"nproc": 2, "device": "mps"}, "Apple's GPU"),
                            ({"nproc": 2, "device": "cuda:1"}, "names one GPU"),
                            ({"nproc": 1, "device": "cpu", "nnodes": 2}, "--rdzv-endpoint HOST:PORT"),
                            ({"nproc": 1, "device": "cpu", "nnodes": 2, "node_rank": 2,
                              "rdzv_endpoint": "h:1"}, "--node-rank must be from 0 to 1")):
        with pytest.raises(ValueError, match=message):
            launch_plan(kwargs.pop("nproc"), kwargs.pop("device"), **kwargs)
    args = LaunchPlan(4, nnodes=2, node_rank=1, rdzv_endpoint="node0:29400").torchrun_args(Path("s.json"))
    assert args[-4:] == ["-m", "resnet_app.core.train.distributed.launcher", "worker", "s.json"]
    assert "--standalone" not in args and ["--rdzv-endpoint", "node0:29400"] == args[args.index("--rdzv-endpoint"):][:2]
    assert "--standalone" in LaunchPlan(2).torchrun_args(Path("s.json"))


def test_the_command_line_refuses_impossible_process_counts(tmp_path, capsys):
    from resnet_app.cli import main

    assert main(["train", str(tmp_path), "--device", "cpu", "--nproc", "2", "--nnodes", "2"]) == 2
    assert "--rdzv-endpoint HOST:PORT" in capsys.readouterr().err
