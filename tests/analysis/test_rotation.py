"""Rotation analysis (seed 002 figs. 9-10): image rotation, per-angle probabilities, CSV + PNG outputs."""

import csv

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn as nn
import torch.nn.functional as F

import archlab
from archlab.analysis.rotation import rotate_images, rotation_analysis, rotation_probabilities
from archlab.errors import ConfigError, DataError


class ConstantModel(nn.Module):
    """Always predicts ``cls`` with probability ~ softmax of a fixed logit."""

    def __init__(self, cls: int, num_classes: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_classes).index_fill(0, torch.tensor(cls), 2.0))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


class QuadrantModel(nn.Module):
    """Class = which quadrant holds the brightest mass; rotation-sensitive by construction."""

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        q = [x[..., :h, :w], x[..., :h, w:], x[..., h:, w:], x[..., h:, :w]]  # clockwise from top-left
        return 20 * torch.stack([t.mean((1, 2, 3)) for t in q], 1)


def test_rotate_images_90_multiples_are_exact_and_counter_clockwise():
    x = torch.randn(2, 3, 7, 9)
    out = rotate_images(x, [0, 180])
    torch.testing.assert_close(out[:, 0], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], torch.rot90(x, 2, (2, 3)), atol=1e-5, rtol=0)
    sq = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(rotate_images(sq, [90])[:, 0], torch.rot90(sq, 1, (2, 3)), atol=1e-5, rtol=0)


def test_rotate_images_matches_scipy_inside_the_circle():
    img = torch.rand(1, 1, 32, 32)
    yy, xx = np.mgrid[:32, :32]
    inside = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 13**2
    for angle in (30.0, 137.0):
        ours = rotate_images(img, [angle])[0, 0, 0].numpy()
        ref = ndi.rotate(img[0, 0].numpy(), angle, reshape=False, order=1)
        np.testing.assert_allclose(ours[inside], ref[inside], atol=1e-4)


def test_rotate_fill_value():
    out = rotate_images(torch.ones(1, 1, 8, 8), [45], fill=0.5)
    assert out[0, 0, 0, 0, 0].item() == pytest.approx(0.5)


def test_probabilities_of_constant_and_quadrant_models():
    imgs = torch.zeros(2, 1, 8, 8)
    imgs[:, :, :4, :4] = 1.0  # top-left quadrant bright -> class 0
    labels = torch.tensor([0, 1])
    p, c = rotation_probabilities(ConstantModel(0, 4), imgs, labels, [0, 90, 180, 270])
    assert p.shape == (2, 4) and c.dtype == torch.bool
    assert c[0].all() and not c[1].any()
    p, c = rotation_probabilities(QuadrantModel(), imgs, labels, [0, 90, 180, 270], batch_size=3)
    # counter-clockwise 90 moves top-left to bottom-left (class 3), 180 -> bottom-right (2), 270 -> top-right (1)
    assert c[0].tolist() == [True, False, False, False]
    assert c[1].tolist() == [False, False, False, True]


def test_model_mode_is_restored():
    m = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))
    m.train()
    rotation_probabilities(m, torch.randn(1, 1, 8, 8), torch.tensor([0]), [0, 10])
    assert m.training and m[1].training


def _trained_mini_vgg(steps: int = 3):
    torch.manual_seed(0)
    m = archlab.create_model("mini_vgg", num_classes=3, input_size=16)
    x, y = torch.rand(12, 3, 16, 16), torch.arange(12) % 3
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m, x, y


def test_analysis_of_trained_models_writes_curve_boxplot_and_csv(tmp_path):
    model, x, y = _trained_mini_vgg()
    models = {"baseline": model, "always_0": ConstantModel(0)}
    angles = range(0, 360, 10)
    res = rotation_analysis(models, x[:4], y[:4], tmp_path, angles, example=1, transform=lambda t: (t - 0.5) / 0.25)
    paths = res["paths"]
    for key in ("curve_csv", "curve_png", "per_image_csv", "boxplot_png", "summary_csv"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    with paths["curve_csv"].open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["angle", "baseline", "always_0"] and len(rows) == 1 + 36
    with paths["per_image_csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4
    always = [float(r["pct_correct"]) for r in rows if r["model"] == "always_0"]
    assert always == [100.0 if int(r["label"]) == 0 else 0.0 for r in rows if r["model"] == "always_0"]
    assert res["prob"]["baseline"].shape == (4, 36)
    assert 0.0 <= res["summary"]["baseline"]["mean"] <= 100.0
    assert paths["boxplot_png"].read_bytes()[:4] == b"\x89PNG"


def test_uint8_images_are_scaled():
    imgs = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.max().item())
            return torch.zeros(x.shape[0], 2)

    rotation_probabilities(Spy(), imgs, torch.tensor([0]), [0])
    assert seen == [pytest.approx(1.0)]


def test_bad_inputs(tmp_path):
    m = ConstantModel(0)
    with pytest.raises(DataError, match="2 images but 3 labels"):
        rotation_probabilities(m, torch.zeros(2, 1, 4, 4), torch.zeros(3), [0])
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        rotation_probabilities(m, torch.zeros(4, 4), torch.zeros(4), [0])
    with pytest.raises(ConfigError, match="angles"):
        rotation_probabilities(m, torch.zeros(1, 1, 4, 4), torch.zeros(1), [])
    with pytest.raises(ConfigError, match="models is empty"):
        rotation_analysis({}, torch.zeros(1, 1, 4, 4), torch.zeros(1), tmp_path)
    with pytest.raises(ConfigError, match="example=5"):
        rotation_analysis(m, torch.zeros(1, 1, 4, 4), torch.zeros(1), tmp_path, [0], example=5)
