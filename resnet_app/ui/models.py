"""Thin Qt item models over plain Python lists of core results (no widgets here)."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

from resnet_app.core.use.classifier import Prediction
from resnet_app.ui.thumbnails import ThumbnailCache

PredictionRole = Qt.ItemDataRole.UserRole + 1  # the Prediction object itself
TopKRole = Qt.ItemDataRole.UserRole + 2  # list[(label, probability)], cut to the top-k setting
SortRole = Qt.ItemDataRole.UserRole + 3  # a value that sorts sensibly for the column

ModelIndex = QModelIndex | QPersistentModelIndex


class PredictionTableModel(QAbstractTableModel):
    """One row per classified file: thumbnail, file name, best label, confidence, top-k."""

    COLUMNS = ("Image", "File", "Label", "Confidence", "Top predictions")
    THUMBNAIL, FILE, LABEL, CONFIDENCE, TOP_K = range(5)

    def __init__(self, parent=None, top_k: int = 3, thumbnails: ThumbnailCache | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Prediction] = []
        self._rows_of: dict[str, list[int]] = {}  # path -> its rows, for thumbnails as they arrive
        self._top_k = max(1, top_k)
        # Thumbnails come from a bounded cache, loaded for the rows a view paints (none without one).
        self.thumbnails = thumbnails
        if thumbnails is not None:
            thumbnails.loaded.connect(self._thumbnails_loaded)

    # the list ---------------------------------------------------------------------------------

    def append(self, predictions: list[Prediction]) -> None:
        if not predictions:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(predictions) - 1)
        self._rows.extend(predictions)
        for row, prediction in enumerate(predictions, first):
            self._rows_of.setdefault(str(prediction.path), []).append(row)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._rows, self._rows_of = [], {}
        self.endResetModel()

    def remove_rows(self, rows: list[int]) -> None:
        """Take rows out of the list (the files stay where they are)."""
        for row in sorted(set(rows), reverse=True):
            if 0 <= row < len(self._rows):
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        self._rows_of = {}
        for row, prediction in enumerate(self._rows):
            self._rows_of.setdefault(str(prediction.path), []).append(row)

    def _thumbnails_loaded(self, paths: list[str]) -> None:
        rows = [row for path in paths for row in self._rows_of.get(path, ())]
        if rows:
            self.dataChanged.emit(self.index(min(rows), self.THUMBNAIL), self.index(max(rows), self.THUMBNAIL),
                                  [Qt.ItemDataRole.DecorationRole])

    def predictions(self) -> list[Prediction]:
        return list(self._rows)

    @property
    def top_k(self) -> int:
        return self._top_k

    def set_top_k(self, k: int) -> None:
        k = max(1, int(k))
        if k == self._top_k:
            return
        self._top_k = k
        if self._rows:
            self.dataChanged.emit(self.index(0, self.TOP_K), self.index(len(self._rows) - 1, self.TOP_K),
                                  [TopKRole, Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole])

    # QAbstractTableModel ------------------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        prediction = self._rows[index.row()]
        column = index.column()
        top_k = prediction.top_k[: self._top_k]
        best = top_k[0] if top_k else None
        if role == PredictionRole:
            return prediction
        if role == TopKRole:
            return top_k
        if role == Qt.ItemDataRole.DisplayRole:
            if column == self.FILE:
                return prediction.path.name
            if column == self.LABEL:
                return best[0] if best else "Error"
            if column == self.CONFIDENCE:
                return f"{best[1]:.1%}" if best else ""
            if column == self.TOP_K:
                return prediction.error or ", ".join(f"{label} {p:.0%}" for label, p in top_k)
        if role == Qt.ItemDataRole.DecorationRole and column == self.THUMBNAIL:
            if self.thumbnails is None or not prediction.ok:
                return None
            return self.thumbnails.get(str(prediction.path))
        if role == Qt.ItemDataRole.ToolTipRole:
            if prediction.error:
                return f"{prediction.path}\n{prediction.error}"
            return f"{prediction.path}\n" + "\n".join(f"{label}: {p:.1%}" for label, p in top_k)
        if role == Qt.ItemDataRole.ForegroundRole and prediction.error and column in (self.LABEL, self.TOP_K):
            return QBrush(QColor("#c62828"))
        if role == Qt.ItemDataRole.TextAlignmentRole and column == self.CONFIDENCE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == SortRole:
            if column == self.CONFIDENCE:
                return best[1] if best else -1.0
            if column in (self.LABEL, self.TOP_K):
                return best[0].lower() if best else "\uffff"  # errors last
            return prediction.path.name.lower() if column == self.FILE else index.row()
        return None


class PredictionFilterProxy(QSortFilterProxyModel):
    """Filters rows by label text (any of the shown top-k labels) and minimum confidence."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""
        self._min_confidence = 0.0
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(True)

    def _refilter(self, change) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10; invalidateFilter() is deprecated there
            self.beginFilterChange()
            change()
            self.endFilterChange()
        else:
            change()
            self.invalidateFilter()

    def set_label_filter(self, text: str) -> None:
        self._refilter(lambda: setattr(self, "_text", text.strip().lower()))

    def set_min_confidence(self, fraction: float) -> None:
        self._refilter(lambda: setattr(self, "_min_confidence", float(fraction)))

    def filterAcceptsRow(self, source_row: int, source_parent: ModelIndex) -> bool:
        model = self.sourceModel()
        index = model.index(source_row, 0, source_parent)
        prediction: Prediction = model.data(index, PredictionRole)
        top_k = model.data(index, TopKRole) or []
        if prediction.error:
            return not self._text and self._min_confidence <= 0.0  # errors show unless a filter is set
        if self._text and not any(self._text in label.lower() for label, _ in top_k):
            return False
        return (top_k[0][1] if top_k else 0.0) >= self._min_confidence
