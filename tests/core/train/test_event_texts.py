"""The one-line texts the events give the app and the command line (one text per fact)."""
from resnet_app.core.train.events import RunEnd


def test_the_run_summary_counts_epochs_in_plain_english():
    one = RunEnd("completed", 1, 0.5, None, None).summary()
    assert one == "Training finished after 1 epoch; best validation accuracy 50.0%."
    assert RunEnd("stopped", 3, None, None, None).summary() == "Training stopped after 3 epochs."
