"""STL-10, binary format: raw uint8 images in column-major order plus one label byte per image.

Layout under ``root``: ``stl10/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin,
class_names.txt, fold_indices.txt}`` (the extracted official archive; ``unlabeled_X.bin`` is not
used). Each image is 3 x 96 x 96 bytes, channel by channel, each channel stored **column-major**
(MATLAB order), so it is read as ``(N, 3, 96, 96)`` and transposed to row-major. Labels are 1..10 in
the file and 0..9 here.

Reference: Coates, Lee & Ng, "An Analysis of Single-Layer Networks in Unsupervised Feature
Learning", AISTATS 2011.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archlab.data._dataset import ImageDataset
from archlab.data.datasets.registry import missing_file_error, register_dataset
from archlab.errors import ConfigError, DataError

__all__ = ["load_stl10", "read_stl10_images", "write_stl10_images", "RESOURCES", "STL10_CLASSES"]

#: Official source and md5 checksum (as published with the dataset and used by torchvision).
RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "stl10": {
        "urls": {
            "stl10_binary.tar.gz": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
        },
        "md5": {"stl10_binary.tar.gz": "91f7769df0f17e558f3565bffb0c7dfb"},
    },
}

#: Files of the archive the loader needs (``unlabeled_X.bin``, 2.7 GB, is skipped).
FILES = (
    "train_X.bin",
    "train_y.bin",
    "test_X.bin",
    "test_y.bin",
    "class_names.txt",
    "fold_indices.txt",
)

STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)
_IMAGE_BYTES = 3 * 96 * 96


def read_stl10_images(path: Path) -> np.ndarray:
    """Read an STL-10 ``*_X.bin`` file.

    Shape:
        - output: :math:`(N, 3, 96, 96)` uint8, row-major images

    Raises:
        DataError: a size that is not a whole number of 3x96x96 images.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _IMAGE_BYTES:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of 3x96x96 images "
            f"({_IMAGE_BYTES} bytes each); the file is truncated or not an STL-10 file"
        )
    x = raw.reshape(-1, 3, 96, 96)  # (N, C, W, H): each channel is stored column-major
    return np.ascontiguousarray(x.transpose(0, 1, 3, 2))  # (N, C, H, W)


def write_stl10_images(path: Path, images: np.ndarray) -> Path:
    """Write row-major ``(N, 3, 96, 96)`` uint8 images in the STL-10 binary layout (for tests).

    Shape:
        - images: :math:`(N, 3, 96, 96)` uint8
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 96, 96):
        raise DataError(f"STL-10 images must be uint8 (N, 3, 96, 96), got {x.dtype} {x.shape}")
    path = Path(path)
    path.write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
    return path


def _labels(path: Path, n: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8)
    if len(y) != n:
        raise DataError(f"{path}: {len(y)} labels for {n} images")
    if y.min() < 1 or y.max() > 10:
        raise DataError(f"{path}: labels must be 1..10, found range [{y.min()}, {y.max()}]")
    return y.astype(np.int64) - 1


def _class_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return STL10_CLASSES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) != 10:
        raise DataError(f"{path}: expected 10 class names, found {len(names)}")
    return names


def _fold(path: Path, fold: int, n: int) -> np.ndarray:
    if not path.is_file():
        raise missing_file_error(path, "stl10")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) != 10:
        raise DataError(f"{path}: expected 10 lines of fold indices, found {len(lines)}")
    idx = np.array(lines[fold].split(), dtype=np.int64)
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= n:
        raise DataError(f"{path}: fold {fold} holds indices outside 0..{n - 1}")
    return idx


@register_dataset("stl10")
def load_stl10(*, root: Path, fold: int | None = None) -> dict[str, ImageDataset]:
    """STL-10 (labelled part) from ``root/stl10/stl10_binary/`` (5000 train, 8000 test, 3x96x96).

    Args:
        root: data root.
        fold: None for the whole training set, or 0..9 for one of the 10 official training folds
            of 1000 images (``fold_indices.txt``), the dataset's evaluation protocol.
    """
    if fold is not None and (isinstance(fold, bool) or fold not in range(10)):
        raise ConfigError(f"stl10: fold must be None or 0..9, got {fold!r}")
    folder = root / "stl10" / "stl10_binary"
    classes = _class_names(folder / "class_names.txt")
    parts = {}
    for part in ("train", "test"):
        xp, yp = folder / f"{part}_X.bin", folder / f"{part}_y.bin"
        for p in (xp, yp):
            if not p.is_file():
                raise missing_file_error(p, "stl10")
        x = read_stl10_images(xp)
        y = _labels(yp, len(x))
        if part == "train" and fold is not None:
            idx = _fold(folder / "fold_indices.txt", fold, len(x))
            x, y = x[idx], y[idx]
        parts[part] = ImageDataset(
            torch.from_numpy(x), torch.from_numpy(y), classes, f"stl10/{part}"
        )
    return parts
