"""Paints the top-k column: one line per label with a probability bar."""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from resnet_app.ui.models import PredictionRole, TopKRole

LABEL_SHARE = 0.45  # of the cell width given to the label text; the bar and percentage get the rest


class TopKDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        prediction = index.data(PredictionRole)
        top_k = index.data(TopKRole) or []
        if prediction is None or prediction.error or not top_k:
            super().paint(painter, option, index)  # the error text, in the model's red
            return
        self.initStyleOption(option, index)
        option.text = ""
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        painter.save()
        palette: QPalette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        # On a selected row the background is the highlight colour: a bar of that colour would vanish and
        # its empty track would look full (89.6 % read as a stub). So there the bar takes the text colour.
        bar_color = text_color if selected else palette.color(QPalette.ColorRole.Highlight)
        track = QColor(text_color)
        track.setAlpha(50 if selected else 40)
        metrics = option.fontMetrics
        line_h = metrics.height() + 4
        rect = option.rect.adjusted(6, 0, -6, 0)
        total_h = line_h * len(top_k)
        y = rect.top() + max(0, (rect.height() - total_h) // 2)
        label_w = int(rect.width() * LABEL_SHARE)
        percent_w = metrics.horizontalAdvance("100.0%") + 6
        bar_w = max(10, rect.width() - label_w - percent_w - 8)
        for i, (label, probability) in enumerate(top_k):
            font = painter.font()
            font.setBold(i == 0)
            painter.setFont(font)
            painter.setPen(text_color)
            label_rect = QRect(rect.left(), y, label_w, line_h)
            painter.drawText(label_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             metrics.elidedText(label, Qt.TextElideMode.ElideRight, label_w - 4))
            bar_rect = QRect(rect.left() + label_w + 4, y + line_h // 2 - 4, bar_w, 8)
            painter.fillRect(bar_rect, track)
            filled = QRect(bar_rect)
            filled.setWidth(max(1, int(bar_w * max(0.0, min(1.0, probability)))))
            painter.fillRect(filled, bar_color)
            painter.drawText(QRect(bar_rect.right() + 6, y, percent_w, line_h),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{probability:.1%}")
            y += line_h
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        top_k = index.data(TopKRole) or []
        line_h = option.fontMetrics.height() + 4
        return QSize(260, max(1, len(top_k)) * line_h + 4)
