"""Per-variant input resolution: the same split, resized (EfficientNet's compound scaling, seed 004).

A study that declares ``vary: [resolution]`` may give a variant ``data: {image_size: N}``; the run's
config then carries ``data.resize: N`` and :func:`resize_splits` resizes the three splits *after*
the dataset was loaded and split. So every variant trains on the same images in the same split,
and — the training loader's order depending on the run seed and the number of images only — in
the same batch order; only the pixels per image differ. (A resize before the split, through the
loader's ``options.image_size``, would reload the files, and for some loaders change what is
loaded; it stays a study-wide choice.)
"""

from __future__ import annotations

from archlab.data.load_options import resize_images
from archlab.data.splits import Splits
from archlab.data._dataset import ImageDataset

__all__ = ["resize_splits", "as_size"]


def as_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``N`` -> ``(N, N)``; ``[h, w]`` -> ``(h, w)``."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_splits(splits: Splits, size: int | tuple[int, int] | list[int]) -> Splits:
    """The splits with every image resized to ``size`` (bilinear, antialiased when shrinking).

    Labels, class names and the order of the images are untouched; segmentation masks are resized
    with nearest neighbour.

    Shape:
        - every split's images: ``(N, C, H, W)`` uint8 -> ``(N, C, h, w)`` uint8
    """
    hw = as_size(size)

    def one(ds: ImageDataset) -> ImageDataset:
        if tuple(ds.image_size) == hw:
            return ds
        masks = resize_images(ds.masks.cpu(), hw, mode="nearest") if ds.masks is not None else None
        return ImageDataset(resize_images(ds.images.cpu(), hw), ds.labels, ds.classes, ds.name, masks)

    return Splits(train=one(splits.train), val=one(splits.val), test=one(splits.test))
