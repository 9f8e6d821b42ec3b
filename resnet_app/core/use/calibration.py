"""Calibrated confidence: a temperature fitted on the validation set, and the "unsure" threshold.

A network trained with cross-entropy is usually over-confident: on CIFAR-100 a ResNet's expected
calibration error is about 16.5 %, and dividing its logits by one number, the temperature, fitted to
minimise the validation set's negative log-likelihood, brings it to about 1.3 % (Guo et al., "On
Calibration of Modern Neural Networks", 2017). The temperature never changes which class is on top,
so accuracy is untouched; only the probabilities shown become honest.

After training, `calibrate_run` reads the run's best model file, computes its logits on the
validation images (with the same preprocessing as prediction), fits the temperature, picks the
confidence under which predictions are shown as "unsure", and stores both in the model file's
metadata (key "calibration", read back by checkpoints.stored_calibration). `Classifier` applies them;
a model file without them keeps working (temperature 1, threshold 0: never unsure unless the user sets
a threshold).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from resnet_app.core.model.checkpoints import (
    CALIBRATION_KEY,
    TEMPERATURE_RANGE,
    CheckpointError,
    load_model_file,
    save_model_file,
)

ECE_BINS = 15  # equal-width confidence bins, as Guo et al. report ECE
# Fewer readable validation images than this give neither a temperature nor an unsure threshold: measured
# by benchmarks/calibration_size.py (docs/performance.md), under 150 the fitted temperature often made
# held-out predictions worse and the calibration error reported was 3-14 points from the true one.
MIN_CALIBRATION_IMAGES = 150
# The "unsure" threshold: the confidence below which the validation predictions are right less than
# this share of the time (more often wrong than right).
UNSURE_ACCURACY = 0.5


# --- the measures --------------------------------------------------------------------------------

def expected_calibration_error(confidences: Sequence[float] | torch.Tensor, correct: Sequence[bool] | torch.Tensor,
                               bins: int = ECE_BINS) -> float:
    """Expected calibration error (0..1): over equal-width confidence bins, the share of predictions
    in each bin times the gap between its accuracy and its mean confidence. Bin i holds confidences
    in (i/bins, (i+1)/bins]; 0 when there are no predictions."""
    confidences = torch.as_tensor(confidences, dtype=torch.float64).flatten()
    correct = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if confidences.numel() == 0:
        return 0.0
    index = (torch.ceil(confidences * bins).long() - 1).clamp(0, bins - 1)
    confidence_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidences)
    correct_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    # sum over bins of (n_b / N) * |accuracy_b - confidence_b| = sum of |correct_b - confidence_b| / N
    return float((confidence_sum - correct_sum).abs().sum() / confidences.numel())


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy of the labels under softmax(logits / temperature)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


# --- fitting -------------------------------------------------------------------------------------

def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = TEMPERATURE_RANGE,
                    iterations: int = 80) -> float:
    """The temperature T minimising the mean NLL of softmax(logits / T), within `bounds`.

    The NLL is convex in 1/T (a log-sum-exp of functions linear in it, minus a linear one), so a
    golden-section search over 1/T finds the minimum: deterministic, bounded, no learning rate to
    tune, and 80 steps narrow the interval by 0.618^80 (about 1e-17) -- milliseconds on (N, C) logits.
    """
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    low, high = 1.0 / bounds[1], 1.0 / bounds[0]  # over beta = 1/T

    def nll(beta: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits * beta, labels))

    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return 1.0 / ((a + b) / 2)


def choose_unsure_threshold(confidences: Sequence[float] | torch.Tensor, correct: Sequence[bool] | torch.Tensor,
                            accuracy: float = UNSURE_ACCURACY) -> float:
    """The confidence below which the validation predictions are right less than `accuracy` of the time.

    Accuracy as a function of confidence is estimated by isotonic regression (pool adjacent violators):
    the non-decreasing step function closest to the right/wrong outcomes, so one lucky or unlucky
    prediction doesn't move the threshold the way a raw per-bin accuracy would. The threshold lies
    halfway between the last step under `accuracy` and the next one; 0.0 (never unsure) when no step
    is under it, 1.0 when every step is. Equal confidences are never split.
    """
    confidences = torch.as_tensor(confidences, dtype=torch.float64).flatten()
    correct = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if confidences.numel() == 0:
        return 0.0
    order = torch.argsort(confidences, stable=True)
    blocks: list[list[float]] = []  # [right, count, lowest confidence, highest confidence], rising confidence
    for value, right in zip(confidences[order].tolist(), correct[order].tolist(), strict=True):
        if blocks and blocks[-1][3] == value:  # a tie joins its block
            blocks[-1][0] += right
            blocks[-1][1] += 1
        else:
            blocks.append([right, 1, value, value])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            right_sum, count, _, high = blocks.pop()
            blocks[-1][0] += right_sum
            blocks[-1][1] += count
            blocks[-1][3] = high
    under = [i for i, (right_sum, count, _, _) in enumerate(blocks) if right_sum / count < accuracy]
    if not under:
        return 0.0
    last = under[-1]  # the steps rise, so those under `accuracy` come first
    if last == len(blocks) - 1:
        return 1.0
    return (blocks[last][3] + blocks[last + 1][2]) / 2


def calibrate_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Fit the temperature and the unsure threshold to validation logits; the figures that say how it went.

    With no mistake among the validation predictions the NLL falls forever as T -> 0 (the fit would
    make every prediction certain), so T stays 1 then; likewise with too few images to fit anything.
    """
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    images = int(labels.numel())
    before = torch.softmax(logits, dim=1).max(dim=1)
    correct = before.indices == labels
    result: dict[str, Any] = {"images": images, "bins": ECE_BINS,
                              "ece_before": expected_calibration_error(before.values, correct)}
    if images < MIN_CALIBRATION_IMAGES:
        reason = f"only {images} validation image(s) could be used; at least {MIN_CALIBRATION_IMAGES} are needed"
        temperature = 1.0
    elif bool(correct.all()):
        reason = "every validation image is classified right, which leaves nothing to fit the temperature on"
        temperature = 1.0
    else:
        reason = None
        temperature = fit_temperature(logits, labels)
    after = torch.softmax(logits / temperature, dim=1).max(dim=1).values
    # Too few images give a threshold as noisy as the temperature: then none (never unsure).
    unsure_below = 0.0 if images < MIN_CALIBRATION_IMAGES else choose_unsure_threshold(after, correct)
    result.update({
        "temperature": temperature,
        "unsure_below": unsure_below,
        "ece_after": expected_calibration_error(after, correct),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "accuracy": float(correct.double().mean()) if images else None,
        "method": "temperature scaling (validation NLL)" if reason is None else "none",
    })
    if reason is not None:
        result["not_fitted"] = reason
    return result


# --- the model file ------------------------------------------------------------------------------

def store_calibration(model_file_path: str | Path, calibration: dict[str, Any]) -> None:
    """Rewrite the model file with `calibration` in its metadata, atomically (the old file or the new
    one, never a torn one, whatever happens)."""
    model_file = load_model_file(model_file_path)
    model_file.extra[CALIBRATION_KEY] = calibration
    save_model_file(model_file_path, model_file)


# --- a run's model -------------------------------------------------------------------------------

@torch.no_grad()
def collect_logits(classifier, samples: Sequence[tuple[Path, int]], batch_size: int = 64,
                   should_stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(logits, labels) of the samples that can be read, through the classifier's own preprocessing
    and model (the temperature is not applied); None if stopped. Labels are indices into the
    classifier's classes."""
    logits, labels, start = [], [], 0
    for batch in classifier.output_batches([path for path, _ in samples], batch_size, should_stop):
        if batch.read:
            logits.append(batch.logits)
            labels.append(torch.tensor([int(samples[start + i][1]) for i in batch.read], dtype=torch.long))
        start += len(batch.paths)
    if start < len(samples):  # stopped part-way
        return None
    if not logits:
        return torch.empty(0, len(classifier.class_names)), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def calibrate_run(model_file_path: str | Path, val_samples: Sequence[tuple[Path, int]], device: Any = "auto",
                  should_stop: Callable[[], bool] | None = None, batch_size: int = 64) -> dict[str, Any] | None:
    """Fit the temperature and the unsure threshold of a run's model file on its validation images
    (labels: indices into the model's classes), and store them in the file (atomically).

    Returns the figures (temperature, unsure_below, ece_before, ece_after, ...), or None if stopped
    (the file is then left as it was). Raises CheckpointError or OSError if the file can't be read or
    rewritten.
    """
    from resnet_app.core.use.classifier import Classifier  # inference imports this module

    if isinstance(device, torch.device):
        device = str(device)
    classifier = Classifier.from_file(model_file_path, device=device)
    collected = collect_logits(classifier, list(val_samples), batch_size, should_stop)
    if collected is None:
        return None
    calibration = calibrate_logits(*collected)
    store_calibration(model_file_path, calibration)
    return calibration


def describe_calibration(calibration: dict[str, Any]) -> str:
    """One line for the run's messages."""
    if calibration.get("not_fitted"):
        return (f"confidence not calibrated: {calibration['not_fitted']} (calibration error "
                f"{calibration['ece_before']:.1%} on {calibration['images']} validation images)")
    unsure = ("never unsure" if calibration["unsure_below"] <= 0
              else f"predictions under {calibration['unsure_below']:.0%} confidence show as unsure")
    return (f"calibrated the confidence on {calibration['images']} validation images: temperature "
            f"{calibration['temperature']:.2f}, calibration error {calibration['ece_before']:.1%} -> "
            f"{calibration['ece_after']:.1%}; {unsure}")


def calibrate_finished_run(model_file_path: str | Path | None, val_samples: Sequence[tuple[Path, int]], device: Any,
                           say: Callable[..., None], should_stop: Callable[[], bool] | None = None
                           ) -> dict[str, Any] | None:
    """What a trainer calls at the end of a run: calibrate its model file, say how it went, and return
    the figures for run.json; None (and the model left uncalibrated, still usable) when there is no
    model or no validation set, when stopped, or when the file can't be rewritten (said as a warning)."""
    if model_file_path is None or not val_samples:
        return None
    try:
        calibration = calibrate_run(model_file_path, val_samples, device, should_stop)
    except (CheckpointError, OSError) as exc:
        say(f"could not calibrate the model's confidence ({exc}); it is saved without", "warning")
        return None
    if calibration is not None:
        say(describe_calibration(calibration))
    return calibration
