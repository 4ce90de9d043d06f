"""Squeeze-Excitation analysis: excitation values per SE block for chosen classes (SPEC §6).

Reference: Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018, sec. 7.2 and fig. 6:
the average activations of the excitation operator per channel, at several depths, for images of a
few classes. Early blocks excite channels alike for every class (class-agnostic features); late
blocks become class-specific; the very last ones saturate.

:func:`collect_excitations` runs the model (eval mode, no gradients) over labelled images and
keeps, per SE module and class, every sample's excitation vector; :func:`write_excitation_report`
writes a CSV (per block, class and channel: mean, std, quantiles) and a PNG (one panel per block,
mean excitation per channel with its interquartile band over the class's images, one line per
class, channels sorted by their overall mean).
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from archlab.errors import ConfigError, IncompatibleError
from archlab.layers.squeeze_excite import SqueezeExcitation, record_excitations

__all__ = ["collect_excitations", "write_excitation_report"]


def _se_names(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, SqueezeExcitation)]
    if not names:
        raise IncompatibleError(f"{type(model).__name__} has no SqueezeExcitation module; build it with "
                                "se=True (resnet*, vgg*) or use an efficientnet")
    if blocks is None:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatch(n, pat) for pat in blocks)]
    if not chosen:
        raise ConfigError(f"no SE module matches {list(blocks)}; SE modules: {', '.join(names[:8])}"
                          + (", ..." if len(names) > 8 else ""))
    return chosen


@torch.no_grad()
def collect_excitations(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    classes: Sequence[int] | None = None,
    blocks: Sequence[str] | None = None,
    batch_size: int = 256,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, dict[int, torch.Tensor]]:
    """Excitation vectors per SE module and class.

    Args:
        model: a model with :class:`SqueezeExcitation` modules (run in eval mode; its mode is
            restored afterwards).
        images: ``(N, C, H, W)`` inputs as the model expects them (or raw, with ``preprocess``).
        labels: ``(N,)`` integer class labels.
        classes: classes to keep (``None`` = every class present).
        blocks: SE module names or shell patterns (``"backbone.layer4.*"``); ``None`` = all.
        batch_size: images per forward pass.
        preprocess: applied to each batch on the model's device (e.g. uint8 -> normalised float).

    Returns:
        ``{se_module_name: {class: (N_class, C) float tensor on the CPU}}`` in network order.

    Raises:
        ConfigError: mismatched images/labels, a class with no image, no matching SE module.
        IncompatibleError: the model has no SE module.
    """
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ConfigError(f"need images (N, C, H, W) and labels (N,) of the same N, got "
                          f"{tuple(images.shape)} and {tuple(labels.shape)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    names = _se_names(model, blocks)
    present = sorted(int(c) for c in torch.unique(labels))
    wanted = present if classes is None else [int(c) for c in classes]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ConfigError(f"classes {missing} have no image among the {len(labels)} given (present: {present})")
    keep = torch.isin(labels, torch.tensor(wanted, dtype=labels.dtype))
    images, labels = images[keep], labels[keep]

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with record_excitations(model, names) as store:
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device)
                model(preprocess(x) if preprocess is not None else x)
    finally:
        model.train(was_training)
    out: dict[str, dict[int, torch.Tensor]] = {}
    for name in names:
        exc = torch.cat(store[name]).cpu()  # (N, C)
        out[name] = {c: exc[labels == c] for c in wanted}
    return out


def write_excitation_report(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path,
    *,
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    blocks: Sequence[str] | None = None,
    batch_size: int = 256,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prefix: str = "excitation",
    max_panels: int = 12,
) -> dict[str, Path]:
    """Write the excitation CSV and PNG for the chosen classes and SE blocks.

    Args:
        model, images, labels, classes, blocks, batch_size, preprocess: see :func:`collect_excitations`.
        out_dir: output folder (created).
        class_names: names indexed by class id, for the legend and CSV (default: the ids).
        prefix: file name stem.
        max_panels: at most this many blocks are plotted, evenly spaced over depth (the CSV
            always holds every chosen block).

    Returns:
        ``{"csv": path, "png": path}``. CSV columns: ``block, class, class_name, channel, n, mean,
        std, q25, median, q75``.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    data = collect_excitations(model, images, labels, classes=classes, blocks=blocks,
                               batch_size=batch_size, preprocess=preprocess)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{prefix}.csv", out_dir / f"{prefix}.png"

    def cname(c: int) -> str:
        return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)

    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["block", "class", "class_name", "channel", "n", "mean", "std", "q25", "median", "q75"])
        for block, per_class in data.items():
            for c, exc in per_class.items():
                e = exc.double().numpy()  # (N_c, C)
                q25, med, q75 = np.quantile(e, [0.25, 0.5, 0.75], axis=0)
                mean, std = e.mean(0), e.std(0)
                for ch in range(e.shape[1]):
                    w.writerow([block, c, cname(c), ch, e.shape[0], f"{mean[ch]:.6g}", f"{std[ch]:.6g}",
                                f"{q25[ch]:.6g}", f"{med[ch]:.6g}", f"{q75[ch]:.6g}"])

    names = list(data)
    if len(names) > max_panels:
        idx = np.unique(np.linspace(0, len(names) - 1, max_panels).round().astype(int))
        names = [names[i] for i in idx]
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.0 * nrows), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, block in zip(axes, names):
        per_class = data[block]
        overall = torch.cat(list(per_class.values())).mean(0)  # (C,)
        order = torch.argsort(overall, descending=True)
        for c, exc in per_class.items():
            e = exc[:, order]  # (N_c, C), channels in plot order
            line = ax.plot(e.mean(0).numpy(), lw=0.9, label=cname(c))[0]
            q25, q75 = torch.quantile(e, torch.tensor([0.25, 0.75]), dim=0).numpy()
            ax.fill_between(np.arange(e.shape[1]), q25, q75, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(block.removeprefix("backbone."), fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("channel (sorted by mean excitation)", fontsize=7)
        ax.set_ylabel("mean excitation", fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, title="class", title_fontsize=6)
    fig.suptitle("SE excitation per block and class")
    fig.savefig(png_path, dpi=110)
    return {"csv": csv_path, "png": png_path}
