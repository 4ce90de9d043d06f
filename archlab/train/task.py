"""What a run learns to predict: the :class:`Task` owns its targets, loss inputs and metrics.

The training loop is the same for every task; what differs is asked of the task:

- :class:`ClassificationTask` — labels as targets, the config's loss (``ce``, ``mse`` ...) on float32
  logits, accuracy / macro F1 / loss as metrics, per-sample predicted classes for paired tests.
- :class:`SegmentationTask` — float masks as targets, mask loss + has_mask BCE on the model's
  :class:`~archlab.models.unet.SegmentationOutput`, Dice plus the image-level "mask present"
  accuracy as metrics (:mod:`archlab.train.segmentation`).

:func:`task_for` picks the task from the model (a model whose ``task`` is ``"segmentation"``).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from archlab.data import DeviceLoader, Splits
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.distributed import DistContext
from archlab.train.losses import build_loss
from archlab.train.metrics import classification_metrics
from archlab.train.precision import autocast
from archlab.train.segmentation import (
    build_segmentation_loss,
    check_segmentation_run,
    evaluate_segmentation,
    is_segmentation,
    segmentation_correct,
)

__all__ = ["ClassificationTask", "SegmentationTask", "Task", "task_for"]

Evaluation = tuple[dict[str, float], Tensor, Tensor]  # (metrics, predictions (N,), targets (N,))


class Task(Protocol):
    """The task-specific part of training and evaluating a run.

    Attributes:
        targets: what the data loaders yield as targets (``"labels"`` or ``"masks"``).
    """

    targets: str

    def check(self, config: TrainConfig, splits: Splits) -> None:
        """Refuse data or settings the task cannot train with (before anything is built on them)."""

    def build_loss(self, config: TrainConfig) -> nn.Module:
        """The training loss of ``config`` for this task."""

    def loss_input(self, out: Any) -> Any:
        """What the loss takes of the model's output."""

    def correct(self, out: Any, target: Tensor) -> Tensor:
        """Number of correct training predictions in a batch (a ``()`` tensor, no host sync)."""

    def evaluate(
        self, model: nn.Module, loader: DeviceLoader, loss_fn: nn.Module, *, amp: bool = False,
        dist: DistContext | None = None,
    ) -> Evaluation:
        """Metrics and per-sample predictions of ``model`` over one pass of ``loader``."""


class ClassificationTask:
    """Image classification into ``num_classes`` classes.

    Args:
        num_classes: classes of the training split.
    """

    targets = "labels"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def check(self, config: TrainConfig, splits: Splits) -> None:
        """Any labelled split trains; ``monitor: dice`` is a segmentation metric.

        Raises:
            ConfigError: ``monitor: dice`` on a classification run.
        """
        if config.monitor == "dice":
            raise ConfigError("monitor = 'dice' is a segmentation metric; a classification run monitors "
                              "accuracy, f1_macro (the same number as a macro Dice) or loss")

    def build_loss(self, config: TrainConfig) -> nn.Module:
        """``config.loss`` with ``config.loss_kwargs``.

        Raises:
            ConfigError: a keyword the loss does not take.
        """
        try:
            return build_loss(config.loss, num_classes=self.num_classes, **config.loss_kwargs)
        except TypeError as exc:  # an unknown keyword of the loss
            raise ConfigError(f"loss_kwargs {config.loss_kwargs} do not fit loss {config.loss!r}: {exc}") from None

    def loss_input(self, out: Tensor) -> Tensor:
        """Float32 logits (the loss is computed in float32 under autocast too). Shape: ``(B, K)``."""
        return out.float()

    def correct(self, out: Tensor, target: Tensor) -> Tensor:
        """Shape: out ``(B, K)``, target ``(B,)`` -> ``()``."""
        return (out.detach().argmax(1) == target).sum()

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, loader: DeviceLoader, loss_fn: nn.Module, *, amp: bool = False,
        dist: DistContext | None = None,
    ) -> Evaluation:
        """Loss and classification metrics of ``model`` over one pass of ``loader``.

        With ``dist`` every rank evaluates its slice of each batch and all ranks return the same
        metrics and the predictions of the whole pass, in order.

        Returns:
            ``(metrics, predictions (N,), targets (N,))`` with predictions and targets on the CPU.
        """
        was_training = model.training
        model.eval()
        preds, targets = [], []
        loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
        n = 0
        for x, y in loader.epoch(0):
            if dist is not None:
                x, y, _ = dist.shard_batch(x, y)
                if y.shape[0] == 0:  # a batch smaller than the process count
                    preds.append(y)
                    targets.append(y)
                    continue
            with autocast(loader.device, amp):
                logits = model(x)  # (B, K)
            loss_sum += loss_fn(logits.float(), y).double() * y.shape[0]
            n += y.shape[0]
            preds.append(logits.argmax(1))
            targets.append(y)
        model.train(was_training)
        if dist is not None:
            p, t = dist.gather_batches(preds), dist.gather_batches(targets)
            loss_sum, n_all = dist.sum(loss_sum, n)
            n = int(n_all)
        else:
            p, t = torch.cat(preds).cpu(), torch.cat(targets).cpu()
        metrics = classification_metrics(p, t, self.num_classes)
        # macro Dice equals macro F1 on classes: a second name for one number, not stored (issue 26)
        metrics.pop("dice", None)
        metrics["loss"] = float(loss_sum) / max(n, 1)
        return metrics, p, t


class SegmentationTask:
    """Binary segmentation with a has_mask branch (:mod:`archlab.train.segmentation`)."""

    targets = "masks"

    def check(self, config: TrainConfig, splits: Splits) -> None:
        """Masks in every split, no augmentation or crop (:func:`check_segmentation_run`)."""
        check_segmentation_run(config, splits)

    def build_loss(self, config: TrainConfig) -> nn.Module:
        """The mask loss of ``config`` plus the weighted has_mask BCE.

        Raises:
            ConfigError: a classification loss, or a keyword the mask loss does not take.
        """
        try:
            return build_segmentation_loss(config.loss, **config.loss_kwargs)
        except TypeError as exc:  # an unknown keyword of the mask loss
            raise ConfigError(f"loss_kwargs {config.loss_kwargs} do not fit loss {config.loss!r}: {exc}") from None

    def loss_input(self, out: Any) -> Any:
        """The whole :class:`~archlab.models.unet.SegmentationOutput` (the loss casts to float32)."""
        return out

    def correct(self, out: Any, target: Tensor) -> Tensor:
        """Images whose has_mask prediction is right. Shape: target ``(B, 1, H, W)`` -> ``()``."""
        return segmentation_correct(out, target)

    def evaluate(
        self, model: nn.Module, loader: DeviceLoader, loss_fn: nn.Module, *, amp: bool = False,
        dist: DistContext | None = None,
    ) -> Evaluation:
        """Loss, mean Dice and image-level accuracy (:func:`evaluate_segmentation`)."""
        return evaluate_segmentation(model, loader, loss_fn, amp=amp, dist=dist)


def task_for(model: nn.Module, splits: Splits) -> ClassificationTask | SegmentationTask:
    """The task ``model`` is built for, on the data of ``splits``."""
    if is_segmentation(model):
        return SegmentationTask()
    return ClassificationTask(splits.train.num_classes)
