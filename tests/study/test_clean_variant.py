"""Cleaning the training split as a study variant: val/test identical, train cleaned (issue 15)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from archlab.data._dataset import ImageDataset
from archlab.data.datasets import register_dataset
from archlab.data.datasets.synthetic import load_synthetic
from archlab.data.splits import CLEAN_SPLIT_FORMAT, split_fingerprint
from archlab.errors import ConfigError, DataError
from archlab.study.config import RunKey, Study, load_study
from archlab.study.execute import load_splits
from archlab.train.engine import prepare_data

N, SAME, CONTRA = 120, 8, 8  # distinct images, planted same-label copies, planted contradicting copies


@register_dataset("planted_copies")
def _planted(*, root=None, seed=0):
    """120 distinct shapes + 8 exact copies with the same label + 8 with another label."""
    ds = load_synthetic(num_classes=3, num_samples=N, image_size=16, seed=seed, noise=0.08)["train"]
    src = torch.arange(SAME + CONTRA)
    images = torch.cat([ds.images, ds.images[src]])
    flipped = (ds.labels[src] + torch.where(src < SAME, 0, 1)) % 3
    labels = torch.cat([ds.labels, flipped])
    return {"train": ImageDataset(images, labels, ds.classes, name="planted_copies")}


def _study(**variant) -> Study:
    return Study.model_validate({
        "name": "clean", "data": {"name": "planted_copies", "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "mnist_cnn"}, "train": {"epochs": 1}, "seeds": [0, 1], "baseline": "raw",
        "variants": {"raw": {}, "cleaned": {"data": {"clean": variant}}},
    })


def _keys(ds: ImageDataset) -> list[tuple[bytes, int]]:
    return [(ds.images[i].numpy().tobytes(), int(ds.labels[i])) for i in range(len(ds))]


def _splits(study: Study, variant: str, seed: int = 0):
    """The run's splits as a study loads them (cached per data config, as the runner does)."""
    return load_splits(study.resolve(RunKey(dataset="planted_copies", variant=variant, seed=seed)).data.model_dump_json())


@pytest.mark.slow  # the audit's first call (descriptor set-up) takes several seconds
def test_cleaned_variant_keeps_val_and_test_and_cleans_train():
    study = _study()
    for seed in (0, 1):
        raw, clean = _splits(study, "raw", seed), _splits(study, "cleaned", seed)
        for part in ("val", "test"):  # the paired comparison: the same evaluation images
            a, b = getattr(raw, part), getattr(clean, part)
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            assert split_fingerprint(a) == split_fingerprint(b)
        assert len(clean.train) < len(raw.train)
    raw, clean = _splits(study, "raw"), _splits(study, "cleaned")
    base = load_synthetic(num_classes=3, num_samples=N, image_size=16, seed=0, noise=0.08)["train"]
    where = {}
    for part in ("train", "val", "test"):
        for img, _ in _keys(getattr(raw, part)):
            where.setdefault(img, []).append(part)
    kept = Counter(img for img, _ in _keys(clean.train))
    planted = {base.images[i].numpy().tobytes(): ("same" if i < SAME else "contra") for i in range(SAME + CONTRA)}
    checked = Counter()
    for img, kind in planted.items():
        parts = where[img]
        in_train = parts.count("train")
        if kind == "contra":
            assert kept[img] == 0, parts  # contradicting: every training copy goes
        elif in_train == 2:
            assert kept[img] == 1  # duplicate inside train: one copy stays
        elif in_train == 1:
            assert kept[img] == 0  # a training copy of a val/test image (a leak) goes
        checked[(kind, in_train)] += 1
    # any other training image dropped is one the audit paired with another image (a natural
    # near-duplicate among the generated shapes); nothing unpaired is touched
    from archlab.analysis.audit import audit_splits

    cfg = study.resolve(RunKey(dataset="planted_copies", variant="cleaned", seed=0))
    res = audit_splits(raw, threshold=cfg.data.clean.threshold)
    t = res.splits.index("train")
    paired = {int(i) for s_, i in zip(res.split_a.tolist(), res.index_a.tolist()) if s_ == t}
    paired |= {int(i) for s_, i in zip(res.split_b.tolist(), res.index_b.tolist()) if s_ == t}
    raw_keys = _keys(raw.train)
    for pos, (img, _) in enumerate(raw_keys):
        if img not in planted and kept[img] == 0:
            assert pos in paired, pos
    unplanted_dropped = sum(1 for img, _ in raw_keys if img not in planted and kept[img] == 0)
    assert unplanted_dropped <= len(raw_keys) // 10  # the planted copies are what cleaning removes
    assert checked[("contra", 2)] + checked[("contra", 1)] >= 2 and checked[("same", 2)] + checked[("same", 1)] >= 2


def test_drop_only_contradicting():
    study = _study(drop=["contradicting"])
    raw, clean = _splits(study, "raw"), _splits(study, "cleaned")
    base = load_synthetic(num_classes=3, num_samples=N, image_size=16, seed=0, noise=0.08)["train"]
    kept = Counter(img for img, _ in _keys(clean.train))
    raw_train = Counter(img for img, _ in _keys(raw.train))
    for i in range(SAME):  # same-label copies are kept when only contradictions are dropped
        img = base.images[i].numpy().tobytes()
        assert kept[img] == raw_train[img]


def test_clean_from_a_file_uses_its_train_positions_only(tmp_path):
    raw = _splits(_study(), "raw")
    keep = list(range(0, len(raw.train), 2))
    doc = {"format": CLEAN_SPLIT_FORMAT, "sizes": {"train": len(raw.train), "val": len(raw.val), "test": len(raw.test)},
           "fingerprints": {"train": split_fingerprint(raw.train)},
           "keep": {"train": keep, "val": [0], "test": [0]}}  # val/test entries are ignored
    f = tmp_path / "clean_split.json"
    f.write_text(json.dumps(doc))
    clean = _splits(_study(file=str(f)), "cleaned")
    assert len(clean.train) == len(keep) and torch.equal(clean.train.images, raw.train.images[keep])
    assert torch.equal(clean.val.images, raw.val.images) and torch.equal(clean.test.images, raw.test.images)
    doc["sizes"]["train"] += 1
    f.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="train split of"):  # uncached: the file is read again
        prepare_data(_study(file=str(f)).resolve(RunKey(dataset="planted_copies", variant="cleaned", seed=0)))


def test_a_variant_may_only_clean_training_data(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\ndata: {name: digits}\nseeds: 2\nbaseline: a\n"
                   "variants:\n  a: {}\n  b: {data: {val_fraction: 0.5}}\n")
    with pytest.raises(ConfigError, match="may only set `clean`"):
        load_study(bad)
    with pytest.raises(ValueError, match="drop"):
        _study(drop=["everything"])


def test_seed002_nerve_has_a_cleaned_variant():
    from pathlib import Path

    study = load_study(Path(__file__).resolve().parents[2] / "studies" / "seed002_nerve.yaml", smoke=True)
    cleaned = [v for v, spec in study.variants.items() if spec.data.get("clean") is not None]
    assert cleaned
    cfg = study.resolve(RunKey(dataset=next(iter(study.dataset_configs())), variant=cleaned[0], seed=0))
    assert cfg.data.clean is not None and "contradicting" in cfg.data.clean.drop


@pytest.mark.slow  # the audit's first call (descriptor set-up) takes several seconds
def test_report_counts_the_images_cleaning_kept(tmp_path):
    from archlab.study.runner import run_study

    study = _study().model_copy(update={"seeds": [0]})
    store = run_study(study, tmp_path)
    sizes = {r.variant: r.provenance["split_sizes"]["train"] for r in store.rows(with_predictions=False)}
    assert sizes["cleaned"] < sizes["raw"]
    md = (tmp_path / "report.md").read_text()
    assert f"Cleaning (planted_copies, cleaned): {sizes['cleaned']} of {sizes['raw']} training images kept" in md


@pytest.mark.slow  # the audit's first call (descriptor set-up) takes several seconds
def test_seed002_nerve_smoke_exercises_cleaning():
    from pathlib import Path

    study = load_study(Path(__file__).resolve().parents[2] / "studies" / "seed002_nerve.yaml", smoke=True)
    ds = next(iter(study.dataset_configs()))
    raw, clean = (load_splits(study.resolve(RunKey(dataset=ds, variant=v, seed=0)).data.model_dump_json())
                  for v in ("unet", "unet_cleaned"))
    assert len(clean.train) < len(raw.train)  # the planted contradicting copies in train go
    assert split_fingerprint(clean.test) == split_fingerprint(raw.test)
