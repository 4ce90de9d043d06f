"""DenseNet feature reuse: how strongly each layer uses each earlier layer's maps (SPEC §6).

Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, sec. 5 and fig. 5:
"the average absolute filter weights of convolutional layers in a trained DenseNet. The color of
pixel (s, l) encodes the average L1 norm (normalized by the number of input feature-maps) of the
weights connecting convolutional layer s to l within a dense block."

For every dense block, target ``l`` is the first convolution of dense layer ``l`` (the 1x1
bottleneck, or the 3x3 conv without bottleneck), then the transition's 1x1 convolution (or, after
the last block, the classifier's Linear layer when the head is one); source ``s`` is the block input
(``s = 0``) or dense layer ``s``. The value is the mean of ``|w|`` over the weights that read the
channels of source ``s``. Pairs that are not connected (``s >= l``) are NaN.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from archlab.errors import IncompatibleError
from archlab.heads.linear import LinearHead
from archlab.layers.dense import DenseBlock, Transition

__all__ = ["BlockReuse", "feature_reuse", "write_feature_reuse"]


@dataclass
class BlockReuse:
    """Feature reuse of one dense block.

    Attributes:
        block: the block's module name (``denseblock1``...).
        sources: source names, ``["input", "layer1", ...]``.
        targets: target names, ``["layer1", ..., "transition"|"classifier"]``.
        matrix: ``(len(sources), len(targets))`` mean |weight|; NaN where not connected.
    """

    block: str
    sources: list[str]
    targets: list[str]
    matrix: np.ndarray


def _mean_abs_by_source(weight: torch.Tensor, slices: list[tuple[int, int]]) -> list[float]:
    """Mean |w| over the input-channel slice of each source. ``weight``: (out, in, ...)."""
    w = weight.detach().abs().float()
    return [float(w[:, a:b].mean()) for a, b in slices]


def _classifier_weight(model: nn.Module, channels: int) -> torch.Tensor | None:
    """The head's Linear weight as ``(out, channels, positions)`` when it reads the final maps."""
    head = getattr(model, "head", None)
    if not isinstance(head, LinearHead) or head.fc.in_features % channels:
        return None  # only a single Linear layer reads the block's maps directly
    fc = head.fc
    # flattened (C, H, W) features are channel-major: feature c*HW + p is channel c, position p
    return fc.weight.detach().reshape(fc.out_features, channels, -1)


def feature_reuse(model: nn.Module) -> list[BlockReuse]:
    """Feature-reuse matrices of every dense block in ``model`` (a DenseNet classifier or backbone).

    Returns:
        One :class:`BlockReuse` per dense block, in network order.

    Raises:
        IncompatibleError: the model has no dense block.
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, DenseBlock)]
    if not named:
        raise IncompatibleError(f"{type(model).__name__} has no DenseBlock; the feature-reuse analysis "
                                "needs a DenseNet (densenet121/169/201, densenet_bc)")
    # the module following each block (transition) in its parent container
    followers: dict[int, nn.Module | None] = {}
    for _, parent in model.named_modules():
        kids = list(parent.children())
        for i, k in enumerate(kids):
            if isinstance(k, DenseBlock):
                followers[id(k)] = kids[i + 1] if i + 1 < len(kids) else None
    out = []
    for idx, (name, block) in enumerate(named):
        slices = block.source_slices()
        layers = list(block.values())
        n = len(layers)
        targets = [f"layer{i + 1}" for i in range(n)]
        cols: list[list[float]] = []
        for t, layer in enumerate(layers):
            vals = _mean_abs_by_source(layer.conv1.weight, slices[: t + 1])
            cols.append(vals + [math.nan] * (n + 1 - len(vals)))
        nxt = followers.get(id(block))
        if isinstance(nxt, Transition):
            targets.append("transition")
            cols.append(_mean_abs_by_source(nxt.conv.weight, slices))
        elif idx == len(named) - 1:
            w = _classifier_weight(model, block.out_channels)
            if w is not None:
                targets.append("classifier")
                cols.append(_mean_abs_by_source(w, slices))
        matrix = np.array(cols, dtype=np.float64).T  # (sources, targets)
        sources = ["input"] + [f"layer{i + 1}" for i in range(n)]
        out.append(BlockReuse(name.split(".")[-1], sources, targets, matrix))
    return out


def write_feature_reuse(model: nn.Module, out_dir: str | Path, *, prefix: str = "feature_reuse",
                        normalize: str = "block") -> dict[str, Path]:
    """Write the feature-reuse CSV and one heatmap PNG with a panel per dense block.

    Args:
        model: a (trained) DenseNet classifier or backbone.
        out_dir: output folder (created).
        prefix: file name stem.
        normalize: colour scale of each panel: ``"block"`` (divide by the block's maximum, as in
            the paper's figure), ``"target"`` (each target column by its own maximum) or
            ``"none"`` (raw values). The CSV always holds the raw values.

    Returns:
        ``{"csv": path, "png": path}``. CSV columns: ``block, source, target, mean_abs_weight``
        (connected pairs only).

    Raises:
        IncompatibleError: no dense block in the model.
        ValueError: unknown ``normalize``.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    if normalize not in ("block", "target", "none"):
        raise ValueError(f"normalize must be 'block', 'target' or 'none', got {normalize!r}")
    blocks = feature_reuse(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{prefix}.csv", out_dir / f"{prefix}.png"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["block", "source", "target", "mean_abs_weight"])
        for br in blocks:
            for j, tgt in enumerate(br.targets):
                for i, src in enumerate(br.sources):
                    v = br.matrix[i, j]
                    if not math.isnan(v):
                        w.writerow([br.block, src, tgt, f"{v:.6g}"])

    fig = Figure(figsize=(4.2 * len(blocks), 4.0), constrained_layout=True)
    axes = fig.subplots(1, len(blocks), squeeze=False)[0]
    for ax, br in zip(axes, blocks):
        m = br.matrix.copy()
        if normalize == "block":
            m = m / np.nanmax(m)
        elif normalize == "target":
            m = m / np.nanmax(m, axis=0, keepdims=True)
        im = ax.imshow(np.ma.masked_invalid(m), origin="lower", aspect="auto", cmap="viridis",
                       vmin=0.0 if normalize != "none" else None)
        ax.set_title(br.block)
        ax.set_xlabel("target layer")
        ax.set_ylabel("source layer (0 = block input)")
        ax.set_xticks(range(len(br.targets)))
        ax.set_xticklabels([t.replace("layer", "") if t.startswith("layer") else t[:5] for t in br.targets],
                           fontsize=6, rotation=90)
        ax.set_yticks(range(len(br.sources)))
        ax.set_yticklabels([str(i) for i in range(len(br.sources))], fontsize=6)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"DenseNet feature reuse: mean |weight| ({normalize} normalised)")
    fig.savefig(png_path, dpi=110)
    return {"csv": csv_path, "png": png_path}
