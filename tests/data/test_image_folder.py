"""Class-per-folder images."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.data import load_dataset
from archlab.errors import ConfigError, DataError


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _folder(root, classes=("covid", "normal"), n=3, size=(10, 12), rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        for i in range(n):
            shape = (*size, 3) if rgb else size
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            _png(root / c / f"img{i}.png", arr)
            written[(c, i)] = arr
    return written


def test_png_round_trip_grey(tmp_path):
    written = _folder(tmp_path / "xray")
    ds = load_dataset("image_folder", root=tmp_path / "xray", mode="L")["train"]
    assert ds.classes == ("covid", "normal") and ds.images.shape == (6, 1, 10, 12)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(ds.images[4, 0].numpy(), written[("normal", 1)])


def test_png_round_trip_rgb(tmp_path):
    written = _folder(tmp_path / "ct", rgb=True)
    ds = load_dataset("image_folder", root=tmp_path / "ct")["train"]  # mode RGB by default
    assert ds.images.shape == (6, 3, 10, 12)
    assert np.array_equal(ds.images[0].permute(1, 2, 0).numpy(), written[("covid", 0)])


def test_resize_with_pil_bilinear(tmp_path):
    written = _folder(tmp_path / "d", size=(20, 30))
    ds = load_dataset("image_folder", root=tmp_path / "d", mode="L", image_size=(8, 16))["train"]
    assert ds.images.shape == (6, 1, 8, 16)
    ref = np.asarray(
        Image.fromarray(written[("covid", 2)]).resize((16, 8), Image.Resampling.BILINEAR)
    )
    assert np.array_equal(ds.images[2, 0].numpy(), ref)
    assert load_dataset("image_folder", root=tmp_path / "d", image_size=9)[
        "train"
    ].images.shape == (6, 3, 9, 9)


def test_train_test_layout(tmp_path):
    _folder(tmp_path / "set" / "train", classes=("a", "b", "c"))
    _folder(tmp_path / "set" / "test", classes=("a", "c"), n=2)
    parts = load_dataset("image_folder", root=tmp_path / "set", mode="L")
    assert set(parts) == {"train", "test"}
    assert parts["test"].classes == ("a", "b", "c") and parts["test"].labels.tolist() == [
        0,
        0,
        2,
        2,
    ]


def test_unknown_test_class(tmp_path):
    _folder(tmp_path / "set" / "train", classes=("a", "b"))
    _folder(tmp_path / "set" / "test", classes=("a", "z"), n=1)
    with pytest.raises(DataError, match="class folder .*z is not among the training classes"):
        load_dataset("image_folder", root=tmp_path / "set")


def test_non_image_file_raises_naming_it(tmp_path):
    _folder(tmp_path / "d")
    (tmp_path / "d" / "normal" / "scan7.png").write_text("this is not a png")
    with pytest.raises(DataError, match=r"normal/scan7.png could not be read as an image"):
        load_dataset("image_folder", root=tmp_path / "d")


def test_foreign_extension_raises(tmp_path):
    _folder(tmp_path / "d")
    (tmp_path / "d" / "covid" / "notes.txt").write_text("patient list")
    (tmp_path / "d" / "covid" / ".DS_Store").write_bytes(b"\x00")  # hidden files are ignored
    with pytest.raises(DataError, match=r"covid/notes.txt is not an image file \(extension '.txt'"):
        load_dataset("image_folder", root=tmp_path / "d")


def test_skip_logs_a_warning(tmp_path, caplog):
    _folder(tmp_path / "d")
    (tmp_path / "d" / "normal" / "scan7.png").write_bytes(b"\x89PNG garbage")
    with caplog.at_level(logging.WARNING, logger="archlab.data.datasets.image_folder"):
        ds = load_dataset("image_folder", root=tmp_path / "d", on_error="skip")["train"]
    assert len(ds) == 6
    assert any("scan7.png" in r.getMessage() for r in caplog.records)


def test_mixed_sizes_need_image_size(tmp_path):
    _folder(tmp_path / "d")
    _png(tmp_path / "d" / "normal" / "big.png", np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match="pass image_size"):
        load_dataset("image_folder", root=tmp_path / "d")
    assert len(load_dataset("image_folder", root=tmp_path / "d", image_size=10)["train"]) == 7


def test_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        load_dataset("image_folder", root=tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match=r"only one class folder \('cls'\); a classifier needs"):
        load_dataset("image_folder", root=tmp_path / "empty")
    _png(tmp_path / "empty" / "other" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"class folder .*cls holds no readable images"):
        load_dataset("image_folder", root=tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("image_folder", root=tmp_path / "missing")


@pytest.mark.parametrize(
    "opts",
    [{"mode": "CMYK"}, {"on_error": "ignore"}, {"image_size": (0, 3)}, {"image_size": "big"}],
)
def test_bad_options(tmp_path, opts):
    _folder(tmp_path / "d", n=1)
    with pytest.raises(ConfigError):
        load_dataset("image_folder", root=tmp_path / "d", **opts)


def test_labels_dtype(tmp_path):
    _folder(tmp_path / "d", n=1)
    assert load_dataset("image_folder", root=tmp_path / "d")["train"].labels.dtype == torch.int64


def test_one_class_folder_is_refused(tmp_path):
    _folder(tmp_path / "d", classes=("covid",))
    with pytest.raises(DataError, match=r"only one class folder \('covid'\).*add one folder per"):
        load_dataset("image_folder", root=tmp_path / "d")


def test_cache_makes_the_second_load_skip_decoding(tmp_path, monkeypatch):
    from archlab.data.datasets import image_folder

    _folder(tmp_path / "d", n=4)
    first = load_dataset("image_folder", root=tmp_path / "d", mode="L")["train"]
    assert len(list((tmp_path / "d" / ".archlab_cache").glob("train-*.npz"))) == 1
    calls = []
    real = image_folder._decode
    monkeypatch.setattr(image_folder, "_decode", lambda *a: calls.append(a) or real(*a))
    second = load_dataset("image_folder", root=tmp_path / "d", mode="L")["train"]
    assert calls == []  # served from the cache
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes == ("covid", "normal")
    # another option or a changed file is another key: decoded again, never a stale cache
    load_dataset("image_folder", root=tmp_path / "d", mode="RGB")
    assert len(calls) == 8
    calls.clear()
    _png(tmp_path / "d" / "normal" / "img1.png", np.full((10, 12), 7, np.uint8))
    os.utime(tmp_path / "d" / "normal" / "img1.png", ns=(1, 1))
    third = load_dataset("image_folder", root=tmp_path / "d", mode="L")["train"]
    assert len(calls) == 8 and int(third.images[5].max()) == 7
    # a corrupt cache file is ignored and rewritten
    for f in (tmp_path / "d" / ".archlab_cache").glob("*.npz"):
        f.write_bytes(b"garbage")
    assert torch.equal(
        load_dataset("image_folder", root=tmp_path / "d", mode="L")["train"].images, third.images
    )


def test_cache_off_and_cache_dir(tmp_path):
    _folder(tmp_path / "d", n=2)
    load_dataset("image_folder", root=tmp_path / "d", cache=False)
    assert not (tmp_path / "d" / ".archlab_cache").exists()
    load_dataset("image_folder", root=tmp_path / "d", cache_dir=str(tmp_path / "c"))
    assert len(list((tmp_path / "c").glob("train-*.npz"))) == 1
    assert not (tmp_path / "d" / ".archlab_cache").exists()


def test_per_class_cap_is_seeded(tmp_path):
    written = _folder(tmp_path / "d", n=10)

    def picked(seed):
        ds = load_dataset("image_folder", root=tmp_path / "d", mode="L", per_class=3, seed=seed)
        ds = ds["train"]
        assert ds.class_counts().tolist() == [3, 3]
        return [
            next(
                i
                for (c, i), a in written.items()
                if c == ds.classes[y] and np.array_equal(a, x[0].numpy())
            )
            for x, y in zip(ds.images, ds.labels.tolist(), strict=True)
        ]

    a = picked(0)
    assert picked(0) == a  # same seed, same files
    assert any(sorted(picked(s)) != sorted(a) for s in (1, 2, 3))  # another seed, other files
    with pytest.raises(ConfigError, match="per_class must be a positive int"):
        load_dataset("image_folder", root=tmp_path / "d", per_class=0)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    _folder(tmp_path / "d", n=1)
    arr = np.array([[0, 256, 4096], [32768, 65280, 65535]], dtype=np.uint16)
    arr = np.kron(arr, np.ones((5, 4), np.uint16))  # (10, 12) like the others
    Image.fromarray(arr).save(tmp_path / "d" / "covid" / "deep.png")
    ds = load_dataset("image_folder", root=tmp_path / "d", mode="L")["train"]
    got = ds.images[0, 0].numpy()[::5, ::4]  # deep.png sorts before img0.png
    assert got.tolist() == [[0, 1, 16], [128, 255, 255]]


def test_mixed_modes_and_sizes_resize_to_rgb(tmp_path):
    _folder(tmp_path / "d", n=2, size=(20, 30))
    Image.new("P", (7, 5), 3).save(tmp_path / "d" / "covid" / "pal.png")
    Image.new("RGBA", (50, 40), (10, 20, 30, 128)).save(tmp_path / "d" / "normal" / "alpha.png")
    ds = load_dataset("image_folder", root=tmp_path / "d", image_size=(16, 24), mode="RGB")["train"]
    assert ds.images.shape == (6, 3, 16, 24) and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.images[3, :, 0, 0].tolist() == [10, 20, 30]


def test_balance_subsamples_the_larger_class(tmp_path):
    from archlab.data import make_splits

    rng = np.random.default_rng(0)
    for c, n in (("covid", 10), ("normal", 30)):
        for i in range(n):
            _png(tmp_path / "d" / c / f"{i}.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
    parts = load_dataset("image_folder", root=tmp_path / "d", mode="L")
    splits = make_splits(parts, val_fraction=0.2, test_fraction=0.2, seed=0, balance=True)
    assert splits.train.class_counts().tolist() == [6, 6]
    assert splits.test.class_counts().tolist() == [2, 6]  # val/test keep the natural ratio


def _png_header(path, width, height):
    """A PNG that declares ``width x height`` pixels and holds none (the header of a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def _two_classes(root):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6), i * 50, np.uint8)).save(root / c / f"{i}.png")


@pytest.mark.parametrize("side", [20000, 10000])
def test_decompression_bombs_are_refused_from_their_header(tmp_path, side):
    _two_classes(tmp_path)
    _png_header(tmp_path / "a" / "bomb.png", side, side)
    with pytest.raises(DataError, match=rf"bomb.png is .*{side * side:,} pixels.*image_size=8x8"):
        load_dataset("image_folder", root=tmp_path, image_size=8, mode="L", cache=False)
    parts = load_dataset("image_folder", root=tmp_path, image_size=8, mode="L", cache=False, on_error="skip")
    assert len(parts["train"]) == 4


def test_non_regular_files_are_never_opened(tmp_path, caplog):
    _two_classes(tmp_path)
    os.mkfifo(tmp_path / "a" / "x.png")  # opening it would block until a writer comes
    os.symlink(tmp_path / "missing.png", tmp_path / "b" / "dangling.png")
    with pytest.raises(DataError, match=r"x.png is a FIFO \(named pipe\), not an image file"):
        load_dataset("image_folder", root=tmp_path, image_size=8, mode="L", cache=False)
    with caplog.at_level(logging.WARNING):
        parts = load_dataset("image_folder", root=tmp_path, image_size=8, mode="L", cache=False, on_error="skip")
    assert len(parts["train"]) == 4
    assert "x.png is a FIFO" in caplog.text and "dangling.png is unreadable" in caplog.text


def test_a_part_larger_than_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    _two_classes(tmp_path)
    monkeypatch.setenv("ARCHLAB_MAX_LOAD_BYTES", "1000")
    # 4 images x 3 channels x 16 x 16 = 3,072 bytes decoded
    with pytest.raises(DataError, match=r"4 images decoded at image_size=16x16 x 3 channel\(s\) are 3.0 KiB"):
        load_dataset("image_folder", root=tmp_path, image_size=16, cache=False)
    # without image_size the first image's header gives the size: 4 x 6 x 6 x 1 = 144 bytes, fits
    assert len(load_dataset("image_folder", root=tmp_path, mode="L", cache=False)["train"]) == 4
    monkeypatch.setenv("ARCHLAB_MAX_LOAD_BYTES", "200")
    with pytest.raises(DataError, match=r"their size 6x6 \(image_size=None: the first image's\)"):
        load_dataset("image_folder", root=tmp_path, mode="L", cache=False)
