"""SE excitation analysis: collected values per block and class, files, bad input."""

import csv

import pytest
import torch
import torch.nn as nn

import archlab
from archlab.analysis.excitation import collect_excitations, write_excitation_report
from archlab.errors import ConfigError, IncompatibleError
from archlab.layers.squeeze_excite import SqueezeExcitation


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.se = SqueezeExcitation(4, 2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.se(self.conv(x)).mean((2, 3)))


def test_values_are_the_se_excitations_grouped_by_class():
    model = _Tiny()
    x = torch.randn(10, 3, 6, 6)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    out = collect_excitations(model, x, y, classes=[0, 2], batch_size=3)
    assert list(out) == ["se"] and list(out["se"]) == [0, 2]
    with torch.no_grad():
        ref = model.se.excitation(model.conv(x)).flatten(1)  # (N, C)
    torch.testing.assert_close(out["se"][0], ref[y == 0])
    torch.testing.assert_close(out["se"][2], ref[y == 2])
    assert model.training and model.se.record is False  # mode and flags restored


def test_preprocess_and_block_patterns():
    model = archlab.create_model("resnet18", num_classes=3, cifar_stem=True, se=True, input_size=16)
    x = torch.randint(0, 255, (6, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = collect_excitations(model, x, y, blocks=["backbone.layer4.*"], preprocess=lambda b: b.float() / 255)
    assert list(out) == ["backbone.layer4.0.se", "backbone.layer4.1.se"]
    assert out["backbone.layer4.1.se"][1].shape == (2, 512)


def test_report_files(tmp_path):
    model = archlab.create_model("efficientnet_scaled", num_classes=3, phi=-6, base_resolution=32)
    x, y = torch.randn(9, 3, 32, 32), torch.arange(9) % 3
    paths = write_excitation_report(model, x, y, tmp_path, classes=[0, 1], class_names=["cat", "dog", "ship"],
                                    max_panels=4)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    n_se = sum(isinstance(m, SqueezeExcitation) for m in model.modules())
    channels = sum(m.channels for m in model.modules() if isinstance(m, SqueezeExcitation))
    assert len(rows) == 2 * channels and len({r["block"] for r in rows}) == n_se
    assert {r["class_name"] for r in rows} == {"cat", "dog"}
    assert all(0 < float(r["mean"]) < 1 and r["n"] == "3" for r in rows)


def test_bad_input():
    model = _Tiny()
    x, y = torch.randn(4, 3, 6, 6), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ConfigError, match="same N"):
        collect_excitations(model, x, y[:3])
    with pytest.raises(ConfigError, match=r"classes \[5\]"):
        collect_excitations(model, x, y, classes=[0, 5])
    with pytest.raises(ConfigError, match="no SE module matches"):
        collect_excitations(model, x, y, blocks=["layer9*"])
    with pytest.raises(IncompatibleError, match="se=True"):
        collect_excitations(nn.Sequential(nn.Conv2d(3, 2, 1)), x, y)
