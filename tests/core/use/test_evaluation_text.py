"""`resnet-app eval`'s text report (issue 21 item 13: its confusion matrix had no column header)."""
from resnet_app.core.use.evaluation import EvalReport


def test_the_confusion_matrix_names_its_columns():
    classes = ["cat", "dog", "a-very-long-class-name"]
    per_class = {name: {"precision": 1.0, "recall": 1.0, "support": 1} for name in classes}
    report = EvalReport(1.0, classes, per_class, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], 3)
    lines = report.summary_lines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted):")
    header, *rows = lines[start + 1:start + 5]
    assert header.split() == ["cat", "dog", "a-very-long-"]  # a long name cut to the column's width
    assert rows[0].split() == ["cat", "1", "0", "0"]
    width = len(header)
    assert all(len(row) == width for row in rows)  # numbers stand under their column's name


def test_undo_counts_its_files_in_words():
    """Issue 21 item 13: "Restored 20 moved file(s)"."""
    from pathlib import Path

    from resnet_app.core.use.sorting import UndoSummary

    assert UndoSummary(Path("log"), restored=1).summary_line() == "restored 1 moved file"
    assert UndoSummary(Path("log"), restored=20, copies_left=1).summary_line().startswith(
        "restored 20 moved files; 1 copied file left in place")
