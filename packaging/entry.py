"""Entry point of the frozen app: the `resnet-app` executable that PyInstaller builds from this script.

Same behaviour as the `resnet-app` console script (resnet_app.cli:main), plus what only a frozen app
needs (resnet_app/frozen.py): spawned worker processes start here, and the desktop app keeps a log.
"""
import multiprocessing
import sys


def _main() -> int:
    from resnet_app import frozen

    frozen.setup(sys.argv[1:])
    from resnet_app.cli import main

    return main()


if __name__ == "__main__":
    # First, before anything heavy: a worker process started with "spawn" (DataLoader workers, the decode
    # pool) re-runs this executable; freeze_support() runs its task there and exits.
    multiprocessing.freeze_support()
    sys.exit(_main())
