"""QMNIST loader: extended label tables, test subsets."""

from __future__ import annotations

import numpy as np
import pytest

from archlab.data import load_dataset, write_idx
from archlab.errors import ConfigError, DataError


def _write(tmp_path, n_test=12):
    folder = tmp_path / "qmnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("test", n_test)):
        write_idx(
            folder / f"qmnist-{part}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        table = rng.integers(0, 70000, (n, 8)).astype(np.int32)
        table[:, 0] = (np.arange(n) * 3) % 10
        write_idx(folder / f"qmnist-{part}-labels-idx2-int.gz", table)
    return folder


def test_labels_are_column_zero_and_subsets(tmp_path, monkeypatch):
    from archlab.data.datasets import idx

    _write(tmp_path)
    parts = load_dataset("qmnist", root=tmp_path)
    assert parts["train"].labels.tolist() == [0, 3, 6, 9, 2, 5]
    assert parts["test"].images.shape == (12, 1, 28, 28)
    monkeypatch.setitem(idx._QMNIST_TEST, "test10k", slice(0, 4))  # 10000 -> 4 for a tiny file
    monkeypatch.setitem(idx._QMNIST_TEST, "test50k", slice(4, None))
    assert load_dataset("qmnist", root=tmp_path, test_subset="test10k")["test"].labels.tolist() == [
        0,
        3,
        6,
        9,
    ]
    assert len(load_dataset("qmnist", root=tmp_path, test_subset="test50k")["test"]) == 8
    with pytest.raises(ConfigError, match="unknown test_subset 'test5k'"):
        load_dataset("qmnist", root=tmp_path, test_subset="test5k")


def test_malformed_label_table(tmp_path):
    folder = _write(tmp_path)
    write_idx(folder / "qmnist-train-labels-idx2-int.gz", np.zeros(6, np.int32))
    with pytest.raises(DataError, match=r"label table of shape \(N, 8\)"):
        load_dataset("qmnist", root=tmp_path)
    write_idx(folder / "qmnist-train-labels-idx2-int.gz", np.zeros((5, 8), np.int32))
    with pytest.raises(DataError, match=r"6 images but .* has 5 label rows"):
        load_dataset("qmnist", root=tmp_path)
