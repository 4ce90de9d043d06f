"""DenseNet feature-reuse analysis: values, connectivity pattern, files."""

import csv
import math

import numpy as np
import pytest
import torch

import archlab
from archlab.analysis.feature_reuse import feature_reuse, write_feature_reuse
from archlab.errors import IncompatibleError


@pytest.fixture
def densenet():
    return archlab.create_model("densenet_bc", num_classes=4, depth=22, growth_rate=4)  # 3 layers per block


def test_matrix_values_and_connectivity(densenet):
    blocks = feature_reuse(densenet)
    assert [b.block for b in blocks] == ["denseblock1", "denseblock2", "denseblock3"]
    b1 = blocks[0]
    assert b1.sources == ["input", "layer1", "layer2", "layer3"]
    assert b1.targets == ["layer1", "layer2", "layer3", "transition"]
    m = b1.matrix
    assert m.shape == (4, 4)
    # layer t reads sources 0..t-1 only
    assert np.isnan(m[1, 0]) and np.isnan(m[3, 2]) and not np.isnan(m[2, 2])
    # value = mean |w| of the input channels belonging to the source (k0 = 2k = 8, k = 4)
    w = densenet.backbone.features.denseblock1.denselayer3.conv1.weight.detach()
    assert m[0, 2] == pytest.approx(float(w[:, :8].abs().mean()))
    assert m[2, 2] == pytest.approx(float(w[:, 12:16].abs().mean()))
    tw = densenet.backbone.features.transition1.conv.weight.detach()
    assert m[3, 3] == pytest.approx(float(tw[:, 16:20].abs().mean()))


def test_last_block_reads_into_the_linear_classifier(densenet):
    last = feature_reuse(densenet)[-1]
    assert last.targets[-1] == "classifier"
    fc = densenet.head.fc.weight.detach()
    c0 = densenet.backbone.features.denseblock3.in_channels
    assert last.matrix[0, -1] == pytest.approx(float(fc[:, :c0].abs().mean()))
    other = archlab.create_model("densenet_bc", num_classes=4, depth=22, growth_rate=4, head="mlp")
    assert feature_reuse(other)[-1].targets[-1] == "layer3"  # no single Linear reads the maps


def test_weights_set_to_zero_show_as_zero(densenet):
    with torch.no_grad():
        densenet.backbone.features.denseblock2.denselayer3.conv1.weight[:, :].zero_()
    assert feature_reuse(densenet)[1].matrix[:3, 2].tolist() == [0.0, 0.0, 0.0]


def test_write_files(densenet, tmp_path):
    paths = write_feature_reuse(densenet, tmp_path / "out", normalize="target")
    assert paths["png"].stat().st_size > 1000
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    # per block: 1 + 2 + 3 layer connections + 4 into the transition/classifier
    assert len(rows) == 3 * 10
    assert all(math.isfinite(float(r["mean_abs_weight"])) for r in rows)
    assert {r["target"] for r in rows} >= {"transition", "classifier"}


def test_imagenet_densenet_blocks():
    with torch.device("meta"):
        model = archlab.create_model("densenet121", num_classes=10)
    blocks = model.backbone.dense_blocks()
    assert [n for n, _, _ in blocks] == ["denseblock1", "denseblock2", "denseblock3", "denseblock4"]
    assert [t is not None for _, _, t in blocks] == [True, True, True, False]
    assert [len(b) for _, b, _ in blocks] == [6, 12, 24, 16]


def test_errors(densenet, tmp_path):
    with pytest.raises(IncompatibleError, match="DenseBlock"):
        feature_reuse(archlab.create_model("recurrent_resnet", num_classes=2, unroll=1))
    with pytest.raises(ValueError, match="normalize"):
        write_feature_reuse(densenet, tmp_path, normalize="rows")
