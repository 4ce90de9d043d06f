"""Tests of archlab.train.losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError, UnknownNameError
from archlab.train.losses import build_loss, list_losses, soft_dice


def test_list_losses() -> None:
    # the built-ins; a plugin test earlier in the session may have registered its own loss too
    assert [n for n in list_losses() if n in ("bce_dice", "ce", "dice", "mse")] == ["bce_dice", "ce", "dice", "mse"]


def test_ce_matches_hand_computed_label_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 2])
    ls = 0.1
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp[torch.arange(2), target]
    smooth = -logp.mean(dim=1)
    expected = ((1 - ls) * nll + ls * smooth).mean()
    got = build_loss("ce", num_classes=3, label_smoothing=ls)(logits, target)
    assert torch.allclose(got, expected, atol=1e-6)
    plain = build_loss("ce", num_classes=3)(logits, target)
    assert torch.allclose(plain, nll.mean(), atol=1e-6)
    assert not torch.allclose(plain, got)


def test_mse_is_logits_vs_one_hot() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    # one-hot [[1, 0], [0, 1]] -> squared errors [1, 0, 0, 0] -> mean 0.25 (no softmax)
    got = build_loss("mse", num_classes=2)(logits, target)
    assert got.item() == pytest.approx(0.25)


def test_soft_dice_hand_values() -> None:
    probs = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # sample 0: 2*1 / (2+2) = 0.5; sample 1: empty vs empty = 1 -> mean 0.75
    assert soft_dice(probs, target, eps=1e-6).item() == pytest.approx(0.75, abs=1e-5)


def test_bce_dice_classification_hand_value() -> None:
    logits = torch.zeros(1, 2)  # sigmoid -> 0.5 everywhere
    target = torch.tensor([1])  # one-hot [0, 1]
    bce = math.log(2.0)  # every element: -log(0.5)
    eps = 1e-5
    dice = (2 * 0.5 + eps) / (1.0 + 1.0 + eps)
    expected = 0.4 * bce + 1.0 * (1 - dice)  # seed 000 weights are the defaults
    got = build_loss("bce_dice", num_classes=2)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    weighted = build_loss("bce_dice", num_classes=2, bce_weight=2.0, dice_weight=0.0)
    assert weighted(logits, target).item() == pytest.approx(2 * bce, rel=1e-6)


def test_bce_dice_segmentation_mask_shapes_and_perfect_prediction() -> None:
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    mask[2] = 0  # an empty mask
    loss = build_loss("bce_dice", num_classes=1)
    logits = torch.randn(3, 1, 8, 8, generator=g, requires_grad=True)
    a = loss(logits, mask)
    b = loss(logits, mask[:, 0])  # (B, H, W) target fits (B, 1, H, W) logits
    assert torch.equal(a, b)
    a.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    perfect = (mask * 2 - 1) * 30.0  # confident and right, empty mask included
    assert loss(perfect, mask).item() < 1e-4
    wrong = -perfect
    assert loss(wrong, mask).item() > 1.0


def test_dice_loss_segmentation() -> None:
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2] = 1
    logits = torch.full((2, 1, 4, 4), -50.0)
    logits[0, 0, :2] = 50.0
    assert build_loss("dice", num_classes=1)(logits, mask).item() == pytest.approx(0, abs=1e-6)
    # predict foreground only on the lower half of sample 0: Dice 0 there, 1 on empty sample 1
    logits2 = torch.full((2, 1, 4, 4), -50.0)
    logits2[0, 0, 2:] = 50.0
    got = build_loss("dice", num_classes=1)(logits2, mask).item()
    assert got == pytest.approx(0.5, abs=1e-5)


def test_dice_loss_multiclass_index_masks() -> None:
    target = torch.tensor([[[0, 1], [2, 2]]])  # (B, H, W) class indices
    logits = F.one_hot(target, 3).movedim(-1, 1).float() * 100 - 50  # (B, 3, H, W)
    loss = build_loss("dice", num_classes=3)(logits, target)
    assert loss.item() == pytest.approx(0, abs=1e-6)


def test_unknown_name_and_options() -> None:
    with pytest.raises(UnknownNameError, match="bce_dice"):
        build_loss("bce_dise", num_classes=2)
    with pytest.raises(ConfigError, match="label_smothing"):
        build_loss("ce", num_classes=2, label_smothing=0.1)
    with pytest.raises(ConfigError, match="'ce' has no option 'bce_weight'"):
        build_loss("ce", num_classes=2, bce_weight=0.1)
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_loss("ce", num_classes=2, label_smoothing=1.5)
    with pytest.raises(ConfigError, match="dice_weight"):
        build_loss("bce_dice", num_classes=2, dice_weight=-1)
    with pytest.raises(ConfigError, match="num_classes"):
        build_loss("mse", num_classes=0)


def test_num_classes_mismatch_is_explained() -> None:
    loss = build_loss("mse", num_classes=3)
    with pytest.raises(ConfigError, match="num_classes=4"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
