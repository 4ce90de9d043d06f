"""DeviceLoader: order, determinism, resume, augmentation streams."""

from __future__ import annotations

import pytest
import torch

from archlab.data import DeviceLoader, build_augment, load_dataset
from archlab.errors import ConfigError


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", num_samples=100, image_size=16, num_classes=3, seed=1)["train"]


def _all(it):
    return [(x.clone(), y.clone()) for x, y in it]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b)
    )


def _aug():
    return build_augment("cifar", image_size=(16, 16), in_chans=1)


def test_len_and_batch_shapes(ds):
    loader = DeviceLoader(ds, 32, shuffle=True, seed=0)
    batches = _all(loader.epoch(0))
    assert len(loader) == 4 and len(batches) == 4
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    x, y = batches[0]
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert len(DeviceLoader(ds, 32, shuffle=True, seed=0, drop_last=True)) == 3


def test_each_epoch_is_a_permutation(ds):
    loader = DeviceLoader(ds, 32, shuffle=True, seed=0)
    for epoch in (0, 1):
        ys = torch.cat([y for _, y in loader.epoch(epoch)])
        xs = torch.cat([x for x, _ in loader.epoch(epoch)])
        assert torch.equal(torch.bincount(ys), ds.class_counts())
        assert torch.equal(
            torch.sort((xs * 255).round().flatten(1).sum(1)).values,
            torch.sort(ds.images.float().flatten(1).sum(1)).values,
        )
    assert not torch.equal(loader.order(0), loader.order(1))


def test_no_shuffle_is_sequential(ds):
    loader = DeviceLoader(ds, 40, shuffle=False, seed=0)
    x, y = next(iter(loader))
    assert torch.equal(y, ds.labels[:40]) and torch.equal(
        (x * 255).round().to(torch.uint8), ds.images[:40]
    )


def test_same_seed_same_batches_different_seed_different_order(ds):
    a = _all(DeviceLoader(ds, 16, shuffle=True, seed=7, augment=_aug()).epoch(2))
    b = _all(DeviceLoader(ds, 16, shuffle=True, seed=7, augment=_aug()).epoch(2))
    c = DeviceLoader(ds, 16, shuffle=True, seed=8, augment=_aug())
    assert _same(a, b)
    assert not torch.equal(DeviceLoader(ds, 16, shuffle=True, seed=7).order(2), c.order(2))
    assert not _same(a, _all(c.epoch(2)))


def test_resume_equals_uninterrupted(ds):
    loader = DeviceLoader(ds, 16, shuffle=True, seed=3, augment=_aug(), mean=(0.2,), std=(0.3,))
    full = _all(loader.epoch(1))
    torch.manual_seed(12345)  # unrelated RNG use before resuming must not matter
    torch.rand(1000)
    fresh = DeviceLoader(ds, 16, shuffle=True, seed=3, augment=_aug(), mean=(0.2,), std=(0.3,))
    resumed = _all(fresh.epoch(1, start_step=4))
    assert len(resumed) == len(full) - 4
    assert _same(resumed, full[4:])
    assert _all(fresh.epoch(1, start_step=len(fresh))) == []


def test_augmentation_draws_vary_by_step_and_epoch(ds):
    loader = DeviceLoader(ds, 100, shuffle=False, seed=0, augment=_aug())
    plain = DeviceLoader(ds, 100, shuffle=False, seed=0)
    ((x0, _),) = _all(loader.epoch(0))
    ((x1, _),) = _all(loader.epoch(1))
    ((xp, _),) = _all(plain.epoch(0))
    assert not torch.equal(x0, xp) and not torch.equal(x0, x1)


def test_global_rng_untouched(ds):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _all(DeviceLoader(ds, 25, shuffle=True, seed=0, augment=_aug()).epoch(0))
    assert torch.equal(torch.rand(3), expected)


def test_normalization_applied(ds):
    x_raw, _ = next(iter(DeviceLoader(ds, 50, shuffle=False, seed=0)))
    x_n, _ = next(iter(DeviceLoader(ds, 50, shuffle=False, seed=0, mean=[0.1], std=[0.5])))
    assert torch.allclose(x_n, (x_raw - 0.1) / 0.5)


def test_bad_arguments(ds):
    with pytest.raises(ConfigError, match="batch_size"):
        DeviceLoader(ds, 0, shuffle=True, seed=0)
    with pytest.raises(ConfigError, match="no batch"):
        DeviceLoader(ds, 101, shuffle=True, seed=0, drop_last=True)
    with pytest.raises(ConfigError, match="both mean and std"):
        DeviceLoader(ds, 10, shuffle=True, seed=0, mean=[0.5])
    loader = DeviceLoader(ds, 10, shuffle=True, seed=0)
    with pytest.raises(ConfigError, match="start_step"):
        loader.epoch(0, start_step=11)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_batches_and_resume(ds):
    loader = DeviceLoader(ds, 16, shuffle=True, seed=3, device="cuda", augment=_aug())
    full = _all(loader.epoch(0))
    assert full[0][0].device.type == "cuda"
    assert _same(_all(loader.epoch(0, start_step=2)), full[2:])


def test_each_step_has_its_own_draws(ds):
    """Identical images at steps 0 and 1 must be augmented differently (draws keyed by step)."""
    twice = type(ds)(
        torch.cat([ds.images[:20], ds.images[:20]]),
        torch.cat([ds.labels[:20], ds.labels[:20]]),
        ds.classes,
    )
    (x0, y0), (x1, y1) = _all(
        DeviceLoader(twice, 20, shuffle=False, seed=0, augment=_aug()).epoch(0)
    )
    assert torch.equal(y0, y1) and not torch.equal(x0, x1)
