"""Quick, Draw! .npy loader: categories in label order, per-class cap, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from archlab.data import load_dataset
from archlab.errors import ConfigError, DataError


def _write(tmp_path, counts):
    folder = tmp_path / "quickdraw"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {}
    for name, n in counts.items():
        data[name] = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        np.save(folder / f"{name}.npy", data[name])
    return data


def test_categories_order_and_cap(tmp_path):
    data = _write(tmp_path, {"cat": 5, "dog": 3, "The Mona Lisa": 4})
    ds = load_dataset("quickdraw", root=tmp_path, categories="dog, The Mona Lisa", per_class=4)[
        "train"
    ]
    assert ds.classes == ("dog", "The Mona Lisa") and ds.images.shape == (7, 1, 28, 28)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(ds.images[3, 0].numpy(), data["The Mona Lisa"][0].reshape(28, 28))
    every = load_dataset("quickdraw", root=tmp_path)["train"]  # all files, sorted names
    assert every.classes == ("The Mona Lisa", "cat", "dog") and len(every) == 12
    capped = load_dataset("quickdraw", root=tmp_path, per_class=2)["train"]
    assert capped.class_counts().tolist() == [2, 2, 2]


def test_errors(tmp_path):
    with pytest.raises(
        DataError, match=r"no <category>.npy files .*archlab data download quickdraw"
    ):
        load_dataset("quickdraw", root=tmp_path)
    _write(tmp_path, {"cat": 2, "dog": 2})
    with pytest.raises(DataError, match=r"only one category \('cat'\)"):
        load_dataset("quickdraw", root=tmp_path, categories=["cat"])
    with pytest.raises(
        DataError, match=r"file not found: .*bee.npy; get it with .*--categories 'bee'"
    ):
        load_dataset("quickdraw", root=tmp_path, categories=["cat", "bee"])
    with pytest.raises(ConfigError, match=r"'cat' is listed twice"):
        load_dataset("quickdraw", root=tmp_path, categories="cat,cat")
    with pytest.raises(ConfigError, match="per_class must be a positive int"):
        load_dataset("quickdraw", root=tmp_path, per_class=0)
    np.save(tmp_path / "quickdraw" / "dog.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 bitmaps of shape \(N, 784\)"):
        load_dataset("quickdraw", root=tmp_path)
    (tmp_path / "quickdraw" / "dog.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npy file"):
        load_dataset("quickdraw", root=tmp_path)
