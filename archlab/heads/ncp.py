"""The NCP head: a feature map read as a sequence by a wired recurrent cell (LTC or CfC).

References:
    Truong Minh Hieu, "Liquid Time-constant: an adoption of recurrent neurons to convolutional
    neural networks" (bachelor's thesis progress report, 2022; seed 000): CRNet's classifier
    replaced by a Neural Circuit Policy of LTC neurons fed by the last tensor as a sequence, the motor
    outputs of every step flattened -> Dropout(0.3) -> Linear. Lechner et al., "Neural circuit
    policies enabling auditable autonomy", Nature Machine Intelligence 2020 (the original 32-sensory
    NCP: 12 inter, 6 command, 1 motor; fan-outs 6/4, 6 recurrent command synapses, motor fan-in 6).

Pipeline: :class:`~archlab.layers.sequence.SequenceAdapter` (pool -> 1x1 conv -> steps ->
projection to the sensory neurons) -> :class:`~archlab.layers.ltc.LTC` or
:class:`~archlab.layers.cfc.CfC` over a wiring -> motor outputs of every step concatenated (and of
the reversed sequence with ``bidirectional=True``) -> [Dropout] -> Linear(steps * motor * dirs -> C).

Presets (registered heads) reproduce the thesis' designs; each takes ``sequence=`` (any mode) and
every option of :class:`NCPHead` as an override:

* ``ncp_original``: 32 sensory, NCP(12, 6, 1; 6/4/6/6), dropout 0.3. Per mode (on CRNet's
  (128, 13, 13) map): ``channels`` (z-axis, the default): 13x13 -> 1x1 conv 128->16 -> 16 steps of
  169 -> Linear -> 32; ``rows``/``columns``: pool 8 -> 1x1 conv ->4 -> 8 steps of 32; ``patches``:
  pool 16 -> 1x1 conv ->16 -> 16 patches of 4x4 (256 -> 32); ``xy``: pool 4 -> 1x1 conv ->32 ->
  16 positions of 32.
* ``ncp_double``: the thesis' "double number of neurons and connectivities" on the y-axis: pool 16
  -> 1x1 conv ->8 -> 16 rows of 128 features, NCP(24, 12, 2; 12/8/12/12), 128 sensory.
  (The report's FC width does not match its own step counts; we double every NCP number.)
* ``ncp_custom``: y-axis, pool 16 -> 1x1 conv ->32 -> 16 rows of 512, NCP(48, 24, 4; 24/16/24/24),
  512 sensory -> Linear(64 -> C).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import torch
import torch.nn as nn

from archlab._registry import describe_type, register_head, value_matches
from archlab.errors import ConfigError, IncompatibleError, UnknownNameError
from archlab.layers.cfc import CFC_MODES, CfC
from archlab.layers.ltc import LTC
from archlab.layers.sequence import SEQUENCE_MODES, MixedSequence, SequenceAdapter
from archlab.layers.wirings import Wiring

__all__ = ["NCPHead", "check_sequence", "ncp_original", "ncp_double", "ncp_custom", "CELLS", "DEFAULT_NCP", "ORIGINAL_NCP"]

CELLS = ("ltc", "cfc")

#: the original NCP of Lechner et al. 2020 (32 sensory inputs).
ORIGINAL_NCP = {
    "kind": "ncp",
    "inter": 12,
    "command": 6,
    "motor": 1,
    "sensory_fanout": 6,
    "inter_fanout": 4,
    "recurrent_command_synapses": 6,
    "motor_fanin": 6,
}


#: the generic head's default: a small NCP with 8 motor neurons. The original NCP's single motor
#: neuron gives one number per step, which learns 10 classes slowly (digits: ~86 % after 15
#: epochs vs ~95 % with this wiring).
DEFAULT_NCP = {
    "kind": "ncp",
    "inter": 16,
    "command": 8,
    "motor": 8,
    "sensory_fanout": 6,
    "inter_fanout": 4,
    "recurrent_command_synapses": 6,
    "motor_fanin": 4,
}


def check_sequence(sequence: str | list[str]) -> list[str]:
    """``sequence`` (one mode or a list of two or more) as a list of known modes.

    Raises:
        UnknownNameError: a mode that is not one of :data:`SEQUENCE_MODES`.
        ConfigError: not a str or a list of str, a list of fewer than two or with a repeated mode.
    """
    modes = [sequence] if isinstance(sequence, str) else sequence
    if not isinstance(modes, (list, tuple)) or not modes or not all(isinstance(m, str) for m in modes):
        raise ConfigError(
            f"sequence={sequence!r} must be a mode or a list of modes, e.g. 'rows' or [rows, channels]; "
            f"allowed modes: {', '.join(SEQUENCE_MODES)}"
        )
    for m in modes:
        if m not in SEQUENCE_MODES:
            raise UnknownNameError("sequence mode", str(m), SEQUENCE_MODES)
    if not isinstance(sequence, str) and (len(modes) < 2 or len(set(modes)) != len(modes)):
        raise ConfigError(f"a mixed sequence lists two or more different modes, got {list(modes)!r}")
    return list(modes)


def _mode_overrides(mode_options: dict[str, dict[str, Any]] | None, mode: str, base: dict[str, Any]) -> dict[str, Any]:
    if mode_options is None:
        return {}
    unknown = [k for k in mode_options if k not in SEQUENCE_MODES]
    if unknown:
        raise UnknownNameError("mode_options mode", str(unknown[0]), SEQUENCE_MODES)
    opts = mode_options.get(mode, {})
    if not isinstance(opts, dict):
        raise ConfigError(f"mode_options.{mode} must be a mapping of {', '.join(base)}, got {opts!r}")
    for key in opts:
        if key not in base:
            raise UnknownNameError(f"option of mode_options.{mode}", key, base)
    return dict(opts)


def _make_wiring(spec: Wiring | dict[str, Any] | None) -> Wiring:
    if spec is None:
        return Wiring.from_config(DEFAULT_NCP)
    if isinstance(spec, Wiring):
        return spec
    if isinstance(spec, dict):
        cfg = dict(spec)
        cfg.setdefault("kind", "ncp")
        return Wiring.from_config(cfg)
    raise ConfigError(f"wiring must be a Wiring, a dict (Wiring.to_config) or None, got {type(spec).__name__}")


@register_head("ncp")
class NCPHead(nn.Module):
    """Feature map -> sequence -> wired LTC/CfC -> motor outputs of every step -> Linear.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)`` (flat ``(F,)`` is read as one row).
        num_classes: number of logits.
        cell: ``"ltc"`` or ``"cfc"``.
        wiring: a :class:`~archlab.layers.wirings.Wiring`, its ``to_config()`` dict (``kind``
            defaults to ``"ncp"``) or ``None`` for :data:`DEFAULT_NCP` (16 inter, 8 command,
            8 motor; the presets use the thesis' NCPs).
        sequence: ``"channels"`` (z-axis), ``"rows"`` (y-axis), ``"columns"``, ``"patches"`` or
            ``"xy"``; a list of modes (``[rows, channels]``) reads the map in each and concatenates
            the sequences along time (:class:`~archlab.layers.sequence.MixedSequence`).
        sensory: sensory neurons: each step's features are projected to this many by a Linear
            layer when they differ; ``"auto"`` = the wiring's input size when it is built, else 32;
            ``None`` = no projection (the wiring is built for the step features).
        pool, pool_type, channels, patch_size, stride: map reduction and patching (see
            :class:`~archlab.layers.sequence.SequenceAdapter`).
        mode_options: per-mode overrides of those five (``{rows: {pool: 8, channels: 4}}``), for
            mixed sequences; the presets fill it with their per-mode reductions.
        bidirectional: a second cell (own weights, same wiring) reads the reversed sequence.
        drop_rate: dropout before the Linear layer (the thesis used 0.3).
        mixed_memory: an LSTM memory cell before every step.
        cfc_mode: CfC mode (``"default"``, ``"pure"``, ``"no_gate"``).
        ode_unfolds: LTC solver unfolds per step.
        implicit_param_constraints: LTC softplus constraints (True, as ``ncps.torch.LTC``).

    Attributes:
        adapter, rnn, rnn_reverse (bidirectional only), drop, fc.

    Shape:
        - Input: ``(B, *in_shape)``
        - Output: ``(B, num_classes)``

    Raises:
        IncompatibleError: a sequence mode/patch that does not fit the feature map, or a built
            wiring whose input size disagrees with the adapter's features per step.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        cell: str = "ltc",
        wiring: Wiring | dict[str, Any] | None = None,
        sequence: str | list[str] = "channels",
        sensory: int | str | None = "auto",
        pool: int | tuple[int, int] | None = None,
        pool_type: str = "avg",
        channels: int | None = None,
        patch_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        bidirectional: bool = False,
        drop_rate: float = 0.0,
        mixed_memory: bool = False,
        cfc_mode: str = "default",
        ode_unfolds: int = 6,
        implicit_param_constraints: bool = True,
        mode_options: dict[str, dict[str, Any]] | None = None,
    ):
        super().__init__()
        if cell not in CELLS:
            raise UnknownNameError("cell", str(cell), CELLS)
        if cfc_mode not in CFC_MODES:
            raise UnknownNameError("cfc_mode", str(cfc_mode), CFC_MODES)
        modes = check_sequence(sequence)
        base = {"pool": pool, "pool_type": pool_type, "channels": channels, "patch_size": patch_size, "stride": stride}
        per_mode = {m: {**base, **_mode_overrides(mode_options, m, base)} for m in modes}
        for m in modes:
            if m == "patches" and per_mode[m]["patch_size"] is None:  # named as a config file spells it
                raise ConfigError(
                    "sequence 'patches' needs a patch size: set head_kwargs.patch_size "
                    "(e.g. head_kwargs: {sequence: patches, patch_size: 4})"
                )
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        self.cell, self.bidirectional = cell, bool(bidirectional)
        self.sequence = modes[0] if len(modes) == 1 else "+".join(modes)
        wiring = _make_wiring(wiring)
        if sensory == "auto":
            sensory = wiring.input_dim if wiring.is_built() else 32
        elif sensory is not None and (isinstance(sensory, bool) or not isinstance(sensory, int) or sensory < 1):
            raise ConfigError(f"sensory must be a positive int, 'auto' or None, got {sensory!r}")
        adapters = [SequenceAdapter(self.in_shape, m, out_features=sensory, **per_mode[m]) for m in modes]
        self.adapter = adapters[0] if len(adapters) == 1 else MixedSequence(adapters)
        features = self.adapter.out_features
        if wiring.is_built() and wiring.input_dim != features:
            raise IncompatibleError(
                f"the wiring is built for input_dim={wiring.input_dim} sensory inputs but the "
                f"{self.sequence!r} sequence gives {features} features per step; use sensory="
                f"{wiring.input_dim} (a projection) or an unbuilt wiring"
            )
        self.wiring = wiring.built_for(features)
        self.rnn = self._make_rnn(features, cell, mixed_memory, cfc_mode, ode_unfolds, implicit_param_constraints)
        self.rnn_reverse = (
            self._make_rnn(features, cell, mixed_memory, cfc_mode, ode_unfolds, implicit_param_constraints)
            if self.bidirectional
            else None
        )
        self.steps, self.motor = self.adapter.steps, self.wiring.output_dim
        width = self.steps * self.motor * (2 if self.bidirectional else 1)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def _make_rnn(
        self, features: int, cell: str, mixed_memory: bool, cfc_mode: str, ode_unfolds: int, implicit: bool
    ) -> nn.Module:
        if cell == "ltc":
            return LTC(
                features,
                self.wiring,
                mixed_memory=mixed_memory,
                ode_unfolds=ode_unfolds,
                implicit_param_constraints=implicit,
            )
        return CfC(features, self.wiring, mixed_memory=mixed_memory, mode=cfc_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.adapter(x)  # (B, T, S)
        y, _ = self.rnn(seq)  # (B, T, M)
        outs = [y.flatten(1)]  # (B, T*M)
        if self.rnn_reverse is not None:
            y_rev, _ = self.rnn_reverse(seq.flip(1))  # (B, T, M), last step first
            outs.append(y_rev.flip(1).flatten(1))  # aligned with the forward steps
        z = torch.cat(outs, 1) if len(outs) > 1 else outs[0]  # (B, T*M*dirs)
        return self.fc(self.drop(z))  # (B, num_classes)

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell!r}, sequence={self.sequence!r}, steps={self.steps}, motor={self.motor}, "
            f"bidirectional={self.bidirectional}"
        )


# ---------------------------------------------------------------------- seed-000 presets

_NCP_KEYS = ("inter", "command", "motor", "sensory_fanout", "inter_fanout", "recurrent_command_synapses", "motor_fanin")
#: "double number of neurons and connectivities" (seed 000)
_DOUBLE_NCP = {"kind": "ncp", **dict(zip(_NCP_KEYS, (24, 12, 2, 12, 8, 12, 12)))}
#: seed 000's custom NCP: 512 sensory, 48 inter, 24 command, 4 motor; 24/16/24/24
_CUSTOM_NCP = {"kind": "ncp", **dict(zip(_NCP_KEYS, (48, 24, 4, 24, 16, 24, 24)))}

# Map reduction per (preset, sequence mode): pool size, 1x1-conv channels, patch size.
_PRESET_MODES: dict[str, dict[str, dict[str, Any]]] = {
    "ncp_original": {
        "channels": {"pool": 13, "channels": 16},
        "rows": {"pool": 8, "channels": 4},
        "columns": {"pool": 8, "channels": 4},
        "patches": {"pool": 16, "channels": 16, "patch_size": 4},
        "xy": {"pool": 4, "channels": 32},
    },
    "ncp_double": {
        "rows": {"pool": 16, "channels": 8},
        "columns": {"pool": 16, "channels": 8},
        "channels": {"pool": 16, "channels": 16},
        "patches": {"pool": 16, "channels": 16, "patch_size": 4},
        "xy": {"pool": 4, "channels": 128},
    },
    "ncp_custom": {
        "rows": {"pool": 16, "channels": 32},
        "columns": {"pool": 16, "channels": 32},
        "channels": {"pool": 16, "channels": 32},
        "patches": {"pool": 16, "channels": 32, "patch_size": 4},
        "xy": {"pool": 4, "channels": 512},
    },
}


def _preset(
    name: str,
    wiring: dict[str, Any],
    sensory: int,
    default_sequence: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    kwargs: dict[str, Any],
) -> NCPHead:
    """A thesis preset: its wiring, sensory size, dropout 0.3 and per-mode map reduction."""
    accepted = [n for n in inspect.signature(NCPHead.__init__).parameters if n not in ("self", "in_shape", "num_classes")]
    for key in kwargs:
        if key not in accepted:
            raise UnknownNameError(f"option of head {name!r}", key, accepted)
    sequence = kwargs.pop("sequence", default_sequence)
    modes = check_sequence(sequence)
    hints = typing.get_type_hints(NCPHead.__init__)
    for key, value in kwargs.items():
        if not value_matches(value, hints[key]):
            raise ConfigError(
                f"head {name!r}: option {key}={value!r} is not valid (type {type(value).__name__}); "
                f"allowed: {describe_type(hints[key])}"
            )
    options: dict[str, Any] = {"wiring": dict(wiring), "sensory": sensory, "drop_rate": 0.3}
    if len(modes) == 1:
        options.update(_PRESET_MODES[name][modes[0]])
    else:  # each part keeps the preset's reduction for its mode; explicit options override all parts
        explicit = {k: kwargs[k] for k in ("pool", "pool_type", "channels", "patch_size", "stride") if k in kwargs}
        options["mode_options"] = {m: {**_PRESET_MODES[name][m], **explicit} for m in modes}
    options.update(kwargs)
    return NCPHead(in_shape, num_classes, sequence=sequence, **options)


@register_head("ncp_original")
def ncp_original(in_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> NCPHead:
    """Seed 000's NCP head with the original NCP (32 sensory, 12/6/1); ``sequence=`` any mode."""
    return _preset("ncp_original", ORIGINAL_NCP, 32, "channels", in_shape, num_classes, kwargs)


@register_head("ncp_double")
def ncp_double(in_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> NCPHead:
    """Seed 000's "double neurons and connectivities" NCP on the y-axis (128 sensory, 24/12/2)."""
    return _preset("ncp_double", _DOUBLE_NCP, 128, "rows", in_shape, num_classes, kwargs)


@register_head("ncp_custom")
def ncp_custom(in_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> NCPHead:
    """Seed 000's custom NCP on the y-axis (512 sensory, 48/24/4, 24/16/24/24)."""
    return _preset("ncp_custom", _CUSTOM_NCP, 512, "rows", in_shape, num_classes, kwargs)
