"""Generated shapes: a dataset of any size and class count, for tests and smoke runs.

Class ``k`` draws shape ``SHAPES[k % 10]`` with fill ``FILLS[(k // 10) % 5]`` in size band
``k // 50``, so up to 100 visually distinct classes exist. Each sample gets a random position,
size, small rotation and brightness (colour, for 3 channels) from a generator seeded by
``make_generator(seed, "synthetic")``; the same options always give the same tensors.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from archlab._seed import make_generator
from archlab.data._dataset import ImageDataset, to_uint8_images
from archlab.data.datasets.registry import register_dataset
from archlab.errors import ConfigError

__all__ = ["load_synthetic", "SHAPES", "FILLS", "MAX_CLASSES"]

SHAPES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "bar-h",
    "bar-v",
    "diamond",
    "x",
    "half-disc",
)
FILLS = ("solid", "stripes-h", "stripes-v", "checker", "outline")
#: two size bands (small, large), as fractions of the image side: radius range.
_BANDS = ((0.22, 0.34), (0.12, 0.2))
MAX_CLASSES = len(SHAPES) * len(FILLS) * len(_BANDS)


def _shape_mask(kind: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-mask of ``kind`` in normalised coordinates (unit radius, y pointing down)."""
    au, av = u.abs(), v.abs()
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return torch.maximum(au, av) <= 0.8
    if kind == "triangle":  # apex up, base down
        return (v <= 0.8) & (au <= 0.5 * (v + 0.8))
    if kind == "cross":
        return ((au <= 0.28) & (av <= 0.95)) | ((av <= 0.28) & (au <= 0.95))
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if kind == "bar-h":
        return (av <= 0.3) & (au <= 0.95)
    if kind == "bar-v":
        return (au <= 0.3) & (av <= 0.95)
    if kind == "diamond":
        return au + av <= 1.0
    if kind == "x":
        a, b = (u - v).abs() / math.sqrt(2), (u + v).abs() / math.sqrt(2)
        return ((a <= 0.22) & (b <= 0.95)) | ((b <= 0.22) & (a <= 0.95))
    if kind == "half-disc":
        return (u * u + v * v <= 1.0) & (v >= -0.1)
    raise ValueError(kind)  # unreachable: kinds come from SHAPES


def _fill_mask(fill: str, kind: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    inside = _shape_mask(kind, u, v)
    if fill == "solid":
        return inside
    if fill == "stripes-h":
        return inside & (torch.floor((v + 1.0) * 3.0).remainder(2) == 0)
    if fill == "stripes-v":
        return inside & (torch.floor((u + 1.0) * 3.0).remainder(2) == 0)
    if fill == "checker":
        return inside & (
            (torch.floor((u + 1.0) * 3.0) + torch.floor((v + 1.0) * 3.0)).remainder(2) == 0
        )
    if fill == "outline":  # the shape minus the shape grown by 1/0.6: a thick contour
        return (
            inside & ~_shape_mask(kind, u / 0.6, v / 0.6)
            if kind != "ring"
            else inside & (u * u + v * v >= 0.7)
        )
    raise ValueError(fill)


@register_dataset("synthetic")
def load_synthetic(
    *,
    root: Path | None = None,
    num_classes: int = 4,
    num_samples: int = 512,
    image_size: int = 32,
    channels: int = 1,
    seed: int = 0,
    noise: float = 0.05,
    object_masks: bool = False,
) -> dict[str, ImageDataset]:
    """Generate a shapes dataset (one ``"train"`` part).

    Args:
        root: unused.
        num_classes: number of classes, 1..100 (balanced: class of sample i is i mod classes,
            then shuffled).
        num_samples: number of images.
        image_size: side of the square images (>= 8).
        channels: 1 (grey) or 3 (random colour per sample).
        seed: generator seed; same options, same tensors.
        noise: std of Gaussian pixel noise on [0, 1] intensities (0 for clean images).
        object_masks: attach each shape's pixel mask (``masks``, 1 = shape) to a classification
            dataset, for analyses that score where a model looks (``cam``); training ignores it.

    Shape:
        - images: :math:`(num\\_samples, channels, image\\_size, image\\_size)` uint8
    """
    for key, val, lo in (
        ("num_classes", num_classes, 1),
        ("num_samples", num_samples, 1),
        ("image_size", image_size, 8),
    ):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ConfigError(f"synthetic: {key} must be an int >= {lo}, got {val!r}")
    if num_classes > MAX_CLASSES:
        raise ConfigError(
            f"synthetic: num_classes={num_classes} exceeds the {MAX_CLASSES} distinct shapes "
            "available"
        )
    if channels not in (1, 3):
        raise ConfigError(f"synthetic: channels must be 1 or 3, got {channels!r}")
    if not isinstance(object_masks, bool):
        raise ConfigError(f"synthetic: object_masks must be true or false, got {object_masks!r}")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ConfigError(f"synthetic: noise must be a finite float >= 0, got {noise!r}")

    gen = make_generator(seed, "synthetic")
    n, s = num_samples, image_size
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    band = labels // (len(SHAPES) * len(FILLS))
    lo = torch.tensor([b[0] for b in _BANDS])[band]
    hi = torch.tensor([b[1] for b in _BANDS])[band]
    radius = (lo + (hi - lo) * torch.rand(n, generator=gen)) * s  # (N,) pixels
    cx = radius + (s - 1 - 2 * radius) * torch.rand(n, generator=gen)  # keeps the shape inside
    cy = radius + (s - 1 - 2 * radius) * torch.rand(n, generator=gen)
    angle = (torch.rand(n, generator=gen) - 0.5) * (math.pi / 6)  # +-15 degrees
    bright = 0.6 + 0.4 * torch.rand(n, generator=gen)
    if channels == 3:
        colour = torch.rand(n, 3, generator=gen)
        colour = (
            colour / colour.amax(dim=1, keepdim=True).clamp_min(1e-6) * bright[:, None]
        )  # (N, 3)
    else:
        colour = bright[:, None]  # (N, 1)
    pixel_noise = torch.randn(n, channels, s, s, generator=gen) * noise

    yy, xx = torch.meshgrid(
        torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij"
    )
    dx = xx[None] - cx[:, None, None]  # (N, S, S)
    dy = yy[None] - cy[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / radius[:, None, None]
    v = (-sin * dx + cos * dy) / radius[:, None, None]

    mask = torch.zeros(n, s, s, dtype=torch.bool)
    for k in range(num_classes):  # loop over classes, vectorised over samples and pixels
        sel = labels == k
        if bool(sel.any()):
            kind = SHAPES[k % len(SHAPES)]
            fill = FILLS[(k // len(SHAPES)) % len(FILLS)]
            mask[sel] = _fill_mask(fill, kind, u[sel], v[sel])
    x = mask[:, None].float() * colour[:, :, None, None] + pixel_noise  # (N, C, S, S)
    images = to_uint8_images(x.clamp_(0.0, 1.0), "synthetic images", scale=255.0)
    classes = tuple(
        SHAPES[k % len(SHAPES)]
        + ("" if k < len(SHAPES) else "/" + FILLS[(k // len(SHAPES)) % len(FILLS)])
        + ("" if k < len(SHAPES) * len(FILLS) else "/small")
        for k in range(num_classes)
    )
    return {
        "train": ImageDataset(
            images.contiguous(), labels.to(torch.int64), classes, "synthetic/train",
            mask[:, None].to(torch.uint8) if object_masks else None,  # (N, 1, S, S)
        )
    }
