"""The loader's per-step seeding is exactly ``torch.manual_seed`` of the step's stream (the hot-path
version only skips the lazy seeding of devices the batch is not on)."""

import torch

from archlab._seed import derive_seed
from archlab.data import DeviceLoader, build_augment


def test_batches_equal_manual_seed_per_step(make_ds):
    ds = make_ds([30, 25], size=12, channels=1)
    for preset in ("spinal_mnist", "cifar", "medical"):
        aug = build_augment(preset, image_size=(12, 12), in_chans=1)
        loader = DeviceLoader(ds, 16, shuffle=True, seed=4, augment=aug)
        order = loader.order(2)
        for step, (x, _) in enumerate(loader.epoch(2)):
            raw = ds.images[order[step * 16 : (step + 1) * 16]].float() / 255.0
            torch.manual_seed(derive_seed(4, "augment", 2, step))
            with torch.no_grad():
                ref = aug(raw)
            assert torch.equal(x, ref), (preset, step)


def test_global_rng_untouched(make_ds):
    ds = make_ds([20, 20], size=12, channels=1)
    loader = DeviceLoader(ds, 8, shuffle=True, seed=1, augment=build_augment("cifar", image_size=(12, 12), in_chans=1))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for _ in loader.epoch(0):
        pass
    assert torch.equal(torch.rand(3), expected)
