"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set), the default dataset.

1797 grey images of 8x8 pixels with values 0..16, ten classes. Bundled with scikit-learn, so it
needs no download; upsample with ``image_size`` to feed backbones that expect 28x28 or 32x32.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from archlab.data._dataset import ImageDataset, to_uint8_images
from archlab.data.datasets.registry import register_dataset
from archlab.errors import ConfigError

__all__ = ["load_digits"]


@register_dataset("digits")
def load_digits(
    *, root: Path | None = None, image_size: int | None = None
) -> dict[str, ImageDataset]:
    """Load scikit-learn's digits as one ``"train"`` part (there is no official test set).

    Args:
        root: unused (the data ships with scikit-learn).
        image_size: side of the output images; None keeps 8x8. Upsampling is bilinear without
            antialiasing, done once here in float and stored back as uint8.

    Returns:
        ``{"train": ImageDataset}`` with 1797 samples.

    Shape:
        - images: :math:`(1797, 1, S, S)` uint8 with ``S = image_size or 8``
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ConfigError(f"digits: image_size must be a positive int or None, got {image_size!r}")
    bunch = _sk_load_digits()
    x = (
        torch.from_numpy(bunch.images).to(torch.float32).unsqueeze(1) / 16.0
    )  # (N, 1, 8, 8) in [0, 1]
    if image_size is not None and image_size != 8:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False
        )
        x = x.clamp_(0.0, 1.0)
    images = to_uint8_images(x, "digits images", scale=255.0)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    classes = tuple(str(int(c)) for c in bunch.target_names)
    return {"train": ImageDataset(images.contiguous(), labels, classes, "digits/train")}
