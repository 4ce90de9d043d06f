"""The in-memory image dataset every loader returns.

A dataset is a pair of tensors, uint8 images and int64 labels, plus the class names. It is small
enough to live on the device as a whole (SPEC §1.3): batches are drawn by indexing, never by
per-sample Python. The checks in :meth:`ImageDataset.__post_init__` are the single place where a
malformed array is refused, so every loader gets the same clear errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from archlab.errors import DataError

__all__ = ["ImageDataset", "check_finite", "to_uint8_images"]


def _label(name: str) -> str:
    return f"dataset {name!r}" if name else "dataset"


def check_finite(x: torch.Tensor | np.ndarray, where: str) -> None:
    """Refuse an array holding NaN or Inf.

    Args:
        x: a tensor or numpy array (any dtype; integer arrays always pass).
        where: what the array is, for the message (a file name, ``"images of dataset 'x'"``).

    Raises:
        DataError: with the number of NaN/Inf values and the index of the first one.
    """
    t = torch.as_tensor(x)
    if not (t.is_floating_point() or t.is_complex()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise DataError(
            f"{where} contains non-finite values ({n_nan} NaN, {n_inf} Inf; first at index "
            f"{first}); clean or impute the data before loading it"
        )


def to_uint8_images(
    x: torch.Tensor | np.ndarray, where: str, *, scale: float | None = None
) -> torch.Tensor:
    """Convert an image array to uint8, refusing NaN/Inf and out-of-range values.

    Integer arrays must already lie in 0..255. Float arrays are multiplied by ``scale``; when
    ``scale`` is None it is inferred: 255 if every value lies in [0, 1], else 1 (values already
    in 0..255). Values are rounded to the nearest integer.

    Args:
        x: the images, any shape.
        where: what the array is, for error messages.
        scale: factor applied to float inputs before rounding.

    Returns:
        A uint8 tensor with the shape of ``x``.

    Raises:
        DataError: NaN/Inf, or values outside 0..255 after scaling.
    """
    t = torch.as_tensor(x)
    if t.dtype == torch.uint8:
        return t
    if t.dtype == torch.bool:
        return t.to(torch.uint8) * 255
    if t.is_floating_point():
        check_finite(t, where)
        t = t.double()
        if scale is None:
            scale = 255.0 if t.numel() == 0 or (t.min() >= 0 and t.max() <= 1) else 1.0
        t = torch.round(t * scale)
    if t.numel() and (t.min() < 0 or t.max() > 255):
        raise DataError(
            f"{where} has values in [{t.min().item()}, {t.max().item()}], expected 0..255 "
            "(or floats in [0, 1])"
        )
    return t.to(torch.uint8)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images, labels and class names of one dataset part, held in memory as tensors.

    Args:
        images: uint8 images.
        labels: int64 class indices in ``[0, len(classes))``.
        classes: class names; ``classes[k]`` names label ``k``.
        name: dataset name used in error messages and provenance (``"mnist/train"``).
        masks: optional uint8 segmentation masks, one per image.

    Shape:
        - images: :math:`(N, C, H, W)`, uint8
        - labels: :math:`(N,)`, int64
        - masks: :math:`(N, 1, H, W)`, uint8

    Raises:
        DataError: wrong dtype or ndim, no samples, mismatched lengths, a label out of range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        what = _label(self.name)
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise DataError(
                f"{what}: images and labels must be torch tensors, got "
                f"{type(self.images).__name__} and {type(self.labels).__name__}"
            )
        if self.images.dtype != torch.uint8:
            raise DataError(
                f"{what}: images must be uint8, got {self.images.dtype}; convert floats with "
                "archlab.data.to_uint8_images"
            )
        if self.images.ndim != 4:
            raise DataError(
                f"{what}: images must have shape (N, C, H, W), got {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64:
            raise DataError(f"{what}: labels must be int64, got {self.labels.dtype}")
        if self.labels.ndim != 1:
            raise DataError(f"{what}: labels must have shape (N,), got {tuple(self.labels.shape)}")
        classes = tuple(self.classes)
        if not classes or not all(isinstance(c, str) for c in classes):
            raise DataError(
                f"{what}: classes must be a non-empty sequence of str, got {self.classes!r}"
            )
        object.__setattr__(self, "classes", classes)
        n = self.images.shape[0]
        if n == 0:
            raise DataError(f"{what}: empty dataset (0 images)")
        if self.labels.shape[0] != n:
            raise DataError(f"{what}: {n} images but {self.labels.shape[0]} labels")
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= len(classes):
            bad = lo if lo < 0 else hi
            count = int(((self.labels < 0) | (self.labels >= len(classes))).sum())
            raise DataError(
                f"{what}: label {bad} out of range for {len(classes)} classes (valid labels "
                f"0..{len(classes) - 1}; {count} labels out of range)"
            )
        if self.masks is not None:
            m = self.masks
            if not isinstance(m, torch.Tensor) or m.dtype != torch.uint8:
                raise DataError(
                    f"{what}: masks must be a uint8 tensor, got {getattr(m, 'dtype', type(m))}"
                )
            _, _, h, w = self.images.shape
            if tuple(m.shape) != (n, 1, h, w):
                raise DataError(
                    f"{what}: masks must have shape {(n, 1, h, w)}, got {tuple(m.shape)}"
                )

    @classmethod
    def from_arrays(
        cls,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        classes: tuple[str, ...] | list[str] | int,
        *,
        name: str = "",
        channels_last: bool = False,
    ) -> ImageDataset:
        """Build a dataset from arrays of any numeric type (floats are checked and scaled).

        Args:
            images: images as :math:`(N, H, W)`, :math:`(N, C, H, W)` or, with
                ``channels_last``, :math:`(N, H, W, C)`; uint8, or floats in [0, 1] or [0, 255].
            labels: integer labels.
            classes: class names, or a number of classes (named ``"0"``, ``"1"``, ...).
            name: dataset name for messages.
            channels_last: whether 4-d images are stored :math:`(N, H, W, C)`.

        Raises:
            DataError: NaN/Inf, out-of-range values, non-integer labels, bad shapes.
        """
        where = f"images of {_label(name)}"
        x = to_uint8_images(images, where)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim == 4 and channels_last:
            x = x.permute(0, 3, 1, 2)
        y = torch.as_tensor(labels)
        if y.is_floating_point():
            check_finite(y, f"labels of {_label(name)}")
            if not bool((y == y.round()).all()):
                raise DataError(f"labels of {_label(name)} are not whole numbers")
        if isinstance(classes, int):
            classes = tuple(str(i) for i in range(classes))
        return cls(x.contiguous(), y.to(torch.int64).reshape(-1), tuple(classes), name)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``, also counting classes with no sample here)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """Channels per image."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (
            f"ImageDataset(name={self.name!r}, n={n}, shape=({c}, {h}, {w}), "
            f"num_classes={self.num_classes})"
        )

    def subset(self, index: torch.Tensor, *, name: str | None = None) -> ImageDataset:
        """A new dataset holding the samples at ``index`` (int64 indices or a bool mask).

        Shape:
            - index: :math:`(M,)` int64, or :math:`(N,)` bool
        """
        index = torch.as_tensor(index)
        if index.dtype != torch.bool:
            index = index.to(torch.int64)
        index = index.to(self.images.device)
        masks = self.masks[index] if self.masks is not None else None
        return ImageDataset(
            self.images[index],
            self.labels[index.to(self.labels.device)],
            self.classes,
            self.name if name is None else name,
            masks,
        )

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class.

        Shape:
            - output: :math:`(num\\_classes,)` int64
        """
        return torch.bincount(self.labels.cpu(), minlength=self.num_classes)
