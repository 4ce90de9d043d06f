"""Class-per-folder images (the torchvision ``ImageFolder`` layout), e.g. the seed-000 X-ray set.

``root/<class>/<image>``; class names are the sorted sub-folder names. When ``root`` holds
``train/`` and ``test/`` folders that each contain class folders, both parts are returned with the
class list of ``train/``. Images are decoded with PIL once at load time, converted to ``mode`` and
resized (bilinear) to ``image_size``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from archlab.data._dataset import ImageDataset
from archlab.data.datasets import register_dataset
from archlab.errors import ConfigError, DataError

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)
_JUNK = {"thumbs.db", "desktop.ini"}  # system files silently ignored, like dot-files


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        hw = (image_size, image_size)
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(v, int) for v in image_size)
    ):
        hw = (int(image_size[0]), int(image_size[1]))
    else:
        hw = (0, 0)
    if min(hw) < 1:
        raise ConfigError(
            "image_folder: image_size must be an int or (h, w) of positive ints, "
            f"got {image_size!r}"
        )
    return hw


def _read_part(
    folder: Path,
    classes: tuple[str, ...],
    *,
    size: tuple[int, int] | None,
    mode: str,
    extensions: tuple[str, ...],
    on_error: str,
    name: str,
) -> ImageDataset:
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    index = {c: i for i, c in enumerate(classes)}
    for cdir in _class_dirs(folder):
        if cdir.name not in index:
            raise DataError(
                f"{name}: class folder {cdir} is not among the training classes {list(classes)}"
            )
        n_before = len(arrays)
        for f in sorted(cdir.iterdir()):
            if f.name.startswith(".") or f.name.lower() in _JUNK or f.is_dir():
                continue
            try:
                if f.suffix.lower() not in extensions:
                    raise DataError(
                        f"{f} is not an image file (extension {f.suffix or '(none)'!r} not in "
                        f"{', '.join(extensions)}); remove it, pass extensions=..., "
                        "or on_error='skip'"
                    )
                try:
                    with Image.open(f) as im:
                        im = im.convert(mode)
                        if size is not None and im.size != (size[1], size[0]):
                            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                        arr = np.asarray(im, dtype=np.uint8)
                except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                    raise DataError(
                        f"{f} could not be read as an image ({type(e).__name__}: {e}); remove or "
                        "replace it, or pass on_error='skip'"
                    ) from e
                if arrays and arr.shape != arrays[0].shape:
                    raise DataError(
                        f"{f} has size {arr.shape[1]}x{arr.shape[0]} (w x h) but earlier images "
                        f"have {arrays[0].shape[1]}x{arrays[0].shape[0]}; "
                        "pass image_size=... to resize all images"
                    )
            except DataError as e:
                if on_error == "raise":
                    raise
                log.warning("skipping %s", e)
                continue
            arrays.append(arr)
            labels.append(index[cdir.name])
        if len(arrays) == n_before:
            raise DataError(f"{name}: class folder {cdir} holds no readable images")
    if not arrays:
        raise DataError(f"{name}: no images found in {folder}")
    x = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, C)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return ImageDataset(x.contiguous(), torch.tensor(labels, dtype=torch.int64), classes, name)


@register_dataset("image_folder")
def load_image_folder(
    *,
    root: Path,
    image_size: int | tuple[int, int] | None = None,
    mode: str = "RGB",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    on_error: str = "raise",
) -> dict[str, ImageDataset]:
    """Load a folder of class sub-folders of images.

    Args:
        root: the folder holding the class folders (or ``train/`` and ``test/``).
        image_size: output ``(h, w)`` (an int means square); None requires equal-sized images.
        mode: ``"L"`` (grey, 1 channel) or ``"RGB"`` (3 channels).
        extensions: file extensions read as images (case-insensitive); other files are errors.
        on_error: ``"raise"`` on an unreadable or foreign file, or ``"skip"`` it with a warning.

    Shape:
        - images: :math:`(N, C, h, w)` uint8 with ``C = 1`` for ``"L"``, 3 for ``"RGB"``

    Raises:
        DataError: missing/empty folder, a file that is not an image (under ``on_error="raise"``),
            images of different sizes without ``image_size``.
    """
    if mode not in ("L", "RGB"):
        raise ConfigError(f"image_folder: mode must be 'L' or 'RGB', got {mode!r}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"image_folder: on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    size = _size(image_size)
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"image_folder: {root} is not a folder; pass root=<folder of class folders>"
        )
    opts = dict(size=size, mode=mode, extensions=exts, on_error=on_error)
    train_dir, test_dir = root / "train", root / "test"
    if (
        train_dir.is_dir()
        and test_dir.is_dir()
        and _class_dirs(train_dir)
        and _class_dirs(test_dir)
    ):
        classes = tuple(p.name for p in _class_dirs(train_dir))
        return {
            "train": _read_part(train_dir, classes, name=f"{root.name}/train", **opts),
            "test": _read_part(test_dir, classes, name=f"{root.name}/test", **opts),
        }
    classes = tuple(p.name for p in _class_dirs(root))
    if not classes:
        raise DataError(
            f"image_folder: {root} holds no class folders (expected root/<class>/<image>)"
        )
    return {"train": _read_part(root, classes, name=f"{root.name}/train", **opts)}
