"""A network whose connectivity is learned: every layer sees all previous outputs through gates.

Reference: the blog in seed 002 ("Learning network connectivity", raghakot, 2017; code
``exp3/architecture.py`` and ``exp3/train.py``). Layers ``[Conv, Conv, MaxPool, Dropout] x 2``
(32 then 64 filters) are "fully connected": after every layer ``j`` a
:class:`~archlab.layers.GatedConnection` merges the input and the outputs of layers ``0..j``
(each resized to the smallest among them and multiplied by ``sigmoid(w)``) and feeds layer
``j + 1``; the last connection feeds ``Flatten -> Dense(512) -> ReLU``, then the head
(``Dropout(.5) -> Dense(C)`` by default). Connection ``j``'s gates are the blog's
``connection_j`` weights (fig. 3: ``connection_0`` = input and conv1 into conv2).

``prune(threshold)`` builds the blog's follow-up experiment: a new model with only the
connections whose gate reached ``threshold`` (trained from scratch); blocks whose output no
longer reaches the classifier are dropped with their parameters.

Gate options (the blog's experiments): ``gate_activation="identity"`` drops the sigmoid ("I tested
without sigmoid"); ``gate_init`` is one logit for every gate, or a scheme: ``{scheme: feedforward,
feedforward: 1.0, rest: 0.5}`` (the edge from the block just before a connection starts at
``feedforward``, every skip edge at ``rest``) or ``{scheme: gaussian, mean: 0.5, std: 0.1}`` (every
gate drawn from N(mean, std^2) with the model's init stream). None of them changes the parameters.

Departures from the blog: block 0 takes the raw input (as in the blog's code; a gate on a lone
input is a scalar the conv absorbs). Conv biases are off by default (the blog's ``bias=False``).
The default gate init is ``1.0`` (the value ``exp3/train.py`` trained with; the blog reports init
0, 0.5 or 1 made no difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError, IncompatibleError
from archlab.layers.gated_connection import GatedConnection
from archlab.models._classifier import Classifier, to_2tuple

__all__ = ["ConnectedNet", "ConnectedClassifier", "connected_net", "parse_block", "DEFAULT_BLOCKS", "BLOCK_KINDS",
           "GATE_INIT_SCHEMES"]

#: The blog's layer list: [Conv, Conv, MaxPool, Dropout] x 2 with 32 then 64 filters.
DEFAULT_BLOCKS: tuple[str, ...] = (
    "conv:32", "conv:32:valid", "maxpool:2", "dropout:0.25",
    "conv:64", "conv:64:valid", "maxpool:2", "dropout:0.25",
)  # fmt: skip
BLOCK_KINDS = ("conv:N[:same|valid]", "maxpool:K", "avgpool:K", "dropout:P")
#: ``gate_init`` schemes and their keys (besides ``scheme``) with defaults.
GATE_INIT_SCHEMES: dict[str, dict[str, float]] = {
    "feedforward": {"feedforward": 1.0, "rest": 0.5},
    "gaussian": {"mean": 0.5, "std": 0.1},
}


def _gate_scheme(gate_init: float | dict[str, Any]) -> tuple[str, dict[str, float]]:
    """``gate_init`` -> ``(scheme, values)``; a number is the scheme ``constant``."""
    if isinstance(gate_init, (int, float)) and not isinstance(gate_init, bool):
        return "constant", {"value": float(gate_init)}
    allowed = "a number, {scheme: feedforward, feedforward: 1.0, rest: 0.5} or {scheme: gaussian, mean: 0.5, std: 0.1}"
    if not isinstance(gate_init, dict) or gate_init.get("scheme") not in GATE_INIT_SCHEMES:
        raise ConfigError(f"connected_net: gate_init={gate_init!r} is not understood; allowed: {allowed}")
    scheme = gate_init["scheme"]
    values = dict(GATE_INIT_SCHEMES[scheme])
    for key, v in gate_init.items():
        if key == "scheme":
            continue
        if key not in values or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(
                f"connected_net: gate_init key {key}={v!r} is not understood for scheme {scheme!r}; "
                f"allowed keys: {', '.join(values)} (numbers)"
            )
        values[key] = float(v)
    if scheme == "gaussian" and values["std"] < 0:
        raise ConfigError(f"connected_net: gate_init std={values['std']} must be >= 0")
    return scheme, values


def parse_block(spec: str) -> tuple[str, Any, str | None]:
    """``"conv:64:valid"`` -> ``("conv", 64, "valid")``; ``"maxpool:2"`` -> ``("maxpool", 2, None)``.

    Raises:
        ConfigError: an unknown kind or a malformed value, naming the allowed forms.
    """
    parts = str(spec).split(":")
    kind, rest = parts[0].strip().lower(), parts[1:]
    try:
        if kind == "conv" and 1 <= len(rest) <= 2:
            pad = rest[1].strip().lower() if len(rest) == 2 else "same"
            if pad not in ("same", "valid") or int(rest[0]) < 1:
                raise ValueError
            return "conv", int(rest[0]), pad
        if kind in ("maxpool", "avgpool") and len(rest) <= 1:
            k = int(rest[0]) if rest else 2
            if k < 1:
                raise ValueError
            return kind, k, None
        if kind == "dropout" and len(rest) <= 1:
            p = float(rest[0]) if rest else 0.25
            if not 0.0 <= p < 1.0:
                raise ValueError
            return kind, p, None
    except ValueError:
        pass
    raise ConfigError(f"block {spec!r} is not understood; allowed forms: {', '.join(BLOCK_KINDS)} (e.g. 'conv:32:valid')")


def _make_block(spec: str, in_ch: int, conv_bias: bool) -> tuple[nn.Module, int]:
    kind, value, pad = parse_block(spec)
    if kind == "conv":
        conv = nn.Conv2d(in_ch, value, 3, padding=1 if pad == "same" else 0, bias=conv_bias)
        return nn.Sequential(conv, nn.ReLU(inplace=True)), value
    if kind == "maxpool":
        return nn.MaxPool2d(value), in_ch
    if kind == "avgpool":
        return nn.AvgPool2d(value), in_ch
    return nn.Dropout(value), in_ch


def _check_pattern(connections: Sequence[Sequence[int]] | None, n: int) -> list[list[int]]:
    if connections is None:
        return [list(range(j + 2)) for j in range(n)]
    pattern = [sorted({int(s) for s in c}) for c in connections]
    if len(pattern) != n:
        raise ConfigError(f"connections has {len(pattern)} entries for {n} blocks; give one source list per block")
    for j, c in enumerate(pattern):
        if not c:
            raise ConfigError(
                f"connections[{j}] is empty: every connection needs at least one source; allowed sources: "
                f"0 (input) .. {j + 1} (block {j})"
            )
        if c[0] < 0 or c[-1] > j + 1:
            raise ConfigError(
                f"connections[{j}]={c} has a source outside 0..{j + 1} (0 = input, s = output of block s-1)"
            )
    return pattern


class ConnectedNet(nn.Module):
    """Blocks joined by learned gated connections, then Flatten -> Dense(fc_width) -> ReLU.

    Args:
        in_chans: input channels.
        input_size: (H, W) of the inputs.
        blocks: block specs (see :func:`parse_block`), default :data:`DEFAULT_BLOCKS`.
        interpolation, shared, merge, squeeze_channels: options of every
            :class:`~archlab.layers.GatedConnection`.
        gate_init: initial gate logit ``w`` of every connection (gate ``sigmoid(w)``), or a scheme
            dict (``feedforward`` / ``gaussian``, see the module docstring).
        gate_activation: ``"sigmoid"`` or ``"identity"`` (gate = ``w``).
        fc_width: width of the Dense layer ending the backbone.
        conv_bias: biases on the convolutions.
        connections: for connection ``j`` (after block ``j``) the sources it keeps, numbered
            ``0`` = input, ``s`` = output of block ``s - 1``; ``None`` = all of ``0..j+1``.

    Attributes:
        blocks, connections: ``nn.ModuleList``; a block (and the connection feeding it) whose
            output reaches no live connection is an ``nn.Identity`` placeholder and is skipped.
        pattern: the kept sources of every connection.
        alive: which blocks are computed.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, fc_width)``
    """

    def __init__(
        self,
        in_chans: int = 3,
        input_size: tuple[int, int] = (32, 32),
        blocks: Sequence[str] = DEFAULT_BLOCKS,
        interpolation: str = "bilinear",
        shared: bool = True,
        gate_init: float | dict[str, Any] = 1.0,
        merge: str = "concat",
        squeeze_channels: int | None = None,
        fc_width: int = 512,
        conv_bias: bool = False,
        connections: Sequence[Sequence[int]] | None = None,
        gate_activation: str = "sigmoid",
    ):
        super().__init__()
        self.gate_scheme = _gate_scheme(gate_init)
        blocks = [blocks] if isinstance(blocks, str) else list(blocks)
        if not blocks:
            raise ConfigError(f"blocks={blocks!r}: give at least one block; allowed forms: {', '.join(BLOCK_KINDS)}")
        for spec in blocks:
            parse_block(spec)
        n = len(blocks)
        self.block_specs = blocks
        self.pattern = _check_pattern(connections, n)
        # Which blocks feed the classifier (walk back from the last connection).
        alive = [False] * n
        conn_alive = [False] * n
        for j in range(n - 1, -1, -1):
            conn_alive[j] = j == n - 1 or alive[j + 1]
            if conn_alive[j]:
                for s in self.pattern[j]:
                    if s >= 1:
                        alive[s - 1] = True
        self.alive = alive
        names = ["input"] + [f"block{i}:{spec}" for i, spec in enumerate(blocks)]
        shapes: list[tuple[int, int, int] | None] = [(in_chans, *input_size)]
        self.blocks, self.connections = nn.ModuleList(), nn.ModuleList()
        kw = dict(
            interpolation=interpolation, shared=shared, merge=merge, squeeze_channels=squeeze_channels,
            gate_activation=gate_activation,
        )  # fmt: skip
        conn_out: tuple[int, int, int] = shapes[0]
        for i, spec in enumerate(blocks):
            if i > 0:
                conn_out = self._add_connection(i - 1, shapes, names, kw, conn_alive[i - 1])
            if not alive[i]:
                self.blocks.append(nn.Identity())
                shapes.append(None)
                continue
            block, out_ch = _make_block(spec, conn_out[0], conv_bias)
            self.blocks.append(block)
            shapes.append(self._block_shape(block, conn_out, spec))
        self.out_shape = self._add_connection(n - 1, shapes, names, kw, True)
        C, H, W = self.out_shape
        self.fc = nn.Sequential(nn.Flatten(1), nn.Linear(C * H * W, fc_width), nn.ReLU(inplace=True))

    def _add_connection(self, j, shapes, names, kw, live) -> tuple[int, int, int]:
        if not live:
            self.connections.append(nn.Identity())
            return (0, 0, 0)
        src = self.pattern[j]
        scheme, values = self.gate_scheme
        if scheme == "constant":
            init: float | list[float] = values["value"]
        elif scheme == "feedforward":  # source j + 1 is the block just before connection j
            init = [values["feedforward"] if s == j + 1 else values["rest"] for s in src]
        else:
            init = values["mean"]
        conn = GatedConnection([shapes[s][0] for s in src], input_names=[names[s] for s in src], init=init, **kw)
        if scheme == "gaussian":
            with torch.no_grad():
                conn.weight.normal_(values["mean"], values["std"])
        self.connections.append(conn)
        h, w = min(shapes[s][1] for s in src), min(shapes[s][2] for s in src)
        return (conn.out_channels, h, w)

    @staticmethod
    @torch.no_grad()
    def _block_shape(block: nn.Module, in_shape: tuple[int, int, int], spec: str) -> tuple[int, int, int]:
        if min(in_shape[1:]) < 1:
            raise IncompatibleError(f"connected_net: block {spec!r} gets an empty {in_shape} map; use a larger input_size")
        was = block.training
        block.eval()
        try:
            out = block(torch.zeros(1, *in_shape))
        except RuntimeError as exc:
            raise IncompatibleError(
                f"connected_net: block {spec!r} cannot take a {in_shape} map ({str(exc).splitlines()[0]}); "
                "use a larger input_size or fewer pooling/valid blocks"
            ) from None
        finally:
            block.train(was)
        if min(out.shape[2:]) < 1:
            raise IncompatibleError(f"connected_net: block {spec!r} turns {in_shape} into an empty map; use a larger input_size")
        return tuple(int(s) for s in out.shape[1:])  # type: ignore[return-value]

    def gated_connections(self) -> dict[str, GatedConnection]:
        """The live connections by name (``connection_j`` feeds block ``j + 1`` or the Dense layer)."""
        return {f"connection_{j}": c for j, c in enumerate(self.connections) if isinstance(c, GatedConnection)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor | None] = [x]
        h = x
        for i, block in enumerate(self.blocks):
            if i > 0 and self.alive[i]:
                h = self.connections[i - 1]([outs[s] for s in self.pattern[i - 1]])  # (B, C_conn, h, w)
            outs.append(block(h) if self.alive[i] else None)  # (B, C_i, H_i, W_i)
        y = self.connections[-1]([outs[s] for s in self.pattern[-1]])  # (B, C, H, W)
        return self.fc(y)  # (B, fc_width)


class ConnectedClassifier(Classifier):
    """A :class:`~archlab.models.Classifier` over a :class:`ConnectedNet`, with gate access and pruning."""

    build_kwargs: dict[str, Any]

    def gates(self) -> dict[str, list[torch.Tensor]]:
        """``{connection_j: [gate per source]}`` (scalars when shared, else per feature map)."""
        return {name: c.gates() for name, c in self.backbone.gated_connections().items()}

    def pruned_connections(self, threshold: float, reduce: str = "max") -> list[list[int]]:
        """The ``connections`` pattern keeping only sources whose gate is ``>= threshold``.

        A source's strength is its gate (shared) or the ``max``/``mean`` of its feature-map gates.
        Every live connection keeps at least its strongest source (a block needs an input).
        Connections of dead blocks keep their current pattern (they stay dead).
        """
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold={threshold!r} must be a gate value in [0, 1]")
        net: ConnectedNet = self.backbone
        pattern = [list(p) for p in net.pattern]
        for j, conn in enumerate(net.connections):
            if not isinstance(conn, GatedConnection):
                continue
            strength = conn.input_strengths(reduce)
            keep = [s for s, g in zip(net.pattern[j], strength.tolist()) if g >= threshold]
            pattern[j] = keep or [net.pattern[j][int(strength.argmax())]]
        return pattern

    def prune(self, threshold: float, *, reduce: str = "max", seed: int | None = None) -> ConnectedClassifier:
        """A new, freshly initialised model without the connections whose gate is below ``threshold``.

        This is the blog's follow-up ("start out by removing" the weak connections): the result
        has the same blocks, head and options, fewer gates and usually far fewer parameters, and
        is meant to be trained from scratch (its ``build_kwargs['connections']`` is the pattern).

        Args:
            threshold: minimum gate value ``sigmoid(w)`` a connection needs to be kept.
            reduce: ``max`` or ``mean`` over a source's feature-map gates when ``shared=False``.
            seed: initialise the new model from this seed (the global RNG when ``None``).
        """
        pattern = self.pruned_connections(threshold, reduce)
        kwargs = {**self.build_kwargs, "connections": pattern}
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = connected_net(
                num_classes=self.num_classes, in_chans=self.in_chans, head=self.head_name,
                head_kwargs=self.head_kwargs, input_size=self.input_size, **kwargs,
            )  # fmt: skip
        model.model_name = getattr(self, "model_name", "connected_net")
        ref = next(self.parameters())
        return model.to(ref.device)


@register_model
def connected_net(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    blocks: str | Sequence[str] = DEFAULT_BLOCKS,
    interpolation: str = "bilinear",
    shared: bool = True,
    gate_init: float | dict[str, Any] = 1.0,
    merge: str = "concat",
    squeeze_channels: int | None = None,
    fc_width: int = 512,
    conv_bias: bool = False,
    connections: Sequence[Sequence[int]] | None = None,
    gate_activation: Literal["sigmoid", "identity"] = "sigmoid",
) -> ConnectedClassifier:
    """Learned-connectivity net (seed 002); default head Dropout(.5) -> Linear(fc_width, C)."""
    size = to_2tuple(input_size if input_size is not None else 32)
    build_kwargs = dict(
        blocks=list(blocks) if not isinstance(blocks, str) else [blocks], interpolation=interpolation, shared=shared,
        gate_init=gate_init, merge=merge, squeeze_channels=squeeze_channels, fc_width=fc_width, conv_bias=conv_bias,
        connections=[list(c) for c in connections] if connections is not None else None,
        gate_activation=gate_activation,
    )  # fmt: skip
    backbone = ConnectedNet(in_chans, size, **build_kwargs)
    if head is None:
        head, head_kwargs = "linear", {"drop_rate": 0.5, **(head_kwargs or {})}
    model = ConnectedClassifier(
        backbone, num_classes=num_classes, in_chans=in_chans, input_size=size, head=head,
        head_kwargs=head_kwargs, model_name="connected_net",
    )  # fmt: skip
    model.build_kwargs = build_kwargs
    return model

