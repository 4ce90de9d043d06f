"""Evaluation metrics, computed from one confusion matrix.

The formulas and the float32 arithmetic are those of ``torchmetrics.functional.classification``
(``multiclass_accuracy`` micro, ``multiclass_f1_score`` macro, ``multiclass_confusion_matrix``),
to the bit (``tests/train/test_metrics.py`` checks it); computing them here spares every worker
process torchmetrics' import (about a second of start-up per process).

Classification: overall accuracy, macro F1, Dice, per-class accuracy and the confusion matrix.
Segmentation: the Dice coefficient averaged over samples, where an empty prediction of an empty
mask scores 1 (the Kaggle ultrasound-nerve metric of seed 002, SPEC §2.2 ``unet``).

:func:`metric_mode` / :class:`MetricSpec` say whether a metric is better high or low; early
stopping, best-epoch selection and the ``plateau`` scheduler use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from archlab.errors import ConfigError, UnknownNameError

__all__ = [
    "MetricSpec",
    "classification_metrics",
    "confusion_matrix",
    "dice_coefficient",
    "dice_per_sample",
    "metric_mode",
    "metric_spec",
    "per_class_accuracy",
]

#: Metrics where lower is better; every other known metric is better higher.
_MIN_METRICS = frozenset({"loss"})
#: Every metric name the engine reports (without a split prefix).
_KNOWN_METRICS = frozenset({"loss", "accuracy", "f1_macro", "dice"})
_SPLIT_PREFIXES = ("train_", "val_", "test_")


def _to_preds(logits_or_preds: Tensor) -> Tensor:
    """Class indices (B,) from logits/probabilities (B, C) or from class indices (B,)."""
    x = logits_or_preds.detach()
    if x.is_floating_point():
        if x.ndim != 2:
            raise ConfigError(f"expected logits of shape (B, C), got {tuple(x.shape)}")
        if x.shape[1] == 1:  # single-logit binary classifier: positive when logit > 0
            return (x[:, 0] > 0).long()
        return x.argmax(dim=1)
    if x.ndim != 1:
        raise ConfigError(f"expected class indices of shape (B,), got {tuple(x.shape)}")
    return x.long()


def _check_targets(preds: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    targets = targets.detach().long()
    if targets.shape != preds.shape:
        raise ConfigError(f"targets of shape {tuple(targets.shape)} do not match predictions "
                          f"of shape {tuple(preds.shape)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes} must be >= 2 for classification metrics")
    return targets


def classification_metrics(logits_or_preds: Tensor, targets: Tensor,
                           num_classes: int) -> dict[str, float]:
    """Accuracy, macro F1 and Dice of a classifier.

    ``dice`` is the macro average over classes of ``2 TP / (2 TP + FP + FN)`` computed on the
    one-hot (hard) predictions; that is exactly the per-class F1 score, so ``dice == f1_macro``.
    It is reported separately because the CRNet/NCP thesis (seed 000) reports a Dice column.
    Macro averages follow torchmetrics: a class absent from both predictions and targets is
    left out of the average.

    Args:
        logits_or_preds: logits or probabilities (B, C) (argmax is taken; a single logit (B, 1)
            is thresholded at 0), or predicted class indices (B,).
        targets: true class indices.
        num_classes: number of classes C.

    Returns:
        ``{"accuracy": ..., "f1_macro": ..., "dice": ...}`` as Python floats in [0, 1].

    Shape:
        - logits_or_preds: (B, C) or (B,)
        - targets: (B,)
    """
    cm = confusion_matrix(logits_or_preds, targets, num_classes)  # (C, C)
    tp = cm.diagonal()
    fp = cm.sum(dim=0) - tp
    fn = cm.sum(dim=1) - tp
    # float32 throughout, in torchmetrics' order of operations (micro accuracy, macro F1)
    total = (tp + fn).sum().float()
    acc = tp.sum().float() / total if total > 0 else torch.zeros(())
    num = 2.0 * tp
    den = 2.0 * tp + 1.0 * fn + fp
    f1 = torch.where(den != 0, num / den, torch.zeros(()))
    weights = torch.ones_like(f1)
    weights[tp + fp + fn == 0] = 0.0  # a class absent from predictions and targets is left out
    wsum = weights.sum(-1, keepdim=True)
    f1_macro = torch.where(wsum != 0, weights * f1 / wsum, torch.zeros(())).sum(-1)
    return {"accuracy": float(acc), "f1_macro": float(f1_macro), "dice": float(f1_macro)}


def confusion_matrix(logits_or_preds: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Confusion matrix, rows = true class, columns = predicted class.

    Args:
        logits_or_preds: logits (B, C) or predicted class indices (B,).
        targets: true class indices (B,).
        num_classes: number of classes C.

    Returns:
        An int64 tensor of counts.

    Shape:
        - output: (C, C)
    """
    preds = _to_preds(logits_or_preds)
    targets = _check_targets(preds, targets, num_classes)
    for name, t in (("predictions", preds), ("targets", targets)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ConfigError(f"{name} hold class {int(t.min()) if int(t.min()) < 0 else int(t.max())}, "
                              f"outside 0..{num_classes - 1}")
    flat = (targets * num_classes + preds).cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).long()


def per_class_accuracy(preds: Tensor, targets: Tensor, num_classes: int) -> list[float]:
    """Accuracy (recall) of every class: correct / samples of that class.

    A class with no sample among ``targets`` gets ``nan`` (its accuracy is undefined).

    Args:
        preds: predicted class indices (B,) or logits (B, C).
        targets: true class indices (B,).
        num_classes: number of classes C.

    Returns:
        ``num_classes`` floats.
    """
    cm = confusion_matrix(preds, targets, num_classes).double()  # (C, C)
    support = cm.sum(dim=1)  # (C,)
    acc = cm.diagonal() / support
    return [float(a) if s > 0 else math.nan for a, s in zip(acc.tolist(), support.tolist())]


def _binary_masks(masks: Tensor, threshold: float) -> Tensor:
    masks = masks.detach()
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point():
        return masks > threshold
    return masks != 0


def dice_per_sample(pred_masks: Tensor, true_masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Dice coefficient of every sample: ``2 |P ∩ T| / (|P| + |T|)``, 1 when both are empty.

    Args:
        pred_masks: predicted masks, bool/integer (non-zero = foreground) or float probabilities
            (foreground where > ``threshold``). Pass probabilities, not logits.
        true_masks: true masks of the same shape, same encoding.
        threshold: foreground threshold for float masks.

    Returns:
        Float tensor of per-sample Dice values (kept for paired tests between variants).

    Shape:
        - pred_masks, true_masks: (B, *) e.g. (B, 1, H, W) or (B, H, W)
        - output: (B,)
    """
    if pred_masks.shape != true_masks.shape:
        raise ConfigError(f"pred_masks {tuple(pred_masks.shape)} and true_masks "
                          f"{tuple(true_masks.shape)} must have the same shape")
    B = pred_masks.shape[0]
    p = _binary_masks(pred_masks, threshold).reshape(B, -1)  # (B, N)
    t = _binary_masks(true_masks, threshold).reshape(B, -1)  # (B, N)
    inter = (p & t).sum(dim=1).double()  # (B,)
    total = (p.sum(dim=1) + t.sum(dim=1)).double()  # (B,)
    # empty prediction of an empty mask is a perfect score, not 0/0
    return torch.where(total > 0, 2.0 * inter / total.clamp_min(1), torch.ones_like(total))


def dice_coefficient(pred_masks: Tensor, true_masks: Tensor, threshold: float = 0.5) -> float:
    """Mean over samples of :func:`dice_per_sample` (empty vs empty = 1).

    Args:
        pred_masks: predicted masks (bool/integer, or probabilities thresholded at ``threshold``).
        true_masks: true masks of the same shape.
        threshold: foreground threshold for float masks.

    Returns:
        The mean Dice coefficient in [0, 1].

    Shape:
        - pred_masks, true_masks: (B, *)
    """
    return float(dice_per_sample(pred_masks, true_masks, threshold).mean())


@dataclass(frozen=True)
class MetricSpec:
    """A metric name and the direction in which it improves.

    Attributes:
        name: metric name as given (e.g. ``"val_accuracy"`` or ``"loss"``).
        mode: ``"max"`` when higher is better, ``"min"`` when lower is better.
    """

    name: str
    mode: Literal["max", "min"]

    @property
    def worst(self) -> float:
        """The value every real measurement improves on (``-inf`` for max, ``inf`` for min)."""
        return -math.inf if self.mode == "max" else math.inf

    def is_better(self, value: float, best: float, min_delta: float = 0.0) -> bool:
        """Whether ``value`` improves on ``best`` by more than ``min_delta`` (NaN never does)."""
        if math.isnan(value):
            return False
        if self.mode == "max":
            return value > best + min_delta
        return value < best - min_delta


def metric_mode(name: str) -> Literal["max", "min"]:
    """``"min"`` for ``loss``, ``"max"`` for the other metrics.

    A split prefix (``train_``, ``val_``, ``test_``) is ignored: ``val_loss`` is ``"min"``.

    Raises:
        UnknownNameError: ``name`` is not a metric the engine reports.
    """
    base = name
    for prefix in _SPLIT_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    if base not in _KNOWN_METRICS:
        raise UnknownNameError("metric", name, _KNOWN_METRICS)
    return "min" if base in _MIN_METRICS else "max"


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name`` (see :func:`metric_mode`)."""
    return MetricSpec(name, metric_mode(name))
