"""Wirings: which neuron of a recurrent cell talks to which — connectivity as seeded data.

References:
    Lechner, Hasani et al., "Neural circuit policies enabling auditable autonomy", Nature Machine
    Intelligence 2020 (the four-layer NCP: sensory -> inter -> command (recurrent) -> motor), and
    the ``ncps`` package 1.0.1 (``ncps.wirings``), whose random draws these builders reproduce:
    the same kind, arguments, seed and input size give the same adjacency matrices as ``ncps``.

A :class:`Wiring` is a plain, serializable data object (``to_config``/``from_config``). Departures
from ``ncps`` (on purpose):

* building is idempotent: every build draws from a fresh generator seeded with ``seed``, so building
  twice gives the same synapses (``ncps`` keeps drawing and *adds* synapses, ncps issue #75);
* a module never mutates the wiring it is given: it asks for :meth:`Wiring.built_for`, a built copy;
* bad arguments raise :class:`archlab.errors.ConfigError` naming the value, the limit and the fix.

Neuron ids follow ``ncps``: motor neurons first (ids ``0..M-1``, the outputs), then command, then
inter neurons. ``adjacency[src, dst]`` and ``sensory_adjacency[src, dst]`` hold the polarity
(+1 excitatory, -1 inhibitory, 0 no synapse).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from archlab.errors import ConfigError

__all__ = [
    "Wiring",
    "ncp",
    "auto_ncp",
    "fully_connected",
    "random",
    "custom",
    "WIRING_KINDS",
]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class Wiring:
    """Connectivity of a wired recurrent cell (a seeded, serializable data object).

    Build one with :func:`ncp`, :func:`auto_ncp`, :func:`fully_connected`, :func:`random` or
    :func:`custom`; the number of sensory inputs is fixed by :meth:`build` (or ``input_dim=``).

    Attributes:
        kind: builder name (``"ncp"``, ``"auto_ncp"``, ``"fully_connected"``, ``"random"``,
            ``"custom"``).
        params: the builder's arguments (what :meth:`to_config` stores besides ``input_dim``).
        units: number of neurons (the state size).
        output_dim: number of motor (output) neurons, ids ``0..output_dim-1``.
        input_dim: number of sensory inputs once built, else ``None``.
        adjacency: ``(units, units)`` int8 polarity matrix ``[src, dst]`` (built wirings only for
            the kinds whose internal synapses depend on the draw order).
        sensory_adjacency: ``(input_dim, units)`` int8 polarity matrix once built.
        layers: neuron ids per layer (``ncp``: inter, command, motor; others: one layer).

    Shape:
        - ``adjacency``: ``(units, units)``
        - ``sensory_adjacency``: ``(input_dim, units)``
    """

    def __init__(
        self,
        kind: str,
        params: dict[str, Any],
        units: int,
        output_dim: int,
        layers: list[list[int]],
    ):
        self.kind = kind
        self.params = dict(params)
        self.units = int(units)
        self.output_dim = int(output_dim)
        self.layers = [list(map(int, layer)) for layer in layers]
        self.input_dim: int | None = None
        self.adjacency: np.ndarray | None = None
        self.sensory_adjacency: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    def is_built(self) -> bool:
        """Whether the number of sensory inputs (and so every synapse) is fixed."""
        return self.input_dim is not None

    def build(self, input_dim: int) -> Wiring:
        """Fix the number of sensory inputs and draw the synapses (idempotent; returns ``self``).

        Raises:
            ConfigError: ``input_dim`` is not a positive int, or the wiring is already built for
                another input size.
        """
        input_dim = _check_int("input_dim", input_dim, 1)
        if self.input_dim is not None:
            if self.input_dim != input_dim:
                raise ConfigError(
                    f"wiring {self.kind!r} is built for input_dim={self.input_dim} but the layer "
                    f"gets {input_dim} input features; make the input size {self.input_dim} or "
                    "use an unbuilt wiring (or Wiring.from_config with input_dim=None)"
                )
            return self
        adj, sens = _BUILDERS[self.kind](self, input_dim)
        self.adjacency = adj.astype(np.int8)
        self.sensory_adjacency = sens.astype(np.int8)
        self.input_dim = input_dim
        return self

    def built_for(self, input_dim: int | None) -> Wiring:
        """A built copy for ``input_dim`` inputs (``None``: the wiring must already be built).

        The wiring itself is left untouched, so one wiring object can configure several layers.
        """
        if input_dim is None:
            if not self.is_built():
                raise ConfigError(
                    f"wiring {self.kind!r} is not built: pass in_features (the number of input "
                    "features) or call wiring.build(input_dim) first"
                )
            return copy.deepcopy(self)
        return copy.deepcopy(self).build(input_dim)

    def _require_built(self) -> None:
        if not self.is_built():
            raise ConfigError(f"wiring {self.kind!r} is not built: call wiring.build(input_dim) first")

    # ------------------------------------------------------------------ views
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        """Neuron ids of layer ``layer_id`` (``ncps`` naming)."""
        if not 0 <= layer_id < len(self.layers):
            raise ConfigError(f"layer_id must be in [0, {len(self.layers)}), got {layer_id!r}")
        return list(self.layers[layer_id])

    def neuron_type(self, neuron_id: int) -> str:
        """``"motor"``, ``"command"`` or ``"inter"`` (non-NCP wirings: motor or inter)."""
        if neuron_id < self.output_dim:
            return "motor"
        if self.kind in ("ncp", "auto_ncp") and neuron_id in set(self.layers[1]):
            return "command"
        return "inter"

    @property
    def synapse_count(self) -> int:
        """Number of synapses between the cell's own neurons."""
        self._require_built()
        return int(np.abs(self.adjacency).sum())

    @property
    def sensory_synapse_count(self) -> int:
        """Number of synapses from the sensory inputs into the cell."""
        self._require_built()
        return int(np.abs(self.sensory_adjacency).sum())

    def erev_init(self) -> np.ndarray:
        """Initial reversal potentials: the signed internal adjacency as float32."""
        self._require_built()
        return self.adjacency.astype(np.float32)

    def sensory_erev_init(self) -> np.ndarray:
        """Initial sensory reversal potentials: the signed sensory adjacency as float32."""
        self._require_built()
        return self.sensory_adjacency.astype(np.float32)

    # ------------------------------------------------------------------ serialization
    def to_config(self) -> dict[str, Any]:
        """A JSON-able dict from which :meth:`from_config` rebuilds an identical wiring."""
        cfg: dict[str, Any] = {"kind": self.kind, **copy.deepcopy(self.params), "input_dim": self.input_dim}
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Wiring:
        """Rebuild a wiring from :meth:`to_config` output (or a hand-written config dict).

        Raises:
            ConfigError: not a dict, an unknown kind, a missing or unknown option, or a bad value
                (a study file's wiring must never end in a traceback).
        """
        if not isinstance(config, dict):
            raise ConfigError(f"a wiring config must be a dict with a 'kind', got {type(config).__name__}")
        cfg = dict(config)
        kind = cfg.pop("kind", None)
        if not isinstance(kind, str) or kind not in WIRING_KINDS:
            from archlab.errors import UnknownNameError

            raise UnknownNameError("wiring kind", str(kind), WIRING_KINDS)
        builder = WIRING_KINDS[kind]
        options = inspect.signature(builder).parameters
        unknown = sorted(str(k) for k in cfg if k not in options)
        missing = [n for n, p in options.items() if p.default is inspect.Parameter.empty and n not in cfg]
        if unknown or missing:
            what = f"has no option {unknown[0]!r}" if unknown else f"needs {', '.join(map(repr, missing))}"
            raise ConfigError(f"wiring kind {kind!r} {what}; its options: {', '.join(options)}")
        try:
            return builder(**cfg)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:  # e.g. float('x'), ragged matrices, non-int layer ids
            raise ConfigError(f"wiring {kind!r}: a bad option value ({exc}); see help(archlab.layers.wirings.{kind})") from None

    @classmethod
    def from_ncps(cls, wiring: Any) -> Wiring:
        """Copy a built ``ncps.wirings.Wiring`` (its matrices, layers and outputs) as a custom wiring."""
        if getattr(wiring, "input_dim", None) is None:
            raise ConfigError("the ncps wiring is not built: call wiring.build(input_dim) first")
        layers = [list(map(int, wiring.get_neurons_of_layer(i))) for i in range(wiring.num_layers)]
        return custom(
            np.asarray(wiring.adjacency_matrix),
            np.asarray(wiring.sensory_adjacency_matrix),
            output_dim=int(wiring.output_dim),
            layers=layers,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Wiring):
            return NotImplemented
        same = (self.kind, self.params, self.units, self.output_dim, self.layers, self.input_dim) == (
            other.kind,
            other.params,
            other.units,
            other.output_dim,
            other.layers,
            other.input_dim,
        )
        if not same or not self.is_built():
            return same
        return bool(
            np.array_equal(self.adjacency, other.adjacency)
            and np.array_equal(self.sensory_adjacency, other.sensory_adjacency)
        )

    __hash__ = None  # mutable (build)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k not in ("adjacency", "sensory_adjacency", "layers"))
        built = f", input_dim={self.input_dim}" if self.is_built() else ""
        return f"Wiring.{self.kind}({args}{built})"


# ---------------------------------------------------------------------- NCP


def ncp(
    inter: int,
    command: int,
    motor: int,
    sensory_fanout: int,
    inter_fanout: int,
    recurrent_command_synapses: int,
    motor_fanin: int,
    seed: int = 22222,
    input_dim: int | None = None,
) -> Wiring:
    """A Neural Circuit Policy wiring: sensory -> inter -> command (recurrent) -> motor.

    Same draws as ``ncps.wirings.NCP`` for the same arguments and seed.

    Args:
        inter: number of inter neurons (layer 1).
        command: number of command neurons (layer 2).
        motor: number of motor neurons (layer 3, the outputs).
        sensory_fanout: synapses from each sensory input to distinct inter neurons.
        inter_fanout: synapses from each inter neuron to distinct command neurons.
        recurrent_command_synapses: random command->command synapses (drawn with replacement).
        motor_fanin: synapses into each motor neuron from distinct command neurons.
        seed: seed of the draws.
        input_dim: build at once for this many sensory inputs.

    Raises:
        ConfigError: a count below its minimum or a fan-out/fan-in larger than its target layer.
    """
    inter = _check_int("inter", inter, 1)
    command = _check_int("command", command, 1)
    motor = _check_int("motor", motor, 1)
    sensory_fanout = _check_int("sensory_fanout", sensory_fanout, 1)
    inter_fanout = _check_int("inter_fanout", inter_fanout, 1)
    recurrent_command_synapses = _check_int("recurrent_command_synapses", recurrent_command_synapses, 0)
    motor_fanin = _check_int("motor_fanin", motor_fanin, 1)
    seed = _check_int("seed", seed, 0)
    for name, value, limit, target in (
        ("sensory_fanout", sensory_fanout, inter, "inter"),
        ("inter_fanout", inter_fanout, command, "command"),
        ("motor_fanin", motor_fanin, command, "command"),
    ):
        if value > limit:
            raise ConfigError(
                f"{name}={value} is larger than the {limit} {target} neurons it connects to; "
                f"use {name} <= {limit} or more {target} neurons"
            )
    params = {
        "inter": inter,
        "command": command,
        "motor": motor,
        "sensory_fanout": sensory_fanout,
        "inter_fanout": inter_fanout,
        "recurrent_command_synapses": recurrent_command_synapses,
        "motor_fanin": motor_fanin,
        "seed": seed,
    }
    w = _ncp_wiring("ncp", params, inter, command, motor)
    return w.build(input_dim) if input_dim is not None else w


def _ncp_wiring(kind: str, params: dict[str, Any], inter: int, command: int, motor: int) -> Wiring:
    motor_ids = list(range(motor))
    command_ids = list(range(motor, motor + command))
    inter_ids = list(range(motor + command, motor + command + inter))
    return Wiring(kind, params, inter + command + motor, motor, [inter_ids, command_ids, motor_ids])


def _ncp_numbers(w: Wiring) -> tuple[int, ...]:
    """(sensory_fanout, inter_fanout, recurrent, motor_fanin, seed) of an ncp/auto_ncp wiring."""
    if w.kind == "ncp":
        p = w.params
        return p["sensory_fanout"], p["inter_fanout"], p["recurrent_command_synapses"], p["motor_fanin"], p["seed"]
    return w._ncp_numbers  # type: ignore[attr-defined]


def _build_ncp(w: Wiring, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
    # Mirrors ncps.wirings.NCP.build draw by draw (RandomState, same calls, same order); the runs of
    # polarity draws are vectorised, which consumes the stream exactly like one call per synapse.
    sensory_fanout, inter_fanout, recurrent, motor_fanin, seed = _ncp_numbers(w)
    rng = np.random.RandomState(seed)
    inter_ids, command_ids, motor_ids = w.layers
    n_inter, n_command, n_motor = len(inter_ids), len(command_ids), len(motor_ids)
    adj = np.zeros((w.units, w.units), dtype=np.int32)
    sens = np.zeros((input_dim, w.units), dtype=np.int32)
    sensory_ids = list(range(input_dim))

    # sensory -> inter
    unreached = set(inter_ids)
    for src in sensory_ids:
        dests = rng.choice(inter_ids, size=sensory_fanout, replace=False)
        pols = rng.choice([-1, 1], size=sensory_fanout)
        for dest, pol in zip(dests, pols):
            unreached.discard(int(dest))
            sens[src, dest] = pol
    fanin = int(np.clip(int(input_dim * sensory_fanout / n_inter), 1, input_dim))
    for dest in [i for i in inter_ids if i in unreached]:
        srcs = rng.choice(sensory_ids, size=fanin, replace=False)
        pols = rng.choice([-1, 1], size=fanin)
        sens[srcs, dest] = pols

    # inter -> command
    unreached = set(command_ids)
    for src in inter_ids:
        dests = rng.choice(command_ids, size=inter_fanout, replace=False)
        pols = rng.choice([-1, 1], size=inter_fanout)
        for dest, pol in zip(dests, pols):
            unreached.discard(int(dest))
            adj[src, dest] = pol
    fanin = int(np.clip(int(n_inter * inter_fanout / n_command), 1, n_command))
    for dest in [i for i in command_ids if i in unreached]:
        srcs = rng.choice(inter_ids, size=fanin, replace=False)
        pols = rng.choice([-1, 1], size=fanin)
        adj[srcs, dest] = pols

    # recurrent command synapses (with replacement; a repeated pair keeps the last polarity)
    for _ in range(recurrent):
        src = rng.choice(command_ids)
        dest = rng.choice(command_ids)
        adj[src, dest] = rng.choice([-1, 1])

    # command -> motor
    unreached = set(command_ids)
    for dest in motor_ids:
        srcs = rng.choice(command_ids, size=motor_fanin, replace=False)
        pols = rng.choice([-1, 1], size=motor_fanin)
        for src, pol in zip(srcs, pols):
            unreached.discard(int(src))
            adj[src, dest] = pol
    fanout = int(np.clip(int(n_motor * motor_fanin / n_command), 1, n_motor))
    for src in [i for i in command_ids if i in unreached]:
        dests = rng.choice(motor_ids, size=fanout, replace=False)
        pols = rng.choice([-1, 1], size=fanout)
        adj[src, dests] = pols
    return adj, sens


def auto_ncp(
    units: int,
    output_size: int,
    sparsity: float = 0.5,
    seed: int = 22222,
    input_dim: int | None = None,
) -> Wiring:
    """An NCP wiring sized from the number of neurons alone (``ncps.wirings.AutoNCP``).

    command = max(int(0.4 (units - output_size)), 1), inter = the rest; fan-outs scale with the
    density ``1 - sparsity``.

    Args:
        units: total number of neurons.
        output_size: number of motor neurons; must be < ``units - 2``.
        sparsity: in [0.1, 1.0] (as ``ncps``).
        seed: seed of the draws.
        input_dim: build at once for this many sensory inputs.
    """
    units = _check_int("units", units, 4)
    output_size = _check_int("output_size", output_size, 1)
    seed = _check_int("seed", seed, 0)
    if output_size >= units - 2:
        raise ConfigError(
            f"output_size={output_size} must be less than units-2={units - 2}; use more units or fewer outputs"
        )
    if not 0.1 <= float(sparsity) <= 1.0:
        raise ConfigError(f"sparsity must be in [0.1, 1.0], got {sparsity!r}")
    density = 1.0 - float(sparsity)
    inter_and_command = units - output_size
    command = max(int(0.4 * inter_and_command), 1)
    inter = inter_and_command - command
    numbers = (
        max(int(inter * density), 1),
        max(int(command * density), 1),
        max(int(command * density * 2), 1),
        max(int(command * density), 1),
        seed,
    )
    params = {"units": units, "output_size": output_size, "sparsity": float(sparsity), "seed": seed}
    w = _ncp_wiring("auto_ncp", params, inter, command, output_size)
    w._ncp_numbers = numbers  # type: ignore[attr-defined]
    return w.build(input_dim) if input_dim is not None else w


# ---------------------------------------------------------------------- dense and random


def fully_connected(
    units: int,
    output_dim: int | None = None,
    seed: int = 1111,
    self_connections: bool = True,
    input_dim: int | None = None,
) -> Wiring:
    """Every neuron and every input connected to every neuron (``ncps.wirings.FullyConnected``).

    Polarities are drawn from {-1, +1, +1} (two thirds excitatory) with ``numpy.default_rng(seed)``.
    """
    units = _check_int("units", units, 1)
    output_dim = units if output_dim is None else _check_int("output_dim", output_dim, 1)
    if output_dim > units:
        raise ConfigError(f"output_dim={output_dim} is larger than units={units}; use output_dim <= {units}")
    params = {
        "units": units,
        "output_dim": output_dim,
        "seed": _check_int("seed", seed, 0),
        "self_connections": bool(self_connections),
    }
    w = Wiring("fully_connected", params, units, output_dim, [list(range(units))])
    return w.build(input_dim) if input_dim is not None else w


def _build_fully_connected(w: Wiring, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
    n = w.units
    rng = np.random.default_rng(w.params["seed"])
    pairs = [(s, d) for s in range(n) for d in range(n) if s != d or w.params["self_connections"]]
    adj = np.zeros((n, n), dtype=np.int32)
    pols = rng.choice([-1, 1, 1], size=len(pairs))
    for (s, d), p in zip(pairs, pols):
        adj[s, d] = p
    sens = rng.choice([-1, 1, 1], size=input_dim * n).reshape(input_dim, n)
    return adj, sens


def random(
    units: int,
    output_dim: int | None = None,
    sparsity: float = 0.0,
    seed: int = 1111,
    input_dim: int | None = None,
) -> Wiring:
    """A random sparse wiring (``ncps.wirings.Random``): round(pairs (1 - sparsity)) synapses."""
    units = _check_int("units", units, 1)
    output_dim = units if output_dim is None else _check_int("output_dim", output_dim, 1)
    if output_dim > units:
        raise ConfigError(f"output_dim={output_dim} is larger than units={units}; use output_dim <= {units}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity!r}")
    params = {"units": units, "output_dim": output_dim, "sparsity": float(sparsity), "seed": _check_int("seed", seed, 0)}
    w = Wiring("random", params, units, output_dim, [list(range(units))])
    return w.build(input_dim) if input_dim is not None else w


def _build_random(w: Wiring, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
    n, density = w.units, 1.0 - w.params["sparsity"]
    rng = np.random.default_rng(w.params["seed"])
    adj = np.zeros((n, n), dtype=np.int32)
    all_pairs = [(s, d) for s in range(n) for d in range(n)]
    used = rng.choice(all_pairs, size=int(np.round(n * n * density)), replace=False)
    pols = rng.choice([-1, 1, 1], size=len(used))
    for (s, d), p in zip(used, pols):
        adj[s, d] = p
    sens = np.zeros((input_dim, n), dtype=np.int32)
    all_pairs = [(s, d) for s in range(input_dim) for d in range(n)]
    used = rng.choice(all_pairs, size=int(np.round(input_dim * n * density)), replace=False)
    # ncps draws two polarities per sensory synapse and keeps the second one.
    pols = rng.choice([-1, 1, 1], size=2 * len(used))[1::2]
    for (s, d), p in zip(used, pols):
        sens[s, d] = p
    return adj, sens


# ---------------------------------------------------------------------- explicit matrices


def custom(
    adjacency: Any,
    sensory_adjacency: Any | None = None,
    output_dim: int | None = None,
    layers: list[list[int]] | None = None,
    input_dim: int | None = None,
) -> Wiring:
    """A wiring given by explicit polarity matrices (entries in {-1, 0, +1}).

    Args:
        adjacency: ``(units, units)`` polarity matrix ``[src, dst]``.
        sensory_adjacency: ``(input_dim, units)`` polarity matrix, or ``None`` for all-to-all
            excitatory sensory synapses (drawn at build).
        output_dim: number of output (motor) neurons, ids ``0..output_dim-1`` (default: all).
        layers: neuron ids per layer (for the wired CfC); default one layer of every neuron.
        input_dim: only checked against ``sensory_adjacency`` (or sets its size when it is None).
    """
    adj = np.asarray(adjacency)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ConfigError(f"adjacency must be a square (units, units) matrix, got shape {adj.shape}")
    if not np.isin(adj, (-1, 0, 1)).all():
        raise ConfigError("adjacency entries must be -1, 0 or +1")
    units = adj.shape[0]
    output_dim = units if output_dim is None else _check_int("output_dim", output_dim, 1)
    if output_dim > units:
        raise ConfigError(f"output_dim={output_dim} is larger than units={units}; use output_dim <= {units}")
    layers = [list(range(units))] if layers is None else [list(map(int, layer)) for layer in layers]
    if sorted(i for layer in layers for i in layer) != list(range(units)):
        raise ConfigError(f"layers must partition the neuron ids 0..{units - 1}, got {layers}")
    sens_list = None
    if sensory_adjacency is not None:
        sens = np.asarray(sensory_adjacency)
        if sens.ndim != 2 or sens.shape[1] != units:
            raise ConfigError(f"sensory_adjacency must have shape (input_dim, {units}), got {sens.shape}")
        if not np.isin(sens, (-1, 0, 1)).all():
            raise ConfigError("sensory_adjacency entries must be -1, 0 or +1")
        if input_dim is not None and input_dim != sens.shape[0]:
            raise ConfigError(
                f"input_dim={input_dim} disagrees with sensory_adjacency rows={sens.shape[0]}"
            )
        sens_list = sens.astype(int).tolist()
        input_dim = sens.shape[0]
    params = {
        "adjacency": adj.astype(int).tolist(),
        "sensory_adjacency": sens_list,
        "output_dim": output_dim,
        "layers": layers,
    }
    w = Wiring("custom", params, units, output_dim, layers)
    return w.build(input_dim) if input_dim is not None else w


def _build_custom(w: Wiring, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
    adj = np.asarray(w.params["adjacency"], dtype=np.int32)
    if w.params["sensory_adjacency"] is None:
        sens = np.ones((input_dim, w.units), dtype=np.int32)
    else:
        sens = np.asarray(w.params["sensory_adjacency"], dtype=np.int32)
        if sens.shape[0] != input_dim:
            raise ConfigError(
                f"custom wiring has {sens.shape[0]} sensory inputs but input_dim={input_dim}; "
                f"make the input size {sens.shape[0]}"
            )
    return adj, sens


_BUILDERS = {
    "ncp": _build_ncp,
    "auto_ncp": _build_ncp,
    "fully_connected": _build_fully_connected,
    "random": _build_random,
    "custom": _build_custom,
}

#: builder functions by kind (what ``Wiring.from_config`` dispatches on).
WIRING_KINDS = {
    "ncp": ncp,
    "auto_ncp": auto_ncp,
    "fully_connected": fully_connected,
    "random": random,
    "custom": custom,
}
