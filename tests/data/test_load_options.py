"""Options every in-memory dataset takes (issue 25 item 1): image_size, channels, per_class, subset.

Each table row is built as a study would build it: a run config's data section -> prepare_data ->
the model the config names.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import archlab
from archlab.data import load_dataset, write_idx
from archlab.data.load_options import convert_channels, stratified_indices
from archlab.errors import ConfigError, IncompatibleError
from archlab.study.execute import load_splits
from archlab.train.config import DataConfig, TrainConfig
from archlab.train.engine import build_run_model, prepare_data


def _fake_mnist(root: Path, name: str, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """IDX files in the official layout ROOT/<name>/*.gz: digit k drawn as a bar at row 2k."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        x = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(y):
            x[i, 2 * k + 4 : 2 * k + 6, 4:24] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root


def _fake_quickdraw(root: Path, cats=("cat", "dog", "fish"), n: int = 40) -> Path:
    folder = root / "quickdraw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for c in cats:
        np.save(folder / f"{c}.npy", rng.integers(0, 256, size=(n, 784), dtype=np.uint8))
    return root


def _run(data: dict, model: dict | None = None):
    cfg = TrainConfig.model_validate({"data": data, "model": model or {"name": "mnist_cnn"}})
    splits = prepare_data(cfg)
    return cfg, splits, build_run_model(cfg, splits)


# ---------------------------------------------------------------- 000: Fashion-MNIST at CRNet's 224 px

def test_fashion_mnist_at_crnet_224_px(tmp_path):
    root = str(_fake_mnist(tmp_path, "fashion_mnist", n_train=60, n_test=20))
    plain = load_dataset("fashion_mnist", root=root)
    data = {"name": "fashion_mnist", "root": root, "options": {"image_size": 224}, "val_fraction": 0.2}
    _, splits, model = _run(data, {"name": "crnet"})
    assert splits.train.image_size == (224, 224) and splits.test.image_size == (224, 224)
    assert model.input_size == (224, 224) and model.feature_shape == (128, 13, 13)
    resized = load_dataset("fashion_mnist", root=root, image_size=224)
    for part in ("train", "test"):  # resize keeps the labels, the order and the dtype
        assert torch.equal(resized[part].labels, plain[part].labels)
        assert resized[part].images.dtype == torch.uint8 and resized[part].images.shape[1:] == (1, 224, 224)
    # and the content: each image keeps its brightness and its class's bar (rows 2k+4, 2k+5 of 28)
    big, small = resized["train"].images.float(), plain["train"].images.float()
    assert (big.mean((1, 2, 3)) - small.mean((1, 2, 3))).abs().max() < 2
    rows = big.mean(3)[:, 0]  # (N, 224)
    assert torch.equal(rows.argmax(1) // 8 // 2 - 2, plain["train"].labels)


def test_the_process_cache_never_reuses_an_unresized_tensor(tmp_path):
    root = str(_fake_mnist(tmp_path, "mnist", n_train=60, n_test=20))
    a = load_splits(DataConfig(name="mnist", root=root, val_fraction=0.2).model_dump_json())
    b = load_splits(DataConfig(name="mnist", root=root, val_fraction=0.2, options={"image_size": 32}).model_dump_json())
    assert a.train.image_size == (28, 28) and b.train.image_size == (32, 32)


# ---------------------------------------------------------------- 001: VGG-16(-BN) + Spinal on 28 px digits

def _vgg16_features(in_chans, bn):
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    total, cin = 0, in_chans
    for v in cfg:
        if v == "M":
            continue
        total += 9 * cin * v + v + (2 * v if bn else 0)
        cin = v
    return total


def test_vgg16_refuses_28_px_and_says_how_to_resize(tmp_path):
    root = str(_fake_quickdraw(tmp_path))
    data = {"name": "quickdraw", "root": root, "options": {"categories": "cat,dog,fish"}}
    with pytest.raises(IncompatibleError, match=r"vgg16 cannot take 1x28x28 inputs.*dataset option image_size=224"):
        _run(data, {"name": "vgg16", "head": "spinal_vgg"})


@pytest.mark.parametrize("name, bn", [("vgg16", False), ("vgg16_bn", True)])
def test_vgg16_spinal_on_quickdraw_resized_to_32(tmp_path, name, bn):
    root = str(_fake_quickdraw(tmp_path))
    data = {"name": "quickdraw", "root": root, "options": {"categories": "cat,dog,fish", "image_size": 32}}
    _, splits, model = _run(data, {"name": name, "head": "spinal_vgg"})
    assert splits.train.image_size == (32, 32) and model.feature_shape == (512, 1, 1)
    head = archlab.create_head("spinal_vgg", in_features=512, num_classes=3)
    n = sum(p.numel() for p in model.parameters())
    assert n == _vgg16_features(1, bn) + sum(p.numel() for p in head.parameters())


def test_quickdraw_at_another_resolution_keeps_labels(tmp_path):
    root = str(_fake_quickdraw(tmp_path))
    plain = load_dataset("quickdraw", root=root, categories="cat,dog,fish")["train"]
    big = load_dataset("quickdraw", root=root, categories="cat,dog,fish", image_size=64, per_class=10)["train"]
    assert big.images.shape == (30, 1, 64, 64) and big.class_counts().tolist() == [10, 10, 10]
    assert torch.equal(big.labels, plain.labels[:0].new_tensor(np.repeat([0, 1, 2], 10)))  # quickdraw's own per_class: the first N
    small = load_dataset("quickdraw", root=root, categories="cat,dog,fish", image_size=[14, 20])["train"]
    assert small.images.shape == (120, 1, 14, 20) and torch.equal(small.labels, plain.labels)


# ---------------------------------------------------------------- 003: MNIST with 10,000 / 1,000 images

def test_mnist_subset_is_seeded_stratified_and_identical_across_variants(tmp_path):
    root = str(_fake_mnist(tmp_path, "mnist", n_train=300, n_test=100))
    data = {"name": "mnist", "root": root, "options": {"subset": {"train": 100, "test": 20}}}
    cfg_a, splits_a, _ = _run(data, {"name": "mnist_cnn", "head": "linear"})
    cfg_b, splits_b, _ = _run(data, {"name": "mnist_cnn", "head": "mlp", "head_kwargs": {"hidden": [8]}})
    assert len(splits_a.train) + len(splits_a.val) == 100 and len(splits_a.test) == 20
    for part in ("train", "val", "test"):  # another variant trains on exactly the same images
        assert torch.equal(getattr(splits_a, part).images, getattr(splits_b, part).images)
    parts = load_dataset("mnist", root=root, subset={"train": 100, "test": 20})
    assert parts["train"].class_counts().tolist() == [10] * 10  # stratified: each class its share
    assert parts["test"].class_counts().tolist() == [2] * 10
    assert cfg_a.data.options == {"subset": {"train": 100, "test": 20}}  # recorded in the run's config
    other = load_dataset("mnist", root=root, subset={"train": 100, "test": 20}, subset_seed=1)
    assert not torch.equal(other["train"].images, parts["train"].images)
    full = load_dataset("mnist", root=root)["train"]
    assert set(stratified_indices(full.labels, 10, total=100).tolist()) <= set(range(300))


def test_per_class_and_subset_shapes_and_shares():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(labels, 3, total=10, seed=0)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [5, 3, 2]
    assert torch.equal(idx, idx.sort().values)
    idx = stratified_indices(labels, 3, per_class=25, seed=0)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [25, 25, 20]
    assert torch.equal(idx, stratified_indices(labels, 3, per_class=25, seed=0))


def test_per_class_on_an_idx_dataset(tmp_path):
    root = str(_fake_mnist(tmp_path, "kmnist"))
    parts = load_dataset("kmnist", root=root, per_class=7)
    assert parts["train"].class_counts().tolist() == [7] * 10 and parts["test"].class_counts().tolist() == [7] * 10


# ---------------------------------------------------------------- channels

def test_channels_grey_to_rgb_and_back(tmp_path):
    root = str(_fake_mnist(tmp_path, "mnist", n_train=60, n_test=20))
    data = {"name": "mnist", "root": root, "options": {"channels": 3, "image_size": 32}, "val_fraction": 0.2}
    _, splits, model = _run(data, {"name": "resnet18", "kwargs": {"cifar_stem": True}})
    assert splits.train.in_chans == 3 and model.backbone.conv1.in_channels == 3
    grey = load_dataset("mnist", root=root)["train"].images
    rgb = convert_channels(grey, 3, "x")
    assert rgb.shape[1] == 3 and torch.equal(rgb[:, 1:2], grey)
    assert torch.equal(convert_channels(rgb, 1, "x"), grey)  # equal channels: luma is the value itself
    px = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert int(convert_channels(px, 1, "x")) == round(0.299 * 255)


@pytest.mark.parametrize("options, match", [
    ({"image_size": "big"}, "image_size"), ({"image_size": 0}, "image_size"), ({"channels": 2}, "channels"),
    ({"subset": {"validation": 5}}, "names part 'validation'"), ({"per_class": -1}, "per_class"),
    ({"subset_seed": "a"}, "subset_seed"), ({"imagesize": 28}, "unknown option 'imagesize'"),
])
def test_bad_shared_options(tmp_path, options, match):
    root = str(_fake_mnist(tmp_path, "mnist", n_train=60, n_test=20))
    with pytest.raises(ConfigError, match=match):
        load_dataset("mnist", root=root, **options)


def test_loaders_own_options_keep_their_meaning():
    # digits' own image_size (bilinear, no antialias) is unchanged: same tensor as before this option existed
    a = load_dataset("digits", image_size=28)["train"]
    x = load_dataset("digits")["train"].images.float()
    ref = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=False)
    assert a.images.shape == (1797, 1, 28, 28)
    assert (a.images.float() - ref.round().clamp(0, 255)).abs().max() <= 1
    s = load_dataset("synthetic", channels=3, num_samples=20)["train"]
    assert s.in_chans == 3
