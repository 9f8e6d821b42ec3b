"""The one-line texts the events give the app and the command line (one text per fact)."""
from resnet_app.core.train.events import RunEnd


def test_the_run_summary_counts_epochs_in_plain_english():
    one = RunEnd("completed", 1, 0.5, None, None).summary()
    assert one == "Training finished after 1 epoch; best validation accuracy 50.0%."
    assert RunEnd("stopped", 3, None, None, None).summary() == "Training stopped after 3 epochs."


def test_a_stopped_run_says_where_it_stopped_and_counts_in_plain_english():
    stopped = RunEnd("stopped", 0, None, None, None, stopped_epoch=1, stopped_batch=8, stopped_batches=12, total=6)
    assert stopped.summary() == "Stopped in epoch 1 (batch 8 of 12); resume continues from there."
    with_best = RunEnd("stopped", 2, 0.5, None, None, stopped_epoch=3, stopped_batch=0, stopped_batches=12, total=6)
    assert with_best.summary() == ("Stopped at the start of epoch 3; resume continues from there. "
                                   "Best validation accuracy so far: 50.0%.")
    assert RunEnd("completed", 1, None, None, None, unit="pass", total=1).summary() == (
        "Training finished after 1 pass over the features.")
    assert RunEnd("stopped", 0, None, None, None).summary() == "Training stopped before its first epoch ended."
