"""The bundled scikit-learn digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from archlab.data import load_dataset
from archlab.errors import ConfigError


@pytest.fixture(scope="module")
def sk():
    return load_digits()


def test_native_8x8_scaled_to_uint8(sk):
    parts = load_dataset("digits")
    assert set(parts) == {"train"}
    ds = parts["train"]
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.classes == tuple(str(i) for i in range(10))
    expected = np.round(sk.images * 255.0 / 16.0).astype(np.uint8)
    assert np.array_equal(ds.images[:, 0].numpy(), expected)
    assert np.array_equal(ds.labels.numpy(), sk.target)


def test_upsampled_to_28(sk):
    ds = load_dataset("digits", image_size=28)["train"]
    assert ds.images.shape == (1797, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.image_size == (28, 28) and len(ds) == 1797
    ref = F.interpolate(
        torch.from_numpy(sk.images[:5]).float()[:, None] / 16,
        size=(28, 28),
        mode="bilinear",
        align_corners=False,
    )
    ref = torch.round(ref.clamp(0, 1) * 255).to(torch.uint8)
    assert torch.equal(ds.images[:5], ref)


def test_bad_image_size():
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("digits", image_size=0)
