"""STL-10 binary loader: column-major images, labels 1..10, folds."""

from __future__ import annotations

import numpy as np
import pytest

from archlab.data import load_dataset
from archlab.data.datasets.stl10 import STL10_CLASSES, write_stl10_images
from archlab.errors import ConfigError, DataError


def _write(tmp_path, n_train=6, n_test=3, seed=0):
    folder = tmp_path / "stl10" / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        write_stl10_images(folder / f"{part}_X.bin", x)
        (folder / f"{part}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())
        data[part] = x
    return folder, data


def test_column_major_images_are_transposed(tmp_path):
    folder, _ = _write(tmp_path)
    # an independent writer: MATLAB order = per channel, column by column
    img = np.zeros((3, 96, 96), np.uint8)
    img[0, 2, 50] = 200  # red, row 2, column 50
    img[2, 90, 1] = 7
    raw = b"".join(img[c].ravel(order="F").tobytes() for c in range(3))
    (folder / "test_X.bin").write_bytes(raw)
    (folder / "test_y.bin").write_bytes(bytes([10]))
    ds = load_dataset("stl10", root=tmp_path)["test"]
    assert ds.images.shape == (1, 3, 96, 96)
    assert int(ds.images[0, 0, 2, 50]) == 200 and int(ds.images[0, 2, 90, 1]) == 7
    assert int(ds.images.sum()) == 207
    assert ds.labels.tolist() == [9] and ds.classes == STL10_CLASSES


def test_round_trip_and_folds(tmp_path):
    folder, data = _write(tmp_path, n_train=8)
    parts = load_dataset("stl10", root=tmp_path)
    assert np.array_equal(parts["train"].images.numpy(), data["train"])
    assert parts["train"].labels.tolist() == list(range(8))
    lines = [" ".join(str(i) for i in (k % 8, (k + 3) % 8)) for k in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(lines) + "\n")
    fold = load_dataset("stl10", root=tmp_path, fold=4)["train"]
    assert (
        fold.labels.tolist() == [4, 7]
        and len(load_dataset("stl10", root=tmp_path, fold=0)["test"]) == 3
    )
    with pytest.raises(ConfigError, match=r"fold must be None or 0..9"):
        load_dataset("stl10", root=tmp_path, fold=10)


def test_class_names_file_is_used(tmp_path):
    folder, _ = _write(tmp_path)
    names = [f"k{i}" for i in range(10)]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    assert load_dataset("stl10", root=tmp_path)["train"].classes == tuple(names)


def test_truncated_and_bad_labels(tmp_path):
    folder, _ = _write(tmp_path)
    raw = (folder / "train_X.bin").read_bytes()
    (folder / "train_X.bin").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"not a whole number of 3x96x96 images"):
        load_dataset("stl10", root=tmp_path)
    _write(tmp_path)
    (folder / "train_y.bin").write_bytes(bytes([0, 1, 2, 3, 4, 5]))
    with pytest.raises(DataError, match=r"labels must be 1..10"):
        load_dataset("stl10", root=tmp_path)
    (folder / "train_y.bin").unlink()
    with pytest.raises(DataError, match=r"get it with `archlab data download stl10 --data-root "):
        load_dataset("stl10", root=tmp_path)
