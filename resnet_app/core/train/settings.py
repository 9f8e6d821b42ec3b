"""Training settings: `TrainConfig`, and the one table the app, the command line and saved settings
are made from.

Each field of TrainConfig is declared with `setting(...)`, which records everything the rest of the
program needs to know about it: its default, its allowed range or choices, its label and help text,
how the app shows it and how the command line spells it. The Train tab builds its widgets from this
table (ui/settings_form.py), the app's saved settings are keyed and checked by it (ui/settings.py),
and `resnet-app train` builds its options from it (cli.py). A new setting is one field here.

The table is plain data (no Qt, no argparse) so that the core stays usable on its own.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from resnet_app.core.data.splits import DEFAULT_SEED, DEFAULT_SPLIT, DEFAULT_VAL_FRACTION, SPLITS
from resnet_app.core.model import architectures
from resnet_app.core.model.devices import DEVICE_CHOICES
from resnet_app.core.train.batch_size import AUTO

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "cosine", "onecycle")
DATA_LOADING = ("auto", "decoded", "streaming")
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}  # adam: the article's (torch's default); sgd: per batch of 128

# The settings a quick run (the last layer only, over features computed once) does not use: the last
# layer trains with its own fixed recipe (quick.py). Its run.json keeps them apart, the app greys them.
QUICK_NOT_USED = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule")

# Keys that older checkpoints and model files used for settings since renamed or removed.
_RENAMED = {"workers": "loader_processes", "freeze_backbone": "quick"}
_REMOVED = {"log_every"}  # a display setting of the command line, no longer part of a run


@dataclass(frozen=True)
class Setting:
    """One training setting, as every part of the program sees it."""

    name: str
    kind: type  # the type of a set value: int, float, str or bool
    default: Any
    label: str  # the app's label ("Epochs")
    help: str  # the app's tooltip and the command line's help
    choices: tuple[str, ...] = ()
    choice_labels: Mapping[str, str] = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    automatic: str | None = None  # text shown for the automatic value, when it has one ("auto")
    automatic_value: Any = None  # the value that means "choose for me" (None, or AUTO)
    unit: str = ""  # shown after numbers in the app (" px")
    percent: bool = False  # a fraction shown and typed as a percentage
    step: float | None = None  # the app's spin-box step
    decimals: int = 2  # the app's decimals for a float
    flags: tuple[str, ...] = ()  # command-line spellings; () for --name-with-dashes; see on_cli
    on_cli: bool = True
    metavar: str | None = None  # the command line's name for the value
    in_app: bool = True  # shown among the Train tab's settings (some have a widget of their own there)
    advanced: bool = False  # shown under "More settings" in the app
    group: str | None = None  # settings of one group exclude each other on the command line

    # --- values --------------------------------------------------------------------------------

    @property
    def has_automatic(self) -> bool:
        return self.automatic is not None

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    def is_automatic(self, value: Any) -> bool:
        return self.has_automatic and value == self.automatic_value

    def coerce(self, value: Any) -> Any:
        """`value` (typed, or text from the command line or a settings file) as this setting's type.

        Raises ValueError with a message for the user when it can't be one, or is out of range.
        """
        if self.has_automatic and (value is None or value == self.automatic_value
                                   or (isinstance(value, str) and value.strip().lower() in ("auto", ""))):
            return self.automatic_value
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{self.label.lower()} needs a value")
        typed = self._typed(value)
        problem = self.problem(typed)
        if problem:
            raise ValueError(problem)
        return typed

    def _typed(self, value: Any) -> Any:
        what = self.label.lower()
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                     "off": False}
            if isinstance(value, str) and value.strip().lower() in words:
                return words[value.strip().lower()]
            raise ValueError(f"{what} must be true or false, not {value!r}")
        if self.kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{what} must be a whole number, not {value!r}")
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{what} must be a whole number, not {value!r}") from None
        if self.kind is float:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{what} must be a number, not {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"{what} must be a finite number, not {value!r}")
            return number
        return str(value)

    def problem(self, value: Any) -> str | None:
        """Why a typed value is not allowed, or None when it is."""
        if self.is_automatic(value) or (value is None and self.default is None):
            return None
        what = self.label.lower()
        if not self._has_kind(value):
            return f"{what} must be {self._kind_name()}, not {value!r}"
        if self.choices and value not in self.choices:
            return f"{what} must be one of {', '.join(self.choices)}, not {value!r}"
        if self.kind in (int, float):
            if self.minimum is not None and value < self.minimum:
                return f"{what} must be at least {self.display(self.minimum)}, not {self.display(value)}"
            if self.maximum is not None and value > self.maximum:
                return f"{what} must be at most {self.display(self.maximum)}, not {self.display(value)}"
        return None

    def _has_kind(self, value: Any) -> bool:
        if self.kind is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, self.kind)

    def _kind_name(self) -> str:
        names = {bool: "on or off", int: "a whole number", float: "a number", str: "text"}
        automatic = f" or {self.automatic}" if self.has_automatic and self.automatic_value == AUTO else ""
        return names.get(self.kind, self.kind.__name__) + automatic

    def display(self, value: Any) -> str:
        """A value as people read it: '20 %', '32 px', 'auto'."""
        if self.is_automatic(value):
            return self.automatic or "auto"
        if value is None:
            return "none"
        if self.percent:
            return f"{value * 100:g} %"
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"{value:g}{self.unit}" if isinstance(value, (int, float)) else f"{value}{self.unit}"


def setting(default: Any, *, label: str, help: str, kind: type | None = None, **options: Any) -> Any:
    """A TrainConfig field with its Setting; `kind` defaults to the type of `default`."""
    kind = kind or type(default)
    spec = {"default": default, "label": label, "help": help, "kind": kind, **options}
    return field(default=default, metadata={"setting": spec})


# --- the table -------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything that defines a run; saved inside every checkpoint and model file.

    The fields are the training settings table: see `setting()` and `train_settings()`.
    """

    arch: str = setting(
        "resnet18-cifar", label="Architecture", choices=architectures.ARCHITECTURES,
        choice_labels={"resnet18-cifar": "ResNet18 for small images (32 px)",
                       "resnet18": "ResNet18, ImageNet layout (224 px)"},
        help="resnet18-cifar: the article's network, for small images (32 px); "
             "resnet18: torchvision's ImageNet network (224 px), which can start from ImageNet weights")
    epochs: int = setting(
        10, label="Epochs", minimum=1, maximum=10_000,
        help="passes over the training images (with --resume: the new total)")
    batch_size: int | str = setting(
        AUTO, kind=int, label="Batch size", minimum=1, maximum=4096, automatic="auto", automatic_value=AUTO,
        help="images per training step; auto takes the largest batch that fits the device's memory "
             "(at most 128 on a CPU, 512 on a GPU) and scales the default learning rate to it")
    optimizer: str = setting(
        "adam", label="Optimizer", choices=OPTIMIZERS,
        choice_labels={"adam": "Adam", "sgd": "SGD with momentum"},
        help="adam: as the article; sgd: SGD with momentum 0.9, Nesterov, weight decay 5e-4")
    lr: float | None = setting(
        None, kind=float, label="Learning rate", minimum=1e-6, maximum=10.0, automatic="default for the optimizer",
        step=1e-4, decimals=6,
        help="step size of the optimizer; its default is 1e-3 for adam and 0.05 for sgd at a batch of 128, "
             "scaled to the batch when the batch size is auto")
    momentum: float = setting(0.9, label="Momentum", minimum=0.0, maximum=0.999, on_cli=False, in_app=False,
                              help="SGD's momentum")
    weight_decay: float = setting(5e-4, label="Weight decay", minimum=0.0, maximum=1.0, on_cli=False, in_app=False,
                                  help="SGD's weight decay (the article's Adam has none)")
    # One cycle and label smoothing 0.1: chosen by benchmarks/learning_quality.py (docs/performance.md,
    # "Learning quality"), where they beat the article's constant rate on every dataset and seed.
    schedule: str = setting(
        "onecycle", label="Learning-rate schedule", choices=SCHEDULES, advanced=True,
        choice_labels={"none": "Constant", "cosine": "Cosine decay", "onecycle": "One cycle (warm-up, then decay)"},
        help="how the learning rate changes over the run: constant, cosine decay to zero, or one cycle")
    image_size: int | None = setting(
        None, kind=int, label="Image size", minimum=architectures.MIN_IMAGE_SIZE, maximum=architectures.MAX_IMAGE_SIZE,
        automatic="native for the architecture", unit=" px", step=16,
        help="input size in pixels; native is 32 for resnet18-cifar and 224 for resnet18")
    augment: bool = setting(
        True, label="Random crops",
        help="train on randomly cropped copies of the images, so that the model learns what matters rather "
             "than where it sits in the picture")
    flip: bool = setting(
        False, label="Random mirroring",
        help="also train on left-right mirrored copies; helps with photos of things that look the same "
             "mirrored, hurts where mirroring changes the class (letters such as b and d, arrows, left and right)")
    label_smoothing: float = setting(
        0.1, label="Label smoothing", minimum=0.0, maximum=0.5, step=0.05, advanced=True,
        help="aim a little below 100 % certainty for the right class, which makes the model less "
             "over-confident")
    val_fraction: float = setting(
        DEFAULT_VAL_FRACTION, label="Validation share", minimum=0.0, maximum=0.9, percent=True, unit=" %",
        group="validation",
        help="share of each class held out to measure accuracy on images not trained on")
    val_dir: str | None = setting(
        None, kind=str, label="Validation folder", in_app=False, group="validation", metavar="DIR",
        help="a separate validation folder with the same class sub-folders, instead of a share")
    split: str = setting(
        DEFAULT_SPLIT, label="Validation split", choices=SPLITS, advanced=True,
        choice_labels={"grouped": "Keep near-duplicates together", "random": "Random images"},
        help="grouped: each group of near-duplicate or identical images (the frames of one clip, a photo saved "
             "twice) goes whole to training or to validation, so validation tests on pictures not trained on; "
             "random: any image may go either way (byte-identical copies still stay together)")
    device: str = setting(
        "auto", label="Device", choices=DEVICE_CHOICES,
        choice_labels={"auto": "Automatic", "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)", "mps": "Apple GPU (MPS)"},
        help="where to train: auto picks an NVIDIA GPU, then Apple's GPU, then the CPU")
    seed: int = setting(DEFAULT_SEED, label="Random seed", minimum=0, maximum=2**31 - 1, advanced=True,
                        help="the same seed, settings and data give the same run")
    loader_processes: int | None = setting(
        None, kind=int, label="Data-loading processes", minimum=0, maximum=64, automatic="auto",
        flags=("--loader-processes", "--workers"), in_app=False,
        help="processes that read images while streaming them from disk; auto chooses from the data's size "
             "and the cores")
    pretrained: str | None = setting(
        None, kind=str, label="Start from", in_app=False, metavar="PATH|imagenet",
        help="start resnet18 from ImageNet weights: a local .pth file, or 'imagenet' (torchvision's copy, "
             "downloaded once)")
    # Quick mode, one name everywhere (docs/decisions.md): the app's "Quick: the last layer only",
    # quick.QuickTrainer. Older checkpoints and model files saved it as "freeze_backbone" (_RENAMED);
    # the command line still takes --freeze-backbone.
    quick: bool = setting(
        False, label="Quick: the last layer only", in_app=False, flags=("--quick", "--freeze-backbone"),
        help="quick: with pretrained weights, train only the last layer, on features computed once: seconds, "
             "even on a CPU (the epochs, batch size and learning-rate settings are then not used)")
    checkpoint_every_s: float = setting(
        600.0, label="Checkpoint interval", minimum=10.0, maximum=86_400.0, unit=" s", on_cli=False, in_app=False,
        help="also save last.pt this often during a long epoch, so a crash loses little")
    data_loading: str = setting(
        "auto", label="Data loading", choices=DATA_LOADING, in_app=False,
        help="decoded: decode every image once and augment batches on the device (fast; auto picks it when "
             "the decoded set fits in memory); streaming: decode every epoch")
    compile: bool = setting(False, label="Compile the model", in_app=False,
                            help="torch.compile the model (CUDA only; pays off on long runs)")
    # Several processes (distributed/, docs/distributed.md). Read by whoever starts the run (the command
    # line, the app): the Trainer itself is one process either way, so the default changes nothing.
    nproc: int | str = setting(
        1, kind=int, label="Processes", minimum=1, maximum=1024, automatic="auto", automatic_value=AUTO,
        in_app=False, metavar="N|auto",
        help="training processes on this machine, one per GPU, under PyTorch's DistributedDataParallel; "
             "auto: one per visible GPU. The batch size is then the global one, shared among them")
    sync_batchnorm: bool = setting(
        False, label="Synchronised batch-norm", in_app=False,
        help="with several GPUs, batch-norm statistics over the global batch (SyncBatchNorm) instead of "
             "each GPU's share (slower; helps when each GPU's share is small)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every setting against its table entry, then the rules that join several."""
        for spec in train_settings():
            problem = spec.problem(getattr(self, spec.name))
            if problem:
                raise ValueError(problem)
        if self.pretrained is not None and self.arch != "resnet18":
            raise ValueError("pretrained ImageNet weights exist for the resnet18 architecture only")
        if self.quick and self.pretrained is None:
            raise ValueError("quick training (the last layer only) needs pretrained weights to start from")

    @property
    def learning_rate(self) -> float:
        """The learning rate asked for; with batch size auto and no lr given, the trainer scales it."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def input_size(self) -> int:
        return self.image_size or architectures.DEFAULT_IMAGE_SIZE[self.arch]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from a saved dict (a checkpoint's, a model file's, the app's), old ones included:
        renamed keys are read under their new names, unknown ones ignored."""
        known = {f.name for f in fields(cls)}
        values = {_RENAMED.get(k, k): v for k, v in values.items() if k not in _REMOVED}
        if "flip" not in values and "augment" in values:
            values["flip"] = values["augment"]  # before 0.2, "augment" meant random crops and flips
        if "split" not in values:
            values["split"] = "random"  # runs saved before the grouped split (issue 20) split at random
        return cls(**{k: v for k, v in values.items() if k in known})


def train_settings() -> tuple[Setting, ...]:
    """The training settings table, in TrainConfig's field order."""
    return _TABLE


def setting_named(name: str) -> Setting:
    for spec in _TABLE:
        if spec.name == name:
            return spec
    raise KeyError(name)


def _build_table() -> tuple[Setting, ...]:
    return tuple(Setting(name=f.name, **f.metadata["setting"]) for f in fields(TrainConfig))


_TABLE = _build_table()


# --- the schedules' shapes ------------------------------------------------------------------------

def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at `progress` (0 at the start of training, 1 at the end).

    Written as a function of progress rather than a torch scheduler so that it survives resume and
    batch-size changes with nothing to store.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        warmup = 0.3  # the share of training spent warming up, as torch's OneCycleLR
        if progress < warmup:
            return 0.04 + 0.96 * progress / warmup  # from 1/25 of the peak, OneCycleLR's div_factor
        return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (1.0 - warmup)))
    return 1.0
