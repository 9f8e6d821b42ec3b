"""The training plot takes any loss a run reports (issue 23, suspected: the log scale raised on min([])
and an infinite loss reached the axis range)."""
import math

from resnet_app.ui.plot import TrainingPlot


def test_log_scale_with_only_zero_losses_and_infinite_epoch_losses(qtbot):
    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.set_log_scale(True)
    plot.add_batch_losses([(0.1, 0.0), (0.2, 0.0)])  # a perfect fit: nothing positive to put on a log axis
    plot.add_epoch(1, train_loss=0.0, val_loss=0.0, val_accuracy=1.0)
    plot.add_epoch(2, train_loss=math.inf, val_loss=math.nan, val_accuracy=math.nan)  # a diverged epoch
    low, high = plot.getPlotItem().vb.viewRange()[1]
    assert math.isfinite(low) and math.isfinite(high)
    plot.set_log_scale(False)
    plot.add_epoch(3, train_loss=math.inf, val_loss=None, val_accuracy=None)
    low, high = plot.getPlotItem().vb.viewRange()[1]
    assert math.isfinite(low) and math.isfinite(high)
    assert plot.train_loss == [0.0]  # the non-finite epochs are left off the curve


def test_one_point_shows_the_first_epoch_not_negative_epochs(qtbot):
    """Issue 21 item 13: with one data point the epoch axis ran from -1.5 to 3.5."""
    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.add_epoch(1, train_loss=1.2, val_loss=1.3, val_accuracy=0.4)
    low, high = plot.getPlotItem().vb.viewRange()[0]
    assert -0.1 <= low <= 0.0 and 1.0 <= high <= 1.1
