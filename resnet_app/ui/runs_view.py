"""The Runs list: every run in the output folder, named by its data folder, date and accuracy.

From it a run is resumed, its model opened in Classify, or the run deleted (to the system's trash where
there is one). Runs are read from their run.json (written when a run starts and ends), so the list is
cheap to refresh; a run whose process is gone before it ended shows as interrupted, and can go on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QFile, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from resnet_app.core.train.run_files import RunSummary, list_runs
from resnet_app.ui.messages import ask, ask_number


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


class RunsView(QWidget):
    resume_requested = Signal(str, int)  # a last.pt, and the new total of epochs (0: the run's own)
    model_requested = Signal(str)  # a model file

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.runs: list[RunSummary] = []
        self.list = QListWidget()
        self.list.setAccessibleName("Runs")
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.list.itemDoubleClicked.connect(lambda _item: self.open_model())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Go on training this run from its last checkpoint")
        self.resume_button.clicked.connect(self.resume)
        self.model_button = QPushButton("Use its model")
        self.model_button.setToolTip("Open this run's best model in the Classify tab")
        self.model_button.clicked.connect(self.open_model)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Move this run's folder to the trash")
        self.delete_button.clicked.connect(self.ask_delete)
        buttons = QHBoxLayout()
        for button in (self.resume_button, self.model_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    def show_folder(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        self.runs = list_runs(self.folder) if self.folder else []
        self.list.clear()
        for run in self.runs:
            item = QListWidgetItem(f"{run.title()} — {run.state()}")
            item.setData(Qt.ItemDataRole.UserRole, str(run.folder))
            item.setToolTip(f"{run.describe()}\n{run.folder}")
            self.list.addItem(item)
            if selected is not None and run.folder == selected.folder:
                item.setSelected(True)
        self._update_buttons()

    def selected(self) -> RunSummary | None:
        items = self.list.selectedItems()
        if not items:
            return None
        folder = Path(items[0].data(Qt.ItemDataRole.UserRole))
        return next((run for run in self.runs if run.folder == folder), None)

    def latest_unfinished(self) -> RunSummary | None:
        return next((run for run in self.runs if run.unfinished), None)

    def _update_buttons(self) -> None:
        run = self.selected()
        self.resume_button.setEnabled(run is not None and run.checkpoint is not None and run.status != "running")
        finished = run is not None and run.status == "completed"
        self.resume_button.setText("Train more…" if finished else "Resume")
        self.resume_button.setToolTip(
            f"This run finished its {_epochs(run.epochs)}: train it further, to a new total of epochs"
            if finished else "Go on training this run from its last checkpoint")
        self.model_button.setEnabled(run is not None and run.model is not None)
        self.delete_button.setEnabled(run is not None and run.status != "running")

    def resume(self) -> None:
        """Go on with a run; a finished one only to a new total of epochs, which the user chooses
        (resuming it as it was would train nothing and write its files again)."""
        run = self.selected()
        if run is None or run.checkpoint is None:
            return
        checkpoint = str(run.checkpoint)
        if run.status != "completed":
            self.resume_requested.emit(checkpoint, 0)
            return
        ask_number(self, "Train more", f"{run.title()} finished after {_epochs(run.epochs)}. Train it to a total of:",
                   value=run.epochs * 2, minimum=run.epochs + 1, maximum=100_000,
                   on_ok=lambda total: self.resume_requested.emit(checkpoint, total))

    def open_model(self) -> None:
        run = self.selected()
        if run is not None and run.model is not None:
            self.model_requested.emit(str(run.model))

    def ask_delete(self) -> None:
        run = self.selected()
        if run is not None:
            ask(self, "Delete this run?", f"Move {run.folder} (model, checkpoint and logs of "
                f"{run.title()}) to the trash?", "Move to trash", lambda: self.delete(run))

    def delete(self, run: RunSummary) -> None:
        # The system's trash where there is one (the user can get it back); where there is none, a
        # permanent delete only after a second, plain question.
        if QFile.moveToTrash(str(run.folder)):
            self.refresh()
            return
        ask(self, "Delete this run for good?", f"There is no trash here to move {run.folder} to. "
            "Delete it permanently?", "Delete", lambda: self._remove(run))

    def _remove(self, run: RunSummary) -> None:
        shutil.rmtree(run.folder, ignore_errors=True)
        self.refresh()
