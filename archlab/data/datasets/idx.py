"""IDX files (LeCun's format) and the MNIST family that ships in it.

An IDX file is ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
values in big-endian row-major order; the official files are gzipped. Loaders here read the
standard file names under ``root/<dataset>/``:

- ``mnist``, ``fashion_mnist``, ``kmnist``: ``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
- ``qmnist``: ``qmnist-{train,test}-images-idx3-ubyte.gz`` and the extended label files
  ``qmnist-{train,test}-labels-idx2-int.gz`` (int32, 8 columns; column 0 is the digit).
- ``emnist``: ``emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte.gz`` (from the
  official ``gzip.zip``).

References:
    LeCun et al., "Gradient-based learning applied to document recognition", 1998.
    Xiao et al., "Fashion-MNIST", arXiv:1708.07747. Clanuwat et al., "Deep learning for classical
    Japanese literature" (KMNIST), arXiv:1812.01718. Yadav & Bottou, "Cold Case: The Lost MNIST
    Digits" (QMNIST), arXiv:1905.10498. Cohen et al., "EMNIST", arXiv:1702.05373.
"""

from __future__ import annotations

import gzip
import math
import os
import string
import zlib
from pathlib import Path

import numpy as np
import torch

from archlab.data._dataset import ImageDataset, to_uint8_images
from archlab.data.datasets.registry import missing_file_error, register_dataset
from archlab.errors import ConfigError, DataError

__all__ = ["read_idx", "write_idx", "RESOURCES", "EMNIST_SPLITS"]

# dtype code -> big-endian numpy dtype
_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KINDS = {(d.kind, d.itemsize): code for code, d in _CODES.items()}

_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_QMNIST_BASE = "https://raw.githubusercontent.com/facebookresearch/qmnist/master"
_QMNIST_FILES = (
    "qmnist-train-images-idx3-ubyte.gz",
    "qmnist-train-labels-idx2-int.gz",
    "qmnist-test-images-idx3-ubyte.gz",
    "qmnist-test-labels-idx2-int.gz",
)

#: Official sources: dataset -> {"urls": {file: url}, "md5": {file: md5}} (EMNIST: one zip).
RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "mnist": {
        "urls": {f: f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}" for f in _MNIST_FILES},
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion_mnist": {
        "urls": {
            f: f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}"
            for f in _MNIST_FILES
        },
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
    "kmnist": {
        "urls": {f: f"http://codh.rois.ac.jp/kmnist/dataset/kmnist/{f}" for f in _MNIST_FILES},
        "md5": {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    },
    "qmnist": {
        "urls": {f: f"{_QMNIST_BASE}/{f}" for f in _QMNIST_FILES},
        "md5": {
            "qmnist-train-images-idx3-ubyte.gz": "ed72d4157d28c017586c42bc6afe6370",
            "qmnist-train-labels-idx2-int.gz": "0058f8dd561b90ffdd0f734c6a30e5e4",
            "qmnist-test-images-idx3-ubyte.gz": "1394631089c404de565df7b7aeaf9412",
            "qmnist-test-labels-idx2-int.gz": "5b5b05890a5e13444e108efe57b788aa",
        },
    },
    "emnist": {
        # one archive; its gzip/ folder holds emnist-<split>-*.gz, to be placed in root/emnist/.
        "urls": {"gzip.zip": "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"},
        "md5": {"gzip.zip": "58c8d27c78d21e728a6bc7b3cc06412e"},
    },
}

_CLASSES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

_MERGED = set("cijklmopsuvwxyz")  # lowercase letters merged into their uppercase class
EMNIST_SPLITS: dict[str, tuple[str, ...]] = {
    "byclass": tuple(sorted(string.digits + string.ascii_letters)),
    "bymerge": tuple(sorted(set(string.digits + string.ascii_letters) - _MERGED)),
    "balanced": tuple(sorted(set(string.digits + string.ascii_letters) - _MERGED)),
    "letters": tuple(string.ascii_lowercase),  # file labels are 1..26, shifted to 0..25
    "digits": tuple(string.digits),
    "mnist": tuple(string.digits),
}


def _open_stream(path: Path):
    """A binary reader of the file's IDX bytes: the file itself, or its gzip stream."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic != b"\x1f\x8b":  # plain file (whatever its name)
        return f
    return gzip.GzipFile(fileobj=f, mode="rb")


def _read_exact(stream, n: int, path: Path) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: corrupt or truncated gzip stream ({e}); download the file again"
        ) from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, plain or gzipped (detected from the content, not the name).

    The header is read first and the size it declares is checked before any data is allocated:
    a file whose header promises more bytes than it holds (e.g. dimensions 65536^4), or more than
    the memory available, is refused without reading on; a gzip stream is decompressed only up
    to the declared size (a gzip bomb cannot fill the memory).

    Args:
        path: the file.

    Returns:
        The array in native byte order with the file's shape and dtype (uint8, int8, int16,
        int32, float32 or float64).

    Raises:
        DataError: wrong magic bytes, a truncated file, trailing bytes after the data, or a
            declared size larger than the available memory.
    """
    from archlab.data._memory import check_fits, human_bytes

    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    with _open_stream(path) as stream:
        magic = _read_exact(stream, 4, path)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _CODES or magic[3] == 0:
            got = magic.hex(" ") if magic else "(empty file)"
            raise DataError(
                f"{path} is not an IDX file: magic bytes {got}, expected 00 00 08..0E xx "
                "(two zero bytes, a dtype code 08/09/0B/0C/0D/0E and ndim >= 1)"
            )
        dtype, ndim = _CODES[magic[2]], magic[3]
        header = 4 + 4 * ndim
        dim_bytes = _read_exact(stream, 4 * ndim, path)
        if len(dim_bytes) < 4 * ndim:
            raise DataError(
                f"{path} is truncated: header of {ndim} dimensions needs {header} bytes, "
                f"found {4 + len(dim_bytes)}"
            )
        dims = tuple(int(d) for d in np.frombuffer(dim_bytes, dtype=">u4", count=ndim))
        expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow (65536^4 = 2^64)
        if not isinstance(stream, gzip.GzipFile):
            found = path.stat().st_size - header
            if found < expected:
                raise DataError(
                    f"{path} is truncated: shape {dims} of {dtype.name} needs {expected} bytes "
                    f"of data, found {found}; download the file again"
                )
            if found > expected:
                raise DataError(
                    f"{path} has {found - expected} trailing bytes after the {expected} bytes of "
                    f"data for shape {dims}; the file is corrupt"
                )
        # the data is read once and then converted (a copy): about twice its size at the peak
        check_fits(
            2 * expected,
            f"{path}: its header declares shape {dims} of {dtype.name} ({human_bytes(expected)})",
            "If the header is wrong the file is corrupt: download it again.",
        )
        data = _read_exact(stream, expected + 1, path)  # one byte more reveals trailing data
    found = len(data)
    if found < expected:
        raise DataError(
            f"{path} is truncated: shape {dims} of {dtype.name} needs {expected} bytes of data, "
            f"found {found}; download the file again"
        )
    if found > expected:
        raise DataError(
            f"{path} has trailing bytes after the {expected} bytes of data for shape {dims}; "
            "the file is corrupt"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize)
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    Args:
        path: destination file.
        array: uint8, int8, int16, int32, float32 or float64 values, at least 1-d.

    Returns:
        The path written.
    """
    arr = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    code = _KINDS.get((arr.dtype.kind if arr.dtype.kind != "b" else "u", arr.dtype.itemsize))
    if code is None or arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"cannot write dtype {arr.dtype} with {arr.ndim} dims as IDX")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(arr, dtype=_CODES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _part(
    root: Path, dataset: str, images_file: str, labels_file: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    paths = [root / images_file, root / labels_file]
    for p in paths:
        if not p.is_file():
            raise missing_file_error(p, dataset)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3:
        raise DataError(f"{paths[0]}: expected images of shape (N, H, W), got {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{paths[1]}: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{name}: {paths[0].name} has {len(images)} images but {paths[1].name} has "
            f"{len(labels)} labels"
        )
    return images, labels


def _dataset(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], name: str
) -> ImageDataset:
    x = to_uint8_images(images, f"images of {name}")[:, None]  # (N, 1, H, W)
    return ImageDataset(x.contiguous(), torch.from_numpy(labels.astype(np.int64)), classes, name)


def _load_mnist_like(root: Path, dataset: str) -> dict[str, ImageDataset]:
    folder = root / dataset
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        name = f"{dataset}/{part}"
        x, y = _part(
            folder,
            dataset,
            f"{prefix}-images-idx3-ubyte.gz",
            f"{prefix}-labels-idx1-ubyte.gz",
            name,
        )
        parts[part] = _dataset(x, y, _CLASSES[dataset], name)
    return parts


@register_dataset("mnist")
def load_mnist(*, root: Path) -> dict[str, ImageDataset]:
    """MNIST from ``root/mnist/`` (60000 train, 10000 test, 1x28x28)."""
    return _load_mnist_like(root, "mnist")


@register_dataset("fashion_mnist")
def load_fashion_mnist(*, root: Path) -> dict[str, ImageDataset]:
    """Fashion-MNIST from ``root/fashion_mnist/`` (60000 train, 10000 test, 1x28x28)."""
    return _load_mnist_like(root, "fashion_mnist")


@register_dataset("kmnist")
def load_kmnist(*, root: Path) -> dict[str, ImageDataset]:
    """Kuzushiji-MNIST from ``root/kmnist/`` (60000 train, 10000 test, 1x28x28)."""
    return _load_mnist_like(root, "kmnist")


@register_dataset("emnist")
def load_emnist(*, root: Path, split: str = "balanced") -> dict[str, ImageDataset]:
    """EMNIST from ``root/emnist/emnist-<split>-*.gz``.

    The files store each image transposed (column-major); they are transposed back here so
    letters read upright. The ``letters`` split labels 1..26 are shifted to 0..25.

    Args:
        root: data root.
        split: one of ``byclass``, ``bymerge``, ``balanced``, ``letters``, ``digits``, ``mnist``.
    """
    if split not in EMNIST_SPLITS:
        raise ConfigError(
            f"emnist: unknown split {split!r}; choose one of {', '.join(EMNIST_SPLITS)}"
        )
    folder, classes = root / "emnist", EMNIST_SPLITS[split]
    parts = {}
    for part in ("train", "test"):
        name = f"emnist-{split}/{part}"
        x, y = _part(
            folder,
            "emnist",
            f"emnist-{split}-{part}-images-idx3-ubyte.gz",
            f"emnist-{split}-{part}-labels-idx1-ubyte.gz",
            name,
        )
        x = np.ascontiguousarray(x.transpose(0, 2, 1))  # the files are transposed
        y = y.astype(np.int64)
        if split == "letters":
            if len(y) and y.min() < 1:
                raise DataError(f"{name}: letters labels must be 1..26, found {int(y.min())}")
            y = y - 1
        parts[part] = _dataset(x, y, classes, name)
    return parts


#: QMNIST test subsets: the first 10000 test images are MNIST's test set, the other 50000 the
#: digits the original MNIST never released.
_QMNIST_TEST = {"all": slice(None), "test10k": slice(0, 10000), "test50k": slice(10000, None)}


@register_dataset("qmnist")
def load_qmnist(*, root: Path, test_subset: str = "all") -> dict[str, ImageDataset]:
    """QMNIST from ``root/qmnist/`` (60000 train, 60000 test, 1x28x28).

    The label files are the extended ``idx2-int`` tables (N, 8); column 0 is the digit class, the
    other columns (NIST writer id, series, ...) are not used here.

    Args:
        root: data root.
        test_subset: ``"all"`` (60000), ``"test10k"`` (the MNIST test set) or ``"test50k"``.
    """
    if test_subset not in _QMNIST_TEST:
        raise ConfigError(
            f"qmnist: unknown test_subset {test_subset!r}; choose one of {', '.join(_QMNIST_TEST)}"
        )
    folder = root / "qmnist"
    parts = {}
    for part in ("train", "test"):
        name = f"qmnist/{part}"
        paths = [
            folder / f"qmnist-{part}-images-idx3-ubyte.gz",
            folder / f"qmnist-{part}-labels-idx2-int.gz",
        ]
        for p in paths:
            if not p.is_file():
                raise missing_file_error(p, "qmnist")
        x, table = read_idx(paths[0]), read_idx(paths[1])
        if x.ndim != 3:
            raise DataError(f"{paths[0]}: expected images of shape (N, H, W), got {x.shape}")
        if table.ndim != 2 or table.shape[1] < 1 or table.dtype.kind not in "iu":
            raise DataError(
                f"{paths[1]}: expected an integer label table of shape (N, 8), got "
                f"{table.dtype} {table.shape}"
            )
        if len(x) != len(table):
            raise DataError(
                f"{name}: {paths[0].name} has {len(x)} images but {paths[1].name} has "
                f"{len(table)} label rows"
            )
        y = table[:, 0]
        if part == "test":
            x, y = x[_QMNIST_TEST[test_subset]], y[_QMNIST_TEST[test_subset]]
        parts[part] = _dataset(x, y, _CLASSES["mnist"], name)
    return parts
