"""ImageDataset validation, helpers and conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.data import ImageDataset, check_finite, to_uint8_images
from archlab.errors import DataError


def _imgs(n: int = 4) -> torch.Tensor:
    return torch.zeros(n, 1, 5, 6, dtype=torch.uint8)


def test_properties(tiny):
    assert len(tiny) == 60
    assert tiny.num_classes == 3 and tiny.in_chans == 1 and tiny.image_size == (4, 4)
    assert tiny.class_counts().tolist() == [30, 20, 10]
    assert isinstance(tiny.classes, tuple)


def test_classes_list_becomes_tuple():
    ds = ImageDataset(_imgs(), torch.zeros(4, dtype=torch.int64), ["a"], "x")  # type: ignore[arg-type]
    assert ds.classes == ("a",)


def test_subset_keeps_classes_and_rows(tiny):
    idx = torch.tensor([0, 59, 31])
    sub = tiny.subset(idx)
    assert len(sub) == 3 and sub.classes == tiny.classes
    assert torch.equal(sub.images, tiny.images[idx]) and torch.equal(sub.labels, tiny.labels[idx])
    mask = tiny.labels == 2
    assert tiny.subset(mask).class_counts().tolist() == [0, 0, 10]


def test_class_counts_include_absent_classes():
    ds = ImageDataset(_imgs(3), torch.tensor([0, 0, 2]), ("a", "b", "c", "d"))
    assert ds.class_counts().tolist() == [2, 0, 1, 0]


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (torch.zeros(4, 1, 5, 6), torch.zeros(4, dtype=torch.int64), "uint8"),
        (
            torch.zeros(4, 5, 6, dtype=torch.uint8),
            torch.zeros(4, dtype=torch.int64),
            r"\(N, C, H, W\)",
        ),
        (_imgs(), torch.zeros(4, dtype=torch.int32), "int64"),
        (_imgs(), torch.zeros(4, 1, dtype=torch.int64), r"\(N,\)"),
        (_imgs(0), torch.zeros(0, dtype=torch.int64), "empty dataset"),
        (_imgs(4), torch.zeros(3, dtype=torch.int64), "4 images but 3 labels"),
    ],
)
def test_malformed_arrays_are_refused(images, labels, match):
    with pytest.raises(DataError, match=match) as info:
        ImageDataset(images, labels, ("a", "b"), "broken")
    assert "'broken'" in str(info.value)


def test_label_out_of_range_names_value_and_class_count():
    with pytest.raises(DataError, match=r"label 7 out of range for 3 classes"):
        ImageDataset(_imgs(), torch.tensor([0, 1, 7, 2]), ("a", "b", "c"), "bad")
    with pytest.raises(DataError, match=r"label -1 out of range for 3 classes"):
        ImageDataset(_imgs(), torch.tensor([0, -1, 1, 2]), ("a", "b", "c"), "bad")


def test_no_classes_is_refused():
    with pytest.raises(DataError, match="classes"):
        ImageDataset(_imgs(), torch.zeros(4, dtype=torch.int64), ())


def test_masks_are_checked():
    ok = ImageDataset(
        _imgs(),
        torch.zeros(4, dtype=torch.int64),
        ("a",),
        masks=torch.zeros(4, 1, 5, 6, dtype=torch.uint8),
    )
    assert ok.subset(torch.tensor([1, 2])).masks.shape == (2, 1, 5, 6)
    with pytest.raises(DataError, match="masks must have shape"):
        ImageDataset(
            _imgs(),
            torch.zeros(4, dtype=torch.int64),
            ("a",),
            masks=torch.zeros(4, 1, 5, 5, dtype=torch.uint8),
        )


def test_empty_subset_is_refused(tiny):
    with pytest.raises(DataError, match="empty dataset"):
        tiny.subset(torch.zeros(0, dtype=torch.int64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_refuses_nan_and_inf(bad):
    x = np.zeros((2, 3), dtype=np.float32)
    x[1, 2] = bad
    with pytest.raises(DataError, match=r"my array contains non-finite values.*\(1, 2\)"):
        check_finite(x, "my array")
    check_finite(np.zeros(3, dtype=np.int64), "ints")  # integers always pass


def test_from_arrays_refuses_nan_in_float_images():
    x = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    x[3, 4, 4] = np.nan
    with pytest.raises(
        DataError, match=r"images of dataset 'floats' contains non-finite values \(1 NaN"
    ):
        ImageDataset.from_arrays(x, np.arange(5) % 2, 2, name="floats")


def test_from_arrays_converts_floats_and_channels_last():
    x = np.linspace(0, 1, 5 * 4 * 4 * 3, dtype=np.float64).reshape(5, 4, 4, 3)
    ds = ImageDataset.from_arrays(x, [0, 1, 0, 1, 1], ("a", "b"), channels_last=True)
    assert ds.images.shape == (5, 3, 4, 4) and ds.images.dtype == torch.uint8
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    assert torch.equal(
        ds.images[2, 1], torch.from_numpy(np.round(x[2, :, :, 1] * 255).astype(np.uint8))
    )


def test_to_uint8_range_checks():
    assert to_uint8_images(torch.tensor([0.0, 128.0, 255.0]), "x").tolist() == [0, 128, 255]
    assert to_uint8_images(torch.tensor([0.0, 0.5, 1.0]), "x").tolist() == [0, 128, 255]
    with pytest.raises(DataError, match="expected 0..255"):
        to_uint8_images(torch.tensor([0.0, 300.0]), "x")
    with pytest.raises(DataError, match="expected 0..255"):
        to_uint8_images(np.array([-1, 3], dtype=np.int32), "x")


def test_from_arrays_refuses_fractional_labels():
    with pytest.raises(DataError, match="whole numbers"):
        ImageDataset.from_arrays(np.zeros((2, 3, 3), np.uint8), np.array([0.0, 0.5]), 2)
