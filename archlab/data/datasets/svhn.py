"""SVHN (Street View House Numbers), cropped-digits format: MATLAB ``.mat`` files.

Each file holds ``X``, uint8 of shape ``(32, 32, 3, N)`` (height, width, channel, sample), and
``y``, shape ``(N, 1)`` with labels 1..10 where **10 stands for the digit 0**; the loader maps 10 to
0 so label ``k`` is digit ``k``. Files are read from ``root/svhn/{train,test}_32x32.mat`` with
``scipy.io.loadmat``.

Reference: Netzer et al., "Reading Digits in Natural Images with Unsupervised Feature Learning",
NIPS Workshop 2011.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archlab.data._dataset import ImageDataset
from archlab.data.datasets.registry import missing_file_error, register_dataset
from archlab.errors import DataError

__all__ = ["load_svhn", "read_svhn_mat", "RESOURCES", "SVHN_CLASSES"]

_BASE = "http://ufldl.stanford.edu/housenumbers"
#: Official sources and md5 checksums (as published with the dataset and used by torchvision).
RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "svhn": {
        "urls": {
            "train_32x32.mat": f"{_BASE}/train_32x32.mat",
            "test_32x32.mat": f"{_BASE}/test_32x32.mat",
        },
        "md5": {
            "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
            "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
        },
    },
}

SVHN_CLASSES = tuple(str(i) for i in range(10))


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one SVHN ``.mat`` file.

    Args:
        path: ``train_32x32.mat`` or ``test_32x32.mat``.

    Returns:
        ``(images, labels)``: images as uint8 channels-first, labels 0..9 (10 mapped to 0).

    Shape:
        - images: :math:`(N, 3, 32, 32)` uint8
        - labels: :math:`(N,)` int64

    Raises:
        DataError: not a readable MATLAB file, missing ``X``/``y``, wrong shapes, labels not 1..10.
    """
    from scipy.io import loadmat  # scipy is a dependency; imported lazily to keep import fast
    from scipy.io.matlab import MatReadError

    try:
        d = loadmat(path)
    except (MatReadError, ValueError, OSError, TypeError, IndexError, NotImplementedError) as e:
        # scipy raises several types for a file that is not MATLAB (e.g. an HTML error page)
        raise DataError(
            f"{path}: not a readable MATLAB v5 .mat file ({type(e).__name__}: {e}); "
            "download the file again"
        ) from e
    missing = [k for k in ("X", "y") if k not in d]
    if missing:
        raise DataError(
            f"{path}: missing variable {missing[0]!r}; an SVHN file holds 'X' (32, 32, 3, N) "
            f"and 'y' (N, 1); variables present: {sorted(k for k in d if not k.startswith('__'))}"
        )
    x, y = np.asarray(d["X"]), np.asarray(d["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(
            f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), got {x.dtype} {x.shape}"
        )
    n = x.shape[3]
    y = y.reshape(-1)
    if len(y) != n or y.dtype.kind not in "iuf":
        raise DataError(f"{path}: 'y' must hold {n} numeric labels, got {y.dtype} {y.shape}")
    if n and (y.min() < 1 or y.max() > 10 or not np.all(y == np.round(y))):
        raise DataError(
            f"{path}: labels must be integers 1..10 (10 = digit 0), found range "
            f"[{y.min()}, {y.max()}]"
        )
    labels = y.astype(np.int64) % 10  # 10 -> 0: label k is digit k
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return images, labels


@register_dataset("svhn")
def load_svhn(*, root: Path) -> dict[str, ImageDataset]:
    """SVHN from ``root/svhn/`` (73257 train, 26032 test, 3x32x32, labels = digits 0..9)."""
    folder = root / "svhn"
    parts = {}
    for part in ("train", "test"):
        path = folder / f"{part}_32x32.mat"
        if not path.is_file():
            raise missing_file_error(path, "svhn")
        x, y = read_svhn_mat(path)
        parts[part] = ImageDataset(
            torch.from_numpy(x), torch.from_numpy(y), SVHN_CLASSES, f"svhn/{part}"
        )
    return parts
