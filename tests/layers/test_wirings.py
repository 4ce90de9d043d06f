"""Wirings: same draws as ncps, idempotent builds, config round trips, bad arguments."""

import json

import numpy as np
import pytest

from archlab.errors import ConfigError
from archlab.layers import wirings as W
from archlab.layers.wirings import Wiring

ncps_wirings = pytest.importorskip("ncps.wirings")

NCP_CASES = [
    ((12, 6, 1, 6, 4, 6, 6), 32),  # the original NCP
    ((48, 24, 4, 24, 16, 24, 24), 512),  # seed 000's custom NCP
    ((5, 4, 2, 3, 2, 5, 3), 7),  # unreached inter/command neurons get filled in
    ((3, 5, 4, 2, 1, 0, 2), 9),  # unreached command -> motor fill-in, no recurrence
]


def _same(ref, ours):
    assert np.array_equal(np.asarray(ref.adjacency_matrix), ours.adjacency)
    assert np.array_equal(np.asarray(ref.sensory_adjacency_matrix), ours.sensory_adjacency)


@pytest.mark.parametrize("args,inputs", NCP_CASES)
@pytest.mark.parametrize("seed", [22222, 0, 5])
def test_ncp_equals_ncps(args, inputs, seed):
    ref = ncps_wirings.NCP(*args, seed=seed)
    ref.build(inputs)
    ours = W.ncp(*args, seed=seed, input_dim=inputs)
    _same(ref, ours)
    assert ours.units == sum(args[:3]) and ours.output_dim == args[2]
    assert ours.layers == [ref.get_neurons_of_layer(i) for i in range(3)]


def test_original_ncp_counts():
    w = W.ncp(12, 6, 1, 6, 4, 6, 6, input_dim=32)
    assert w.sensory_synapse_count == 192  # 32 inputs x fan-out 6, all inter neurons reached
    assert 50 <= w.synapse_count <= 60  # 48 inter->command + <=6 recurrent + 6 motor
    assert w.neuron_type(0) == "motor" and w.neuron_type(1) == "command" and w.neuron_type(18) == "inter"
    # every sensory input reaches exactly sensory_fanout inter neurons and nothing else
    assert (np.abs(w.sensory_adjacency).sum(1) == 6).all()
    assert np.abs(w.sensory_adjacency[:, :7]).sum() == 0


@pytest.mark.parametrize("units,out,sparsity,seed", [(19, 1, 0.5, 22222), (30, 4, 0.3, 3), (40, 8, 0.9, 1)])
def test_auto_ncp_equals_ncps(units, out, sparsity, seed):
    ref = ncps_wirings.AutoNCP(units, out, sparsity, seed)
    ref.build(11)
    _same(ref, W.auto_ncp(units, out, sparsity, seed, input_dim=11))


@pytest.mark.parametrize("units,out,self_conn", [(8, None, True), (10, 3, False)])
def test_fully_connected_equals_ncps(units, out, self_conn):
    ref = ncps_wirings.FullyConnected(units, out, 5, self_conn)
    ref.build(6)
    ours = W.fully_connected(units, out, seed=5, self_connections=self_conn, input_dim=6)
    _same(ref, ours)
    assert ours.synapse_count == units * units - (0 if self_conn else units)


@pytest.mark.parametrize("units,out,sparsity", [(8, None, 0.0), (10, 3, 0.6)])
def test_random_equals_ncps(units, out, sparsity):
    ref = ncps_wirings.Random(units, out, sparsity, 9)
    ref.build(6)
    _same(ref, W.random(units, out, sparsity, seed=9, input_dim=6))


def test_building_twice_does_not_add_synapses():
    w = W.ncp(12, 6, 1, 6, 4, 6, 6)
    w.build(32)
    adj, sens = w.adjacency.copy(), w.sensory_adjacency.copy()
    w.build(32)
    assert np.array_equal(w.adjacency, adj) and np.array_equal(w.sensory_adjacency, sens)
    # ncps's own wiring keeps drawing and adds synapses (issue #75): the behaviour we fix
    ref = ncps_wirings.NCP(12, 6, 1, 6, 4, 6, 6)
    ref.build(32)
    before = np.abs(ref.adjacency_matrix).sum() + np.abs(ref.sensory_adjacency_matrix).sum()
    ref.build(32)  # what a second layer reusing the wiring does
    assert np.abs(ref.adjacency_matrix).sum() + np.abs(ref.sensory_adjacency_matrix).sum() > before


def test_built_for_leaves_the_original_untouched():
    w = W.ncp(12, 6, 1, 6, 4, 6, 6)
    a = w.built_for(32)
    b = w.built_for(32)
    assert not w.is_built()
    assert a == b and a is not b
    assert w.built_for(40).input_dim == 40  # an unbuilt wiring serves several input sizes


def test_conflicting_input_dim_is_an_error():
    w = W.ncp(12, 6, 1, 6, 4, 6, 6, input_dim=32)
    with pytest.raises(ConfigError, match=r"input_dim=32.*64"):
        w.build(64)
    with pytest.raises(ConfigError, match="not built"):
        W.ncp(12, 6, 1, 6, 4, 6, 6).built_for(None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: W.ncp(12, 6, 1, 6, 4, 6, 6, seed=3, input_dim=20),
        lambda: W.ncp(12, 6, 1, 6, 4, 6, 6),
        lambda: W.auto_ncp(19, 2, 0.4, seed=7, input_dim=5),
        lambda: W.fully_connected(6, 2, seed=4, input_dim=3),
        lambda: W.random(6, 2, 0.5, seed=4, input_dim=3),
        lambda: W.custom([[0, 1], [-1, 0]], [[1, 0]], output_dim=1),
    ],
)
def test_config_round_trip(make):
    w = make()
    cfg = json.loads(json.dumps(w.to_config()))  # JSON-able
    again = Wiring.from_config(cfg)
    assert again == w
    assert again.to_config() == w.to_config()


def test_from_ncps_copies_matrices_and_layers():
    ref = ncps_wirings.NCP(5, 4, 2, 3, 2, 5, 3, seed=1)
    ref.build(7)
    w = Wiring.from_ncps(ref)
    _same(ref, w)
    assert w.layers == [ref.get_neurons_of_layer(i) for i in range(3)] and w.output_dim == 2


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"sensory_fanout": 13}, r"sensory_fanout=13 .*12 inter.*sensory_fanout <= 12"),
        ({"inter_fanout": 7}, r"inter_fanout=7 .*6 command.*inter_fanout <= 6"),
        ({"motor_fanin": 7}, r"motor_fanin=7 .*6 command.*motor_fanin <= 6"),
        ({"inter": 0}, r"inter must be an int >= 1, got 0"),
        ({"recurrent_command_synapses": -1}, r"recurrent_command_synapses must be an int >= 0"),
        ({"motor": 1.5}, r"motor must be an int"),
    ],
)
def test_ncp_bad_arguments(kwargs, pattern):
    args = dict(inter=12, command=6, motor=1, sensory_fanout=6, inter_fanout=4, recurrent_command_synapses=6, motor_fanin=6)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        W.ncp(**args)


def test_other_bad_arguments():
    with pytest.raises(ConfigError, match="output_size=17 must be less than units-2=17"):
        W.auto_ncp(19, 17)
    with pytest.raises(ConfigError, match="sparsity"):
        W.auto_ncp(19, 2, sparsity=0.05)
    with pytest.raises(ConfigError, match="sparsity"):
        W.random(8, sparsity=1.0)
    with pytest.raises(ConfigError, match="output_dim=9 is larger than units=8"):
        W.fully_connected(8, 9)
    with pytest.raises(ConfigError, match="square"):
        W.custom([[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ConfigError, match="-1, 0 or \\+1"):
        W.custom([[0, 2], [1, 0]])
    with pytest.raises(ValueError, match="unknown wiring kind 'ncpp'"):
        Wiring.from_config({"kind": "ncpp"})
