"""The rnn head (Elman / GRU / LSTM) and mixed NCP sequences, built from run configs, exact counts."""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.heads.rnn import RNNHead
from archlab.train.config import TrainConfig
from archlab.train.engine import build_run_model, prepare_data


def experiment(model: dict, *, image_size: int = 28, channels: int = 1, num_classes: int = 10):
    cfg = TrainConfig.model_validate({
        "data": {"name": "synthetic", "options": {"num_classes": num_classes, "num_samples": 100,
                                                   "image_size": image_size, "channels": channels}},
        "model": model,
    })
    return build_run_model(cfg, prepare_data(cfg))


GATES = {"elman": 1, "gru": 3, "lstm": 4}
TORCH = {"elman": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def rnn_params(cell, f, h, layers=1, dirs=1):
    """Per layer and direction: gates * (h*f_in + h*h + 2h) (two bias vectors, as torch)."""
    total, f_in = 0, f
    for _ in range(layers):
        total += dirs * GATES[cell] * (h * f_in + h * h + 2 * h)
        f_in = h * dirs
    return total


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_simple_rnn_block_over_flat_features_unrolled_7_times(cell):
    base = experiment({"name": "recurrent_resnet", "kwargs": {"unroll": 1}}, image_size=28)
    model = experiment({"name": "recurrent_resnet", "kwargs": {"unroll": 1}, "head": "rnn",
                        "head_kwargs": {"cell": cell, "hidden": 24, "unroll": 7}}, image_size=28)
    C, H, W = model.feature_shape
    F = C * H * W
    backbone = count_parameters(base) - (64 * 10 + 10)
    assert count_parameters(model) == backbone + rnn_params(cell, F, 24) + 24 * 10 + 10
    assert count_parameters(model.head.rnn) == sum(p.numel() for p in TORCH[cell](F, 24).parameters())
    assert model.head.steps == 7
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_flat_sequence_feeds_the_same_features_at_every_step():
    head = RNNHead((4, 2, 2), 3, cell="elman", hidden=5, unroll=7)
    x = torch.randn(2, 4, 2, 2)
    seq = head.sequence_of(x)
    assert seq.shape == (2, 7, 16) and torch.equal(seq[:, 0], x.flatten(1)) and torch.equal(seq[:, 6], x.flatten(1))
    # equal to unrolling torch's cell by hand 7 times on the same input
    cell = torch.nn.RNNCell(16, 5)
    with torch.no_grad():
        cell.weight_ih.copy_(head.rnn.weight_ih_l0)
        cell.weight_hh.copy_(head.rnn.weight_hh_l0)
        cell.bias_ih.copy_(head.rnn.bias_ih_l0)
        cell.bias_hh.copy_(head.rnn.bias_hh_l0)
    h = torch.zeros(2, 5)
    for _ in range(7):
        h = cell(x.flatten(1), h)
    torch.testing.assert_close(head(x), head.fc(h))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_head_over_a_sequence_adapter_two_layers_bidirectional(cell):
    model = experiment({"name": "mnist_cnn", "head": "rnn",
                        "head_kwargs": {"cell": cell, "sequence": "rows", "hidden": 16, "num_layers": 2,
                                        "bidirectional": True, "input_features": 12}})
    C, H, W = model.feature_shape
    head = model.head
    assert head.steps == H
    expected = linear(C * W, 12) + rnn_params(cell, 12, 16, layers=2, dirs=2) + linear(32, 10)
    assert count_parameters(head) == expected
    torch_rnn = TORCH[cell](12, 16, num_layers=2, bidirectional=True)
    assert count_parameters(head.rnn) == sum(p.numel() for p in torch_rnn.parameters())


def linear(i, o):
    return i * o + o


@pytest.mark.parametrize("kwargs, match", [
    ({"cell": "transformer"}, r"head 'rnn': option cell='transformer' is not valid.*allowed: one of 'elman', 'gru', 'lstm'"),
    ({"sequence": "rows", "unroll": 3}, "unroll"),
    ({"nonlinearity": "relu", "cell": "gru"}, "nonlinearity"),
    ({"hidden": "128"}, "hidden"),
    ({"unroll": 0}, "unroll"),
])
def test_rnn_head_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        experiment({"name": "mnist_cnn", "head": "rnn", "head_kwargs": kwargs})


# ---------------------------------------------------------------- 000: mixed sequence modes

def test_ncp_head_mixes_rows_and_channels():
    kw = {"name": "crnet", "head": "ncp_original"}
    rows = experiment({**kw, "head_kwargs": {"sequence": "rows"}}, image_size=224, num_classes=2)
    mixed = experiment({**kw, "head_kwargs": {"sequence": ["rows", "channels"]}}, image_size=224, num_classes=2)
    head = mixed.head
    assert head.sequence == "rows+channels" and head.steps == 8 + 16
    # the preset's reduction per mode: rows = pool 8 + 1x1 conv 128->4 (8 steps of 32, no
    # projection); channels = 1x1 conv 128->16 (16 steps of 169 -> Linear -> 32 sensory)
    extra_adapter = (128 * 16 + 16) + (169 * 32 + 32)
    extra_fc = (24 - 8) * 1 * 2  # one motor neuron per step, 2 classes
    assert count_parameters(mixed) == count_parameters(rows) + extra_adapter + extra_fc
    x = torch.randn(2, 1, 224, 224)
    assert mixed(x).shape == (2, 2)
    feats = mixed.forward_features(x)
    seq = head.adapter(feats)
    torch.testing.assert_close(seq[:, :8], head.adapter.adapters[0](feats))
    torch.testing.assert_close(seq[:, 8:], head.adapter.adapters[1](feats))


def test_mixed_sequence_in_the_generic_ncp_head_with_mode_options():
    model = experiment({"name": "mnist_cnn", "head": "ncp",
                        "head_kwargs": {"sequence": ["rows", "channels"], "sensory": 16,
                                        "mode_options": {"channels": {"channels": 8}}}})
    parts = model.head.adapter.adapters
    assert parts[0].map_shape == (20, 4, 4) and parts[1].map_shape == (8, 4, 4)
    assert model.head.steps == 4 + 8


@pytest.mark.parametrize("seq, match", [(["rows", "diagonal"], "unknown sequence mode 'diagonal'"),
                                        (["rows", "rows"], "two or more different"), (["rows"], "two or more"),
                                        (3, "sequence")])
def test_mixed_sequence_bad_modes(seq, match):
    with pytest.raises(ConfigError, match=match):
        experiment({"name": "mnist_cnn", "head": "ncp_original", "head_kwargs": {"sequence": seq}})


def test_mixed_sequence_needs_equal_step_features():
    with pytest.raises(ConfigError, match="different features per step"):
        experiment({"name": "mnist_cnn", "head": "ncp", "head_kwargs": {"sequence": ["rows", "channels"], "sensory": None}})
