"""Segmentation runs in the engine: the loss on (mask, has_mask) outputs, Dice evaluation.

A model whose ``task`` attribute is ``"segmentation"`` (``archlab.models.unet.UNet``) returns a
:class:`archlab.models.unet.SegmentationOutput`; its data loader yields float masks (B, 1, H, W)
in {0, 1} as targets. Its run's :class:`archlab.train.task.SegmentationTask` then

- trains on ``mask_loss(mask_logits, mask) + has_mask_weight * BCE(has_mask_logit, mask non-empty)``
  where ``mask_loss`` is the config's ``bce_dice`` (seed 000's weights BCE 0.4 + Dice 1.0) or
  ``dice``;
- evaluates the Dice coefficient of the thresholded (and, for a gated model, has_mask-gated) mask
  probabilities, averaged over samples with empty-vs-empty = 1 (the Kaggle nerve metric of seed
  002, :func:`archlab.train.metrics.dice_per_sample`), plus the image-level ``accuracy`` and
  ``f1_macro`` of "the predicted mask is non-empty" vs "the true mask is non-empty" — the per-sample
  predictions a study's paired McNemar test uses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.errors import ConfigError, DataError, IncompatibleError
from archlab.train.losses import build_loss
from archlab.train.metrics import classification_metrics, dice_per_sample
from archlab.train.precision import autocast

__all__ = [
    "SegmentationLoss",
    "build_segmentation_loss",
    "check_segmentation_run",
    "evaluate_segmentation",
    "is_segmentation",
    "segmentation_correct",
]

#: mask losses a segmentation run may use (both take mask logits and float masks).
MASK_LOSSES = ("bce_dice", "dice")


def is_segmentation(model: nn.Module) -> bool:
    """Whether ``model`` (or the module a DDP/compile wrapper holds) is a segmentation model."""
    inner = getattr(model, "module", getattr(model, "_orig_mod", model))
    return getattr(inner, "task", None) == "segmentation"


class SegmentationLoss(nn.Module):
    """Mask loss plus a weighted BCE on the has_mask logit.

    Args:
        mask_loss: loss on mask logits vs float masks (``bce_dice`` or ``dice``).
        has_mask_weight: weight of the has_mask BCE term (0 trains the branch not at all).

    Shape:
        - out: :class:`~archlab.models.unet.SegmentationOutput` with masks ``(B, 1, H, W)`` and
          has_mask ``(B, 1)``
        - target: ``(B, 1, H, W)`` float masks in {0, 1}
        - output: ``()``
    """

    def __init__(self, mask_loss: nn.Module, has_mask_weight: float = 1.0):
        super().__init__()
        self.mask_loss, self.has_mask_weight = mask_loss, float(has_mask_weight)

    def forward(self, out: Any, target: Tensor) -> Tensor:
        masks, has_mask = out.masks.float(), out.has_mask.float()
        loss = self.mask_loss(masks, target)
        if self.has_mask_weight:
            has = target.flatten(1).amax(dim=1, keepdim=True)  # (B, 1) 1 where the mask is non-empty
            loss = loss + self.has_mask_weight * F.binary_cross_entropy_with_logits(has_mask, has)
        return loss

    def extra_repr(self) -> str:
        return f"has_mask_weight={self.has_mask_weight}"


def build_segmentation_loss(name: str, **kwargs: Any) -> SegmentationLoss:
    """The segmentation loss for ``config.loss`` / ``config.loss_kwargs``.

    ``has_mask_weight`` (default 1.0) is taken out of ``kwargs``; the rest go to the mask loss.

    Raises:
        ConfigError: a classification loss (``ce``, ``mse``), or a bad option.
    """
    if name not in MASK_LOSSES:
        raise ConfigError(
            f"loss {name!r} is a classification loss; a segmentation model (unet) trains with "
            f"{' or '.join(MASK_LOSSES)} (set loss: bce_dice)"
        )
    kwargs = dict(kwargs)
    weight = kwargs.pop("has_mask_weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ConfigError(f"loss option has_mask_weight={weight!r} must be a number >= 0")
    return SegmentationLoss(build_loss(name, num_classes=1, **kwargs), float(weight))


def check_segmentation_run(config: Any, splits: Any) -> None:
    """Refuse a segmentation run whose data or settings cannot work, before anything trains.

    Raises:
        IncompatibleError: the dataset has no masks.
        ConfigError: an augmentation preset (it would move the images but not the masks), a
            crop, or a classification monitor other than accuracy/f1_macro/dice/loss.
    """
    for part in ("train", "val", "test"):
        if getattr(splits, part).masks is None:
            raise IncompatibleError(
                f"model {config.model.name!r} segments images but dataset {config.data.name!r} has no masks; "
                "use a segmentation dataset (segmentation, synthetic_masks)"
            )
    if config.data.augment != "none" or config.data.crop_size is not None:
        raise ConfigError(
            f"data.augment {config.data.augment!r} / crop_size would transform the images but not their masks; "
            "segmentation runs use augment: none and no crop_size"
        )


def segmentation_correct(out: Any, target: Tensor) -> Tensor:
    """Number of images whose has_mask prediction (logit > 0) matches a non-empty mask. Shape: ``()``."""
    has = target.flatten(1).amax(dim=1) > 0  # (B,)
    return ((out.has_mask.detach()[:, 0] > 0) == has).sum()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module, loader: Any, loss_fn: nn.Module, *, amp: bool = False, dist: Any = None
) -> tuple[dict[str, float], Tensor, Tensor]:
    """Loss, mean Dice and image-level accuracy of a segmentation model over ``loader``.

    The masks are the model's ``postprocess`` of its output (gated for ``gate=True``),
    thresholded at 0.5.

    Returns:
        ``(metrics, predictions (N,), targets (N,))``: metrics ``dice``, ``accuracy``,
        ``f1_macro``, ``loss``; predictions/targets are 1 for a non-empty predicted/true mask.
    """
    inner = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    dices, preds, targets = [], [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
    n = 0
    for x, y in loader.epoch(0):
        if dist is not None:
            x, y, _ = dist.shard_batch(x, y)
            if y.shape[0] == 0:
                empty = y.new_zeros(0)
                dices.append(empty.double())
                preds.append(empty.long())
                targets.append(empty.long())
                continue
        with autocast(loader.device, amp):
            out = model(x)
        loss_sum += loss_fn(out, y).double() * y.shape[0]
        n += y.shape[0]
        probs = inner.postprocess(type(out)(*(t.float() for t in out)))  # (B, 1, H, W)
        dices.append(dice_per_sample(probs, y, threshold=0.5))
        preds.append((probs > 0.5).flatten(1).any(dim=1).long())
        targets.append((y > 0.5).flatten(1).any(dim=1).long())
    model.train(was_training)
    if dist is not None:
        d, p, t = (dist.gather_batches(v) for v in (dices, preds, targets))
        loss_sum, n_all = dist.sum(loss_sum, n)
        n = int(n_all)
    else:
        d, p, t = torch.cat(dices).cpu(), torch.cat(preds).cpu(), torch.cat(targets).cpu()
    if d.numel() == 0:
        raise DataError("evaluation split is empty; nothing to evaluate")
    metrics = classification_metrics(p, t, 2)
    metrics["dice"] = float(d.mean())  # mean over samples, empty vs empty = 1
    metrics["loss"] = float(loss_sum) / max(n, 1)
    return metrics, p, t

