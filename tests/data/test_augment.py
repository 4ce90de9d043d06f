"""Augmentation presets, normalisation and dataset statistics."""

from __future__ import annotations

import pytest
import torch

from archlab.data import Normalize, build_augment, build_eval_transform, dataset_stats
from archlab.data.augment import PRESETS, RandomGaussianBlurSizes
from archlab.errors import ConfigError, DataError, UnknownNameError


def _batch(c: int, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(16, c, size, size)
    x[:, :, 6:18, 8:14] = torch.rand(16, c, 1, 1, generator=g) * 0.5 + 0.5  # an off-centre bar
    return x


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
@pytest.mark.parametrize("c", [1, 3])
def test_presets_keep_shape_dtype_range_and_change_images(preset, c):
    aug = build_augment(preset, image_size=(24, 24), in_chans=c)
    x = _batch(c)
    torch.manual_seed(0)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.allclose(y, x)
    assert (y - x).abs().flatten(1).amax(1).gt(1e-3).float().mean() > 0.5  # most samples changed
    torch.manual_seed(0)
    assert torch.equal(aug(x), y)  # the draws come from the seeded global RNG


def test_none_is_no_module():
    assert build_augment("none", image_size=(8, 8), in_chans=1) is None


def test_medical_crops_to_image_size_and_eval_center_crops():
    aug = build_augment("medical", image_size=(20, 16), in_chans=1)
    x = torch.rand(4, 1, 32, 32)
    assert aug(x).shape == (4, 1, 20, 16)
    ev = build_eval_transform("medical", image_size=(20, 16), in_chans=1)
    assert torch.equal(ev(x), x[:, :, 6:26, 8:24])
    assert build_eval_transform("cifar", image_size=(32, 32), in_chans=3) is None


def test_cifar_translation_keeps_content_mass_roughly():
    aug = build_augment("cifar", image_size=(24, 24), in_chans=1)
    x = _batch(1)
    torch.manual_seed(1)
    y = aug(x)
    # a shift of <= 10% keeps the bar inside: total intensity changes only by interpolation
    assert torch.allclose(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.15)


def test_unknown_preset_suggests():
    with pytest.raises(
        UnknownNameError, match=r"unknown augmentation preset 'medic'; did you mean 'medical'"
    ):
        build_augment("medic", image_size=(8, 8), in_chans=1)
    with pytest.raises(ConfigError, match="in_chans"):
        build_augment("cifar", image_size=(8, 8), in_chans=4)


def test_blur_sizes_blurs_some_samples():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 15, 15)
    x[:, :, 7, 7] = 1.0
    y = RandomGaussianBlurSizes((3, 5, 7), sigma=(1.0, 1.0), p=0.5)(x)
    changed = (y != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54
    footprint = (y[changed] > 1e-6).flatten(1).sum(1)  # 9, 25 or 49 pixels
    assert set(footprint.tolist()) <= {9, 25, 49} and len(set(footprint.tolist())) > 1
    with pytest.raises(ConfigError):
        RandomGaussianBlurSizes((4,))


def test_normalize():
    norm = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.rand(2, 2, 3, 3)
    y = norm(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - 0.5) / 0.5) and torch.allclose(
        y[:, 1], (x[:, 1] - 0.25) / 0.25
    )
    assert Normalize(0.5, 0.5)(torch.ones(1, 3, 2, 2)).eq(1).all()
    with pytest.raises(DataError, match="2 channels, batch has 3"):
        norm(torch.rand(1, 3, 2, 2))
    with pytest.raises(ConfigError, match="std > 0"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ConfigError):
        Normalize((0.5, 0.5, 0.5), (1.0, 1.0))


def test_dataset_stats_matches_direct_computation(make_ds):
    ds = make_ds([20, 13], size=5, channels=3)
    mean, std = dataset_stats(ds, chunk=7)
    x = ds.images.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), x.mean(dim=(0, 2, 3)))
    assert torch.allclose(
        torch.tensor(std, dtype=torch.float64),
        x.permute(1, 0, 2, 3).flatten(1).std(1, unbiased=False),
    )
    normed = Normalize(mean, std)(x.float())
    assert torch.allclose(normed.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


@pytest.mark.parametrize("preset", ["cifar", "medical"])
def test_horizontal_flip_happens_on_some_samples(preset):
    x = torch.zeros(64, 1, 24, 24)
    x[:, :, 8:16, 1:4] = 1.0  # a bar at the left edge; shifts/crops/rotations keep it on the left
    torch.manual_seed(0)
    y = build_augment(preset, image_size=(24, 24), in_chans=1)(x)
    cols = torch.arange(24.0)
    centre = (y.sum(dim=(1, 2)) * cols).sum(1) / y.sum(dim=(1, 2, 3)).clamp_min(1e-6)  # (B,)
    flipped = centre > 12
    assert 10 < int(flipped.sum()) < 54
