"""CIFAR pickle batches and the restricted unpickler."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from archlab.data import load_dataset, safe_unpickle, write_cifar_batch
from archlab.data.datasets.cifar import CIFAR10_CLASSES, CIFAR100_COARSE, CIFAR100_FINE
from archlab.errors import DataError


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _write_cifar10(root, n=6):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = []
    for i in range(1, 6):
        x, y = _images(n, i), (np.arange(n) + i) % 10
        write_cifar_batch(folder / f"data_batch_{i}", x, y)
        batches.append((x, y))
    xt, yt = _images(4, 99), np.arange(4) % 10
    write_cifar_batch(folder / "test_batch", xt, yt)
    return folder, batches, (xt, yt)


def test_cifar10_round_trip(tmp_path):
    _, batches, (xt, yt) = _write_cifar10(tmp_path)
    parts = load_dataset("cifar10", root=tmp_path)
    assert set(parts) == {"train", "test"}
    train = parts["train"]
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images.numpy(), np.concatenate([b[0] for b in batches]))
    assert np.array_equal(train.labels.numpy(), np.concatenate([b[1] for b in batches]))
    assert np.array_equal(parts["test"].images.numpy(), xt) and train.classes == CIFAR10_CLASSES


def test_cifar10_image_layout_is_channel_major(tmp_path):
    folder, _, _ = _write_cifar10(tmp_path)
    # a raw row of 3072 values: 1024 red, 1024 green, 1024 blue, each row-major
    raw = safe_unpickle(folder / "data_batch_1")[b"data"][0]
    img = load_dataset("cifar10", root=tmp_path)["train"].images[0]
    assert img[1, 0, 5] == raw[1024 + 5] and img[2, 3, 0] == raw[2048 + 3 * 32]


def test_cifar10_meta_names_are_used(tmp_path):
    folder, _, _ = _write_cifar10(tmp_path)
    names = [f"n{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    assert load_dataset("cifar10", root=tmp_path)["train"].classes[3] == "n3"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar100_fine_and_coarse(tmp_path, protocol):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for part, n in (("train", 8), ("test", 3)):
        write_cifar_batch(
            folder / part,
            _images(n, n),
            np.arange(n) * 11 % 100,
            label_key="fine_labels",
            coarse_labels=np.arange(n) % 20,
            protocol=protocol,
        )
    fine = load_dataset("cifar100", root=tmp_path)
    assert fine["train"].num_classes == 100 and fine["train"].labels.tolist() == [
        0,
        11,
        22,
        33,
        44,
        55,
        66,
        77,
    ]
    assert fine["train"].classes == CIFAR100_FINE
    coarse = load_dataset("cifar100", root=tmp_path, label_mode="coarse")
    assert coarse["test"].num_classes == 20 and coarse["test"].labels.tolist() == [0, 1, 2]
    assert coarse["test"].classes == CIFAR100_COARSE


def test_missing_batch(tmp_path):
    with pytest.raises(
        DataError, match=r"data_batch_1; get it with `archlab data download cifar10 --data-root "
    ):
        load_dataset("cifar10", root=tmp_path)


def test_missing_label_key(tmp_path):
    folder, _, _ = _write_cifar10(tmp_path)
    write_cifar_batch(folder / "data_batch_3", _images(2, 0), [0, 1], label_key="fine_labels")
    with pytest.raises(DataError, match=r"data_batch_3: missing key b'labels'"):
        load_dataset("cifar10", root=tmp_path)


class _System:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Open:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


class _Popen:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.target)],))


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize(
    ("payload", "refused"), [(_System, r"\.system"), (_Open, r"\.open"), (_Popen, r"\.Popen")]
)
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload, refused, protocol):
    target = tmp_path / "pwned"
    folder, _, _ = _write_cifar10(tmp_path)
    # a genuine-looking batch whose labels hide the payload, after a real array
    evil = {b"data": _images(2, 0).reshape(2, 3072), b"labels": [0, payload(target)]}
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump(evil, f, protocol=protocol)
    with pytest.raises(DataError, match=rf"data_batch_2: refused to unpickle global .*{refused}"):
        load_dataset("cifar10", root=tmp_path)
    assert not target.exists()


def test_payload_is_live_with_plain_pickle(tmp_path):
    """Guards the test above: the same bytes do create the file when unpickled unsafely."""
    target = tmp_path / "created"
    blob = pickle.dumps({b"labels": [_Open(target)]}, protocol=2)
    f = pickle.loads(blob)[b"labels"][0]  # noqa: S301 - deliberate, to prove the payload works
    f.close()
    assert target.exists()


def test_garbage_is_not_a_pickle(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"\x00\x01not a pickle")
    with pytest.raises(DataError, match="junk: not a valid pickle"):
        safe_unpickle(path)


def test_safe_unpickle_reads_numpy_arrays_of_other_dtypes(tmp_path):
    path = tmp_path / "arr.pkl"
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2], "c": np.int64(5)}
    with open(path, "wb") as f:
        pickle.dump({k: v for k, v in obj.items() if k != "c"}, f, protocol=4)
    back = safe_unpickle(path)
    assert np.array_equal(back["a"], obj["a"]) and back["b"] == [1, 2]
