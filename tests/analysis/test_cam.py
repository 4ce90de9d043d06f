"""Grad-CAM scored against object masks (issue 25, seed 004's "more relevant regions")."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.analysis.cam import grad_cam, mask_scores
from archlab.data.datasets.synthetic import load_synthetic
from archlab.errors import IncompatibleError
from archlab.study.config import Study
from archlab.study.runner import run_study


class _Quadrants(nn.Module):
    """Features: channel 0 = the image's top-left quadrant, channel 1 = its bottom-right one.
    Class 0 sums channel 0, class 1 channel 1, class 2 is minus everything (no positive evidence)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, x):
        B, _, H, W = x.shape
        tl = torch.zeros(H, W)
        tl[: H // 2, : W // 2] = 1
        br = torch.zeros(H, W)
        br[H // 2 :, W // 2 :] = 1
        return self.scale * torch.stack([x[:, 0] * tl, x[:, 0] * br], 1)  # (B, 2, H, W)

    def forward_head(self, f):
        s = f.sum(dim=(2, 3))  # (B, 2)
        return torch.cat([s, -s.sum(1, keepdim=True)], 1)  # (B, 3)


def test_grad_cam_finds_the_region_the_class_reads():
    images = torch.full((3, 1, 8, 8), 200, dtype=torch.uint8)
    cams = grad_cam(_Quadrants(), images, torch.tensor([0, 1, 2]))
    assert cams.shape == (3, 8, 8) and torch.allclose(cams.sum(dim=(1, 2)), torch.ones(3))
    tl = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    tl[..., :4, :4] = 1
    sc = mask_scores(cams, tl)
    assert sc["mass_in_mask"][0] == pytest.approx(1.0)  # class 0 looks at the top-left only
    assert sc["mass_in_mask"][1] == pytest.approx(0.0)  # class 1 at the bottom-right
    assert sc["peak_in_mask"].tolist() == [1.0, 0.0, 1.0]  # uniform map: argmax = first pixel (top-left)
    assert sc["mass_in_mask"][2] == pytest.approx(0.25) == sc["mask_area"][2]  # no evidence: uniform


def test_grad_cam_needs_a_feature_map():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward_features(self, x):
            return x.flatten(1)

        def forward_head(self, f):
            return self.fc(f)

    with pytest.raises(IncompatibleError, match=r"\(B, C, h, w\)"):
        grad_cam(Flat(), torch.zeros(1, 1, 2, 2), torch.tensor([0]))


def test_synthetic_object_masks_are_the_shapes():
    ds = load_synthetic(num_classes=3, num_samples=12, image_size=16, noise=0.0, object_masks=True)["train"]
    assert ds.masks.shape == (12, 1, 16, 16)
    assert torch.equal(ds.masks.bool(), ds.images > 0)  # noise 0: the shape's pixels are the lit ones
    assert load_synthetic(num_classes=3, num_samples=12, image_size=16)["train"].masks is None


def test_cam_analysis_in_a_study(tmp_path):
    study = Study.model_validate({
        "name": "cam", "model": {"name": "mnist_cnn"}, "train": {"epochs": 1, "batch_size": 16},
        "data": {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 60, "image_size": 16,
                                                   "object_masks": True}, "val_fraction": 0.2, "test_fraction": 0.25},
        "seeds": [0, 1], "baseline": "a", "variants": {"a": {}, "b": {"model": {"head": "mlp"}}},
        "analyses": {"cam": {"images": 10, "examples": 3}},
    })
    store = run_study(study, tmp_path)
    rows = store.rows(with_predictions=False)
    assert all(0.0 <= r.analysis["cam.mass_in_mask"] <= 1.0 for r in rows)
    assert all(r.analysis["cam.peak_in_mask"] in {i / 10 for i in range(11)} for r in rows)
    md = (tmp_path / "report.md").read_text()
    assert "#### cam.mass_in_mask" in md and "cam_synthetic16_a.png" in md
