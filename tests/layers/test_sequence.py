"""Sequence adapters: exact step/feature layout per mode, map reduction, projection, bad fits."""

import pytest
import torch

from archlab.errors import IncompatibleError
from archlab.layers.sequence import SequenceAdapter


def _map(c=3, h=4, w=5):
    return torch.arange(2 * c * h * w, dtype=torch.float32).view(2, c, h, w)


def test_rows_columns_channels_xy_layout():
    x = _map()
    rows = SequenceAdapter((3, 4, 5), "rows")(x)
    assert rows.shape == (2, 4, 15)
    torch.testing.assert_close(rows[1, 2], x[1, :, 2, :].reshape(-1))  # step = row y: (channel, x)
    cols = SequenceAdapter((3, 4, 5), "columns")(x)
    assert cols.shape == (2, 5, 12)
    torch.testing.assert_close(cols[0, 3], x[0, :, :, 3].reshape(-1))
    chans = SequenceAdapter((3, 4, 5), "channels")(x)
    assert chans.shape == (2, 3, 20)
    torch.testing.assert_close(chans[1, 1], x[1, 1].reshape(-1))
    xy = SequenceAdapter((3, 4, 5), "xy")(x)
    assert xy.shape == (2, 20, 3)
    torch.testing.assert_close(xy[0, 5 * 2 + 3], x[0, :, 2, 3])  # row-major positions


@pytest.mark.parametrize("size,stride,steps", [(2, None, 4), (2, 1, 9), ((2, 4), (2, 4), 2)])
def test_patches(size, stride, steps):
    x = _map(3, 4, 4)
    ad = SequenceAdapter((3, 4, 4), "patches", patch_size=size, stride=stride)
    out = ad(x)
    kh, kw = (size, size) if isinstance(size, int) else size
    assert out.shape == (2, steps, 3 * kh * kw) and ad.steps == steps
    torch.testing.assert_close(out[1, 0], x[1, :, :kh, :kw].reshape(-1))  # first patch, top-left
    if stride == 1:  # overlapping: the second patch starts one pixel to the right
        torch.testing.assert_close(out[0, 1], x[0, :, :2, 1:3].reshape(-1))


def test_thesis_z_axis_reduction_and_projection():
    """Seed 000: (128, 13, 13) -> pool 13 -> 1x1 conv 128->16 -> 16 steps of 169 -> Linear -> 32."""
    ad = SequenceAdapter((128, 13, 13), "channels", pool=13, channels=16, out_features=32)
    assert ad.pool is None  # already 13x13
    assert (ad.steps, ad.step_features, ad.out_features) == (16, 169, 32)
    assert ad.proj.in_features == 169 and ad.conv.out_channels == 16
    assert ad(torch.randn(2, 128, 13, 13)).shape == (2, 16, 32)
    # no projection when the features already match
    assert SequenceAdapter((4, 8, 8), "rows", out_features=32).proj is None


@pytest.mark.parametrize("pool_type", ["avg", "max"])
def test_pool_then_conv(pool_type):
    ad = SequenceAdapter((8, 6, 6), "rows", pool=3, pool_type=pool_type, channels=2)
    x = torch.randn(1, 8, 6, 6)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 3) if pool_type == "avg" else torch.nn.functional.adaptive_max_pool2d(x, 3)
    expected = ad.conv(pooled).permute(0, 2, 1, 3).reshape(1, 3, 6)
    torch.testing.assert_close(ad(x), expected)
    # pooling to a larger grid interpolates (used by the presets on CRNet's 13x13 maps)
    assert SequenceAdapter((8, 13, 13), "rows", pool=16)(torch.randn(1, 8, 13, 13)).shape == (1, 16, 128)


def test_flat_features_are_one_row():
    ad = SequenceAdapter((10,), "columns", out_features=4)
    assert ad(torch.randn(3, 10)).shape == (3, 10, 4)
    assert SequenceAdapter((10,), "rows")(torch.randn(3, 10)).shape == (3, 1, 10)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"mode": "patches", "patch_size": 5}, r"patch_size=5 is larger than the feature map height 4; use patch_size <= 4"),
        ({"mode": "patches", "patch_size": 2, "stride": 3}, r"stride=3 is larger than patch_size=2.*stride <= 2"),
        ({"mode": "patches", "patch_size": 3}, r"patches of 3 with stride 3 do not tile the feature map height 4"),
        ({"mode": "patches"}, r"needs patch_size"),
        ({"mode": "rows", "patch_size": 2}, r"only apply to mode='patches'"),
        ({"mode": "diagonal"}, r"unknown sequence mode 'diagonal'"),
        ({"mode": "rows", "pool": 0}, r"pool must hold positive ints"),
        ({"mode": "rows", "channels": 0}, r"channels must be a positive int, got 0"),
        ({"mode": "rows", "pool_type": "min"}, r"pool_type"),
    ],
)
def test_bad_fits(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SequenceAdapter((3, 4, 4), **kwargs)


def test_patch_fit_uses_the_reduced_map():
    with pytest.raises(IncompatibleError, match="larger than the feature map height 2"):
        SequenceAdapter((3, 8, 8), "patches", pool=2, patch_size=4)
