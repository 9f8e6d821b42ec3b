"""The live training plot: one pyqtgraph curve per series, updated with setData.

x is in epochs (batch 3 of 10 in epoch 2 is x = 1.3). Loss is on the left axis; validation accuracy
(percent) on a second view box linked to the right axis (pyqtgraph's MultiplePlotAxes example).

The legend is a row of its own above the plot (`legend_bar()`), never over the data; axes show plain
numbers (no "x0.001" SI scaling); a loss too high for the axis is marked at its edge with its value; a
log-scale switch shows every loss at once.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

SMOOTHING = 0.9  # exponential moving average weight of the previous smoothed value (per batch)


class TrainingPlot(pg.PlotWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Training loss plot")
        self.setMinimumHeight(220)
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "loss")
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.log_scale = False
        self.clipped_marks: list[pg.TextItem] = []
        self.accuracy_view = pg.ViewBox()
        item.showAxis("right")
        item.setLabel("right", "validation accuracy (%)")
        for name in ("left", "bottom", "right"):  # plain epochs and losses, never "epoch (x0.001)"
            item.getAxis(name).enableAutoSIPrefix(False)
        item.scene().addItem(self.accuracy_view)
        item.getAxis("right").linkToView(self.accuracy_view)
        self.accuracy_view.setXLink(item)
        self.accuracy_view.setYRange(0, 100)
        self.accuracy_view.enableAutoRange(y=False)
        item.vb.sigResized.connect(self._sync_views)

        self.raw_curve = item.plot(name="batch loss")
        self.smooth_curve = item.plot(name="batch loss (smoothed)")
        self.train_curve = item.plot(name="train loss (epoch)", symbol="o", symbolSize=7)
        self.val_curve = item.plot(name="val loss (epoch)", symbol="s", symbolSize=7)
        self.accuracy_curve = pg.PlotDataItem(name="val accuracy", symbol="t", symbolSize=8)
        self.accuracy_view.addItem(self.accuracy_curve)
        self.legend_labels: list[tuple[QLabel, pg.PlotDataItem, str]] = []
        self.apply_palette()
        self.clear_data()

    def _sync_views(self) -> None:
        self.accuracy_view.setGeometry(self.getPlotItem().vb.sceneBoundingRect())
        self.accuracy_view.linkedViewChanged(self.getPlotItem().vb, self.accuracy_view.XAxis)

    def changeEvent(self, event: QEvent) -> None:
        # The system switched between light and dark (or the app's palette changed): recolour.
        # (Qt also sends one while PlotWidget is being built, before there is anything to colour.)
        built = getattr(self, "accuracy_curve", None) is not None
        if built and event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange):
            self.apply_palette()
        super().changeEvent(event)

    def apply_palette(self) -> None:
        """Colours from the palette, so the plot follows the light or dark scheme, also when it changes."""
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        dark = background.lightness() < 128
        self.setBackground(background)
        for name in ("left", "bottom", "right"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(text)
            axis.setTextPen(text)
        self.mark_colour = text
        blue = QColor("#64b5f6" if dark else "#1e88e5")
        faint = QColor(blue)
        faint.setAlpha(110)  # the raw batch losses: behind the smoothed line, yet visible in the legend
        orange = QColor("#ffb74d" if dark else "#ef6c00")
        green = QColor("#81c784" if dark else "#2e7d32")
        self.raw_curve.setPen(pg.mkPen(faint, width=1))
        self.smooth_curve.setPen(pg.mkPen(blue, width=2))
        self.train_curve.setPen(pg.mkPen(blue, width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.train_curve.setSymbolBrush(blue)
        self.val_curve.setPen(pg.mkPen(orange, width=2))
        self.val_curve.setSymbolBrush(orange)
        self.accuracy_curve.setPen(pg.mkPen(green, width=2))
        self.accuracy_curve.setSymbolBrush(green)
        self._colour_legend()

    # data ------------------------------------------------------------------------------------

    def clear_data(self) -> None:
        self.batch_x: list[float] = []
        self.batch_loss: list[float] = []
        self.smoothed: list[float] = []
        self.epoch_x: list[float] = []
        self.train_loss: list[float] = []
        self.val_x: list[float] = []
        self.val_loss: list[float] = []
        self.acc_x: list[float] = []
        self.accuracy: list[float] = []
        for curve in (self.raw_curve, self.smooth_curve, self.train_curve, self.val_curve, self.accuracy_curve):
            curve.setData([], [])
        self._mark_clipped(None)

    def add_batch_losses(self, points: list[tuple[float, float]]) -> None:
        for x, loss in points:
            if not math.isfinite(loss):
                continue
            previous = self.smoothed[-1] if self.smoothed else loss
            self.batch_x.append(x)
            self.batch_loss.append(loss)
            self.smoothed.append(SMOOTHING * previous + (1 - SMOOTHING) * loss if self.smoothed else loss)
        self.raw_curve.setData(self.batch_x, self.batch_loss)
        self.smooth_curve.setData(self.batch_x, self.smoothed)
        self._fit_loss_range()

    def add_epoch(self, epoch: int, train_loss: float, val_loss: float | None, val_accuracy: float | None) -> None:
        if train_loss is not None and math.isfinite(train_loss):  # a diverged epoch has no point to show
            self.epoch_x.append(float(epoch))
            self.train_loss.append(train_loss)
            self.train_curve.setData(self.epoch_x, self.train_loss)
        if val_loss is not None and math.isfinite(val_loss):
            self.val_x.append(float(epoch))
            self.val_loss.append(val_loss)
            self.val_curve.setData(self.val_x, self.val_loss)
        if val_accuracy is not None and math.isfinite(val_accuracy):
            self.acc_x.append(float(epoch))
            self.accuracy.append(100.0 * val_accuracy)
            self.accuracy_curve.setData(self.acc_x, self.accuracy)
        self._fit_loss_range()

    def _fit_loss_range(self) -> None:
        """Scale the loss axis to the smoothed and per-epoch training losses.

        Early validation losses of 10-50 are common while batch-norm statistics settle; left to
        autorange, one of them flattens every other curve into the floor. Losses up to 3x the typical
        top stay in view; a higher one is marked at the top edge with its value (and the log scale
        shows it whole).
        """
        if not self.smoothed and not self.train_loss:
            return
        self._fit_epoch_range()
        if self.log_scale:  # every loss in view; the view's units are then log10 of the losses
            values = [v for v in self.batch_loss + self.train_loss + self.val_loss if v > 0]
            if not values:  # only zero losses so far: no log axis to fit yet
                return
            low, high = math.log10(min(values)), math.log10(max(values))
            margin = max(0.05, 0.05 * (high - low))
            self.getPlotItem().setYRange(low - margin, high + margin, padding=0)
            self._mark_clipped(None)
            return
        typical_top = max(max(self.smoothed, default=0.0), max(self.train_loss, default=0.0))
        top = max([typical_top] + [v for v in self.val_loss if v <= 3 * typical_top]) * 1.05
        self.getPlotItem().setYRange(0, top, padding=0)
        self._mark_clipped(top)

    def _fit_epoch_range(self) -> None:
        """At least the first epoch across: one point alone was centred in an axis from -1.5 to 3.5."""
        last = max(self.batch_x[-1:] + self.epoch_x[-1:] + self.val_x[-1:], default=0.0)
        if last <= 1.0:
            self.getPlotItem().setXRange(0.0, 1.0, padding=0.02)
        else:
            self.getPlotItem().enableAutoRange(x=True)

    def _mark_clipped(self, top: float | None) -> None:
        """An arrow and the value at the top edge for each epoch loss above `top` (None: no marks)."""
        item = self.getPlotItem()
        for mark in self.clipped_marks:
            item.removeItem(mark)
        self.clipped_marks = []
        if top is None:
            return
        for xs, values in ((self.epoch_x, self.train_loss), (self.val_x, self.val_loss)):
            for x, value in zip(xs, values, strict=True):
                if value > top:
                    mark = pg.TextItem(f"↑ {value:.3g}", color=self.mark_colour, anchor=(0.5, 0))
                    mark.setPos(x, top)
                    item.addItem(mark)
                    self.clipped_marks.append(mark)

    def set_log_scale(self, on: bool) -> None:
        """Loss on a log axis: every value visible at once, however far apart."""
        self.log_scale = on
        self.getPlotItem().setLogMode(y=on)
        self._fit_loss_range()

    # the legend, a row above the plot ---------------------------------------------------------------

    def legend_bar(self) -> QWidget:
        """A row with each series' colour and name, and the log-scale switch: outside the data area, so
        it hides no point at any window size."""
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(4, 0, 4, 0)
        self.legend_label = QLabel()  # one label that wraps, so that a narrow window fits the legend
        self.legend_label.setWordWrap(True)
        self.legend_label.setAccessibleName("Legend")
        # Each series' glyph looks like its line (thin, bold, dashed) and its points (● ■ ▼), since three
        # of them share the loss's blue.
        self.legend_labels = [(self.legend_label, curve, name, glyph) for curve, name, glyph in (
            (self.raw_curve, "batch loss", "─"), (self.smooth_curve, "smoothed", "━"),
            (self.train_curve, "train loss (epoch)", "╍●"), (self.val_curve, "val loss (epoch)", "━■"),
            (self.accuracy_curve, "val accuracy (right axis)", "━▼"))]
        row.addWidget(self.legend_label, 1)
        self.log_check = QCheckBox("Log scale")
        self.log_check.setToolTip("Show the loss on a logarithmic axis, so that very high and low values "
                                  "are all visible")
        self.log_check.toggled.connect(self.set_log_scale)
        row.addWidget(self.log_check)
        self._colour_legend()
        return bar

    def _colour_legend(self) -> None:
        entries = []
        background = self.backgroundBrush().color()
        for _, curve, name, glyph in getattr(self, "legend_labels", []):
            pen = curve.opts.get("pen")
            colour = self._opaque(pen.color(), background).name() if pen is not None else "#888888"
            # Non-breaking inside an entry: a narrow window wraps between entries, never mid-name.
            entries.append(f'<span style="color:{colour}; font-weight:bold">{glyph}</span>&nbsp;'
                           + name.replace(" ", "&nbsp;"))
        if entries:
            self.legend_label.setText(" &nbsp; ".join(entries))

    @staticmethod
    def _opaque(colour: QColor, background: QColor) -> QColor:
        """A see-through pen's colour as it shows on the background (rich text has no alpha)."""
        alpha = colour.alphaF()
        return QColor.fromRgbF(*(alpha * getattr(colour, c)() + (1 - alpha) * getattr(background, c)()
                                 for c in ("redF", "greenF", "blueF")))

    @property
    def point_count(self) -> int:
        return len(self.batch_loss)
