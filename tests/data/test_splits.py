"""Seeded, stratified, disjoint train/val/test splits."""

from __future__ import annotations

import pytest
import torch

from archlab.data import Splits, make_splits, split_indices
from archlab.errors import ConfigError, DataError


def _ids(ds) -> set[int]:
    """Sample identities (make_dataset stores the index in pixel (0, 0, 0); datasets stay < 256)."""
    return set(ds.images[:, 0, 0, 0].tolist())


def test_disjoint_and_complete(make_ds):
    ds = make_ds([100, 60, 40])
    s = make_splits({"train": ds}, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert isinstance(s, Splits)
    tr, va, te = _ids(s.train), _ids(s.val), _ids(s.test)
    assert len(tr) == len(s.train) and len(va) == len(s.val) and len(te) == len(s.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(range(200))
    assert s.sizes() == {"train": 140, "val": 20, "test": 40}


def test_stratified_proportions(make_ds):
    ds = make_ds([100, 60, 40])
    s = make_splits({"train": ds}, val_fraction=0.1, test_fraction=0.2, seed=5)
    assert s.test.class_counts().tolist() == [20, 12, 8]
    assert s.val.class_counts().tolist() == [10, 6, 4]
    assert s.train.class_counts().tolist() == [70, 42, 28]


def test_deterministic_and_seed_dependent(make_ds):
    ds = make_ds([50, 50])
    a = make_splits({"train": ds}, seed=1)
    b = make_splits({"train": ds}, seed=1)
    c = make_splits({"train": ds}, seed=2)
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    assert _ids(a.test) != _ids(c.test)


def test_official_test_part_is_used_untouched(make_ds):
    train, test = make_ds([40, 40], name="d/train"), make_ds([5, 5], name="d/test")
    s = make_splits({"train": train, "test": test}, val_fraction=0.25, test_fraction=0.5, seed=0)
    assert s.test is test
    assert s.sizes() == {"train": 60, "val": 20, "test": 10}
    assert s.train.name == "d/train" and s.val.name == "d/val"


def test_balance_subsamples_majority_and_keeps_val_test(make_ds):
    ds = make_ds([150, 40])  # e.g. negatives vs positives
    plain = make_splits({"train": ds}, seed=3)
    bal = make_splits({"train": ds}, seed=3, balance=True)
    counts = bal.train.class_counts().tolist()
    assert counts[0] == counts[1] == plain.train.class_counts().min().item()
    assert _ids(bal.train) <= _ids(plain.train)
    assert _ids(bal.val) == _ids(plain.val) and _ids(bal.test) == _ids(plain.test)
    again = make_splits({"train": ds}, seed=3, balance=True)
    assert _ids(again.train) == _ids(bal.train)


def test_max_per_class(make_ds):
    s = make_splits({"train": make_ds([80, 30])}, seed=0, max_per_class=10)
    assert s.train.class_counts().tolist() == [10, 10]


def test_unstratified_split_sizes(make_ds):
    s = make_splits({"train": make_ds([97, 3])}, seed=0, stratify=False)
    assert s.sizes() == {"train": 70, "val": 10, "test": 20}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"test_fraction": -0.1},
        {"val_fraction": 0.5, "test_fraction": 0.5},
        {"max_per_class": 0},
    ],
)
def test_bad_fractions(make_ds, kwargs):
    with pytest.raises(ConfigError):
        make_splits({"train": make_ds([10, 10])}, **kwargs)


def test_split_that_would_be_empty(make_ds):
    with pytest.raises(DataError, match="the val split of .* would be empty"):
        make_splits({"train": make_ds([3, 3])}, val_fraction=0.05, test_fraction=0.3)


def test_bad_parts(make_ds):
    with pytest.raises(ConfigError, match="needs parts 'train'"):
        make_splits({"test": make_ds([5])})
    with pytest.raises(ConfigError):
        make_splits({"train": make_ds([5]), "valid": make_ds([5])})
    with pytest.raises(DataError, match="different classes"):
        make_splits({"train": make_ds([5, 5]), "test": make_ds([5, 5, 5])})


def test_split_indices_is_a_partition():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 3)
    parts = split_indices(labels, [0.5, 0.3, 0.2], seed=0)
    all_idx = torch.cat(parts)
    assert sorted(all_idx.tolist()) == list(range(20))
    assert [len(p) for p in parts] == [5 + 4 + 1, 3 + 2 + 1, 2 + 1 + 1]
    assert all(torch.equal(p, torch.sort(p).values) for p in parts)
    again = split_indices(labels, [0.5, 0.3, 0.2], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ConfigError, match="sum to 1"):
        split_indices(labels, [0.5, 0.3], seed=0)
