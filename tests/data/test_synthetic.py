"""Generated shapes."""

from __future__ import annotations

import pytest
import torch

from archlab.data import load_dataset
from archlab.data.datasets.synthetic import MAX_CLASSES
from archlab.errors import ConfigError


def test_defaults_shape_and_balance():
    ds = load_dataset("synthetic")["train"]
    assert ds.images.shape == (512, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 4 and ds.class_counts().tolist() == [128] * 4
    assert ds.classes == ("circle", "square", "triangle", "cross")


def test_deterministic_and_seed_dependent():
    a = load_dataset("synthetic", num_samples=64, seed=3)["train"]
    b = load_dataset("synthetic", num_samples=64, seed=3)["train"]
    c = load_dataset("synthetic", num_samples=64, seed=4)["train"]
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_many_classes_are_distinct_rgb():
    n_cls = 30
    ds = load_dataset(
        "synthetic", num_classes=n_cls, num_samples=n_cls * 4, image_size=24, channels=3, noise=0.0
    )["train"]
    assert ds.images.shape == (n_cls * 4, 3, 24, 24)
    assert len(set(ds.classes)) == n_cls
    # clean images: every sample draws something, and class masks differ from each other
    masks = (ds.images.amax(dim=1) > 0).float()  # (N, H, W)
    assert bool((masks.sum(dim=(1, 2)) > 5).all())
    # each pixel is background or part of the single shape drawn
    mean_masks = torch.stack([masks[ds.labels == k].mean(0) for k in range(n_cls)]).flatten(1)
    dist = torch.cdist(mean_masks, mean_masks)
    assert float(dist[~torch.eye(n_cls, dtype=torch.bool)].min()) > 0


def test_noise_changes_pixels_but_not_labels():
    a = load_dataset("synthetic", num_samples=32, noise=0.0)["train"]
    b = load_dataset("synthetic", num_samples=32, noise=0.2)["train"]
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.images, b.images)


@pytest.mark.parametrize(
    "opts",
    [
        {"num_classes": 0},
        {"num_classes": MAX_CLASSES + 1},
        {"channels": 2},
        {"image_size": 4},
        {"noise": -1.0},
        {"num_samples": 0},
    ],
)
def test_bad_options(opts):
    with pytest.raises(ConfigError):
        load_dataset("synthetic", **opts)
