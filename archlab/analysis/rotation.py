"""Rotation robustness of classifiers: probability of the true class vs input rotation (SPEC §6).

Reference: the blog in seed 002 ("rotation-invariant convolutions", figs. 9-10; code
``exp2/explore.py``): every test image is rotated from 0 to 359 degrees in 1 degree steps
(``scipy.ndimage.rotate(img, angle, reshape=False)``: counter-clockwise, about the centre, the
same size, empty corners filled with 0); per model, the probability of the correct class vs the
angle for one image (curve), and the percentage of angles classified correctly over N images (box
plot, models ordered by their mean).

Departure: rotation is batched bilinear resampling (``grid_sample``) instead of scipy's cubic
spline, so thousands of rotated images are made on the device in one call. 90 degree multiples
are exact (they equal ``torch.rot90``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError, DataError

__all__ = ["rotate_images", "rotation_probabilities", "rotation_analysis", "plot_rotation_curve", "plot_rotation_boxplot"]


def _angles_tensor(angles: Sequence[float] | torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(list(angles) if not isinstance(angles, torch.Tensor) else angles, dtype=torch.float64)
    if a.dim() != 1 or a.numel() == 0:
        raise ConfigError(f"angles must be a non-empty 1-d sequence of degrees, got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ConfigError("angles must be finite numbers of degrees")
    return a


def rotate_images(
    images: torch.Tensor, angles: Sequence[float] | torch.Tensor, *, fill: float = 0.0, mode: str = "bilinear"
) -> torch.Tensor:
    """Every image rotated by every angle, counter-clockwise about its centre, same size.

    Args:
        images: float images.
        angles: degrees (counter-clockwise, as ``scipy.ndimage.rotate``).
        fill: value of the corners that come from outside the image.
        mode: ``"bilinear"`` or ``"nearest"`` resampling.

    Shape:
        - Input: ``(N, C, H, W)``
        - Output: ``(N, A, C, H, W)``
    """
    if images.dim() != 4:
        raise DataError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if mode not in ("bilinear", "nearest"):
        raise ConfigError(f"mode={mode!r} is not supported; allowed: 'bilinear', 'nearest'")
    N, C, H, W = images.shape
    a = torch.deg2rad(_angles_tensor(angles))  # (A,)
    A = a.numel()
    cos, sin = torch.cos(a), torch.sin(a)
    # Output pixel (x, y) (x right, y down, in pixels from the centre) samples the input at the
    # point rotated back; a counter-clockwise turn on screen is clockwise in (x, y-down) space.
    # In normalised coordinates (x / (W/2), y / (H/2)) the off-diagonal terms carry the aspect.
    theta = torch.zeros(A, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * H / W
    theta[:, 1, 0], theta[:, 1, 1] = sin * W / H, cos
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, [A, C, H, W], align_corners=False)  # (A, H, W, 2)
    x = images.unsqueeze(1).expand(N, A, C, H, W).reshape(N * A, C, H, W) - fill  # (N*A, C, H, W)
    g = grid.unsqueeze(0).expand(N, A, H, W, 2).reshape(N * A, H, W, 2)
    out = F.grid_sample(x, g, mode=mode, padding_mode="zeros", align_corners=False) + fill  # (N*A, C, H, W)
    return out.view(N, A, C, H, W)


@torch.no_grad()
def rotation_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    angles: Sequence[float] | torch.Tensor = range(360),
    *,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fill: float = 0.0,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probability of the true class, and whether it is predicted, per image and angle.

    Args:
        model: classifier returning logits; evaluated in eval mode (its mode is restored).
        images: images (uint8 are scaled to [0, 1]).
        labels: true classes.
        angles: rotation angles in degrees.
        batch_size: rotated images per forward pass.
        transform: applied to the rotated images before the model (e.g. the dataset
            normalisation), so rotation happens in pixel space as in the blog.
        fill: value of the empty corners (before ``transform``).
        device: where to run (default: the model's device).

    Returns:
        ``(prob, correct)``: ``(N, A)`` float probabilities and ``(N, A)`` bool (arg-max == label).
    """
    images, labels = _check_inputs(images, labels)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    ang = _angles_tensor(angles)
    A = ang.numel()
    param = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
    flags = [m.training for m in model.modules()]
    model.eval()
    per = max(1, batch_size // A)  # images per chunk
    probs, hits = [], []
    try:
        for start in range(0, images.shape[0], per):
            x = images[start : start + per].to(dev)  # (n, C, H, W)
            y = labels[start : start + per].to(dev)  # (n,)
            rot = rotate_images(x, ang, fill=fill).flatten(0, 1)  # (n*A, C, H, W)
            logits = torch.cat([model(transform(b) if transform else b) for b in rot.split(batch_size)])  # (n*A, K)
            yy = y.repeat_interleave(A)  # (n*A,)
            p = logits.float().softmax(-1).gather(1, yy[:, None]).squeeze(1)  # (n*A,)
            probs.append(p.view(-1, A).cpu())
            hits.append((logits.argmax(-1) == yy).view(-1, A).cpu())
    finally:
        for m, f in zip(model.modules(), flags):
            m.training = f
    return torch.cat(probs), torch.cat(hits)


def _check_inputs(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = torch.as_tensor(images), torch.as_tensor(labels).long().flatten()
    if images.dim() != 4 or images.shape[0] == 0:
        raise DataError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if labels.numel() != images.shape[0]:
        raise DataError(f"{images.shape[0]} images but {labels.numel()} labels")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        images = images.float()
    return images, labels


def plot_rotation_curve(
    angles: Sequence[float], curves: Mapping[str, Sequence[float]], path: str | Path, *, title: str | None = None,
    pct: Mapping[str, float] | None = None,
) -> Path:
    """Line plot of the true-class probability vs angle, one line per model (seed 002 fig. 9)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    order = sorted(curves, key=lambda k: pct[k]) if pct else list(curves)
    for name in order:
        label = f"{name} {pct[name]:.1f}%" if pct else name
        ax.plot(list(angles), list(curves[name]), label=label, linewidth=1)
    ax.set_xlabel("rotation (degrees)")
    ax.set_ylabel("probability of the correct class")
    ax.set_ylim(-0.02, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=min(len(curves), 5), fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rotation_boxplot(values: Mapping[str, Sequence[float]], path: str | Path, *, title: str | None = None) -> Path:
    """Box plot of "% of angles classified correctly" per model, ordered by mean (seed 002 fig. 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(values, key=lambda k: sum(values[k]) / max(len(values[k]), 1))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 4.5))
    ax.boxplot([list(values[n]) for n in names], showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("% of angles classified correctly")
    ax.set_ylim(-2, 102)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stats(v: torch.Tensor) -> dict[str, float]:
    v = v.double()
    return {
        "mean": float(v.mean()),
        "std": float(v.std()) if v.numel() > 1 else 0.0,
        "median": float(v.median()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def rotation_analysis(
    models: nn.Module | Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path,
    angles: Sequence[float] | torch.Tensor = range(360),
    *,
    example: int = 0,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fill: float = 0.0,
    device: str | torch.device | None = None,
    prefix: str = "rotation",
) -> dict[str, Any]:
    """Rotate every image through ``angles`` and record each model's robustness; write CSV + PNG.

    Files written to ``out_dir`` (``prefix`` = ``rotation`` by default):
        - ``{prefix}_curve.csv`` / ``.png``: angle and, per model, the probability of the correct
          class of image ``example`` (seed 002 fig. 9).
        - ``{prefix}_per_image.csv``: image, label, model, % of angles correct, mean probability.
        - ``{prefix}_boxplot.png``: distribution over images of "% of angles correct" (fig. 10).
        - ``{prefix}_summary.csv``: per model mean/std/median/min/max of that %, and accuracy at
          the first angle.

    Args:
        models: one model or ``{name: model}``.
        images, labels: ``(N, C, H, W)`` images (float, or uint8 scaled to [0, 1]) and ``(N,)`` classes.
        out_dir: folder (created).
        angles: degrees, default 0..359 in 1 degree steps.
        example: index of the image whose curve is drawn.
        batch_size, transform, fill, device: see :func:`rotation_probabilities`.
        prefix: file-name prefix.

    Returns:
        ``{"paths": {name: Path}, "summary": {model: stats}, "pct_correct": {model: (N,) tensor},
        "prob": {model: (N, A) tensor}, "angles": list}``.
    """
    models = {"model": models} if isinstance(models, nn.Module) else dict(models)
    if not models:
        raise ConfigError("models is empty: give a model or a {name: model} mapping")
    images, labels = _check_inputs(images, labels)
    if not 0 <= example < images.shape[0]:
        raise ConfigError(f"example={example} is outside 0..{images.shape[0] - 1}")
    ang = _angles_tensor(angles)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prob, pct, summary = {}, {}, {}
    for name, model in models.items():
        p, c = rotation_probabilities(
            model, images, labels, ang, batch_size=batch_size, transform=transform, fill=fill, device=device
        )
        prob[name], pct[name] = p, 100.0 * c.double().mean(1)
        summary[name] = {**_stats(pct[name]), "accuracy_at_first_angle": float(c[:, 0].double().mean())}
    angle_list = [float(a) for a in ang.tolist()]
    paths = {}
    paths["curve_csv"] = out / f"{prefix}_curve.csv"
    with paths["curve_csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["angle", *models])
        for i, a in enumerate(angle_list):
            w.writerow([a, *(f"{float(prob[n][example, i]):.6g}" for n in models)])
    paths["per_image_csv"] = out / f"{prefix}_per_image.csv"
    with paths["per_image_csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "model", "pct_correct", "mean_prob"])
        for n in models:
            for i in range(images.shape[0]):
                w.writerow([i, int(labels[i]), n, f"{float(pct[n][i]):.4f}", f"{float(prob[n][i].mean()):.6g}"])
    paths["summary_csv"] = out / f"{prefix}_summary.csv"
    with paths["summary_csv"].open("w", newline="") as f:
        keys = ["mean", "std", "median", "min", "max", "accuracy_at_first_angle"]
        w = csv.writer(f)
        w.writerow(["model", *(f"pct_correct_{k}" if k != "accuracy_at_first_angle" else k for k in keys), "images"])
        for n in models:
            w.writerow([n, *(f"{summary[n][k]:.6g}" for k in keys), images.shape[0]])
    ex_pct = {n: float(pct[n][example]) for n in models}
    paths["curve_png"] = plot_rotation_curve(
        angle_list, {n: prob[n][example].tolist() for n in models}, out / f"{prefix}_curve.png",
        title=f"image {example} (label {int(labels[example])})", pct=ex_pct,
    )  # fmt: skip
    paths["boxplot_png"] = plot_rotation_boxplot(
        {n: pct[n].tolist() for n in models}, out / f"{prefix}_boxplot.png",
        title=f"% of {len(angle_list)} rotations classified correctly, {images.shape[0]} images",
    )  # fmt: skip
    return {"paths": paths, "summary": summary, "pct_correct": pct, "prob": prob, "angles": angle_list}


