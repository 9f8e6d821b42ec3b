"""The Runs list tells runs of one folder apart (issue 21 item 13: every entry was "sample-data")."""
import json

from resnet_app.core.train.run_files import list_runs


def _run(folder, **fields):
    folder.mkdir(parents=True)
    run = {"status": "completed", "root": "/data/sample-data", "classes": ["a", "b"], "epochs_completed": 6,
           "epochs": 6, "best_val_accuracy": 0.8, "started": "2026-12-01T10:00:00", **fields}
    (folder / "run.json").write_text(json.dumps(run))


def test_titles_say_how_each_run_trained(tmp_path):
    _run(tmp_path / "a", config={"pretrained": None})
    _run(tmp_path / "b", config={"pretrained": "resnet18-f37072fd.pth"}, started="2026-12-01T11:00:00")
    _run(tmp_path / "c", unit="pass", passes=60, passes_completed=60, config={"pretrained": "imagenet"},
         started="2026-12-01T12:00:00")
    titles = {run.folder.name: run.title() for run in list_runs(tmp_path)}
    assert titles["a"].startswith("sample-data · scratch · ")
    assert titles["b"].startswith("sample-data · full · ")
    assert titles["c"].startswith("sample-data · quick · ")
    assert len(set(titles.values())) == 3
