"""Weight transplant: a trained ordinary model's weights inside its rotation-invariant twin (SPEC §6).

Reference: the blog in seed 002 (figs. 11-12): "What if we applied the new conv model (8/4
rotations) to the baseline model weights?" The baseline's convolutions are replaced by
rotation-invariant ones carrying the same weights (``k_rot_n``: the last ``n`` convs with ``k``
rotations) and the twins are evaluated on rotated test images. The blog found it fails (0 % for
``8_rot_4``/``4_rot_4``): rotation-invariant layers need to be trained as such.

Because :class:`~archlab.layers.RotationInvariantConv2d` has the parameters and names of the
``nn.Conv2d`` it replaces, a twin can also be built as its own model (``mini_vgg`` with
``rot_convs``) and loaded with the baseline's ``state_dict``; :func:`rotation_twin` does the
same for any model by swapping modules.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from archlab.analysis.rotation import rotation_analysis
from archlab.errors import CheckpointError, ConfigError
from archlab.layers.normalized import NormalizedConv2d
from archlab.layers.rotation_conv import RotationInvariantConv2d

__all__ = ["accuracy", "rotation_twin", "transplant", "transplant_analysis", "eligible_convs", "SEED_TWINS"]

#: The blog's transplant grid: (rotations, last n convs).
SEED_TWINS: tuple[tuple[int, int], ...] = ((8, 4), (8, 3), (8, 2), (8, 1), (4, 4), (4, 3), (4, 2), (4, 1))


def eligible_convs(model: nn.Module) -> list[str]:
    """Names of the convolutions a twin can make rotation-invariant, in module order.

    Eligible: ``nn.Conv2d`` (or :class:`NormalizedConv2d`) with a square odd kernel, ``groups=1``
    and zero padding, not already rotation-invariant.
    """
    names = []
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.Conv2d)
            and not isinstance(m, RotationInvariantConv2d)
            and m.kernel_size[0] == m.kernel_size[1]
            and m.kernel_size[0] % 2 == 1
            and m.kernel_size[0] > 1
            and m.groups == 1
            and m.padding_mode == "zeros"
        ):
            names.append(name)
    return names


def rotation_twin(
    model: nn.Module,
    *,
    rotations: int = 4,
    last: int | None = None,
    convs: Sequence[str] | None = None,
    pool: str = "max",
) -> nn.Module:
    """A deep copy of ``model`` whose chosen convolutions are rotation-invariant, same weights.

    Args:
        model: a (trained) model.
        rotations: 4 or 8.
        last: make the last ``last`` eligible convs rotation-invariant (the blog's ``k_rot_last``);
            ``None`` = all of them.
        convs: explicit module names instead of ``last`` (see :func:`eligible_convs`).
        pool: ``"max"`` (the blog) -- ``"concat"`` would change the widths the next layer expects.

    Returns:
        The twin (``model`` is unchanged), in ``model``'s training mode.

    Raises:
        ConfigError: ``last`` out of range, an unknown or ineligible conv name, a ``pool`` other
            than ``"max"``, or ``rotations`` not in {4, 8}.
    """
    if pool != "max":
        raise ConfigError(f"pool={pool!r}: a twin must keep the widths, allowed: 'max'")
    eligible = eligible_convs(model)
    if convs is not None:
        chosen = list(convs)
        bad = [c for c in chosen if c not in eligible]
        if bad:
            raise ConfigError(f"convs {bad} are not eligible 3x3 convolutions of the model; eligible: {eligible}")
    else:
        if last is None:
            last = len(eligible)
        if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last <= len(eligible):
            raise ConfigError(f"last={last!r} must be an int in 0..{len(eligible)} (the model's eligible convs)")
        chosen = eligible[len(eligible) - last :]
    twin = copy.deepcopy(model)
    for name in chosen:
        parent_name, _, attr = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        conv = getattr(parent, attr)
        new = RotationInvariantConv2d.from_conv(
            conv, rotations=rotations, pool=pool, normalize=isinstance(conv, NormalizedConv2d)
        )
        setattr(parent, attr, new)
    return twin


def transplant(source: nn.Module, target: nn.Module) -> nn.Module:
    """Load ``source``'s weights into ``target`` (strict: same names and shapes) and return it.

    Raises:
        CheckpointError: the two models do not have the same parameters.
    """
    try:
        target.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"cannot transplant: the models' parameters differ ({str(exc).splitlines()[0]}); "
            "build the target with the same architecture options except the rotation ones"
        ) from None
    return target


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    batch_size: int,
    device: str | torch.device | None,
) -> float:
    """Top-1 accuracy of ``model`` on ``images`` in eval mode (the modules' train flags are restored).

    Args:
        model: a classifier.
        images: float images in [0, 1].
        labels: their classes.
        transform: the run's input normalisation, or ``None``.
        batch_size: images per forward pass.
        device: where to run; ``None`` = the model's device.

    Shape:
        - images: :math:`(N, C, H, W)`; labels: :math:`(N,)`
    """
    flags = [m.training for m in model.modules()]
    model.eval()
    try:
        param = next(model.parameters(), None)
        dev = torch.device(device) if device is not None else (param.device if param is not None else "cpu")
        correct = 0
        for xb, yb in zip(images.split(batch_size), labels.split(batch_size)):
            xb = xb.to(dev)
            logits = model(transform(xb) if transform else xb)
            correct += int((logits.argmax(-1).cpu() == yb).sum())
    finally:
        for m, f in zip(model.modules(), flags):
            m.training = f
    return correct / max(len(labels), 1)


def transplant_analysis(
    baseline: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path,
    *,
    twins: Sequence[tuple[int, int]] = SEED_TWINS,
    angles: Sequence[float] | torch.Tensor = range(360),
    example: int = 0,
    batch_size: int = 512,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fill: float = 0.0,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate the baseline and its weight-transplanted rotation twins (seed 002 figs. 11-12).

    Writes ``transplant_accuracy.csv`` (model, rotations, rot_convs, accuracy on the unrotated
    images, mean % of angles correct) and the rotation analysis of all models with prefix
    ``transplant`` (curve, per-image CSV, box plot, summary; see :func:`rotation_analysis`).

    Args:
        baseline: the trained ordinary model.
        images, labels: test images and classes (uint8 images are scaled to [0, 1]).
        out_dir: folder (created).
        twins: ``(rotations, last_n)`` pairs; default the blog's 8 twins.
        angles, example, batch_size, transform, fill, device: as :func:`rotation_analysis`.

    Returns:
        ``{"paths": {...}, "accuracy": {name: float}, "rotation": <rotation_analysis result>}``.
    """
    models: dict[str, nn.Module] = {"baseline": baseline}
    meta = {"baseline": (0, 0)}
    for rotations, last in twins:
        name = f"{rotations}_rot_{last}"
        models[name] = rotation_twin(baseline, rotations=rotations, last=last)
        meta[name] = (rotations, last)
    rot = rotation_analysis(
        models, images, labels, out_dir, angles, example=example, batch_size=batch_size, transform=transform,
        fill=fill, device=device, prefix="transplant",
    )  # fmt: skip
    imgs = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    labs = torch.as_tensor(labels).long().flatten()
    acc = {n: accuracy(m, imgs, labs, transform, batch_size, device) for n, m in models.items()}
    path = Path(out_dir) / "transplant_accuracy.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "rotations", "rot_convs", "accuracy", "pct_angles_correct_mean"])
        for n in models:
            w.writerow([n, *meta[n], f"{acc[n]:.6g}", f"{rot['summary'][n]['mean']:.6g}"])
    return {"paths": {**rot["paths"], "accuracy_csv": path}, "accuracy": acc, "rotation": rot}
