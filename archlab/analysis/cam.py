"""Grad-CAM on the last convolutional stage, scored against object masks (seed 004, issue 25).

Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, eq. 1-2: the class score's gradient with respect to the last feature map
``A`` (``(C, h, w)``), averaged over space, weights the channels; ``ReLU(sum_c w_c A_c)`` is the map.
Tan & Le (EfficientNet, 2019, fig. 7) show such maps to argue that compound scaling "focuses on
more relevant regions"; :func:`mask_scores` turns that into numbers where the data has object
masks: the fraction of the map's mass inside the object, and whether its peak lies inside
(the "pointing game", Zhang et al. 2016).

The map is taken for the true class, at the model's :meth:`forward_features` output (the last
stage of every archlab classifier), upsampled bilinearly to the image and normalised to sum 1; a
map that is zero everywhere (the class score does not depend positively on any location) counts
as uniform, so it scores the mask's area fraction — what a model that looks everywhere scores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import IncompatibleError

__all__ = ["grad_cam", "mask_scores"]


def grad_cam(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 64) -> torch.Tensor:
    """Grad-CAM maps of the true classes, upsampled to the images and normalised to sum 1.

    Args:
        model: a classifier with ``forward_features`` (4-D features) and ``forward_head``, in eval mode.
        images: uint8 or float images in [0, 1].
        labels: the class each map explains.
        preprocess: the run's input normalisation (applied to float images in [0, 1]).
        batch_size: images per forward/backward pass.

    Shape:
        - images: ``(N, C, H, W)``
        - labels: ``(N,)`` int64
        - output: ``(N, H, W)`` float32, each map non-negative with sum 1

    Raises:
        IncompatibleError: the model has no 4-D ``forward_features`` output.
    """
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise IncompatibleError(f"{type(model).__name__} has no forward_features/forward_head: Grad-CAM needs both")
    device = next(model.parameters()).device
    N, _, H, W = images.shape
    out = torch.empty(N, H, W)
    for i in range(0, N, batch_size):
        x = images[i : i + batch_size].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # (B, C, H, W)
        if preprocess is not None:
            x = preprocess(x)
        y = labels[i : i + batch_size].to(device).long()  # (B,)
        with torch.enable_grad():
            feats = model.forward_features(x)  # (B, K, h, w)
            if feats.ndim != 4:
                raise IncompatibleError(f"{type(model).__name__}.forward_features gives {tuple(feats.shape)}; "
                                        "Grad-CAM needs a (B, C, h, w) feature map")
            if not feats.requires_grad:
                feats = feats.detach().requires_grad_(True)  # a frozen backbone: the head's gradient only
            score = model.forward_head(feats).gather(1, y[:, None]).sum()
            (grad,) = torch.autograd.grad(score, feats)  # (B, K, h, w)
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
        cam = F.relu((weights * feats.detach()).sum(1, keepdim=True))  # (B, 1, h, w)
        cam = F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False)[:, 0].clamp_min(0)  # (B, H, W)
        total = cam.sum(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        cam = torch.where(total > 0, cam / total.clamp_min(1e-30), torch.full_like(cam, 1.0 / (H * W)))
        out[i : i + batch_size] = cam.float().cpu()
    return out


def mask_scores(cams: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: CAM mass inside the mask, whether the peak is inside, and the mask's area fraction.

    Shape:
        - cams: ``(N, H, W)`` non-negative, each summing to 1
        - masks: ``(N, 1, H, W)`` or ``(N, H, W)``, non-zero = object
        - every output: ``(N,)`` float64
    """
    m = (masks.reshape(cams.shape) != 0)  # (N, H, W)
    mass = (cams.double() * m).sum(dim=(1, 2))
    peak = m.flatten(1).gather(1, cams.flatten(1).argmax(1, keepdim=True))[:, 0].double()
    return {"mass_in_mask": mass, "peak_in_mask": peak, "mask_area": m.double().mean(dim=(1, 2))}
