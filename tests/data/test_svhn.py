"""SVHN .mat loader: channel order, label 10 -> 0, malformed files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from archlab.data import load_dataset
from archlab.errors import DataError


def _write(folder, part, x, y):
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{part}_32x32.mat", {"X": x, "y": y})


def _pair(tmp_path, n=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)
    for part in ("train", "test"):
        _write(tmp_path / "svhn", part, x, y)
    return x, y


def test_layout_and_labels(tmp_path):
    x, y = _pair(tmp_path, n=12)
    parts = load_dataset("svhn", root=tmp_path)
    ds = parts["train"]
    assert ds.images.shape == (12, 3, 32, 32) and ds.images.dtype == torch.uint8
    # pixel (row 3, col 7, green) of sample 9 in the file's (H, W, C, N) order
    assert int(ds.images[9, 1, 3, 7]) == int(x[3, 7, 1, 9])
    assert ds.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]  # 10 is the digit 0
    assert ds.classes == tuple("0123456789") and parts["test"].name == "svhn/test"


def test_missing_file_points_at_download(tmp_path):
    with pytest.raises(
        DataError, match=r"train_32x32.mat; get it with `archlab data download svhn --data-root "
    ):
        load_dataset("svhn", root=tmp_path)


@pytest.mark.parametrize(
    "case, match",
    [
        ("no_y", r"missing variable 'y'"),
        ("bad_label", r"labels must be integers 1..10"),
        ("bad_shape", r"'X' must be uint8 of shape \(32, 32, 3, N\)"),
        ("not_mat", r"not a readable MATLAB v5 .mat file"),
    ],
)
def test_malformed_files(tmp_path, case, match):
    _pair(tmp_path)
    x = np.zeros((32, 32, 3, 2), np.uint8)
    y = np.array([[1], [2]], np.uint8)
    if case == "no_y":
        savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": x})
    elif case == "bad_label":
        _write(tmp_path / "svhn", "train", x, np.array([[0], [11]], np.uint8))
    elif case == "bad_shape":
        _write(tmp_path / "svhn", "train", np.zeros((28, 28, 2), np.uint8), y)
    else:
        (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(DataError, match=match):
        load_dataset("svhn", root=tmp_path)
