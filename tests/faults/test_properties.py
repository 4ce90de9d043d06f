"""Property-based tests: the study-file parser and the wiring builders (hypothesis).

- Any YAML mapping, however wrong, gives a Study or a ConfigError — never another exception
  (which the CLI would show as a traceback instead of one red line).
- Any valid wiring parameters build; the masks keep the promised fan-in/fan-out; building again
  adds no synapse; to_config/from_config round-trips.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from archlab.errors import ConfigError
from archlab.layers import wirings
from archlab.layers.wirings import Wiring
from archlab.study.config import Study, load_study

from .conftest import fault_study

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------- study files

WORDS = [
    "name", "description", "data", "datasets", "model", "train", "variants", "seeds", "baseline",
    "smoke", "options", "head", "head_kwargs", "kwargs", "epochs", "batch_size", "optim", "lr",
    "scheduler", "threads", "synthetic", "digits", "mnist_cnn", "linear", "mlp", "a", "b",
    "val_fraction", "test_fraction", "num_classes", "image_size", "loss", "monitor", "hidden",
]
keys = st.sampled_from(WORDS) | st.text(max_size=6)
scalars = (
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10) | st.sampled_from(WORDS)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys | st.integers(-2, 3), inner, max_size=5),
    max_leaves=25,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_studies(draw):
    """A valid study with one to three random edits: a value replaced, a key dropped or added."""
    study = copy.deepcopy(fault_study(smoke={"train": {"epochs": 1}, "seeds": [0]}))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(study) if p]
        path = draw(st.sampled_from(paths))
        *parent_path, last = path
        parent = study
        for p in parent_path:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "drop" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
    return study


def _load(tmp_path_factory, data, smoke):
    path = tmp_path_factory.mktemp("prop") / "study.yaml"
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:  # not representable as YAML: nothing to test
        assume(False)
    path.write_text(text)
    try:
        study = load_study(path, smoke=smoke)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say what is wrong"
        return None
    assert isinstance(study, Study)
    for key in study.grid():  # a loaded study resolves every cell
        study.resolve(key)
    return study


@SETTINGS
@given(data=st.dictionaries(keys, values, max_size=8), smoke=st.booleans())
def test_random_mappings_load_or_raise_config_error(tmp_path_factory, data, smoke):
    _load(tmp_path_factory, data, smoke)


@SETTINGS
@given(data=mutated_studies(), smoke=st.booleans())
def test_mutated_studies_load_or_raise_config_error(tmp_path_factory, data, smoke):
    _load(tmp_path_factory, data, smoke)


@SETTINGS
@given(text=st.text(max_size=200))
@example(text="\x1f")  # a control character: refused by the YAML reader itself
@example(text="a: &a [*a]")  # a recursive alias
def test_random_text_is_a_study_or_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("txt") / "study.yaml"
    path.write_text(text)
    try:
        load_study(path)
    except ConfigError:
        pass


# ---------------------------------------------------------------------------------- wirings


@st.composite
def ncp_args(draw):
    inter = draw(st.integers(1, 12))
    command = draw(st.integers(1, 12))
    return {
        "inter": inter,
        "command": command,
        "motor": draw(st.integers(1, 6)),
        "sensory_fanout": draw(st.integers(1, inter)),
        "inter_fanout": draw(st.integers(1, command)),
        "recurrent_command_synapses": draw(st.integers(0, 20)),
        "motor_fanin": draw(st.integers(1, command)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _check_ncp_masks(w: Wiring, sensory_fanout, inter_fanout, recurrent, motor_fanin):
    adj, sens = np.abs(w.adjacency), np.abs(w.sensory_adjacency)
    inter, command, motor = (np.array(layer) for layer in w.layers)
    assert set(np.unique(w.adjacency)) <= {-1, 0, 1} and set(np.unique(w.sensory_adjacency)) <= {-1, 0, 1}
    # sensory -> inter only; each input reaches >= sensory_fanout inter neurons, each inter neuron is reached
    assert sens[:, np.concatenate([command, motor])].sum() == 0
    assert (sens[:, inter].sum(1) >= sensory_fanout).all() and (sens[:, inter].sum(0) >= 1).all()
    # inter -> command only; fan-out >= inter_fanout, every command neuron reached
    assert adj[np.ix_(inter, np.concatenate([inter, motor]))].sum() == 0
    assert (adj[np.ix_(inter, command)].sum(1) >= inter_fanout).all()
    assert (adj[np.ix_(inter, command)].sum(0) >= 1).all()
    # command -> command: at most the drawn number of recurrent synapses
    assert adj[np.ix_(command, command)].sum() <= recurrent
    # command -> motor: each motor neuron has fan-in >= motor_fanin, every command neuron drives one
    assert adj[np.ix_(command, inter)].sum() == 0
    assert (adj[np.ix_(command, motor)].sum(0) >= motor_fanin).all()
    assert (adj[np.ix_(command, motor)].sum(1) >= 1).all()
    # motor neurons are outputs: no outgoing synapse
    assert adj[motor, :].sum() == 0


def _check_build_is_idempotent_and_round_trips(w: Wiring, input_dim: int):
    unbuilt = Wiring.from_config(w.to_config())
    assert not unbuilt.is_built() and unbuilt == w
    a, b = w.built_for(input_dim), w.built_for(input_dim)
    assert not w.is_built() and a == b  # the wiring itself is left alone
    before = (a.synapse_count, a.sensory_synapse_count, a.adjacency.copy(), a.sensory_adjacency.copy())
    assert a.build(input_dim) is a  # building again adds nothing
    assert (a.synapse_count, a.sensory_synapse_count) == before[:2]
    assert np.array_equal(a.adjacency, before[2]) and np.array_equal(a.sensory_adjacency, before[3])
    again = Wiring.from_config(a.to_config())
    assert again.is_built() and again == a
    assert yaml.safe_load(yaml.safe_dump(a.to_config())) == a.to_config()  # plain data
    with pytest.raises(ConfigError, match="built for input_dim"):
        a.build(input_dim + 1)
    return a


@SETTINGS
@given(args=ncp_args(), input_dim=st.integers(1, 16))
def test_ncp_masks_keep_their_fan_in_and_out(args, input_dim):
    w = wirings.ncp(**args)
    built = _check_build_is_idempotent_and_round_trips(w, input_dim)
    assert built.units == args["inter"] + args["command"] + args["motor"] and built.output_dim == args["motor"]
    _check_ncp_masks(
        built, args["sensory_fanout"], args["inter_fanout"], args["recurrent_command_synapses"], args["motor_fanin"]
    )


@SETTINGS
@given(
    units=st.integers(5, 40), data=st.data(), sparsity=st.floats(0.1, 1.0), seed=st.integers(0, 10**6),
    input_dim=st.integers(1, 16),
)
def test_auto_ncp_builds_and_keeps_its_fan_in_and_out(units, data, sparsity, seed, input_dim):
    output_size = data.draw(st.integers(1, units - 3))
    w = wirings.auto_ncp(units, output_size, sparsity=sparsity, seed=seed)
    built = _check_build_is_idempotent_and_round_trips(w, input_dim)
    sensory_fanout, inter_fanout, recurrent, motor_fanin, _ = w._ncp_numbers
    _check_ncp_masks(built, sensory_fanout, inter_fanout, recurrent, motor_fanin)


@SETTINGS
@given(
    units=st.integers(1, 12), data=st.data(), self_connections=st.booleans(), seed=st.integers(0, 10**6),
    input_dim=st.integers(1, 8),
)
def test_fully_connected_connects_everything(units, data, self_connections, seed, input_dim):
    out = data.draw(st.integers(1, units))
    w = wirings.fully_connected(units, out, seed=seed, self_connections=self_connections)
    built = _check_build_is_idempotent_and_round_trips(w, input_dim)
    expected = np.ones((units, units), dtype=int) - (0 if self_connections else np.eye(units, dtype=int))
    assert np.array_equal(np.abs(built.adjacency), expected)
    assert (np.abs(built.sensory_adjacency) == 1).all()


@SETTINGS
@given(
    units=st.integers(1, 12), sparsity=st.floats(0.0, 0.99), seed=st.integers(0, 10**6), input_dim=st.integers(1, 8),
)
def test_random_wiring_has_the_promised_density(units, sparsity, seed, input_dim):
    w = wirings.random(units, sparsity=sparsity, seed=seed)
    built = _check_build_is_idempotent_and_round_trips(w, input_dim)
    density = 1.0 - sparsity
    assert built.synapse_count == int(np.round(units * units * density))
    assert built.sensory_synapse_count == int(np.round(input_dim * units * density))


@SETTINGS
@given(data=st.data(), units=st.integers(1, 8), input_dim=st.integers(1, 6))
def test_custom_wiring_keeps_its_matrices(data, units, input_dim):
    pol = st.sampled_from([-1, 0, 1])
    adj = np.array(data.draw(st.lists(st.lists(pol, min_size=units, max_size=units), min_size=units, max_size=units)))
    sens = np.array(
        data.draw(st.lists(st.lists(pol, min_size=units, max_size=units), min_size=input_dim, max_size=input_dim))
    )
    w = wirings.custom(adj, sens, output_dim=data.draw(st.integers(1, units)))
    assert w.is_built()
    assert np.array_equal(w.adjacency, adj) and np.array_equal(w.sensory_adjacency, sens)
    assert Wiring.from_config(w.to_config()) == w
    assert w.build(input_dim) is w and np.array_equal(w.adjacency, adj)


@SETTINGS
@given(
    kind=st.sampled_from(sorted(wirings.WIRING_KINDS)),
    params=st.dictionaries(st.sampled_from(["units", "inter", "command", "motor", "output_dim", "output_size",
                                            "sparsity", "seed", "sensory_fanout", "inter_fanout", "motor_fanin",
                                            "recurrent_command_synapses", "input_dim", "adjacency",
                                            "sensory_adjacency", "layers", "self_connections"]),
                           st.none() | st.booleans() | st.integers(-3, 50) | st.floats() | st.text(max_size=3)
                           | st.lists(st.integers(-1, 1) | st.lists(st.integers(-2, 2), max_size=3), max_size=3),
                           max_size=8),
)
@example(kind="auto_ncp", params={"units": 10, "output_size": 2, "sparsity": "x"})  # was ValueError
@example(kind="custom", params={"adjacency": [[1, 0], [0]]})  # ragged: was a numpy ValueError
@example(kind="ncp", params={"inter": 5})  # was TypeError: missing arguments
def test_random_wiring_configs_build_or_raise_config_error(kind, params):
    try:
        w = Wiring.from_config({"kind": kind, **params})
    except ConfigError as exc:  # what a study file's wiring gets: one line naming the problem
        assert str(exc).strip()
        return
    assert isinstance(w, Wiring)


# ---------------------------------------------------------------------------------- head options

HEAD_OPTIONS = st.sampled_from([
    "hidden", "wiring", "units", "drop_rate", "input_drop_rate", "layer_width", "num_layers", "cell",
    "sensory", "bidirectional", "sequence", "cfc_mode", "global_pool", "act_layer", "batch_norm",
    "kind", "inter", "command", "motor", "seed", "sparsity", "output_size",
])
OPTION_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 40) | st.floats() | st.text(max_size=4)
    | st.sampled_from(["ltc", "cfc", "ncp", "auto_ncp", "avg", "flatten", "relu", "12"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HEAD_OPTIONS, inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(head=st.sampled_from(["linear", "mlp", "spinal", "ncp", "ncp_custom"]),
       options=st.dictionaries(HEAD_OPTIONS, OPTION_VALUES, max_size=3))
@example(head="linear", options={"drop_rate": None})  # was a TypeError traceback (0.0 <= None)
@example(head="mlp", options={"hidden": "0..0"})  # was a ValueError traceback (int("."))
@example(head="ncp", options={"wiring": {"kind": "ncp", "inter": 5}})  # was a TypeError (missing arguments)
def test_random_head_options_build_or_raise_archlab_error(head, options):
    """What `study run` checks first (preflight): a bad head option is a one-line error, not a traceback."""
    from archlab.errors import ArchlabError
    from archlab.study.runner import preflight

    study = Study.model_validate(fault_study(seeds=[0], variants={"a": {"model": {"head": head, "head_kwargs": options}}}))
    try:
        preflight(study)
    except ArchlabError as exc:
        assert str(exc).strip()


# ---------------------------------------------------------------------------------- the CLI end to end


def _tiny_cli_study() -> dict:
    """A valid study that trains in about a second per run: 2 variants x 1 seed, 1 epoch of 60 images."""
    study = fault_study(seeds=[0], train={"epochs": 1, "batch_size": 20, "threads": 1},
                        smoke={"train": {"epochs": 1}, "seeds": [0]})
    study["data"]["options"]["num_samples"] = 60
    return study


SMALL_WORDS = WORDS + ["..", "", "runs", "image_folder", "cifar10", "auto", "cpu", "cuda", "-1", "1e9"]
small_scalars = (
    st.none() | st.booleans() | st.integers(-3, 12) | st.floats(-2, 2) | st.just(float("nan"))
    | st.text(max_size=8) | st.sampled_from(SMALL_WORDS)
)  # bounded: a mutation that stays valid must still train in seconds
small_values = st.recursive(
    small_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(SMALL_WORDS), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def cli_cases(draw):
    """A (mutated) study and the flags of a `study run` of it."""
    study = _tiny_cli_study()
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(study) if p]
        *parent_path, last = draw(st.sampled_from(paths))
        parent = study
        for p in parent_path:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[last] = draw(small_values)
        elif action == "drop" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(SMALL_WORDS))] = draw(small_values)
    flags = []
    out_kind = draw(st.sampled_from(["out", "nested", "default", "file", "devnull"]))
    if draw(st.booleans()):
        flags += ["--workers", draw(st.sampled_from(["1", "1", "0", "-2", "many", " 1 ", "auto"]))]
    if draw(st.booleans()):
        flags.append("--smoke")
    if draw(st.booleans()):
        flags.append("--retry-failed")
    after = draw(st.lists(st.sampled_from([
        ["status"], ["report"], ["export"], ["export", "--format", "json"], ["export", "--format", "xml"],
    ]), max_size=2))
    return study, out_kind, flags, after


def _snapshot(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if not p.is_dir()}


def _stored_once(db) -> None:
    """Each (dataset, variant, seed) is stored once, and each result once."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        keys = conn.execute("SELECT dataset, variant, seed FROM runs").fetchall()
        assert len(keys) == len(set(keys)), keys
        ids = [r[0] for r in conn.execute("SELECT run_id FROM predictions")]
        assert len(ids) == len(set(ids))
        finals = conn.execute("SELECT run_id, split, key FROM final_metrics").fetchall()
        assert len(finals) == len(set(finals))
    finally:
        conn.close()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=cli_cases())
@example(case=(_tiny_cli_study(), "out", ["--workers", "1"], [["status"], ["export", "--format", "json"]]))  # valid
@example(case=({**_tiny_cli_study(), "data": {"name": "synthetic", "options": {"name": None}}}, "out", [], []))  # was a TypeError
@example(case=({**_tiny_cli_study(), "data": {"name": "synthetic", "options": {"root": "."}}}, "out", [], []))  # was a TypeError
def test_random_study_files_and_flags_through_the_cli(tmp_path_factory, capsys, case):
    """`archlab study run` of a randomly mutated study with random flags: exit 0, 1 or 2, no traceback
    (in-process: no exception escapes main), no file outside the output folder, nothing stored twice; a
    second run of the same command (resume) and random `study status|report|export` of the folder keep
    all of that."""
    import os
    import sqlite3

    from archlab.cli import main
    from archlab.study.store import DB_NAME

    study, out_kind, flags, after = case
    sandbox = tmp_path_factory.mktemp("cli")
    try:
        text = yaml.safe_dump(study)
    except yaml.YAMLError:
        assume(False)
    path = sandbox / "study.yaml"
    path.write_text(text)
    (sandbox / "notes.txt").write_text("keep")
    out = {"out": sandbox / "out", "nested": sandbox / "a" / "b" / "out", "default": None,
           "file": sandbox / "notes.txt", "devnull": "/dev/null"}[out_kind]
    allowed = sandbox / "runs" if out is None else Path(out)
    argv = ["study", "run", str(path), *flags] + ([] if out is None else ["--out", str(out)])
    before = _snapshot(sandbox)
    cwd = os.getcwd()
    os.chdir(sandbox)  # the default --out (runs/<name>) lands in the sandbox
    try:
        commands = [argv, argv] + [["study", *a[:1], str(allowed if out is None else out), *a[1:]] for a in after]
        for attempt, command in enumerate(commands):
            capsys.readouterr()
            try:
                code = main(command)
            except BaseException as exc:  # what the CLI would show as a traceback
                raise AssertionError(f"{command} (command {attempt + 1}) raised {type(exc).__name__}: {exc}") from exc
            err = capsys.readouterr().err
            assert code in (0, 1, 2), (code, err)
            assert "Traceback" not in err, err
            if code == 2:
                assert "error:" in err, err  # a usage error says what is wrong
            changed = {p for p, v in _snapshot(sandbox).items() if before.get(p) != v}
            outside = [p for p in changed if not Path(p).is_relative_to(allowed)]
            assert not outside, (command, outside)
            for db in allowed.rglob(DB_NAME) if allowed.is_dir() else []:
                try:
                    _stored_once(db)
                except sqlite3.DatabaseError:
                    pass  # not a database (the run refused it): nothing stored
            if code != 0 and attempt == 0:  # the run was refused or failed: the rest follows it
                break
    finally:
        os.chdir(cwd)
    assert (sandbox / "notes.txt").read_text() == "keep"
    assert Path("/dev/null").is_char_device()
