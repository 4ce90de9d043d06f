"""Assembling a run: :func:`build_run` is the one place a config and its data become a :class:`Run`.

A :class:`Run` holds everything a training loop needs — model, data loaders, task, loss, optimizer,
scheduler, precision and process strategies — built in a fixed order from a
:class:`~archlab.train.config.TrainConfig`. The engine trains it (:func:`archlab.train.engine.fit`);
the preflight check builds it and throws it away; analyses, export and
:func:`archlab.train.engine.load_run` use its parts (the model under the run's init stream, the
loaders with the run's normalisation) to see the data exactly as the run saw it.

Randomness: the model is built under the run's ``model-init`` stream in a forked RNG (the global
RNG is left as it was), the loaders draw batch order and augmentation from their own
counter-based streams (``config.seed``); nothing else here draws a random number.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from archlab._registry import create_model
from archlab._seed import derive_seed
from archlab.data import (
    DeviceLoader,
    Normalize,
    Splits,
    build_augment,
    build_eval_transform,
    dataset_stats,
    load_dataset,
    make_splits,
)
from archlab.data.cleaning import clean_train_split
from archlab.data.resolution import resize_splits
from archlab.data.splits import apply_clean_split
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.distributed import Processes, SingleProcess
from archlab.train.optim import SchedulerWrapper, build_optimizer, build_scheduler
from archlab.train.precision import MixedPrecision
from archlab.train.task import Task, task_for
from archlab.train.transfer import apply_transfer, param_groups

__all__ = [
    "Run",
    "build_loaders",
    "build_optimization",
    "build_run",
    "build_run_model",
    "enable_compile_cache",
    "input_normalize",
    "layout_stable_dropout",
    "model_input_size",
    "prepare_data",
    "resolve_device",
]


@dataclass
class Run:
    """One run, assembled and ready to train (:func:`build_run`).

    Attributes:
        config: the resolved run config.
        splits: its data.
        device: where it trains.
        model: the model whose weights are trained, saved and tested (a DDP or compile wrapper,
            when there is one, is made by the loop around it).
        task: classification or segmentation (targets, loss input, metrics).
        train_loader / val_loader / test_loader: the three splits on ``device`` (``test_loader``
            ``None`` when built with ``test=False``: a tuning trial never reads the test split).
        loss_fn: the training loss.
        optimizer / scheduler: ``None`` when built with ``optimization=False``.
        precision: autocast and loss scaling of the train step.
        processes: one process, or this process's place in a DDP run.
    """

    config: TrainConfig
    splits: Splits
    device: torch.device
    model: nn.Module
    task: Task
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    test_loader: DeviceLoader | None
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: SchedulerWrapper | None
    precision: MixedPrecision
    processes: Processes


def build_run(
    config: TrainConfig,
    splits: Splits,
    device: torch.device,
    *,
    processes: Processes | None = None,
    optimization: bool = True,
    test: bool = True,
) -> Run:
    """Build the run of ``config`` on ``splits``: model, loaders, loss, optimizer, scheduler.

    Args:
        config: the run config with its speed options resolved (``channels_last`` a boolean).
        splits: the data (:func:`prepare_data`).
        device: where the model and the data go.
        processes: the process strategy (default: one process on ``device``); a DDP context
            checks that every batch can be shared and converts BatchNorm to global-batch statistics.
        optimization: also build the optimizer and scheduler (constructing a torch optimizer
            imports ``torch._dynamo``, about a second, which a check in the study process avoids).
        test: build the test loader; ``False`` never reads ``splits.test`` (tuning trials).

    Returns:
        The :class:`Run`.

    Raises:
        ArchlabError: the first part that cannot be built, with the key and value named.
    """
    processes = processes if processes is not None else SingleProcess(device)
    if config.compile is True:
        enable_compile_cache()  # compiled graphs persist across runs (~/.cache/archlab/inductor)
    model = build_run_model(config, splits)
    task = task_for(model, splits)
    task.check(config, splits)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        layout_stable_dropout(model)  # the contiguous run's dropout masks: the format changes rounding only
    train, val, test_loader = build_loaders(config, splits, device, targets=task.targets, test=test)
    processes.check_batches(len(splits.train), config.batch_size, config.drop_last)
    model = processes.convert_batchnorm(model)  # global-batch statistics, as in one process
    loss_fn = task.build_loss(config)
    optimizer, scheduler = None, None
    if optimization:
        optimizer, scheduler = build_optimization(config, param_groups(model, config), len(train))
    return Run(
        config=config, splits=splits, device=device, model=model, task=task, train_loader=train, val_loader=val,
        test_loader=test_loader, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler,
        precision=MixedPrecision(device, bool(config.amp)), processes=processes,
    )  # fmt: skip


def build_optimization(
    config: TrainConfig, params: Iterable[Any], steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, SchedulerWrapper]:
    """The optimizer and learning-rate schedule of ``config`` over ``params``.

    Args:
        params: parameters or parameter groups (:func:`archlab.train.transfer.param_groups`).
        steps_per_epoch: optimizer steps per epoch (schedules stepped per batch need it).

    Raises:
        ConfigError: an optimizer or scheduler option that does not fit, named.
    """
    o = config.optim
    optimizer = build_optimizer(
        o.name, params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, nesterov=o.nesterov,
        fused=config.fused_optimizer is True,
    )
    kwargs = dict(config.scheduler.kwargs)
    if config.scheduler.name == "plateau":
        kwargs.setdefault("monitor", config.monitor)
    try:
        scheduler = build_scheduler(
            config.scheduler.name, optimizer, epochs=config.epochs, steps_per_epoch=steps_per_epoch, **kwargs
        )
    except TypeError as exc:
        raise ConfigError(
            f"scheduler.kwargs {config.scheduler.kwargs} do not fit scheduler {config.scheduler.name!r}: {exc}"
        ) from None
    return optimizer, scheduler


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a valid torch device (use auto, cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
    return dev


def prepare_data(config: TrainConfig) -> Splits:
    """Load the dataset of ``config`` and split it (the split depends on ``split_seed`` only)."""
    d = config.data
    parts = load_dataset(d.name, root=d.root, **d.options)
    splits = make_splits(
        parts,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
        balance=d.balance,
        resample_seed=d.resample_seed,
    )
    splits = apply_clean_split(splits, d.clean_split) if d.clean_split else splits
    if d.clean is not None:  # the training split only: val/test stay identical across variants
        splits = clean_train_split(splits, d.clean)
    if d.resize is not None:  # after the split: the same images in the same split, resized
        splits = resize_splits(splits, d.resize)
    return splits


def build_run_model(config: TrainConfig, splits: Splits, *, pretrained: bool = True) -> nn.Module:
    """Build the model of ``config`` for the data in ``splits`` with the run's init stream.

    Because the model is built backbone first, variants that share a backbone start from identical
    backbone weights. With ``model.pretrained`` the backbone is loaded from the file (strict, head
    new) and with ``model.freeze_backbone`` frozen (:mod:`archlab.train.transfer`);
    ``pretrained=False`` skips the file (for a caller that loads trained weights over the model anyway).
    """
    m = config.model
    with _seeded(derive_seed(config.seed, "model-init")):
        model = create_model(
            m.name,
            num_classes=splits.train.num_classes,
            in_chans=splits.train.in_chans,
            head=m.head,
            head_kwargs=m.head_kwargs,
            input_size=model_input_size(config, splits),
            **m.kwargs,
        )
    if m.pretrained or m.freeze_backbone:
        apply_transfer(model, config, load=pretrained)
    return model


def model_input_size(config: TrainConfig, splits: Splits) -> tuple[int, int]:
    """(H, W) the model sees: the crop size when one is set, else the stored image size."""
    c = config.data.crop_size
    return (c, c) if c is not None else tuple(splits.train.image_size)


def build_loaders(
    config: TrainConfig, splits: Splits, device: torch.device, targets: str = "labels", test: bool = True
) -> tuple[DeviceLoader, DeviceLoader, DeviceLoader | None]:
    """The train, validation and test loaders of a run: normalisation, augmentation, batch sizes.

    The training loader shuffles and augments (``config.seed``'s streams); validation and test
    use the eval transform, unshuffled.

    Args:
        targets: ``"labels"`` or ``"masks"`` (:attr:`archlab.train.task.Task.targets`).
        test: build the test loader (``False``: ``None``, and ``splits.test`` is never read).

    Raises:
        ConfigError: a normalisation of the wrong length, or a crop without the preset that crops.
    """
    d = config.data
    mean, std = _normalize_stats(config, splits)
    size = model_input_size(config, splits)
    aug = build_augment(d.augment, image_size=size, in_chans=splits.train.in_chans)
    eval_tf = build_eval_transform(d.augment, image_size=size, in_chans=splits.train.in_chans)
    if size != tuple(splits.train.image_size) and d.augment != "medical":
        raise ConfigError(
            f"data.crop_size {d.crop_size} needs augment: medical (the preset that crops); "
            f"the images are {splits.train.image_size}"
        )
    common = dict(device=device, mean=mean, std=std, targets=targets)
    train = DeviceLoader(
        splits.train, config.batch_size, shuffle=True, seed=config.seed, drop_last=config.drop_last, augment=aug, **common
    )
    val = DeviceLoader(splits.val, config.eval_batch_size, shuffle=False, seed=config.seed, augment=eval_tf, **common)
    if not test:
        return train, val, None
    test_loader = DeviceLoader(splits.test, config.eval_batch_size, shuffle=False, seed=config.seed, augment=eval_tf,
                               **common)
    return train, val, test_loader


def input_normalize(config: TrainConfig, splits: Splits) -> nn.Module | None:
    """The run's input normalisation as a module (float images in [0, 1] -> model input), or None."""
    mean, std = _normalize_stats(config, splits)
    return Normalize(mean, std) if mean is not None else None


def _normalize_stats(config: TrainConfig, splits: Splits) -> tuple[Any, Any]:
    """``(mean, std)`` per channel of ``data.normalize`` (``(None, None)`` for ``"none"``)."""
    d = config.data
    if d.normalize == "dataset":
        return dataset_stats(splits.train)
    if d.normalize == "none":
        return None, None
    mean, std = d.normalize
    if len(mean) != splits.train.in_chans or len(std) != splits.train.in_chans:
        raise ConfigError(
            f"data.normalize has {len(mean)} means / {len(std)} stds but the images have "
            f"{splits.train.in_chans} channels"
        )
    return mean, std


def layout_stable_dropout(model: nn.Module) -> int:
    """Make every dropout of ``model`` draw its mask as in the contiguous format.

    ``bernoulli_`` fills a mask in memory order, so a channels_last activation would get other
    dropout masks from the same RNG stream than a contiguous one — another random draw, not a
    rounding difference (measured: a seed-002 mini-VGG's test accuracy moved by 12 points). A
    forward pre-hook hands each dropout (in training) a contiguous copy of a 4-d channels_last
    input: the masks are then the contiguous run's, and the next convolution returns to
    channels_last by itself (its weights are channels_last). Costs one copy of the activation.

    Returns:
        The number of dropout modules hooked.
    """

    def to_contiguous(module: nn.Module, args: tuple) -> tuple | None:
        x = args[0] if args else None
        if module.training and isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous():
            return (x.contiguous(), *args[1:])
        return None

    hooked = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.register_forward_pre_hook(to_contiguous)
            hooked += 1
    return hooked


def enable_compile_cache() -> str:
    """Point torch.compile's on-disk caches at ``~/.cache/archlab/inductor`` (unless already set).

    Inductor's FX-graph and kernel caches then survive the process and the machine's /tmp cleaning,
    so the second run of the same model skips most of the compile time. Returns the folder.
    """
    default = os.path.join(os.path.expanduser("~"), ".cache", "archlab", "inductor")
    folder = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default)
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block under the global RNG seeded with ``seed``, restoring the RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
