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
from archlab.errors import ArchlabError, ConfigError
from archlab.study.execute import load_splits
from archlab.train.config import TrainConfig
from archlab.train.run import build_run, resolve_device
from archlab.train.task import ClassificationTask

__all__ = ["check_run", "check_optimization", "check_optimization_in_worker"]


def check_run(config: TrainConfig, splits: Splits, *, optimization: bool = True) -> None:
    """Build the model, data loaders, loss, optimizer and scheduler of ``config`` on ``splits``.

    Nothing is trained and nothing is written; the run is built on the CPU
    (:func:`archlab.train.run.build_run`, the same assembly a run uses).

    Args:
        optimization: also build the optimizer and scheduler (:func:`check_optimization`).

    Raises:
        ArchlabError: the first part that cannot be built, with the key and value named.
    """
    resolve_device(config.device)
    run = build_run(config, splits, torch.device("cpu"), optimization=optimization)
    if isinstance(run.task, ClassificationTask) and run.task.num_classes < 2:
        raise ConfigError(
            f"the training split of dataset {config.data.name!r} has {splits.train.num_classes} class; "
            "classification needs at least 2 (check the dataset options, e.g. num_classes)"
        )


def check_optimization(config: TrainConfig, splits: Splits) -> None:
    """Build the optimizer and scheduler of ``config`` (on its run, built on the CPU).

    Raises:
        ArchlabError: an optimizer or scheduler option that does not fit, named.
    """
    build_run(config, splits, torch.device("cpu"))


def check_optimization_in_worker(config_json: str) -> str | None:
    """:func:`check_optimization` in a study worker: ``None``, or the error's message (exceptions of
    every kind come back as text, so nothing depends on pickling them)."""
    try:
        config = TrainConfig.model_validate_json(config_json)
        check_optimization(config, load_splits(config.data.model_dump_json()))
    except ArchlabError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by the study process with the variant named
        return f"{type(exc).__name__}: {exc}"
    return None
