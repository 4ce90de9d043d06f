"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

The batches are pickles, and unpickling an untrusted file runs arbitrary code. They are therefore
read with :func:`safe_unpickle`, whose unpickler resolves only the globals numpy needs to rebuild
a plain array; any other global (``os.system``, ``builtins.open``, ...) is refused before it runs.

Layout under ``root``: ``cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
and ``cifar100/cifar-100-python/{train,test,meta}`` (the extracted official archives).

Reference: Krizhevsky, "Learning multiple layers of features from tiny images", 2009.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data._dataset import ImageDataset, to_uint8_images
from archlab.data.datasets.registry import missing_file_error, register_dataset
from archlab.errors import ConfigError, DataError

__all__ = [
    "safe_unpickle",
    "write_cifar_batch",
    "RESOURCES",
    "CIFAR10_CLASSES",
    "CIFAR100_FINE",
    "CIFAR100_COARSE",
]

RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "cifar10": {
        "urls": {
            "cifar-10-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
        },
        "md5": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    },
    "cifar100": {
        "urls": {
            "cifar-100-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
        },
        "md5": {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
    },
}

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Used when the archive's meta file is absent (the order of the official meta files).
CIFAR100_FINE = tuple(
    """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""".split()
)
CIFAR100_COARSE = tuple(
    """
aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
household_furniture insects large_carnivores large_man-made_outdoor_things
large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals
non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2
""".split()
)

# (module, name) pairs the restricted unpickler may resolve: exactly what numpy needs to rebuild
# an ndarray (protocol 2 bytes go through codecs.encode; protocol 5 through _frombuffer).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"{self._path}: refused to unpickle global {module}.{name}; "
                "a CIFAR batch holds only "
                "arrays, lists and dicts, so this file is not a genuine CIFAR batch"
            )
        if module.startswith("numpy.core."):  # numpy >= 2 moved these; avoid the deprecated path
            module = "numpy._core." + module.split(".", 2)[2]
        return super().find_class(module, name)


def safe_unpickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only plain containers and numpy arrays.

    Args:
        path: the pickle file (e.g. a CIFAR batch). Python 2 strings come back as ``bytes``.

    Raises:
        DataError: the file refers to any other global (naming it), or is not a valid pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as e:
        raise DataError(f"{path}: not a valid pickle file ({type(e).__name__}: {e})") from e


def write_cifar_batch(
    path: str | os.PathLike,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | list[int],
    *,
    label_key: str = "labels",
    coarse_labels: np.ndarray | torch.Tensor | list[int] | None = None,
    batch_label: str = "archlab test batch",
    protocol: int = 2,
) -> Path:
    """Write a batch in the CIFAR python format (for tests and small fixtures).

    Args:
        path: destination file.
        images: uint8 images.
        labels: class indices, stored under ``label_key`` (``"labels"`` for CIFAR-10,
            ``"fine_labels"`` for CIFAR-100).
        coarse_labels: CIFAR-100 coarse labels (stored as ``coarse_labels``).
        batch_label: the batch's description string.
        protocol: pickle protocol (the official files are protocol 2).

    Shape:
        - images: :math:`(N, 3, 32, 32)` uint8
    """
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise DataError(f"CIFAR images must be uint8 (N, 3, 32, 32), got {x.dtype} {x.shape}")
    n = len(x)
    d: dict[bytes, Any] = {
        b"batch_label": batch_label.encode(),
        label_key.encode(): [int(v) for v in np.asarray(labels).reshape(-1)],
        b"data": np.ascontiguousarray(x.reshape(n, 3072)),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
    }
    if coarse_labels is not None:
        d[b"coarse_labels"] = [int(v) for v in np.asarray(coarse_labels).reshape(-1)]
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)
    return path


def _read_batch(path: Path, dataset: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise missing_file_error(path, dataset)
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict, got {type(d).__name__}")
    if b"data" not in d or label_key not in d:
        raise DataError(
            f"{path}: missing key {b'data' if b'data' not in d else label_key!r}; "
            f"keys present: {sorted(k for k in d if isinstance(k, bytes))}"
        )
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key])
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: data must have shape (N, 3072), got {data.shape}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: {len(data)} images but labels of shape {labels.shape} ({labels.dtype})"
        )
    return data, labels


def _meta_names(path: Path, key: bytes, default: tuple[str, ...]) -> tuple[str, ...]:
    if not path.is_file():
        return default
    meta = safe_unpickle(path)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(default):
        raise DataError(f"{path}: expected {len(default)} names under {key!r}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _to_dataset(
    batches: list[tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...], name: str
) -> ImageDataset:
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)
    x = to_uint8_images(data, f"images of {name}").reshape(-1, 3, 32, 32)  # (N, 3, 32, 32)
    return ImageDataset(x.contiguous(), torch.from_numpy(labels), classes, name)


@register_dataset("cifar10")
def load_cifar10(*, root: Path) -> dict[str, ImageDataset]:
    """CIFAR-10 from ``root/cifar10/cifar-10-batches-py/`` (50000 train, 10000 test, 3x32x32)."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    classes = _meta_names(folder / "batches.meta", b"label_names", CIFAR10_CLASSES)
    train = [_read_batch(folder / f"data_batch_{i}", "cifar10", b"labels") for i in range(1, 6)]
    test = [_read_batch(folder / "test_batch", "cifar10", b"labels")]
    return {
        "train": _to_dataset(train, classes, "cifar10/train"),
        "test": _to_dataset(test, classes, "cifar10/test"),
    }


@register_dataset("cifar100")
def load_cifar100(*, root: Path, label_mode: str = "fine") -> dict[str, ImageDataset]:
    """CIFAR-100 from ``root/cifar100/cifar-100-python/`` (50000 train, 10000 test, 3x32x32).

    Args:
        root: data root.
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
    """
    if label_mode not in ("fine", "coarse"):
        raise ConfigError(f"cifar100: label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    folder = root / "cifar100" / "cifar-100-python"
    key = b"fine_labels" if label_mode == "fine" else b"coarse_labels"
    default = CIFAR100_FINE if label_mode == "fine" else CIFAR100_COARSE
    classes = _meta_names(
        folder / "meta",
        b"fine_label_names" if label_mode == "fine" else b"coarse_label_names",
        default,
    )
    parts = {}
    for part in ("train", "test"):
        parts[part] = _to_dataset(
            [_read_batch(folder / part, "cifar100", key)], classes, f"cifar100/{part}"
        )
    return parts
