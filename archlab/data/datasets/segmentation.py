"""Segmentation data: image + mask files on disk, and generated ultrasound-like masks for tests.

On-disk format (``segmentation``)::

    root/images/<id>.png      the image (any PIL format: png, tif, jpg, ...)
    root/masks/<id>.png       its mask, same size; non-zero pixels are foreground

or ``root/train/{images,masks}`` and ``root/test/{images,masks}`` for an official test part. Images
and masks are matched by file stem (``<id>``); the Kaggle ultrasound-nerve layout
(``<id>.tif`` + ``<id>_mask.tif`` in one folder) is read with ``layout="kaggle_nerve"``.

Every sample gets the image-level label ``1`` ("mask") when its mask has any foreground pixel and
``0`` ("empty") otherwise, so splits are stratified by it (seed 002: ~60 % of the nerve images
have an empty mask) and the audit compares it between near-duplicates.

``synthetic_masks`` generates speckled images where a fraction ``1 - empty_fraction`` holds a
bright elliptical "nerve" (its mask is the ellipse) and the empty images may hold a decoy: a
dark-cored blob of similar size that is *not* to be segmented.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from archlab._seed import make_generator
from archlab.data._dataset import ImageDataset, to_uint8_images
from archlab.data.datasets.registry import register_dataset
from archlab.data.datasets.image_folder import IMAGE_EXTENSIONS
from archlab.errors import ConfigError, DataError

__all__ = ["load_segmentation", "load_synthetic_masks", "SEGMENTATION_CLASSES"]

#: image-level classes of every segmentation dataset: label = "has a non-empty mask".
SEGMENTATION_CLASSES = ("empty", "mask")


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0:
        return (image_size, image_size)
    if (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        return (int(image_size[0]), int(image_size[1]))
    raise ConfigError(f"segmentation: image_size must be a positive int or (h, w), got {image_size!r}")


def _read(path: Path, mode: str, size: tuple[int, int] | None, resample: Image.Resampling) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), resample)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} could not be read as an image ({type(e).__name__}: {e}); remove or replace it") from e


def _pairs(folder: Path, layout: str, extensions: tuple[str, ...]) -> list[tuple[Path, Path]]:
    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)

    if layout == "kaggle_nerve":  # <id>.tif next to <id>_mask.tif
        files = images_in(folder)
        masks = {p.stem[: -len("_mask")]: p for p in files if p.stem.endswith("_mask")}
        out = []
        for img in (p for p in files if not p.stem.endswith("_mask")):
            if img.stem not in masks:
                raise DataError(f"{img} has no mask: expected {folder / (img.stem + '_mask' + img.suffix)}")
            out.append((img, masks[img.stem]))
        return out
    img_dir, mask_dir = folder / "images", folder / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(
                f"segmentation: {d} is not a folder; expected {folder}/images/<id>.png and {folder}/masks/<id>.png"
            )
    masks = {}
    for p in images_in(mask_dir):
        if p.stem in masks:
            raise DataError(f"two masks for image id {p.stem!r}: {masks[p.stem]} and {p}; keep one")
        masks[p.stem] = p
    out = []
    for img in images_in(img_dir):
        if img.stem not in masks:
            raise DataError(f"{img} has no mask: expected {mask_dir / img.stem}.<ext> (same file stem)")
        out.append((img, masks.pop(img.stem)))
    if masks:
        extra = min(masks.values())
        raise DataError(f"{extra} has no image: expected {img_dir / extra.stem}.<ext>; remove the mask or add the image")
    return out


def _read_part(folder: Path, *, layout: str, size, mode: str, extensions, name: str) -> ImageDataset:
    pairs = _pairs(folder, layout, extensions)
    if not pairs:
        raise DataError(f"{name}: no images found in {folder}")
    images, masks = [], []
    for img_path, mask_path in pairs:
        img = _read(img_path, mode, size, Image.Resampling.BILINEAR)
        mask = _read(mask_path, "L", size, Image.Resampling.NEAREST)  # nearest keeps masks binary
        if img.shape[:2] != mask.shape[:2]:
            raise DataError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (w x h) but its image {img_path} is "
                f"{img.shape[1]}x{img.shape[0]}; masks must have their image's size"
            )
        if images and img.shape != images[0].shape:
            raise DataError(
                f"{img_path} has size {img.shape[1]}x{img.shape[0]} but {pairs[0][0]} has "
                f"{images[0].shape[1]}x{images[0].shape[0]}; pass image_size=... to resize all images"
            )
        images.append(img)
        masks.append(mask)
    x = torch.from_numpy(np.stack(images))  # (N, H, W) or (N, H, W, C)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    m = (torch.from_numpy(np.stack(masks)) > 0).to(torch.uint8)[:, None]  # (N, 1, H, W) in {0, 1}
    labels = m.flatten(1).any(dim=1).to(torch.int64)
    return ImageDataset(x.contiguous(), labels, SEGMENTATION_CLASSES, name, m.contiguous())


@register_dataset("segmentation")
def load_segmentation(
    *,
    root: Path,
    image_size: int | tuple[int, int] | None = None,
    mode: str = "L",
    layout: str = "folders",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> dict[str, ImageDataset]:
    """Load images and their masks.

    Args:
        root: the folder holding ``images/`` and ``masks/`` (or ``train/`` and ``test/`` with both).
        image_size: output ``(h, w)`` (an int means square): images bilinear, masks nearest.
        mode: ``"L"`` (grey) or ``"RGB"``.
        layout: ``"folders"`` (``images/<id>`` + ``masks/<id>``) or ``"kaggle_nerve"``
            (``<id>.tif`` + ``<id>_mask.tif`` in one folder).
        extensions: file extensions read (others are ignored).

    Shape:
        - images: :math:`(N, C, h, w)` uint8; masks: :math:`(N, 1, h, w)` uint8 in {0, 1}

    Raises:
        DataError: a missing folder, an image without mask (or the reverse), a mask whose size
            differs from its image's (naming both files), images of different sizes.
    """
    if mode not in ("L", "RGB"):
        raise ConfigError(f"segmentation: mode must be 'L' or 'RGB', got {mode!r}")
    if layout not in ("folders", "kaggle_nerve"):
        raise ConfigError(f"segmentation: layout must be 'folders' or 'kaggle_nerve', got {layout!r}")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in ([extensions] if isinstance(extensions, str) else extensions))
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"segmentation: {root} is not a folder; pass root=<folder with images/ and masks/>")
    opts = dict(layout=layout, size=_size(image_size), mode=mode, extensions=exts)
    if (root / "train").is_dir() and (root / "test").is_dir():
        return {
            "train": _read_part(root / "train", name=f"{root.name}/train", **opts),
            "test": _read_part(root / "test", name=f"{root.name}/test", **opts),
        }
    return {"train": _read_part(root, name=f"{root.name}/train", **opts)}


@register_dataset("synthetic_masks")
def load_synthetic_masks(
    *,
    root: Path | None = None,
    num_samples: int = 256,
    image_size: int = 32,
    empty_fraction: float = 0.6,
    decoy_fraction: float = 0.5,
    noise: float = 0.15,
    seed: int = 0,
    copies: int = 0,
) -> dict[str, ImageDataset]:
    """Generate ultrasound-like images with nerve masks, ~``empty_fraction`` of them empty.

    A "nerve" is a bright ellipse with a ring-shaped rim (random centre, radii 12-22 % of the side,
    orientation); its mask is the ellipse. A fraction ``decoy_fraction`` of the empty images
    holds a decoy: an ellipse of similar size and brightness but with a dark core, so a per-pixel
    model is tempted to paint it while an image-level ``has_mask`` decision can reject it. All
    images get multiplicative speckle and additive Gaussian noise.

    Args:
        root: unused.
        num_samples: number of images.
        image_size: side of the square images (>= 16).
        empty_fraction: fraction of images with an empty mask (seed 002: ~0.6).
        decoy_fraction: fraction of the empty images that hold a decoy.
        noise: std of the additive noise on [0, 1] intensities.
        seed: generator seed; same options, same tensors.
        copies: append exact copies of this many images that hold a nerve, with an empty mask:
            the contradicting near-duplicates seed 002 found in the real data, so a smoke run's
            cleaning (``data.clean``) has something to remove (``num_samples + copies`` images).

    Shape:
        - images: :math:`(N, 1, S, S)` uint8; masks: :math:`(N, 1, S, S)` uint8 in {0, 1}
    """
    for key, val, lo in (("num_samples", num_samples, 2), ("image_size", image_size, 16)):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ConfigError(f"synthetic_masks: {key} must be an int >= {lo}, got {val!r}")
    for key, val in (("empty_fraction", empty_fraction), ("decoy_fraction", decoy_fraction)):
        if not isinstance(val, (int, float)) or not 0.0 <= val <= 1.0:
            raise ConfigError(f"synthetic_masks: {key} must lie in [0, 1], got {val!r}")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ConfigError(f"synthetic_masks: noise must be a finite float >= 0, got {noise!r}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ConfigError(f"synthetic_masks: copies must be an int >= 0, got {copies!r}")
    gen = make_generator(seed, "synthetic_masks")
    n, s = num_samples, image_size
    n_empty = round(n * empty_fraction)
    has = torch.ones(n, dtype=torch.bool)
    has[torch.randperm(n, generator=gen)[:n_empty]] = False
    decoy = ~has & (torch.rand(n, generator=gen) < decoy_fraction)
    ry = (0.12 + 0.1 * torch.rand(n, generator=gen)) * s  # (N,) radii in pixels
    rx = (0.12 + 0.1 * torch.rand(n, generator=gen)) * s
    cy = ry + 1 + (s - 2 - 2 * ry) * torch.rand(n, generator=gen)  # the ellipse stays inside
    cx = rx + 1 + (s - 2 - 2 * rx) * torch.rand(n, generator=gen)
    angle = torch.rand(n, generator=gen) * math.pi
    bright = 0.55 + 0.25 * torch.rand(n, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]  # (N, S, S)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / rx[:, None, None]
    v = (-sin * dx + cos * dy) / ry[:, None, None]
    r2 = u * u + v * v  # (N, S, S) ellipse radius squared
    inside = r2 <= 1.0
    rim = inside & (r2 >= 0.5)
    nerve = (inside.float() * 0.6 + rim.float() * 0.4) * bright[:, None, None]  # bright core, brighter rim
    fake = (rim.float() * 1.0 + (inside & ~rim).float() * 0.1) * bright[:, None, None]  # bright rim, dark core
    x = 0.15 + torch.where(has[:, None, None], nerve, torch.where(decoy[:, None, None], fake, torch.zeros_like(nerve)))
    speckle = 1.0 + 0.25 * torch.randn(n, s, s, generator=gen)
    x = x * speckle + noise * torch.randn(n, s, s, generator=gen)
    images = to_uint8_images(x.clamp_(0.0, 1.0)[:, None], "synthetic_masks images", scale=255.0)
    masks = (inside & has[:, None, None]).to(torch.uint8)[:, None]  # (N, 1, S, S)
    if copies:
        src = torch.nonzero(has)[:, 0][:copies]  # (k,) images with a nerve
        if len(src) < copies:
            raise ConfigError(f"synthetic_masks: copies={copies} but only {len(src)} images hold a nerve")
        images = torch.cat([images, images[src]])
        masks = torch.cat([masks, torch.zeros_like(masks[src])])  # the same image, "no nerve"
        has = torch.cat([has, torch.zeros(copies, dtype=torch.bool)])
    return {
        "train": ImageDataset(
            images.contiguous(), has.to(torch.int64), SEGMENTATION_CLASSES, "synthetic_masks/train", masks.contiguous()
        )
    }
