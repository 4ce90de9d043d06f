"""Check a run config before anything trains: everything a run builds, built once and thrown away.

A study checks every variant with :func:`check_run` before its first run starts, so a typo in a
loss, scheduler or augmentation option, a normalisation of the wrong length, an unavailable device
or a one-class dataset stops the study with exit 2 up front, instead of failing every run of that
variant one after another (and leaving failed runs recorded under a config the user then fixes).

The optimizer and scheduler part (:func:`check_optimization`) is separate: constructing a torch
optimizer imports ``torch._dynamo`` (about a second), which a study process that leaves training
to worker processes never needs; the study then runs that part in its workers, whose fork server
imported it already (:func:`archlab.study.runner.preflight`).
"""

from __future__ import annotations

import torch

from archlab.data import Splits
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig

__all__ = ["check_run", "check_optimization", "check_optimization_in_worker"]


def check_run(config: TrainConfig, splits: Splits, *, optimization: bool = True) -> None:
    """Build the model, data loaders, loss, optimizer and scheduler of ``config`` on ``splits``.

    Nothing is trained and nothing is written; the model is built on the CPU.

    Args:
        optimization: also build the optimizer and scheduler (:func:`check_optimization`).

    Raises:
        ArchlabError: the first part that cannot be built, with the key and value named.
    """
    from archlab.train.engine import _loaders, build_run_model, resolve_device
    from archlab.train.losses import build_loss
    from archlab.train.segmentation import build_segmentation_loss, check_segmentation_run, is_segmentation

    resolve_device(config.device)
    model = build_run_model(config, splits)
    seg = is_segmentation(model)
    if seg:
        check_segmentation_run(config, splits)
    elif splits.train.num_classes < 2:
        raise ConfigError(
            f"the training split of dataset {config.data.name!r} has {splits.train.num_classes} class; "
            "classification needs at least 2 (check the dataset options, e.g. num_classes)"
        )
    train_loader, _, _ = _loaders(config, splits, torch.device("cpu"), targets="masks" if seg else "labels")
    try:
        if seg:
            build_segmentation_loss(config.loss, **config.loss_kwargs)
        else:
            build_loss(config.loss, num_classes=splits.train.num_classes, **config.loss_kwargs)
    except TypeError as exc:  # an unknown keyword of the loss
        raise ConfigError(f"loss_kwargs {config.loss_kwargs} do not fit loss {config.loss!r}: {exc}") from None
    if optimization:
        _check_optimization(config, model, len(train_loader))


def check_optimization(config: TrainConfig, splits: Splits) -> None:
    """Build the optimizer and scheduler of ``config`` (on its model, built on the CPU).

    Raises:
        ArchlabError: an optimizer or scheduler option that does not fit, named.
    """
    from archlab.train.engine import _loaders, build_run_model
    from archlab.train.segmentation import is_segmentation

    model = build_run_model(config, splits)
    train_loader, _, _ = _loaders(config, splits, torch.device("cpu"),
                                  targets="masks" if is_segmentation(model) else "labels")
    _check_optimization(config, model, len(train_loader))


def check_optimization_in_worker(config_json: str) -> str | None:
    """:func:`check_optimization` in a study worker: ``None``, or the error's message (exceptions of
    every kind come back as text, so nothing depends on pickling them)."""
    from archlab.errors import ArchlabError
    from archlab.study.execute import load_splits

    try:
        config = TrainConfig.model_validate_json(config_json)
        check_optimization(config, load_splits(config.data.model_dump_json()))
    except ArchlabError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by the study process with the variant named
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_optimization(config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int) -> None:
    from archlab.train.optim import build_optimizer, build_scheduler

    o = config.optim
    optimizer = build_optimizer(
        o.name, model.parameters(), lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, nesterov=o.nesterov,
        fused=config.fused_optimizer is True,
    )
    kwargs = dict(config.scheduler.kwargs)
    if config.scheduler.name == "plateau":
        kwargs.setdefault("monitor", config.monitor)
    try:
        build_scheduler(
            config.scheduler.name, optimizer, epochs=config.epochs, steps_per_epoch=steps_per_epoch, **kwargs
        )
    except TypeError as exc:
        raise ConfigError(
            f"scheduler.kwargs {config.scheduler.kwargs} do not fit scheduler {config.scheduler.name!r}: {exc}"
        ) from None
