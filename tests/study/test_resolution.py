"""A per-variant input resolution (issue 25, seed 004): same images, split and batch order, resized."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from archlab.data.resolution import resize_splits
from archlab.data.splits import split_fingerprint
from archlab.errors import ConfigError
from archlab.study.config import RunKey, Study
from archlab.study.execute import load_splits
from archlab.train.engine import build_run, resolve_device
from archlab.train.run import build_loaders

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 60, "image_size": 16, "channels": 3},
        "val_fraction": 0.2, "test_fraction": 0.2, "augment": "cifar"}


def _study(vary=("resolution",), **variant_data) -> Study:
    return Study.model_validate({
        "name": "res", "data": DATA, "model": {"name": "mnist_cnn"}, "train": {"epochs": 1, "batch_size": 8},
        "seeds": [0, 1], "baseline": "r16", "vary": list(vary),
        "variants": {"r16": {}, "r24": {"data": {"image_size": 24, **variant_data}}, "r20": {"data": {"image_size": [20, 18]}}},
    })


def _config(study: Study, variant: str, seed: int = 0):
    return study.resolve(RunKey(dataset="synthetic16", variant=variant, seed=seed))


def test_resized_variants_keep_images_split_and_batch_order():
    study = _study()
    base = load_splits(_config(study, "r16").data.model_dump_json())
    for variant, hw in (("r24", (24, 24)), ("r20", (20, 18))):
        cfg = _config(study, variant)
        assert cfg.data.resize in (24, [20, 18], (20, 18)) and cfg.data.options == DATA["options"]
        res = load_splits(cfg.data.model_dump_json())
        for part in ("train", "val", "test"):
            a, b = getattr(base, part), getattr(res, part)
            assert tuple(b.image_size) == hw and b.images.shape[:2] == a.images.shape[:2]
            assert torch.equal(a.labels, b.labels)  # the same images, in the same order
            # the same split: each resized image is the resize of the base image at its position
            assert torch.equal(resize_splits(base, hw).__getattribute__(part).images, b.images)
        for seed in (0, 1):  # the training loader draws the same batches (order depends on seed and N)
            la = build_loaders(_config(study, "r16", seed), base, torch.device("cpu"))[0]
            lb = build_loaders(_config(study, variant, seed), res, torch.device("cpu"))[0]
            for epoch in range(3):
                assert torch.equal(la.order(epoch), lb.order(epoch))
    assert split_fingerprint(base.test) != split_fingerprint(res.test)  # the pixels did change


def test_model_sees_each_variants_resolution():
    study = _study()
    cfg = _config(study, "r24")
    run = build_run(cfg, load_splits(cfg.data.model_dump_json()), resolve_device("cpu"))
    x, _ = next(iter(run.train_loader))
    assert tuple(x.shape[-2:]) == (24, 24)


def test_per_variant_resolution_needs_vary():
    with pytest.raises(ValidationError, match=r"variants.r24.data.image_size.*vary: \[resolution\]"):
        _study(vary=())


@pytest.mark.parametrize("key", ["augment", "options", "val_fraction", "normalize"])
def test_other_per_variant_data_changes_stay_refused(key):
    with pytest.raises(ValidationError, match="may only set `clean`"):
        _study(**{key: "none"})


def test_resize_value_checked():
    study = _study()
    with pytest.raises((ValidationError, ConfigError), match="resize=0"):
        Study.model_validate({**study.model_dump(exclude={"seeds_plan"}),
                              "variants": {"r16": {}, "r0": {"data": {"image_size": 0}}}}).resolve(
            RunKey(dataset="synthetic16", variant="r0", seed=0))


def test_resolutions_listed():
    assert _study().resolutions() == {"r24": 24, "r20": [20, 18]}


def test_report_says_resolution_differs_and_flops_are_each_variants_own(tmp_path):
    from archlab.study.runner import run_study

    study = _study().model_copy(update={"seeds": [0]})
    store = run_study(study, tmp_path)
    rows = {r.variant: r for r in store.rows(with_predictions=False)}
    assert all(r.status == "done" for r in rows.values())
    assert rows["r24"].flops > rows["r20"].flops > rows["r16"].flops  # profiled at 24x24, 20x18, 16x16
    md = (tmp_path / "report.md").read_text()
    assert "Resolution differs between variants (the variable under study): r20 20x18, r24 24x24; r16 at the " \
           "dataset's own size." in md
