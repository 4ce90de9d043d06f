"""Batched augmentation presets (kornia) and normalisation.

Every preset is an ``nn.Module`` mapping a float batch in [0, 1] to a float batch in [0, 1] on the
batch's device, drawing per-sample parameters for the whole batch at once (no per-sample Python).
Draws come from torch's global RNG; :class:`archlab.data.DeviceLoader` seeds it per step inside
``torch.random.fork_rng``, so the draws of step ``s`` depend only on ``(seed, epoch, s)``.

Presets (SPEC §3):

- ``none``: no augmentation (``build_augment`` returns None).
- ``cifar`` (seed 002): random translation up to 10% of each side, horizontal flip (p = 0.5).
- ``spinal_mnist`` (SpinalNet MNIST scripts: ``RandomPerspective()`` then ``RandomRotation(10)``):
  perspective distortion 0.5 with p = 0.5, then rotation within ±10°.
- ``medical`` (seed 000): RandomResizedCrop to ``image_size`` with scale 0.8–1.0, horizontal flip,
  rotation within ±15°, Gaussian noise (std 0.05, p = 0.5), Gaussian blur with a kernel of 3, 5 or
  7 (sigma 0.1–2, p = 0.5), brightness 0.2 and contrast 0.2. The seed loads 256x256 images and
  crops 224x224: pass ``image_size=(224, 224)`` and evaluate with :func:`build_eval_transform`.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from kornia.filters import gaussian_blur2d
from torch import nn

from archlab.data._dataset import ImageDataset
from archlab.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "PRESETS",
    "build_augment",
    "build_eval_transform",
    "Normalize",
    "dataset_stats",
    "RandomGaussianBlurSizes",
]

PRESETS = ("none", "cifar", "spinal_mnist", "medical")


class _Clamp01(nn.Module):
    """Keeps augmented pixels in [0, 1] (noise and colour jitter can leave it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


class RandomGaussianBlurSizes(nn.Module):
    """Gaussian blur with a kernel size drawn per sample from ``kernel_sizes``.

    kornia's ``RandomGaussianBlur`` fixes the kernel size; seed 000 draws it from 3–7. Samples are
    grouped by kernel size, so the cost is one batched blur per size.

    Args:
        kernel_sizes: odd kernel sizes to draw from.
        sigma: range of the blur's standard deviation, in pixels.
        p: probability of blurring a sample.

    Shape:
        - input: :math:`(B, C, H, W)` float
        - output: :math:`(B, C, H, W)` float
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
    ):
        super().__init__()
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ConfigError(f"kernel sizes must be odd positive ints, got {list(kernel_sizes)}")
        self.kernel_sizes, self.sigma, self.p = tuple(kernel_sizes), sigma, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        # draws on the CPU, so a batch gets the same parameters on every device
        apply = torch.rand(B) < self.p
        which = torch.randint(len(self.kernel_sizes), (B,))
        sig = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * torch.rand(B)
        out = x.clone()
        for i, k in enumerate(self.kernel_sizes):
            sel = (apply & (which == i)).nonzero().flatten()
            if len(sel):
                s = sig[sel].to(x.device, x.dtype)[:, None].expand(-1, 2)  # (b, 2)
                sel = sel.to(x.device)
                out[sel] = gaussian_blur2d(x[sel], (k, k), s)
        return out


def _check_size(image_size: tuple[int, int] | int) -> tuple[int, int]:
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or any(not isinstance(v, int) or v < 1 for v in hw):
        raise ConfigError(f"image_size must be (h, w) of positive ints, got {image_size!r}")
    return hw  # type: ignore[return-value]


def build_augment(preset: str, *, image_size: tuple[int, int], in_chans: int) -> nn.Module | None:
    """The training augmentation of ``preset``, or None for ``"none"``.

    Args:
        preset: one of :data:`PRESETS`.
        image_size: ``(H, W)`` of the output batch (``medical`` crops to it; the others keep the
            input size, which must equal it).
        in_chans: channels of the batches (1 or 3).

    Shape:
        - input: :math:`(B, C, H_{in}, W_{in})` float in [0, 1]
        - output: :math:`(B, C, H, W)` float in [0, 1]

    Raises:
        UnknownNameError: unknown preset.
    """
    if preset not in PRESETS:
        raise UnknownNameError("augmentation preset", preset, PRESETS)
    hw = _check_size(image_size)
    if in_chans not in (1, 3):
        raise ConfigError(f"augmentation presets support 1 or 3 channels, got in_chans={in_chans}")
    if preset == "none":
        return None
    if preset == "cifar":
        ops: list[nn.Module] = [
            K.RandomAffine(degrees=0.0, translate=(0.1, 0.1), p=1.0),
            K.RandomHorizontalFlip(p=0.5),
        ]
    elif preset == "spinal_mnist":
        ops = [
            K.RandomPerspective(distortion_scale=0.5, p=0.5),
            K.RandomRotation(degrees=10.0, p=1.0),
        ]
    else:  # medical
        ops = [
            K.RandomResizedCrop(hw, scale=(0.8, 1.0)),
            K.RandomHorizontalFlip(p=0.5),
            K.RandomRotation(degrees=15.0, p=1.0),
            K.RandomGaussianNoise(mean=0.0, std=0.05, p=0.5),
            RandomGaussianBlurSizes((3, 5, 7), sigma=(0.1, 2.0), p=0.5),
            K.ColorJitter(brightness=0.2, contrast=0.2, p=1.0),
        ]
    return nn.Sequential(*ops, _Clamp01())


def build_eval_transform(
    preset: str, *, image_size: tuple[int, int], in_chans: int
) -> nn.Module | None:
    """The deterministic evaluation transform matching ``preset`` (None when none is needed).

    Only ``medical`` changes the image size in training; evaluation then centre-crops to
    ``image_size`` (256 -> 224 in seed 000).
    """
    if preset not in PRESETS:
        raise UnknownNameError("augmentation preset", preset, PRESETS)
    hw = _check_size(image_size)
    return K.CenterCrop(hw) if preset == "medical" else None


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel.

    Args:
        mean: per-channel means (or one value for all channels).
        std: per-channel standard deviations, all > 0.

    Shape:
        - input: :math:`(B, C, H, W)` float
        - output: :math:`(B, C, H, W)` float
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float):
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if len(m) != len(s) and 1 not in (len(m), len(s)):
            raise ConfigError(f"Normalize: mean has {len(m)} values but std has {len(s)}")
        if not bool(torch.isfinite(m).all() & torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ConfigError(
                f"Normalize: mean and std must be finite and std > 0, got mean={m.tolist()}, "
                f"std={s.tolist()}"
            )
        self.register_buffer("mean", m[None, :, None, None], persistent=False)  # (1, C, 1, 1)
        self.register_buffer("std", s[None, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[1]
        if self.mean.shape[1] not in (1, C) or self.std.shape[1] not in (1, C):
            raise DataError(
                f"Normalize has {max(self.mean.shape[1], self.std.shape[1])} channels, "
                f"batch has {C}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


@torch.no_grad()
def dataset_stats(
    ds: ImageDataset, *, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``ds`` on the [0, 1] scale.

    Computed in float64 over chunks, so large datasets need no large temporary.

    Returns:
        ``(mean, std)``, each a tuple with one value per channel.
    """
    C = ds.in_chans
    total = torch.zeros(C, dtype=torch.float64)
    total_sq = torch.zeros(C, dtype=torch.float64)
    count = 0
    for start in range(0, len(ds), chunk):
        x = ds.images[start : start + chunk].to(torch.float64).div_(255.0)  # (b, C, H, W)
        total += x.sum(dim=(0, 2, 3)).cpu()
        total_sq += x.square().sum(dim=(0, 2, 3)).cpu()
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())
