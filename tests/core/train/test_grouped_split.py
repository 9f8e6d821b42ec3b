"""A run's split keeps near-duplicates whole (issue 20): frames of one clip never straddle it, the run
says how many groups it kept together, and `--split random` is the split runs made before."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_app.core.train.events import EventHub
from resnet_app.core.train.run_data import prepare_run_data
from resnet_app.core.train.settings import TrainConfig


def smooth_picture(rng, size=32):
    grid = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    return np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)


def write_clips(root: Path, clips: dict[str, int], frames: int = 6, seed: int = 0) -> dict[str, list[Path]]:
    """Class folders of clips: each clip `frames` near-identical frames (noise of +-2 on one picture)."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in clips.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for clip in range(count):
            picture = smooth_picture(rng)
            paths = []
            for frame in range(frames):
                pixels = picture + rng.integers(-2, 3, (32, 32, 3))
                paths.append(root / name / f"clip{clip:02d}_{frame:02d}.png")
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])
            written[f"{name}/{clip}"] = paths
    return written


def messages(events: EventHub) -> list:
    said = []
    events.add_callback("message", said.append)
    return said


def test_frames_of_a_clip_never_straddle_the_split(tmp_path):
    clips = write_clips(tmp_path / "data", {"ants": 5, "bees": 5})
    (tmp_path / "data" / "bees" / "copy.png").write_bytes(clips["bees/0"][0].read_bytes())  # a byte-identical copy
    clips["bees/0"].append(tmp_path / "data" / "bees" / "copy.png")
    for seed in range(6):
        events = EventHub()
        said = messages(events)
        data = prepare_run_data(TrainConfig(seed=seed, val_fraction=0.2), tmp_path / "data", events)
        val = {path for path, _ in data.val_samples}
        for name, paths in clips.items():
            assert set(paths) <= val or not (set(paths) & val), f"clip {name} straddles the split (seed {seed})"
        assert {label for _, label in data.val_samples} == {0, 1}
        assert data.summary()["split"] == "grouped" and data.summary()["groups_kept_together"] == 10
        assert any("10 groups of near-duplicate or identical images (61 images) kept whole" in m.text for m in said)


def test_random_split_is_the_split_runs_made_before(tmp_path):
    """The same folder and seeds as before issue 20 give the same validation files with --split random
    (the lists were printed by the code before the change)."""
    root = tmp_path / "data"
    for c, name in enumerate(("ants", "bees", "wasps")):
        (root / name).mkdir(parents=True)
        for i in range(9 + c):
            rng = np.random.default_rng(100 * c + i)
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    (root / "bees" / "copy.png").write_bytes((root / "bees" / "03.png").read_bytes())
    before = {0: ['ants/05.png', 'ants/07.png', 'bees/01.png', 'bees/04.png', 'bees/05.png', 'wasps/00.png',
                  'wasps/05.png', 'wasps/08.png'],
              7: ['ants/00.png', 'ants/05.png', 'bees/04.png', 'bees/06.png', 'bees/09.png', 'wasps/05.png',
                  'wasps/07.png', 'wasps/10.png']}
    for seed, expected in before.items():
        data = prepare_run_data(TrainConfig(seed=seed, val_fraction=0.25, split="random"), root, EventHub())
        assert sorted(f"{p.parent.name}/{p.name}" for p, _ in data.val_samples) == expected
        assert data.summary()["split"] == "random"


def test_a_class_that_is_one_clip_gets_a_warning(tmp_path):
    write_clips(tmp_path / "data", {"ants": 1, "bees": 4}, frames=8)
    events = EventHub()
    said = messages(events)
    data = prepare_run_data(TrainConfig(val_fraction=0.2), tmp_path / "data", events)
    warnings = [m.text for m in said if m.level == "warning"]
    assert any("Class 'ants': 8 of its 8 images are near-duplicates" in w and "--val-dir" in w for w in warnings)
    assert 0 not in {label for _, label in data.val_samples}  # the one clip trains, whole
    doctor = subprocess.run([sys.executable, "-m", "resnet_app", "doctor", str(tmp_path / "data"), "--json"],
                            capture_output=True, text=True, timeout=120)
    report = json.loads(doctor.stdout)
    assert any("Class 'ants'" in w for w in report["warnings"])
    assert report["near_duplicate_groups"]["groups"] == 5


def test_an_old_checkpoints_settings_resume_with_the_random_split():
    old = TrainConfig().to_dict()
    del old["split"]  # saved before the setting existed
    assert TrainConfig.from_dict(old).split == "random"
    assert TrainConfig().split == "grouped"


def test_a_folder_without_groups_says_nothing_about_them(tmp_path):
    """No "split: 0 groups ... kept whole (--split random would not)" line where there is nothing to keep."""
    rng = np.random.default_rng(3)
    for name in ("ants", "bees"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for n in range(6):
            Image.fromarray(smooth_picture(rng).astype(np.uint8)).save(tmp_path / "data" / name / f"{n}.png")
    events = EventHub()
    said = messages(events)
    data = prepare_run_data(TrainConfig(val_fraction=0.2), tmp_path / "data", events)
    assert data.summary()["split"] == "grouped" and data.summary()["groups_kept_together"] == 0
    assert not any("kept whole" in m.text for m in said)
