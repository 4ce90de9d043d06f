"""A resumable, device-resident batch loader (the airbench pattern).

The uint8 images are moved to the device once; a batch is one indexing operation, one conversion
to float, one batched augmentation and one normalisation. All randomness is counter-based
(``archlab._seed``): the order of epoch ``e`` comes from ``make_generator(seed, "order", e)`` and
the augmentation draws of step ``s`` from ``derive_seed(seed, "augment", e, s)``, so a run resumed
at any step sees exactly the batches of the uninterrupted run, and every variant of a study sees
the same batches (SPEC §1.1, §1.4).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from archlab._seed import derive_seed, make_generator
from archlab.data._dataset import ImageDataset
from archlab.data.augment import Normalize
from archlab.errors import ConfigError

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Batches of a whole in-memory dataset, drawn by index on ``device``.

    Args:
        dataset: the dataset; its images are copied to ``device`` once.
        batch_size: samples per batch.
        shuffle: permute the order each epoch (else sequential).
        seed: seed of the order and augmentation streams.
        drop_last: drop the last incomplete batch.
        device: where batches live.
        augment: batched augmentation on float batches in [0, 1] (see ``build_augment``).
        mean: per-channel normalisation mean (None: no normalisation, pixels in [0, 1]).
        std: per-channel normalisation std (required with ``mean``).
        targets: ``"labels"`` (class indices) or ``"masks"`` (float segmentation masks in {0, 1}).

    Shape:
        - x: :math:`(B, C, H, W)` float32, normalised
        - y: :math:`(B,)` int64, or :math:`(B, 1, H, W)` float32 with ``targets="masks"``
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        augment: nn.Module | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        targets: str = "labels",
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if (mean is None) != (std is None):
            raise ConfigError("pass both mean and std for normalisation, or neither")
        if targets not in ("labels", "masks") or (targets == "masks" and dataset.masks is None):
            raise ConfigError(
                f"targets must be 'labels' or 'masks' (for a dataset with masks), got {targets!r} for "
                f"{dataset.name or 'the dataset'}"
            )
        if drop_last and batch_size > len(dataset):
            raise ConfigError(
                f"batch_size={batch_size} exceeds the {len(dataset)} samples of "
                f"{dataset.name or 'the dataset'} "
                "with drop_last=True, so an epoch would have no batch; lower batch_size or set "
                "drop_last=False"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.augment = augment.to(self.device) if augment is not None else None
        self.normalize = Normalize(mean, std).to(self.device) if mean is not None else None
        self._images = dataset.images.to(self.device)  # (N, C, H, W) uint8, moved once
        self._labels = dataset.labels.to(self.device)  # (N,) int64
        self.targets = targets
        self._masks = dataset.masks.to(self.device) if targets == "masks" else None  # (N, 1, H, W) uint8

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch`` (int64 on the CPU)."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=make_generator(self.seed, "order", epoch))

    def _fork_devices(self) -> tuple[list[int], str]:
        if self.device.type == "cpu":
            return [], "cuda"
        index = self.device.index
        if index is None:
            mod = getattr(torch, self.device.type)
            index = mod.current_device() if hasattr(mod, "current_device") else 0
        return [index], self.device.type

    def _seed_draws(self, seed: int, devices: list[int]) -> None:
        """Seed what the augmentation draws from: the CPU generator and this device's.

        The same generator states as ``torch.manual_seed(seed)``, without its cost on the hot path:
        while CUDA is not initialised (every CPU run), ``torch.manual_seed`` queues a lazy seeding
        of CUDA, XPU and MTIA and formats a stack trace for each, every call — about 2 ms per step,
        a sixth of a quickstart training step.
        """
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.default_generators[devices[0]].manual_seed(seed)
        elif self.device.type != "cpu":
            torch.manual_seed(seed)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of ``epoch`` from step ``start_step`` on.

        The batches from ``start_step`` equal those the uninterrupted epoch yields from that step.
        """
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        steps = len(self)
        if not 0 <= start_step <= steps:
            raise ConfigError(
                f"start_step must lie in [0, {steps}] for {steps} batches per epoch, "
                f"got {start_step}"
            )
        return self._batches(epoch, start_step)

    def _batches(self, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch).to(self.device)
        devices, device_type = self._fork_devices()
        B = self.batch_size
        for step in range(start_step, len(self)):
            idx = order[step * B : (step + 1) * B]
            x = self._images[idx].to(torch.float32).div_(255.0)  # (B, C, H, W) in [0, 1]
            y = self._labels[idx] if self._masks is None else (self._masks[idx] != 0).to(torch.float32)  # (B,) / (B, 1, H, W)
            if self.augment is not None:
                with torch.random.fork_rng(devices=devices, device_type=device_type):
                    self._seed_draws(derive_seed(self.seed, "augment", epoch, step), devices)
                    with torch.no_grad():
                        x = self.augment(x)
            if self.normalize is not None:
                x = self.normalize(x)
            yield x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, device={str(self.device)!r}, "
            f"augment={type(self.augment).__name__ if self.augment is not None else None})"
        )
