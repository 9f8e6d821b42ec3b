"""The process the labelling kill test kills: `python label_process.py DATA SOURCE label|undo`.

label: every image left in SOURCE goes into DATA, the class and copy/move fixed by its number (pN.png:
class N % 3, moved when N is even), skipping copies the log says are labelled already; undo: every
label in force, newest first. Exit 3 when an undo is refused (the test fails on it)."""
import sys
from pathlib import Path

from resnet_app.core.use.labelling import LabelLog

CLASSES = ["cat", "dog", "new class"]


def number(path: Path) -> int:
    return int(path.stem[1:])


def main(data: Path, source: Path, mode: str) -> int:
    log = LabelLog(data)  # finishes what the last (killed) process left
    if mode == "label":
        done = log.labelled_sources(source)
        for path in sorted(source.glob("p*.png"), key=number):
            if path not in done:
                log.label(path, CLASSES[number(path) % 3], move=number(path) % 2 == 0)
        return 0
    while True:
        outcome = log.undo_last()
        if outcome.action is None:
            return 0
        if not outcome.done:
            print(outcome.message, file=sys.stderr)
            return 3


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
