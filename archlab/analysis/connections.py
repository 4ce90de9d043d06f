"""Evolution of learned connection gates during training (SPEC §6 ``connections``).

Reference: the blog in seed 002 ("Learning network connectivity", fig. 3; code
``exp3/train.py`` ``plot_weight_history``): after every epoch the ``sigmoid(W)`` of every
``Connection`` layer is logged; one plot per connection shows each input's gate over the epochs.
Connections whose gate falls towards 0 are the ones the network "tries to get rid of" and can be
pruned (:meth:`archlab.models.connected_net.ConnectedClassifier.prune`).

Typical use: call :func:`read_gates` on the model at the end of every epoch (cheap, JSON-friendly)
and pass the list to :func:`connections_analysis`; or pass per-epoch models / state dicts.
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.layers.gated_connection import GatedConnection

__all__ = ["read_gates", "gate_history", "gates_table", "connections_analysis", "plot_gate_history"]

GateSnapshot = dict[str, dict[str, list]]


def _connections(model: nn.Module) -> dict[str, GatedConnection]:
    backbone = getattr(model, "backbone", model)
    if hasattr(backbone, "gated_connections"):
        return dict(backbone.gated_connections())
    return {name: m for name, m in model.named_modules() if isinstance(m, GatedConnection)}


def read_gates(model: nn.Module) -> GateSnapshot:
    """The current gate values of every :class:`GatedConnection` in ``model``.

    Returns:
        ``{connection: {"inputs": [input names], "gates": [[gate, ...] per input]}}`` -- one value
        per input when shared, one per feature map otherwise. Plain lists (JSON-serialisable).
        Connections are named ``connection_j`` for ``connected_net``, else by module path.

    Raises:
        ConfigError: the model has no gated connection.
    """
    conns = _connections(model)
    if not conns:
        raise ConfigError(f"{type(model).__name__} has no GatedConnection; the connections analysis needs connected_net")
    return {
        name: {"inputs": list(c.input_names), "gates": [g.reshape(-1).tolist() for g in c.gates()]}
        for name, c in conns.items()
    }


def _is_snapshot(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, Mapping) and "gates" in v for v in obj.values()) and bool(obj)


def gate_history(
    snapshots: Sequence[nn.Module | Mapping[str, torch.Tensor] | GateSnapshot], model: nn.Module | None = None
) -> list[GateSnapshot]:
    """Gate values for a sequence of per-epoch snapshots (epoch ``i`` = ``snapshots[i]``).

    Args:
        snapshots: models, ``state_dict``s (need ``model`` as a template to load them into), or
            outputs of :func:`read_gates` (passed through).
        model: template model for ``state_dict`` snapshots (not modified).

    Returns:
        One :func:`read_gates` result per snapshot.
    """
    if len(snapshots) == 0:
        raise ConfigError("snapshots is empty: give one model, state_dict or read_gates() result per epoch")
    template = None
    out = []
    for i, snap in enumerate(snapshots):
        if isinstance(snap, nn.Module):
            out.append(read_gates(snap))
        elif _is_snapshot(snap):
            out.append({k: {"inputs": list(v["inputs"]), "gates": [list(g) for g in v["gates"]]} for k, v in snap.items()})
        elif isinstance(snap, Mapping):
            if model is None:
                raise ConfigError(f"snapshot {i} is a state_dict: pass model=<the architecture> to load it into")
            template = template or copy.deepcopy(model)
            template.load_state_dict(snap, strict=True)
            out.append(read_gates(template))
        else:
            raise ConfigError(f"snapshot {i} is a {type(snap).__name__}; expected a model, a state_dict or read_gates()")
    return out


def gates_table(history: Sequence[GateSnapshot]) -> list[dict[str, Any]]:
    """Long table: one row per (epoch, connection, input, feature map) with its gate value.

    Epochs are 1-based (``history[0]`` = epoch 1).
    """
    rows = []
    for e, snap in enumerate(history, start=1):
        for conn, d in snap.items():
            for i, (name, gates) in enumerate(zip(d["inputs"], d["gates"])):
                for f, g in enumerate(gates):
                    rows.append({"epoch": e, "connection": conn, "input": i, "input_name": name, "feature": f, "gate": g})
    return rows


def plot_gate_history(history: Sequence[GateSnapshot], path: str | Path) -> Path:
    """One panel per connection, one line per input (mean over its feature maps) vs epoch (fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conns = list(history[0])
    n = len(conns)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    epochs = list(range(1, len(history) + 1))
    for k, conn in enumerate(conns):
        ax = axes[k // cols][k % cols]
        inputs = history[0][conn]["inputs"]
        for i, name in enumerate(inputs):
            ys = [sum(s[conn]["gates"][i]) / len(s[conn]["gates"][i]) for s in history]
            ax.plot(epochs, ys, marker="o" if len(epochs) < 30 else None, markersize=3, label=f"w_{i} {name}")
        ax.set_title(conn)
        ax.set_xlabel("epoch")
        ax.set_ylabel("sigmoid(w)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize="xx-small", loc="best")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def connections_analysis(
    history: Sequence[nn.Module | Mapping[str, torch.Tensor] | GateSnapshot],
    out_dir: str | Path,
    *,
    model: nn.Module | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Write the gate evolution (CSV + PNG) and, optionally, which connections a threshold keeps.

    Files in ``out_dir``: ``connection_gates.csv`` (epoch, connection, input, input_name,
    feature, gate), ``connection_gates.png`` (see :func:`plot_gate_history`) and, with a
    ``threshold``, ``connection_pruning.csv`` (connection, input, input_name, final strength =
    max over feature maps, kept).

    Args:
        history: per-epoch snapshots (see :func:`gate_history`).
        out_dir: folder (created).
        model: template for ``state_dict`` snapshots.
        threshold: gate value a connection needs at the last epoch to be kept.

    Returns:
        ``{"paths": {...}, "history": [...], "final": {connection: [strength per input]},
        "kept": {connection: [input indices]} (with a threshold)}``.
    """
    hist = gate_history(history, model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"gates_csv": out / "connection_gates.csv"}
    rows = gates_table(hist)
    with paths["gates_csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "connection", "input", "input_name", "feature", "gate"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "gate": f"{r['gate']:.6g}"})
    paths["gates_png"] = plot_gate_history(hist, out / "connection_gates.png")
    final = {c: [max(g) for g in d["gates"]] for c, d in hist[-1].items()}
    result: dict[str, Any] = {"paths": paths, "history": hist, "final": final}
    if threshold is not None:
        if isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold={threshold!r} must be a gate value in [0, 1]")
        kept = {}
        paths["pruning_csv"] = out / "connection_pruning.csv"
        with paths["pruning_csv"].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["connection", "input", "input_name", "strength", "kept"])
            for c, strengths in final.items():
                keep = [i for i, s in enumerate(strengths) if s >= threshold]
                keep = keep or [max(range(len(strengths)), key=strengths.__getitem__)]
                kept[c] = keep
                for i, s in enumerate(strengths):
                    w.writerow([c, i, hist[-1][c]["inputs"][i], f"{s:.6g}", int(i in keep)])
        result["kept"] = kept
    return result
