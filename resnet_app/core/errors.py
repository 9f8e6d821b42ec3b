"""Errors whose message is written for the user, in one list that the command line and the app share.

Such an error is the user's input (a folder, a file, a setting, the machine), not a bug of ours: the
command line prints its message as one line with no traceback, and the app shows it in a dialog.
"""
from __future__ import annotations


class TrainingError(RuntimeError):
    """Training can't start or go on; the message says why and what to do."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user as it is."""
    # Imported here, not at the top: those modules import torch, and errors.py is imported early.
    from resnet_app.core.data.scan import DatasetError
    from resnet_app.core.model.architectures import ModelError
    from resnet_app.core.model.checkpoints import CheckpointError
    from resnet_app.core.model.devices import DeviceError

    return (CheckpointError, DatasetError, DeviceError, ModelError, TrainingError, ValueError, OSError)


def user_message(exc: BaseException) -> str:
    """The error's own text when it is written for the user; a short line naming it otherwise."""
    if isinstance(exc, user_errors()):
        return str(exc) or type(exc).__name__
    return f"Unexpected error ({type(exc).__name__}): {exc}"
