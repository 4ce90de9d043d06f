"""IDX reading/writing and the MNIST-family loaders."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.data import load_dataset, read_idx, write_idx
from archlab.data.datasets.idx import EMNIST_SPLITS, RESOURCES
from archlab.errors import ConfigError, DataError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    arr = (
        (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
        if np.dtype(dtype).kind != "u"
        else np.arange(30, dtype=dtype).reshape(2, 3, 5)
    )
    path = write_idx(tmp_path / f"a.idx{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    assert np.array_equal(back, arr)


def test_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.array([1, 258], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2])


def test_gzip_detected_by_content(tmp_path):
    plain = write_idx(tmp_path / "x.idx", np.arange(6, dtype=np.uint8).reshape(2, 3))
    odd = tmp_path / "x-no-suffix"
    odd.write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(read_idx(odd), read_idx(plain))


def test_wrong_magic(tmp_path):
    path = tmp_path / "fake.gz"
    path.write_bytes(gzip.compress(b"PK\x03\x04 this is a zip, not idx"))
    with pytest.raises(
        DataError,
        match=r"fake.gz is not an IDX file: magic bytes 50 4b 03 04, expected 00 00 08..0E xx",
    ):
        read_idx(path)
    bad_code = tmp_path / "code"
    bad_code.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match="magic bytes 00 00 0a 01"):
        read_idx(bad_code)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        read_idx(empty)


def test_truncated_data_names_file_and_sizes(tmp_path):
    full = write_idx(tmp_path / "full.idx", np.zeros((10, 4, 4), np.uint8)).read_bytes()
    cut = tmp_path / "cut-images.gz"
    cut.write_bytes(gzip.compress(full[:-20]))
    with pytest.raises(
        DataError,
        match=r"cut-images.gz is truncated: shape \(10, 4, 4\) of uint8 needs 160 bytes of data, "
        r"found 140",
    ):
        read_idx(cut)


def test_truncated_header(tmp_path):
    path = tmp_path / "hdr"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 10]))
    with pytest.raises(
        DataError, match="truncated: header of 3 dimensions needs 16 bytes, found 8"
    ):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(
        write_idx(tmp_path / "a.idx", np.arange(1000, dtype=np.int32)).read_bytes()
    )
    path = tmp_path / "broken.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="broken.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_trailing_garbage(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(write_idx(tmp_path / "ok.idx", np.zeros(4, np.uint8)).read_bytes() + b"xyz")
    with pytest.raises(DataError, match="3 trailing bytes"):
        read_idx(path)


def test_unsupported_dtype_on_write(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "a.idx", np.zeros(3, np.int64))


def _write_mnist(
    folder: Path,
    n_train: int = 12,
    n_test: int = 5,
    size: int = 28,
    prefix: str = "",
    labels_offset: int = 0,
    n_cls: int = 10,
):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        y = (np.arange(n) % n_cls + labels_offset).astype(np.uint8)
        stem = f"{prefix}{part}" if prefix else ("train" if part == "train" else "t10k")
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", y)
        data[part] = (x, y)
    return data


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_mnist_family_loads_train_and_test(tmp_path, name):
    data = _write_mnist(tmp_path / name)
    parts = load_dataset(name, root=tmp_path)
    assert set(parts) == {"train", "test"}
    for part, (x, y) in data.items():
        ds = parts[part]
        assert ds.images.shape == (len(x), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images[:, 0].numpy(), x) and np.array_equal(ds.labels.numpy(), y)
        assert ds.num_classes == 10 and ds.name == f"{name}/{part}"
    assert set(RESOURCES[name]["md5"]) == set(RESOURCES[name]["urls"])


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(
        DataError,
        match=r"file not found: .*mnist/train-images-idx3-ubyte.gz; "
        r"get it with `archlab data download mnist --data-root .*`",
    ):
        load_dataset("mnist", root=tmp_path)


def test_label_count_mismatch(tmp_path):
    _write_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="5 images but t10k-labels-idx1-ubyte.gz has 4 labels"):
        load_dataset("mnist", root=tmp_path)


def test_label_out_of_range_in_file(tmp_path):
    _write_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 out of range for 10 classes"):
        load_dataset("mnist", root=tmp_path)


def test_emnist_fixes_orientation(tmp_path):
    data = _write_mnist(tmp_path / "emnist", prefix="emnist-balanced-", n_cls=47)
    parts = load_dataset("emnist", root=tmp_path)  # default split "balanced"
    x, _ = data["train"]
    assert np.array_equal(parts["train"].images[:, 0].numpy(), x.transpose(0, 2, 1))
    assert parts["train"].classes == EMNIST_SPLITS["balanced"] and parts["train"].num_classes == 47


def test_emnist_letters_shifted_to_zero(tmp_path):
    data = _write_mnist(
        tmp_path / "emnist", prefix="emnist-letters-", labels_offset=1, n_cls=26, n_train=30
    )
    ds = load_dataset("emnist", root=tmp_path, split="letters")["train"]
    assert ds.num_classes == 26 and ds.classes[0] == "a"
    assert np.array_equal(ds.labels.numpy(), data["train"][1].astype(np.int64) - 1)
    assert int(ds.labels.min()) == 0 and int(ds.labels.max()) == 25


def test_emnist_split_sizes_and_bad_split(tmp_path):
    assert {k: len(v) for k, v in EMNIST_SPLITS.items()} == {
        "byclass": 62,
        "bymerge": 47,
        "balanced": 47,
        "letters": 26,
        "digits": 10,
        "mnist": 10,
    }
    with pytest.raises(ConfigError, match="unknown split 'letter'"):
        load_dataset("emnist", root=tmp_path, split="letter")


def test_declared_size_is_checked_before_allocating(tmp_path, monkeypatch):
    """Dimensions whose product overflows int64 (65536^4 = 2^64) are not read as 0 elements, and a
    gzip stream is only decompressed when the declared size fits in memory (checked first)."""
    import struct

    import archlab.data._memory as memory

    header = b"\x00\x00\x08\x04" + struct.pack(">4I", 65536, 65536, 65536, 65536)
    (tmp_path / "plain").write_bytes(header)  # no data at all: np.prod(int64) would be 0 and "fit"
    with pytest.raises(DataError, match="needs 18446744073709551616 bytes of data, found 0"):
        read_idx(tmp_path / "plain")
    (tmp_path / "z.gz").write_bytes(gzip.compress(header))
    with pytest.raises(DataError, match=r"its header declares shape \(65536, 65536, 65536, 65536\) of uint8"):
        read_idx(tmp_path / "z.gz")
    write_idx(tmp_path / "ok.gz", np.zeros((10, 28, 28), np.uint8))  # 7,840 bytes: fits unless capped
    assert read_idx(tmp_path / "ok.gz").shape == (10, 28, 28)
    monkeypatch.setenv(memory.MAX_LOAD_ENV, "10000")
    with pytest.raises(DataError, match="loading needs about 15.3 KiB of memory but only 9.8 KiB is available"):
        read_idx(tmp_path / "ok.gz")


def test_available_memory_and_its_cap(monkeypatch):
    import archlab.data._memory as memory

    monkeypatch.delenv(memory.MAX_LOAD_ENV, raising=False)
    free = memory.available_memory()
    assert free is None or free > 0
    monkeypatch.setenv(memory.MAX_LOAD_ENV, "2e3")
    assert memory.available_memory() == 2000
    monkeypatch.setenv(memory.MAX_LOAD_ENV, "lots")
    with pytest.raises(DataError, match=r"\$ARCHLAB_MAX_LOAD_BYTES must be a number of bytes, got 'lots'"):
        memory.available_memory()
    assert [memory.human_bytes(n) for n in (0, 1023, 1536, 5 * 2**30)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
