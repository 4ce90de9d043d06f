"""Training losses: cross-entropy, one-hot MSE, soft Dice and BCE-Dice.

Every loss is an ``nn.Module`` called as ``loss(logits, target)``:

- classification: ``logits`` (B, C), ``target`` int64 class indices (B,);
- segmentation: ``logits`` (B, 1, H, W) (or (B, C, H, W)), ``target`` a float (or bool) mask of
  the same number of elements, e.g. (B, 1, H, W) or (B, H, W), or int64 class indices (B, H, W).

References:
    - ``bce_dice``: seed 000 (CRNet/NCP thesis), "BCE-Dice Loss (BCE: 0.4, Dice: 1.0)"; the
      formula follows the widely used ``BCEDiceLoss`` of pytorch-nested-unet (per-sample soft Dice
      on sigmoid probabilities, small smoothing term).
    - ``mse``: Lechner et al. 2020, "Neural circuit policies enabling auditable autonomy" — mean
      squared error between the raw network outputs and the one-hot target.
    - ``dice``: Milletari et al. 2016, "V-Net" (soft Dice loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab._registry import register_in
from archlab.errors import ConfigError, UnknownNameError

__all__ = [
    "BCEDiceLoss",
    "DiceLoss",
    "OneHotMSELoss",
    "build_loss",
    "list_losses",
    "soft_dice",
]


def soft_dice(probs: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """Soft Dice coefficient, computed per sample and averaged over the batch.

    ``dice_b = (2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)``, the sums running over all
    non-batch dimensions of sample ``b``. With ``eps > 0`` an empty prediction of an empty target
    scores 1 (as the Dice metric of SPEC §2.2 does).

    Args:
        probs: probabilities in [0, 1].
        target: target of the same shape, values in [0, 1] (one-hot or mask).
        eps: smoothing term added to numerator and denominator; keeps the ratio defined.

    Returns:
        A scalar tensor: the mean soft Dice over the batch (differentiable).

    Shape:
        - probs: (B, *)
        - target: (B, *), same shape as ``probs``
        - output: ()
    """
    if probs.shape != target.shape:
        raise ValueError(f"soft_dice: probs {tuple(probs.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")
    B = probs.shape[0]
    # float32 sums: a 512x512 mask summed in float16 (mixed precision) overflows 65504
    p = probs.reshape(B, -1).float()  # (B, N)
    t = target.reshape(B, -1).float()  # (B, N)
    inter = (p * t).sum(dim=1)  # (B,)
    dice = (2.0 * inter + eps) / (p.sum(dim=1) + t.sum(dim=1) + eps)  # (B,)
    return dice.mean()


def _dense_target(logits: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Turn ``target`` into a float tensor of ``logits``' shape (one-hot or mask).

    - float/bool target: a mask (or soft/one-hot target) with as many elements as ``logits``;
      reshaped to ``logits.shape`` (so (B, H, W) fits (B, 1, H, W)).
    - integer target with one logit channel: a 0/1 mask (binary task with a single logit).
    - integer target otherwise: class indices (B,) or (B, H, W), one-hot encoded along dim 1.
    """
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        if target.numel() != logits.numel():
            raise ConfigError(f"target of shape {tuple(target.shape)} does not fit logits of shape "
                              f"{tuple(logits.shape)}: a float target must be a mask/one-hot "
                              "with the same number of elements")
        return target.reshape(logits.shape).to(logits.dtype)
    C = logits.shape[1]
    if C == 1:  # single-logit binary task: integer targets are the 0/1 labels
        if target.numel() != logits.numel():
            raise ConfigError(f"target of shape {tuple(target.shape)} does not fit single-channel "
                              f"logits of shape {tuple(logits.shape)}")
        return target.reshape(logits.shape).to(logits.dtype)
    if C != num_classes:
        raise ConfigError(f"logits have {C} channels but the loss was built with "
                          f"num_classes={num_classes}; build the loss with num_classes={C}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ConfigError(f"class-index target of shape {tuple(target.shape)} does not fit logits "
                          f"of shape {tuple(logits.shape)}; expected "
                          f"{tuple(logits.shape[:1] + logits.shape[2:])}")
    one_hot = F.one_hot(target.long(), num_classes)  # (B, *, C)
    return one_hot.movedim(-1, 1).to(logits.dtype)  # (B, C, *)


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - soft_dice(sigmoid(logits), target)``.

    Meant for segmentation (one logit per pixel); for classification the target is one-hot
    encoded and each class logit goes through its own sigmoid, as in ``bce_dice``.

    Args:
        num_classes: number of classes (channels of ``logits`` when targets are class indices).
        eps: smoothing term of :func:`soft_dice`.

    Shape:
        - logits: (B, C) or (B, C, H, W)
        - target: (B,) / (B, H, W) int64 class indices, or a float mask with logits' element count
        - output: ()
    """

    def __init__(self, num_classes: int, eps: float = 1e-5):
        super().__init__()
        self.num_classes, self.eps = num_classes, eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return the scalar loss."""
        dense = _dense_target(logits, target, self.num_classes)
        return 1.0 - soft_dice(torch.sigmoid(logits), dense, self.eps)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, eps={self.eps}"


class BCEDiceLoss(nn.Module):
    """``bce_weight * BCE-with-logits + dice_weight * (1 - soft Dice)``.

    The BCE is averaged over all elements; the Dice term is the per-sample soft Dice on sigmoid
    probabilities (:func:`soft_dice`). For classification the integer target is one-hot encoded
    against the (B, C) logits, i.e. every class is treated as an independent binary problem —
    this is what seed 000 trains with. Defaults are seed 000's weights (BCE 0.4, Dice 1.0).

    Args:
        num_classes: number of classes (channels of ``logits`` when targets are class indices).
        bce_weight: weight of the BCE term.
        dice_weight: weight of the Dice term.
        eps: smoothing term of :func:`soft_dice`.

    Shape:
        - logits: (B, C) or (B, 1, H, W)
        - target: (B,) int64 class indices, or a float mask with logits' element count
        - output: ()
    """

    def __init__(self, num_classes: int, bce_weight: float = 0.4, dice_weight: float = 1.0,
                 eps: float = 1e-5):
        super().__init__()
        self.num_classes = num_classes
        self.bce_weight, self.dice_weight, self.eps = bce_weight, dice_weight, eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return the scalar loss."""
        dense = _dense_target(logits, target, self.num_classes)
        bce = F.binary_cross_entropy_with_logits(logits, dense)
        dice = soft_dice(torch.sigmoid(logits), dense, self.eps)
        return self.bce_weight * bce + self.dice_weight * (1.0 - dice)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, bce_weight={self.bce_weight}, "
                f"dice_weight={self.dice_weight}, eps={self.eps}")


class OneHotMSELoss(nn.Module):
    """Mean squared error between the raw logits and the one-hot target.

    This is the NCP paper's setting (Lechner et al. 2020): no softmax is applied, the network's
    outputs regress onto the one-hot vector; the mean runs over all B * C elements.

    Args:
        num_classes: number of classes (length of the one-hot vector).

    Shape:
        - logits: (B, C)
        - target: (B,) int64 class indices (or a float (B, C) target, used as is)
        - output: ()
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return the scalar loss."""
        return F.mse_loss(logits, _dense_target(logits, target, self.num_classes))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


def _check_range(name: str, value: Any, lo: float, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"loss option {name}={value!r} must be a number")
    bad = value < lo or (lo_open and value == lo)
    if hi is not None:
        bad = bad or value > hi or (hi_open and value == hi)
    if bad:
        lo_s = f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f" and {'<' if hi_open else '<='} {hi}"
        raise ConfigError(f"loss option {name}={value!r} out of range: must be {lo_s}{hi_s}")


def _make_ce(num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    _check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))


def _make_mse(num_classes: int) -> nn.Module:
    return OneHotMSELoss(num_classes)


def _make_bce_dice(num_classes: int, bce_weight: float = 0.4, dice_weight: float = 1.0,
                   eps: float = 1e-5) -> nn.Module:
    _check_range("bce_weight", bce_weight, 0.0)
    _check_range("dice_weight", dice_weight, 0.0)
    _check_range("eps", eps, 0.0, lo_open=True)
    return BCEDiceLoss(num_classes, float(bce_weight), float(dice_weight), float(eps))


def _make_dice(num_classes: int, eps: float = 1e-5) -> nn.Module:
    _check_range("eps", eps, 0.0, lo_open=True)
    return DiceLoss(num_classes, float(eps))


# name -> (factory, allowed options)
_LOSSES: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {
    "ce": (_make_ce, ("label_smoothing",)),
    "mse": (_make_mse, ()),
    "bce_dice": (_make_bce_dice, ("bce_weight", "dice_weight", "eps")),
    "dice": (_make_dice, ("eps",)),
}


def register_loss(name: str, *, options: tuple[str, ...] = ()):
    """Register ``factory(num_classes, **options) -> nn.Module`` as the loss ``name`` (a decorator).

    The module is called as ``loss(logits, target)`` and returns a scalar; ``options`` are the
    ``loss_kwargs`` it accepts.

    Raises:
        ConfigError: ``name`` registered by another factory.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        register_in(_LOSSES, "loss", name, (factory, tuple(options)), origin=factory)
        return factory

    return deco


def list_losses() -> list[str]:
    """Names accepted by :func:`build_loss`, sorted."""
    return sorted(_LOSSES)


def build_loss(name: str, *, num_classes: int, **kw: Any) -> nn.Module:
    """Build a loss module by name.

    Args:
        name: ``ce`` (option ``label_smoothing``), ``mse`` (logits vs one-hot, the NCP paper's
            setting), ``bce_dice`` (options ``bce_weight`` = 0.4, ``dice_weight`` = 1.0, ``eps``;
            seed 000) or ``dice`` (soft Dice on sigmoid probabilities, option ``eps``).
        num_classes: number of classes of the task (1 for a single-logit binary mask).
        **kw: options of the chosen loss.

    Returns:
        A module called as ``loss(logits, target)`` returning a scalar.

    Raises:
        UnknownNameError: ``name`` is not a known loss.
        ConfigError: an option the loss does not take, or a value out of range.
    """
    if name not in _LOSSES:
        raise UnknownNameError("loss", name, _LOSSES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be a positive integer")
    factory, allowed = _LOSSES[name]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        opts = ", ".join(allowed) if allowed else "none"
        raise ConfigError(f"loss {name!r} has no option {unknown[0]!r}; its options: {opts}")
    return factory(num_classes, **kw)
