"""Thin Qt item models over an EvalReport (plain data from core.use.evaluation; no widgets here).

- PerClassModel: precision, recall and image count per class.
- ConfusionMatrixModel: true classes down, predicted across; each cell its count and its share of the
  true class's images (the delegate paints that share as heat).
- EvalRowsModel: the images, most wrong first (by loss).
- ImageGridModel: the images of one confusion cell, for a thumbnail grid.

The classes shown are those in play: in the folder, or predicted for some image (a 1,000-class model
evaluated on three folders shows three rows, and a column for each class it wrongly chose).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt

from resnet_app.core.use.evaluation import EvalReport, EvalRow
from resnet_app.ui.thumbnails import ThumbnailCache
from resnet_app.ui.workers import THUMBNAIL_PX

ModelIndex = QModelIndex | QPersistentModelIndex

CountRole = Qt.ItemDataRole.UserRole + 20  # int: images in a confusion cell
ShareRole = Qt.ItemDataRole.UserRole + 21  # float 0..1: the cell's share of its true class's images
DiagonalRole = Qt.ItemDataRole.UserRole + 22  # bool: a right answer's cell
RowRole = Qt.ItemDataRole.UserRole + 23  # int: the image's index in EvalReport.rows

Display = Qt.ItemDataRole.DisplayRole
RIGHT_ALIGNED = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def classes_in_play(report: EvalReport) -> list[int]:
    """Indices of the classes that have images in the folder or were predicted for some image."""
    n = len(report.classes)
    return [i for i in range(n)
            if any(report.confusion[i]) or any(report.confusion[r][i] for r in range(n))]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


class _NamedColumnsModel(QAbstractTableModel):
    """A table whose columns are COLUMNS, named in the horizontal header."""

    COLUMNS: tuple[str, ...] = ()

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Display) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Display:
            return self.COLUMNS[section]
        return None


class PerClassModel(_NamedColumnsModel):
    COLUMNS = ("Class", "Precision", "Recall", "Images")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._report: EvalReport | None = None
        self._classes: list[int] = []

    def set_report(self, report: EvalReport | None) -> None:
        self.beginResetModel()
        self._report = report
        self._classes = classes_in_play(report) if report else []
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def data(self, index: ModelIndex, role: int = Display) -> Any:
        if self._report is None or not index.isValid():
            return None
        name = self._report.classes[self._classes[index.row()]]
        stats = self._report.per_class[name]
        column = index.column()
        if role == Display:
            return (name, _percent(stats["precision"]), _percent(stats["recall"]), str(stats["support"]))[column]
        if role == Qt.ItemDataRole.TextAlignmentRole and column > 0:
            return RIGHT_ALIGNED
        if role == Qt.ItemDataRole.ToolTipRole and column in (1, 2):
            return ("Precision: of the images the model called this class, the share that are this class."
                    if column == 1 else
                    "Recall: of this class's images, the share the model recognised.")
        return None


class ConfusionMatrixModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._report: EvalReport | None = None
        self._classes: list[int] = []

    def set_report(self, report: EvalReport | None) -> None:
        classes = classes_in_play(report) if report else []
        if report is not None and self._report is not None and classes == self._classes \
                and report.classes == self._report.classes:
            self._report = report  # same cells: the selection stays where it is
            if classes:
                self.dataChanged.emit(self.index(0, 0), self.index(len(classes) - 1, len(classes) - 1))
            return
        self.beginResetModel()
        self._report, self._classes = report, classes
        self.endResetModel()

    def cell_classes(self, index: ModelIndex) -> tuple[int, int]:
        """(true class, predicted class) of a cell, as indices into the report's classes."""
        return self._classes[index.row()], self._classes[index.column()]

    def index_of_cell(self, true_index: int, predicted_index: int) -> QModelIndex:
        return self.index(self._classes.index(true_index), self._classes.index(predicted_index))

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Display) -> Any:
        if self._report is None or not 0 <= section < len(self._classes):
            return None
        name = self._report.classes[self._classes[section]]
        if role == Display:
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"true class: {name}" if orientation == Qt.Orientation.Vertical else f"predicted: {name}"
        return None

    def data(self, index: ModelIndex, role: int = Display) -> Any:
        if self._report is None or not index.isValid():
            return None
        true_index, predicted_index = self.cell_classes(index)
        count = self._report.confusion[true_index][predicted_index]
        support = sum(self._report.confusion[true_index])
        share = count / support if support else 0.0
        if role in (Display, CountRole):
            return count if role == CountRole else str(count)
        if role == ShareRole:
            return share
        if role == DiagonalRole:
            return true_index == predicted_index
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            names = self._report.classes
            return (f"True {names[true_index]}, predicted {names[predicted_index]}: {count} image"
                    f"{'s' if count != 1 else ''} ({share:.0%} of {names[true_index]}). Click to see them.")
        if role == Qt.ItemDataRole.AccessibleTextRole:
            names = self._report.classes
            return f"true {names[true_index]}, predicted {names[predicted_index]}: {count}"
        return None


class _ImagesModelMixin:
    """Shared by the two image lists: a report, the row indices shown, thumbnails from a cache."""

    def _setup(self, thumbnails: ThumbnailCache | None) -> None:
        self._report: EvalReport | None = None
        self._indices: list[int] = []
        self._position: dict[str, int] = {}  # path -> position in _indices, for thumbnails arriving
        self.thumbnails = thumbnails
        if thumbnails is not None:
            thumbnails.loaded.connect(self._thumbnails_loaded)

    def _set(self, report: EvalReport | None, indices: list[int]) -> None:
        self.beginResetModel()
        self._report, self._indices = report, indices
        self._position = {report.rows[i].path: n for n, i in enumerate(indices)} if report else {}
        self.endResetModel()

    def row_at(self, position: int) -> EvalRow:
        return self._report.rows[self._indices[position]]

    def row_indices(self) -> list[int]:
        return list(self._indices)

    def paths(self) -> list[str]:
        return [self._report.rows[i].path for i in self._indices] if self._report else []

    def _thumbnail(self, row: EvalRow):
        return self.thumbnails.get(row.path) if self.thumbnails is not None else None

    def _tooltip(self, row: EvalRow) -> str:
        names = self._report.classes
        verdict = "right" if row.correct else "wrong"
        return (f"{row.path}\ntrue: {names[row.true_index]}\npredicted: {names[row.predicted_index]} "
                f"({row.confidence:.1%}, {verdict})\nloss: {row.loss:.3f}")

    def _thumbnails_loaded(self, paths: list[str]) -> None:
        positions = [self._position[p] for p in paths if p in self._position]
        if positions:
            self.dataChanged.emit(self.index(min(positions), 0), self.index(max(positions), 0),
                                  [Qt.ItemDataRole.DecorationRole])


class EvalRowsModel(_ImagesModelMixin, _NamedColumnsModel):
    """Every evaluated image, most wrong first: highest loss (least probability on the true class)."""

    COLUMNS = ("Image", "File", "True", "Predicted", "Confidence", "Loss")
    THUMBNAIL, FILE, TRUE, PREDICTED, CONFIDENCE, LOSS = range(6)

    def __init__(self, thumbnails: ThumbnailCache | None = None, parent=None) -> None:
        super().__init__(parent)
        self._setup(thumbnails)

    def set_report(self, report: EvalReport | None) -> None:
        order = sorted(range(len(report.rows)), key=lambda i: -report.rows[i].loss) if report else []
        self._set(report, order)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._indices)

    def data(self, index: ModelIndex, role: int = Display) -> Any:
        if self._report is None or not index.isValid() or index.row() >= len(self._indices):
            return None
        row = self.row_at(index.row())
        column = index.column()
        names = self._report.classes
        if role == RowRole:
            return self._indices[index.row()]
        if role == Display:
            if column == self.FILE:
                return Path(row.path).name
            if column == self.TRUE:
                return names[row.true_index]
            if column == self.PREDICTED:
                return names[row.predicted_index] + ("" if row.correct else "  ✗")
            if column == self.CONFIDENCE:
                return f"{row.confidence:.1%}"
            if column == self.LOSS:
                return f"{row.loss:.2f}"
            return None
        if role == Qt.ItemDataRole.DecorationRole and column == self.THUMBNAIL:
            return self._thumbnail(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (self.CONFIDENCE, self.LOSS):
            return RIGHT_ALIGNED
        return None


GRID_CELL = QSize(THUMBNAIL_PX + 40, THUMBNAIL_PX + 40)  # a thumbnail, its file name and confidence below
GRID_ITEM = GRID_CELL - QSize(4, 4)


class ImageGridModel(_ImagesModelMixin, QAbstractListModel):
    """The images of one confusion cell (true class, predicted class), in folder order."""

    def __init__(self, thumbnails: ThumbnailCache | None = None, parent=None) -> None:
        super().__init__(parent)
        self._setup(thumbnails)
        self.cell: tuple[int, int] | None = None

    def set_cell(self, report: EvalReport | None, cell: tuple[int, int] | None) -> None:
        self.cell = cell
        if report is None or cell is None:
            self._set(report, [])
            return
        true_index, predicted_index = cell
        self._set(report, [i for i, row in enumerate(report.rows)
                           if row.true_index == true_index and row.predicted_index == predicted_index])

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._indices)

    def data(self, index: ModelIndex, role: int = Display) -> Any:
        if self._report is None or not index.isValid() or index.row() >= len(self._indices):
            return None
        row = self.row_at(index.row())
        if role == RowRole:
            return self._indices[index.row()]
        if role == Display:
            return f"{Path(row.path).name}\n{row.confidence:.0%}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(row)
        if role == Qt.ItemDataRole.SizeHintRole:
            # Fixed: the view measures one item for all (uniform sizes), often before its thumbnail has
            # loaded, which made every item a thin strip without its name.
            return GRID_ITEM
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row)
        return None
