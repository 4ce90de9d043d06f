"""Options every in-memory dataset takes: ``image_size``, ``channels``, ``per_class``, ``subset``.

:func:`archlab.data.load_dataset` applies them once, right after the loader decoded the files, to
the uint8 tensors that are then held in memory (and cached per process by the study executor,
whose key is the whole data config: a resized request never reuses an unresized tensor). A loader
that has an option of the same name itself (``digits``' and ``image_folder``'s ``image_size``,
``quickdraw``'s ``per_class``, ``synthetic``'s ``channels``) keeps its own meaning, so existing
results do not change.

* ``image_size``: an int or ``[height, width]``; images are resized with bilinear interpolation
  (antialiased when shrinking), rounded back to uint8; segmentation masks with nearest neighbour.
  Labels are untouched.
* ``channels``: 1 or 3. Grey -> RGB repeats the channel; RGB -> grey is the ITU-R BT.601 luma
  ``0.299 R + 0.587 G + 0.114 B``, rounded.
* ``per_class``: at most N images of every class (an int for every part, or ``{train: N, test: M}``).
* ``subset``: N images in all, stratified: every class keeps its share of the part (largest
  remainders), e.g. ``{train: 10000, test: 1000}`` for seed 003's MNIST.
* ``subset_seed``: the seed of which images ``per_class``/``subset`` keep (default 0). The choice
  depends on it and on the files only, so every variant and seed of a study trains on the same
  images; the kept indices are in ascending order (the files' order).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from archlab.data._dataset import ImageDataset
from archlab.data._memory import check_fits, human_bytes
from archlab.errors import ConfigError

__all__ = [
    "LOAD_OPTIONS",
    "apply_load_options",
    "resize_images",
    "convert_channels",
    "stratified_indices",
]

#: the shared options and their defaults (None = not applied).
LOAD_OPTIONS: dict[str, Any] = {"image_size": None, "channels": None, "per_class": None, "subset": None, "subset_seed": 0}

_CHUNK = 2048  # images converted to float at a time while resizing (bounds the float peak)


def _size(value: Any, dataset: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{dataset}: image_size={value!r} must be a positive int or [height, width]")


def _per_part(value: Any, option: str, dataset: str, parts: list[str]) -> dict[str, int | None]:
    """``N`` -> every part N; ``{train: N}`` -> that part only (the others whole)."""
    if value is None:
        return {p: None for p in parts}
    if isinstance(value, dict):
        unknown = [k for k in value if k not in parts]
        if unknown:
            raise ConfigError(f"{dataset}: {option} names part {unknown[0]!r}; the parts are {', '.join(parts)}")
        out = {p: value.get(p) for p in parts}
    else:
        out = {p: value for p in parts}
    for p, n in out.items():
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(
                f"{dataset}: {option}={value!r} must be a positive int or a mapping part -> positive int "
                f"(e.g. {{train: 1000, test: 100}})"
            )
    return out


def stratified_indices(
    labels: torch.Tensor, num_classes: int, *, per_class: int | None = None, total: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Seeded, stratified choice of samples: ``per_class`` of every class, or ``total`` in class shares.

    Args:
        labels: ``(N,)`` int64 labels.
        num_classes: number of classes.
        per_class: keep at most this many of every class.
        total: keep this many in all; class ``k`` gets ``floor(total * n_k / N)`` plus one for the
            largest remainders (ties to the lower class), at most ``n_k``.
        seed: the choice's seed.

    Returns:
        ``(M,)`` int64 indices in ascending order.
    """
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=num_classes)
    n = int(counts.sum())
    if total is not None and total < n:
        exact = [int(c) * total / n for c in counts]
        take = [int(e) for e in exact]
        order = sorted(range(num_classes), key=lambda k: (-(exact[k] - take[k]), k))
        for k in order[: total - sum(take)]:
            take[k] += 1
    else:
        take = [int(c) for c in counts]
    if per_class is not None:
        take = [min(t, per_class) for t in take]
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)  # one shuffle; each class keeps its first `take` in it
    shuffled = labels[perm]
    keep = []
    for k in range(num_classes):
        if take[k]:
            keep.append(perm[shuffled == k][: take[k]])
    return torch.cat(keep).sort().values if keep else torch.zeros(0, dtype=torch.long)


def resize_images(images: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear") -> torch.Tensor:
    """uint8 images resized to ``size`` (bilinear, antialiased when shrinking; or ``nearest``).

    Shape:
        - images: ``(N, C, H, W)`` uint8
        - output: ``(N, C, size[0], size[1])`` uint8
    """
    N, C, H, W = images.shape
    if (H, W) == tuple(size):
        return images
    out = torch.empty(N, C, *size, dtype=torch.uint8)
    for i in range(0, N, _CHUNK):
        x = images[i : i + _CHUNK].float()  # (b, C, H, W)
        if mode == "nearest":
            y = F.interpolate(x, size=size, mode="nearest")
        else:
            y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[i : i + _CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8)  # (b, C, h, w)
    return out


def convert_channels(images: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    """uint8 images with ``channels`` channels: grey -> RGB repeats, RGB -> grey is BT.601 luma.

    Shape:
        - images: ``(N, C, H, W)`` uint8 with C in {1, 3}
        - output: ``(N, channels, H, W)`` uint8
    """
    C = images.shape[1]
    if C == channels:
        return images
    if C == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if C == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        out = torch.empty(images.shape[0], 1, *images.shape[2:], dtype=torch.uint8)
        for i in range(0, images.shape[0], _CHUNK):
            y = (images[i : i + _CHUNK].float() * w).sum(1, keepdim=True)  # (b, 1, H, W)
            out[i : i + _CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8)
        return out
    raise ConfigError(f"{where}: cannot convert {C}-channel images to channels={channels}; allowed: 1 <-> 3")


def apply_load_options(parts: dict[str, ImageDataset], dataset: str, options: dict[str, Any]) -> dict[str, ImageDataset]:
    """Apply the shared options (those in :data:`LOAD_OPTIONS`) to every part, in the order
    selection (``per_class``, ``subset``) -> ``image_size`` -> ``channels``.

    Raises:
        ConfigError: an ill-typed option value.
        DataError: the resized images would not fit in memory.
    """
    names = list(parts)
    size = _size(options.get("image_size"), dataset)
    channels = options.get("channels")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(f"{dataset}: channels={channels!r} is not supported; allowed: 1 (grey), 3 (RGB)")
    seed = options.get("subset_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{dataset}: subset_seed={seed!r} must be an int")
    per_class = _per_part(options.get("per_class"), "per_class", dataset, names)
    subset = _per_part(options.get("subset"), "subset", dataset, names)
    out = {}
    for part, ds in parts.items():
        if per_class[part] is not None or subset[part] is not None:
            idx = stratified_indices(ds.labels, ds.num_classes, per_class=per_class[part], total=subset[part], seed=seed)
            ds = ds.subset(idx)
        images, masks = ds.images, ds.masks
        if size is not None:
            n, c = images.shape[:2]
            check_fits(
                n * c * size[0] * size[1] * (2 if masks is not None else 1),
                f"{ds.name}: {n:,} images resized to {c}x{size[0]}x{size[1]} "
                f"({human_bytes(n * c * size[0] * size[1])})",
                "Use a smaller image_size, or per_class/subset to load fewer images.",
            )
            images = resize_images(images.cpu(), size)
            masks = resize_images(masks.cpu(), size, mode="nearest") if masks is not None else None
        if channels is not None:
            images = convert_channels(images, channels, ds.name or dataset)
        if images is not ds.images or masks is not ds.masks:
            ds = ImageDataset(images, ds.labels, ds.classes, ds.name, masks)
        out[part] = ds
    return out
