"""Weight transplant (seed 002 figs. 11-12): rotation twins of a trained baseline, evaluated."""

import csv

import pytest
import torch
import torch.nn as nn

import archlab
from archlab.analysis.transplant import eligible_convs, rotation_twin, transplant, transplant_analysis
from archlab.errors import CheckpointError, ConfigError
from archlab.layers import NormalizedConv2d, RotationInvariantConv2d


def _baseline(**kw):
    torch.manual_seed(0)
    return archlab.create_model("mini_vgg", num_classes=4, input_size=16, **kw)


def test_twin_swaps_the_last_convs_and_keeps_weights():
    base = _baseline()
    twin = rotation_twin(base, rotations=8, last=2)
    kinds = [type(m) for m in twin.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert kinds == [nn.Conv2d, nn.Conv2d, RotationInvariantConv2d, RotationInvariantConv2d]
    assert all(type(m) is nn.Conv2d for m in base.backbone.modules() if isinstance(m, nn.Conv2d))  # untouched
    sd_b, sd_t = base.state_dict(), twin.state_dict()
    assert list(sd_b) == list(sd_t) and all(torch.equal(sd_b[k], sd_t[k]) for k in sd_b)


def test_twin_equals_the_registered_variant_loaded_with_baseline_weights():
    base = _baseline()
    twin = rotation_twin(base, rotations=4, last=3).eval()
    variant = transplant(base, archlab.create_model("mini_vgg", num_classes=4, input_size=16, rot_convs=3)).eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(twin(x), variant(x))


def test_zero_rotation_convs_is_the_baseline():
    base = _baseline().eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(rotation_twin(base, last=0)(x), base(x))


def test_twin_of_normalized_convs_stays_normalized():
    twin = rotation_twin(_baseline(norm_conv=True), rotations=4, last=1)
    last = [m for m in twin.modules() if isinstance(m, RotationInvariantConv2d)]
    assert len(last) == 1 and last[0].normalize
    assert sum(isinstance(m, NormalizedConv2d) for m in twin.modules()) == 3


def test_explicit_conv_names():
    base = _baseline()
    names = eligible_convs(base)
    assert names == ["backbone.stage1.0", "backbone.stage1.2", "backbone.stage2.0", "backbone.stage2.2"]
    twin = rotation_twin(base, convs=["backbone.stage1.0"])
    assert isinstance(twin.backbone.stage1[0], RotationInvariantConv2d)
    with pytest.raises(ConfigError, match="not eligible"):
        rotation_twin(base, convs=["backbone.fc.1"])


def test_transplant_analysis_writes_accuracy_and_rotation_files(tmp_path):
    base = _baseline()
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 2])
    res = transplant_analysis(base, x, y, tmp_path, twins=[(8, 4), (4, 1)], angles=range(0, 360, 45))
    assert set(res["accuracy"]) == {"baseline", "8_rot_4", "4_rot_1"}
    with res["paths"]["accuracy_csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["baseline", "8_rot_4", "4_rot_1"]
    assert rows[1]["rotations"] == "8" and rows[1]["rot_convs"] == "4"
    for key in ("curve_png", "boxplot_png", "per_image_csv", "summary_csv"):
        assert res["paths"][key].name.startswith("transplant_") and res["paths"][key].is_file()
    # accuracy at angle 0 from the rotation analysis agrees with the plain evaluation
    for name, acc in res["accuracy"].items():
        assert res["rotation"]["summary"][name]["accuracy_at_first_angle"] == pytest.approx(acc)


def test_bad_inputs():
    base = _baseline()
    with pytest.raises(ConfigError, match="last=5"):
        rotation_twin(base, last=5)
    with pytest.raises(ConfigError, match="'concat'"):
        rotation_twin(base, pool="concat")
    with pytest.raises(ValueError, match="rotations=3"):
        rotation_twin(base, rotations=3)
    with pytest.raises(CheckpointError, match="cannot transplant"):
        transplant(base, archlab.create_model("mini_vgg", num_classes=4, input_size=16, conv_bias=False))
