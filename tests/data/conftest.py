"""Shared fixtures for the data tests: small datasets built in memory."""

from __future__ import annotations

import pytest
import torch

from archlab.data import ImageDataset


def make_dataset(
    counts: list[int], *, size: int = 4, channels: int = 1, name: str = "tiny"
) -> ImageDataset:
    """A dataset with ``counts[k]`` samples of class k.

    Pixel (0, 0, 0) stores the sample index mod 256, an identity for disjointness checks.
    """
    labels = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    n = len(labels)
    gen = torch.Generator().manual_seed(1234)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen)
    images[:, 0, 0, 0] = (torch.arange(n) % 256).to(torch.uint8)
    return ImageDataset(images, labels, tuple(f"c{k}" for k in range(len(counts))), name)


@pytest.fixture
def tiny() -> ImageDataset:
    return make_dataset([30, 20, 10])


@pytest.fixture
def make_ds():
    """The :func:`make_dataset` factory, for tests that need other class counts."""
    return make_dataset
