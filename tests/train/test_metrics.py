"""Tests of archlab.train.metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.errors import ConfigError, UnknownNameError
from archlab.train.metrics import (
    MetricSpec,
    classification_metrics,
    confusion_matrix,
    dice_coefficient,
    dice_per_sample,
    metric_mode,
    metric_spec,
    per_class_accuracy,
)

# unbalanced: 8 of class 0, 2 of class 1; one class-1 sample predicted as 0
TARGETS = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
PREDS = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])


def test_unbalanced_accuracy_differs_from_macro_f1() -> None:
    m = classification_metrics(PREDS, TARGETS, num_classes=2)
    # class 0: TP 8, FP 1, FN 0 -> F1 16/17; class 1: TP 1, FP 0, FN 1 -> F1 2/3
    f1 = (16 / 17 + 2 / 3) / 2
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["f1_macro"] == pytest.approx(f1, abs=1e-6)
    assert m["dice"] == pytest.approx(f1, abs=1e-6)  # per-class Dice == per-class F1
    assert m["accuracy"] != pytest.approx(m["f1_macro"], abs=1e-3)
    assert set(m) == {"accuracy", "f1_macro", "dice"}
    assert all(isinstance(v, float) for v in m.values())


def test_logits_give_the_same_as_predictions() -> None:
    logits = torch.nn.functional.one_hot(PREDS, 3).float() * 2.0 + 0.1  # argmax == PREDS
    assert classification_metrics(logits, TARGETS, 3) == classification_metrics(PREDS, TARGETS, 3)


def test_three_class_hand_values() -> None:
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    preds = torch.tensor([0, 2, 2, 2, 1, 1])
    m = classification_metrics(preds, targets, 3)
    # class 0: TP1 FP0 FN1 -> 2/3; class 1: TP1 FP1 FN1 -> 1/2; class 2: TP2 FP1 FN0 -> 4/5
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3, abs=1e-6)


def test_confusion_matrix_rows_are_true_classes() -> None:
    cm = confusion_matrix(PREDS, TARGETS, 2)
    assert cm.tolist() == [[8, 0], [1, 1]]
    assert cm.dtype == torch.int64


def test_per_class_accuracy() -> None:
    assert per_class_accuracy(PREDS, TARGETS, 2) == pytest.approx([1.0, 0.5])
    acc = per_class_accuracy(PREDS, TARGETS, 3)  # class 2 has no sample
    assert acc[:2] == pytest.approx([1.0, 0.5]) and math.isnan(acc[2])


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ConfigError, match="do not match"):
        classification_metrics(PREDS, TARGETS[:5], 2)


def test_dice_coefficient_mean_over_samples_empty_vs_empty_is_one() -> None:
    true = torch.zeros(4, 1, 2, 2, dtype=torch.bool)
    pred = torch.zeros(4, 1, 2, 2, dtype=torch.bool)
    true[1, 0, 0] = True  # 2 pixels
    pred[1, 0, 0, 0] = True  # 1 of them -> 2*1/(1+2) = 2/3
    pred[2, 0, 0, 0] = True  # prediction on an empty mask -> 0
    true[3] = True
    pred[3] = True  # perfect -> 1
    # sample 0 empty vs empty -> 1
    per = dice_per_sample(pred, true)
    assert per.tolist() == pytest.approx([1.0, 2 / 3, 0.0, 1.0])
    assert dice_coefficient(pred, true) == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    probs = pred.float() * 0.9 + 0.05  # probabilities thresholded at 0.5
    assert dice_coefficient(probs, true.float()) == pytest.approx(dice_coefficient(pred, true))


def test_metric_mode_and_spec() -> None:
    assert metric_mode("loss") == "min"
    assert metric_mode("val_loss") == "min"
    assert metric_mode("accuracy") == "max"
    assert metric_mode("val_f1_macro") == "max"
    assert metric_mode("dice") == "max"
    with pytest.raises(UnknownNameError, match="accuracy"):
        metric_mode("acuracy")
    spec = metric_spec("val_accuracy")
    assert spec == MetricSpec("val_accuracy", "max")
    assert spec.is_better(0.9, 0.8) and not spec.is_better(0.8, 0.8)
    assert not spec.is_better(float("nan"), spec.worst)
    loss = metric_spec("loss")
    assert loss.worst == math.inf and loss.is_better(0.5, 0.6)
    assert not loss.is_better(0.59, 0.6, min_delta=0.05)


@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_equal_to_torchmetrics_to_the_bit(num_classes: int) -> None:
    """Accuracy, macro F1 and the confusion matrix equal torchmetrics' (the reference) exactly,
    including classes absent from predictions and targets (left out of the macro average)."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
    )

    g = torch.Generator().manual_seed(num_classes)
    for trial in range(200):
        n = int(torch.randint(1, 60, (1,), generator=g))
        present = int(torch.randint(1, num_classes + 1, (1,), generator=g))  # classes used in this trial
        preds = torch.randint(0, present, (n,), generator=g)
        targets = torch.randint(0, present, (n,), generator=g)
        if trial % 3 == 0:
            preds = torch.where(torch.rand(n, generator=g) < 0.6, targets, preds)
        got = classification_metrics(preds, targets, num_classes)
        ref_acc = float(multiclass_accuracy(preds, targets, num_classes, average="micro"))
        ref_f1 = float(multiclass_f1_score(preds, targets, num_classes, average="macro"))
        assert got["accuracy"] == ref_acc
        assert got["f1_macro"] == ref_f1 == got["dice"]
        assert torch.equal(confusion_matrix(preds, targets, num_classes),
                           multiclass_confusion_matrix(preds, targets, num_classes).long())


def test_class_outside_range_is_an_error() -> None:
    with pytest.raises(ConfigError, match="outside 0..2"):
        classification_metrics(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ConfigError, match="class -1"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, 1]), 3)


def test_worker_imports_stay_light() -> None:
    """The training engine does not import torchmetrics (a second of start-up in every worker)."""
    import subprocess
    import sys

    code = "import sys, archlab.train.engine, archlab.study.execute; print('torchmetrics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
