"""Connections analysis (seed 002 fig. 3): gate values per epoch, CSV + plot, pruning threshold."""

import copy
import csv

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.analysis.connections import connections_analysis, gate_history, gates_table, read_gates
from archlab.errors import ConfigError


def _net(**kw):
    torch.manual_seed(0)
    return archlab.create_model(
        "connected_net", num_classes=3, input_size=8, blocks=["conv:4", "maxpool:2", "conv:4"], **kw
    )


def _train_epochs(model, epochs=3, steps=4):
    """A few 'epochs' of Adam on a fixed batch, recording gates and state dicts after each."""
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 3
    opt = torch.optim.Adam(model.parameters(), 0.05)
    gates, states = [], []
    for _ in range(epochs):
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        gates.append(read_gates(model))
        states.append(copy.deepcopy(model.state_dict()))
    return gates, states


def test_read_gates_names_and_values():
    g = read_gates(_net(gate_init=0.0))
    assert list(g) == ["connection_0", "connection_1", "connection_2"]
    assert g["connection_1"]["inputs"] == ["input", "block0:conv:4", "block1:maxpool:2"]
    assert g["connection_1"]["gates"] == [[0.5], [0.5], [0.5]]
    per_map = read_gates(_net(shared=False))
    assert [len(v) for v in per_map["connection_0"]["gates"]] == [3, 4]


def test_gates_per_epoch_from_snapshots_models_and_state_dicts(tmp_path):
    model = _net()
    gates, states = _train_epochs(model)
    # the gates move during training
    assert gates[0]["connection_2"]["gates"] != gates[-1]["connection_2"]["gates"]
    from_states = gate_history(states, model=_net())
    assert from_states == gates
    assert gate_history([model])[0] == gates[-1]
    res = connections_analysis(gates, tmp_path, threshold=0.5)
    with res["paths"]["gates_csv"].open() as f:
        rows = list(csv.DictReader(f))
    n_gates = 2 + 3 + 4
    assert len(rows) == 3 * n_gates
    assert sorted({int(r["epoch"]) for r in rows}) == [1, 2, 3]
    assert rows[0]["connection"] == "connection_0" and rows[0]["input_name"] == "input"
    assert res["paths"]["gates_png"].read_bytes()[:4] == b"\x89PNG"
    assert set(res["kept"]) == set(res["final"])
    for conn, kept in res["kept"].items():
        strengths = res["final"][conn]
        assert kept == ([i for i, s in enumerate(strengths) if s >= 0.5] or [strengths.index(max(strengths))])


def test_analysis_threshold_agrees_with_model_pruning(tmp_path):
    model = _net()
    with torch.no_grad():
        model.backbone.connections[2].weight.copy_(torch.tensor([-4.0, 3.0, -2.0, 4.0]))
    res = connections_analysis([model], tmp_path, threshold=0.5)
    pattern = model.pruned_connections(0.5)
    assert res["kept"]["connection_2"] == [1, 3]
    assert pattern[2] == [1, 3]  # source numbers equal input positions for the full pattern


def test_table_rows():
    rows = gates_table([read_gates(_net(gate_init=0.0))])
    assert rows[0] == {"epoch": 1, "connection": "connection_0", "input": 0, "input_name": "input", "feature": 0, "gate": 0.5}


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="no GatedConnection"):
        read_gates(archlab.create_model("mini_vgg", num_classes=3, input_size=16))
    with pytest.raises(ConfigError, match="empty"):
        gate_history([])
    with pytest.raises(ConfigError, match="pass model="):
        gate_history([_net().state_dict()])
    with pytest.raises(ConfigError, match="threshold"):
        connections_analysis([_net()], tmp_path, threshold=2.0)
