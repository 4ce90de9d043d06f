"""Batched augmentation presets (kornia) and normalisation.

Every preset is an ``nn.Module`` mapping a float batch in [0, 1] to a float batch in [0, 1] on the
batch's device, drawing per-sample parameters for the whole batch at once (no per-sample Python).
Draws come from torch's global RNG; :class:`archlab.data.DeviceLoader` seeds it per step inside
``torch.random.fork_rng``, so the draws of step ``s`` depend only on ``(seed, epoch, s)``.

The geometric presets (``cifar``, ``spinal_mnist``) are :class:`RandomWarp`: all of a sample's
transforms composed into one 3x3 matrix and applied with one ``grid_sample`` for the whole batch,
with the parameter distributions of the kornia modules they replace. kornia's augmentation modules
spend several milliseconds of Python per batch — more than a whole training step of the
quickstart's CNN (bench/engine.py) — and resample once per transform; the warp resamples once.
``medical`` (photometric ops, 224 px images, where that overhead is small) stays on kornia.

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

import functools
from collections.abc import Callable, Sequence

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from archlab._registry import register_in
from archlab.data._dataset import ImageDataset
from archlab.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "register_augment",
    "PRESETS",
    "RandomWarp",
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
        return x.clamp_(0.0, 1.0)  # every preset hands it a fresh tensor


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


class RandomWarp(nn.Module):
    """Random geometric augmentation as one projective warp per sample (bilinear, zero padding).

    Per sample, in order (each optional): a perspective distortion whose four corners move inwards
    by up to ``perspective * size / 2`` (kornia ``RandomPerspective``'s "basic" sampling) with
    probability ``perspective_p``; a rotation about the centre by an angle uniform in
    ``[-degrees, degrees]``; a translation uniform in ``[-translate * size, translate * size]``
    pixels per axis; a horizontal flip with probability ``hflip_p``. The composed transform is
    inverted once and sampled once. Parameters are drawn on the CPU from the global RNG, so a batch
    gets the same parameters on every device.

    Args:
        perspective: distortion scale in [0, 1] (0: none).
        perspective_p: probability of the perspective distortion.
        degrees: maximum absolute rotation in degrees (0: none).
        translate: maximum shift as a fraction of the width / height (0: none).
        hflip_p: probability of a horizontal flip.

    Shape:
        - input: :math:`(B, C, H, W)` float
        - output: :math:`(B, C, H, W)` float
    """

    def __init__(
        self,
        *,
        perspective: float = 0.0,
        perspective_p: float = 0.5,
        degrees: float = 0.0,
        translate: float = 0.0,
        hflip_p: float = 0.0,
    ):
        super().__init__()
        for name, v, hi in (("perspective", perspective, 1.0), ("perspective_p", perspective_p, 1.0),
                            ("degrees", degrees, 180.0), ("translate", translate, 1.0), ("hflip_p", hflip_p, 1.0)):
            if not 0.0 <= v <= hi:
                raise ConfigError(f"RandomWarp: {name}={v!r} must lie in [0, {hi}]")
        self.perspective, self.perspective_p = perspective, perspective_p
        self.degrees, self.translate, self.hflip_p = degrees, translate, hflip_p

    def matrices(self, B: int, H: int, W: int) -> torch.Tensor:
        """Draw the forward transforms of ``B`` samples: ``(B, 3, 3)`` float64 in pixel coordinates.

        All draws are one ``torch.rand(B, 13)`` from the global RNG (columns: perspective yes/no,
        8 corner offsets, angle, 2 shifts, flip yes/no); the 3x3 algebra runs in NumPy, where a
        batch of small matrices costs microseconds instead of one torch dispatch per operation.
        """
        u = torch.rand(B, 13, dtype=torch.float64).numpy()
        M = np.broadcast_to(np.eye(3), (B, 3, 3)).copy()
        if self.perspective > 0:
            corners = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], dtype=np.float64)
            inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
            factor = np.array([self.perspective * W / 2, self.perspective * H / 2])
            end = corners + factor * u[:, 1:9].reshape(B, 4, 2) * inward  # (B, 4, 2)
            apply = u[:, 0] < self.perspective_p
            M[apply] = _homographies(corners, end[apply])
        if self.degrees > 0:
            a = np.deg2rad((u[:, 9] * 2 - 1) * self.degrees)
            cx, cy = (W - 1) / 2, (H - 1) / 2
            c, s = np.cos(a), np.sin(a)
            R = np.zeros((B, 3, 3))
            R[:, 0, 0], R[:, 0, 1], R[:, 0, 2] = c, -s, cx - c * cx + s * cy
            R[:, 1, 0], R[:, 1, 1], R[:, 1, 2] = s, c, cy - s * cx - c * cy
            R[:, 2, 2] = 1
            M = R @ M
        if self.translate > 0:
            M[:, 0] += ((u[:, 10] * 2 - 1) * self.translate * W)[:, None] * M[:, 2]  # x += tx (row op)
            M[:, 1] += ((u[:, 11] * 2 - 1) * self.translate * H)[:, None] * M[:, 2]
        if self.hflip_p > 0:
            flip = u[:, 12] < self.hflip_p
            M[flip, 0] = (W - 1) * M[flip, 2] - M[flip, 0]  # x -> W - 1 - x
        return torch.from_numpy(M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        inv = np.linalg.inv(self.matrices(B, H, W).numpy())  # (B, 3, 3) output pixel -> source pixel
        # fold the pixel -> [-1, 1] normalisation (align_corners=True) into the matrix: the grid is
        # then one batched matmul and one division (the small 3x3 work stays on the CPU)
        sx, sy = 2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)
        N = np.stack((sx * inv[:, 0] - inv[:, 2], sy * inv[:, 1] - inv[:, 2], inv[:, 2]), 1)  # (B, 3, 3)
        N = torch.from_numpy(N.transpose(0, 2, 1).astype(np.float32)).to(x.device)
        src = _pixel_grid(H, W, x.device) @ N  # (B, H*W, 3)
        grid = (src[..., :2] / src[..., 2:]).view(B, H, W, 2)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)

    def extra_repr(self) -> str:
        return (f"perspective={self.perspective}, perspective_p={self.perspective_p}, degrees={self.degrees}, "
                f"translate={self.translate}, hflip_p={self.hflip_p}")


@functools.lru_cache(maxsize=8)
def _pixel_grid(H: int, W: int, device: torch.device) -> torch.Tensor:
    """``(1, H*W, 3)`` homogeneous pixel coordinates ``(u, v, 1)`` in row-major order (cached)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    return torch.stack((u, v, torch.ones_like(u)), -1).view(1, H * W, 3).to(device)


def _homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``(B, 3, 3)`` matrices mapping the 4 points ``src`` (4, 2) onto each ``dst`` (B, 4, 2)."""
    B = dst.shape[0]
    A = np.zeros((B, 8, 8))
    x, y = src[:, 0], src[:, 1]  # (4,)
    u, v = dst[..., 0], dst[..., 1]  # (B, 4)
    A[:, 0::2, 0], A[:, 0::2, 1], A[:, 0::2, 2] = x, y, 1.0
    A[:, 1::2, 3], A[:, 1::2, 4], A[:, 1::2, 5] = x, y, 1.0
    A[:, 0::2, 6], A[:, 0::2, 7] = -u * x, -u * y
    A[:, 1::2, 6], A[:, 1::2, 7] = -v * x, -v * y
    b = np.stack((u, v), -1).reshape(B, 8, 1)  # (B, 8, 1): u0, v0, u1, v1, ...
    h = np.linalg.solve(A, b)[..., 0]  # (B, 8)
    return np.concatenate((h, np.ones((B, 1))), 1).reshape(B, 3, 3)


def _check_size(image_size: tuple[int, int] | int) -> tuple[int, int]:
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or any(not isinstance(v, int) or v < 1 for v in hw):
        raise ConfigError(f"image_size must be (h, w) of positive ints, got {image_size!r}")
    return hw  # type: ignore[return-value]


#: augmentations registered by plugins: name -> factory(image_size=(H, W), in_chans=C) -> nn.Module
_AUGMENTS: dict[str, Callable[..., nn.Module]] = {}


def register_augment(name: str):
    """Register ``factory(*, image_size, in_chans) -> nn.Module`` as the augmentation ``name`` (a decorator).

    The module is a batched pure function of the training batch, as the presets: input and output
    :math:`(B, C, H, W)` float in [0, 1], drawing randomness from torch's generator (the run seeds
    it). Evaluation uses no transform.

    Raises:
        ConfigError: ``name`` is a preset or registered by another factory.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in PRESETS:
            raise ConfigError(f"augmentation {name!r} is a built-in preset; give yours another name")
        register_in(_AUGMENTS, "augmentation", name, factory)
        return factory

    return deco


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
    if preset in _AUGMENTS:
        return _AUGMENTS[preset](image_size=_check_size(image_size), in_chans=in_chans)
    if preset not in PRESETS:
        raise UnknownNameError("augmentation preset", preset, [*PRESETS, *_AUGMENTS])
    hw = _check_size(image_size)
    if in_chans not in (1, 3):
        raise ConfigError(f"augmentation presets support 1 or 3 channels, got in_chans={in_chans}")
    if preset == "none":
        return None
    if preset == "cifar":  # = K.RandomAffine(degrees=0, translate=(0.1, 0.1)), K.RandomHorizontalFlip()
        ops: list[nn.Module] = [RandomWarp(translate=0.1, hflip_p=0.5)]
    elif preset == "spinal_mnist":  # = K.RandomPerspective(0.5, p=0.5), K.RandomRotation(10.0)
        ops = [RandomWarp(perspective=0.5, perspective_p=0.5, degrees=10.0)]
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
    if preset in _AUGMENTS:
        return None
    if preset not in PRESETS:
        raise UnknownNameError("augmentation preset", preset, [*PRESETS, *_AUGMENTS])
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
