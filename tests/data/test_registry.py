"""The dataset registry: names, options, errors."""

from __future__ import annotations

import pytest
import torch

import archlab.data.datasets.registry as registry
from archlab.data import ImageDataset, list_datasets, load_dataset, register_dataset
from archlab.errors import ConfigError, UnknownNameError


def test_all_formats_are_registered():
    expected = {
        "digits",
        "synthetic",
        "mnist",
        "fashion_mnist",
        "kmnist",
        "emnist",
        "cifar10",
        "cifar100",
        "image_folder",
        "qmnist",
        "svhn",
        "stl10",
        "quickdraw",
    }
    assert expected <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


def test_unknown_name_suggests_close_match():
    with pytest.raises(
        UnknownNameError, match=r"unknown dataset 'minst'; did you mean 'mnist'"
    ) as info:
        load_dataset("minst")
    assert info.value.kind == "dataset" and "mnist" in info.value.known


def test_unknown_option_names_it_and_the_accepted_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown option 'imagesize' for dataset 'digits'; accepted options: image_size",
    ):
        load_dataset("digits", imagesize=28)
    with pytest.raises(ConfigError, match=r"accepted options: image_size, channels, per_class, subset, subset_seed$"):
        load_dataset("mnist", split="letters")  # only the options every dataset takes


def test_register_and_load_custom_dataset(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))

    @register_dataset("ones")
    def _ones(*, root, n: int = 3):
        assert root == tmp_path
        ds = ImageDataset(
            torch.ones(n, 1, 2, 2, dtype=torch.uint8),
            torch.zeros(n, dtype=torch.int64),
            ("only",),
            "ones/train",
        )
        return {"train": ds}

    assert "ones" in list_datasets()
    assert len(load_dataset("ones", root=tmp_path, n=5)["train"]) == 5

    with pytest.raises(ConfigError, match="already registered"):

        @register_dataset("ones")
        def _other(*, root):
            return {}


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.DATA_ROOT_ENV, str(tmp_path))
    assert registry.default_root() == tmp_path
    with pytest.raises(Exception, match=str(tmp_path / "mnist")):
        load_dataset("mnist")
