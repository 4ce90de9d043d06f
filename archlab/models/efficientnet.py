"""EfficientNet-B0..B7 (torchvision layout and names) and compound scaling (seed 004).

Reference: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019 (arXiv 1905.11946). B0 (table 1): stem 3x3/2 conv 32; MBConv1 k3 16 x1; MBConv6 k3 24
x2 /2; MBConv6 k5 40 x2 /2; MBConv6 k3 80 x3 /2; MBConv6 k5 112 x3; MBConv6 k5 192 x4 /2; MBConv6
k3 320 x1; 1x1 conv 1280; pool; FC. SE ratio 0.25, SiLU, stochastic depth 0.2.

Compound scaling (sec. 3.3): depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi with
alpha * beta^2 * gamma^2 ~ 2 (so FLOPs grow ~2^phi); the paper's grid search on B0 gave alpha=1.2,
beta=1.1, gamma=1.15. Layers per stage are ``ceil(n * d)``, channels ``make_divisible(c * w, 8)``,
resolution ``round(224 * r)``. Note B1..B7 themselves are *not* exactly phi = 1..7 of that rule:
the published (width, depth, resolution) table was hand-adjusted, and ``efficientnet_bN`` use the
table (as torchvision does) while :func:`efficientnet_scaled` applies the formula.

The backbone is torchvision's ``features``; torchvision's ``classifier`` (Dropout, Linear) is the
default ``linear`` head with average pooling and the family's dropout (``classifier.1.*`` ->
``fc.*``). efficientnet_b0 with 1000 classes has torchvision's 5,288,548 parameters.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.fused_mbconv import FusedMBConv
from archlab.layers.mbconv import ConvNormAct, MBConv, make_divisible
from archlab.models._classifier import Classifier, build_classifier
from archlab.layers._init import materialize, meta_construction, reset_norms
from archlab.pretrained import WeightLayout

__all__ = ["EfficientNet", "StageSpec", "B0_STAGES", "EFFICIENTNET_PARAMS", "compound_coefficients",
           "scaled_stages", "GridPoint", "grid_search_compound", "remap_timm_efficientnet",
           "efficientnet_scaled"] + [f"efficientnet_b{i}" for i in range(8)]


@dataclass(frozen=True)
class StageSpec:
    """One MBConv stage: ``expand_ratio, kernel, stride, in_ch, out_ch, num_layers``.

    ``fused=True``: a stage of EfficientNetV2's Fused-MBConv blocks (no SE) instead of MBConv.
    """

    expand_ratio: int
    kernel: int
    stride: int
    in_ch: int
    out_ch: int
    num_layers: int
    fused: bool = False


#: EfficientNet-B0's seven MBConv stages (paper table 1).
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 32, 16, 1),
    StageSpec(6, 3, 2, 16, 24, 2),
    StageSpec(6, 5, 2, 24, 40, 2),
    StageSpec(6, 3, 2, 40, 80, 3),
    StageSpec(6, 5, 1, 80, 112, 3),
    StageSpec(6, 5, 2, 112, 192, 4),
    StageSpec(6, 3, 1, 192, 320, 1),
)

#: B0..B7: (width multiplier, depth multiplier, resolution, dropout) — the paper's / torchvision's table.
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def scaled_stages(width_mult: float, depth_mult: float,
                  stages: Sequence[StageSpec] = B0_STAGES) -> list[StageSpec]:
    """Apply width (channels rounded to multiples of 8) and depth (``ceil``) multipliers."""
    return [StageSpec(s.expand_ratio, s.kernel, s.stride, make_divisible(s.in_ch * width_mult, 8),
                      make_divisible(s.out_ch * width_mult, 8), int(math.ceil(s.num_layers * depth_mult)), s.fused)
            for s in stages]


def compound_coefficients(phi: float, alpha: float = 1.2, beta: float = 1.1,
                          gamma: float = 1.15) -> tuple[float, float, float]:
    """``(depth, width, resolution)`` multipliers ``(alpha^phi, beta^phi, gamma^phi)``."""
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if v < 1:
            raise ConfigError(f"compound scaling needs {name} >= 1 (the paper's constraint), got {v!r}")
    return alpha**phi, beta**phi, gamma**phi


# timm names -> torchvision names

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")
# timm DepthwiseSeparableConv (expand ratio 1) / InvertedResidual part -> torchvision block index
_TIMM_DS = {"conv_dw": "0.0", "bn1": "0.1", "se.conv_reduce": "1.fc1", "se.conv_expand": "1.fc2",
            "conv_pw": "2.0", "bn2": "2.1"}
_TIMM_IR = {"conv_pw": "0.0", "bn1": "0.1", "conv_dw": "1.0", "bn2": "1.1", "se.conv_reduce": "2.fc1",
            "se.conv_expand": "2.fc2", "conv_pwl": "3.0", "bn3": "3.1"}


def remap_timm_efficientnet(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm ``efficientnet_bN`` keys to torchvision's; torchvision keys pass unchanged.

    timm: ``conv_stem``/``bn1`` (stem), ``blocks.S.I.{conv_dw,bn1,se.conv_reduce,...}``,
    ``conv_head``/``bn2``, ``classifier``. torchvision: ``features.0.{0,1}``,
    ``features.{S+1}.I.block.{...}``, ``features.{last}.{0,1}``, ``classifier.1``.
    """
    if "conv_stem.weight" not in sd:
        return sd
    n_stages = 1 + max(int(m.group(1)) for k in sd if (m := _TIMM_BLOCK.match(k)))
    # a stage is depthwise-separable (expand ratio 1) when its blocks have no conv_pwl
    ds_stages = {s for s in range(n_stages) if not any(k.startswith(f"blocks.{s}.") and ".conv_pwl." in k for k in sd)}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _TIMM_BLOCK.match(k)
        if m:
            s, i, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _TIMM_DS if s in ds_stages else _TIMM_IR
            part, _, leaf = rest.rpartition(".")
            if part in table:
                out[f"features.{s + 1}.{i}.block.{table[part]}.{leaf}"] = v
                continue
        elif k.startswith(("conv_stem.", "bn1.")):
            out["features.0." + ("0." if k.startswith("conv_stem.") else "1.") + k.split(".", 1)[1]] = v
            continue
        elif k.startswith(("conv_head.", "bn2.")):
            idx = n_stages + 1
            out[f"features.{idx}." + ("0." if k.startswith("conv_head.") else "1.") + k.split(".", 1)[1]] = v
            continue
        elif k.startswith("classifier."):
            out["classifier.1." + k.split(".", 1)[1]] = v
            continue
        out[k] = v  # unknown: reported as unexpected by load_pretrained
    return out


class EfficientNet(nn.Module):
    """EfficientNet feature extractor (torchvision's ``features``).

    Args:
        stages: MBConv (or Fused-MBConv, ``fused=True``) stages, after width/depth scaling.
        stochastic_depth_prob: drop probability of the last block (linearly increasing from 0).
        norm_layer: normalisation constructor.
        last_channel: width of the final 1x1 conv (``None`` = 4x the last stage's).
        in_chans: input channels.
        se_ratio: SE squeeze ratio of every block (0.25).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, last_channel, H / 32, W / 32)``; (1280, 7, 7) for B0 at 224x224.
    """

    weight_layout = WeightLayout(
        family="efficientnet",
        head_map={"classifier.1.": "fc."},
        drop_prefixes=("classifier.",),
        first_conv="features.0.0.weight",
        remap=remap_timm_efficientnet,
    )

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        stochastic_depth_prob: float = 0.2,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        last_channel: int | None = None,
        in_chans: int = 3,
        se_ratio: float = 0.25,
    ):
        super().__init__()
        if not 0.0 <= stochastic_depth_prob < 1.0:
            raise ConfigError(f"stochastic_depth_prob must be in [0, 1), got {stochastic_depth_prob!r}")
        with meta_construction() as device:  # skip nn's default init: _init_weights sets everything
            layers: list[nn.Module] = [ConvNormAct(in_chans, stages[0].in_ch, 3, stride=2, norm_layer=norm_layer)]
            total = sum(s.num_layers for s in stages)
            block_id = 0
            for s in stages:
                stage: list[nn.Module] = []
                for i in range(s.num_layers):
                    sd_prob = stochastic_depth_prob * float(block_id) / total
                    cin, stride = (s.in_ch, s.stride) if i == 0 else (s.out_ch, 1)
                    if s.fused:
                        stage.append(FusedMBConv(cin, s.out_ch, s.kernel, stride, s.expand_ratio, sd_prob, norm_layer))
                    else:
                        stage.append(MBConv(cin, s.out_ch, s.kernel, stride, s.expand_ratio, se_ratio, sd_prob,
                                            norm_layer))
                    block_id += 1
                layers.append(nn.Sequential(*stage))
            last = last_channel if last_channel is not None else 4 * stages[-1].out_ch
            layers.append(ConvNormAct(stages[-1].out_ch, last, 1, norm_layer=norm_layer))
            self.features = nn.Sequential(*layers)
        self.out_channels = last
        materialize(self, device, self._init_weights)

    def _init_weights(self) -> None:
        """torchvision's EfficientNet initialisation (SE convolutions included)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        reset_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, last_channel, H/32, W/32)




# ------------------------------------------------------------------------------------------------
# builders

def _create_efficientnet(name: str, width: float, depth: float, resolution: int, dropout: float, *,
                         num_classes: int, in_chans: int, head: str | None, head_kwargs: dict | None,
                         input_size: int | tuple[int, int] | None, stochastic_depth_prob: float,
                         tf_bn: bool = False) -> Classifier:
    # torchvision: B5..B7 (weights ported from TensorFlow) use BN eps 1e-3, momentum 0.01
    norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01) if tf_bn else nn.BatchNorm2d
    backbone = EfficientNet(scaled_stages(width, depth), stochastic_depth_prob=stochastic_depth_prob,
                            norm_layer=norm, in_chans=in_chans)
    return build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=resolution,
        default_head=("linear", {"global_pool": "avg", "drop_rate": dropout}),
        model_name=name,
    )


def _bn(variant: str, local: dict) -> Classifier:
    width, depth, res, dropout = EFFICIENTNET_PARAMS[variant]
    return _create_efficientnet(f"efficientnet_{variant}", width, depth, res, dropout,
                                tf_bn=variant in ("b5", "b6", "b7"), **local)


@register_model
def efficientnet_b0(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B0 (width 1.0, depth 1.0, 224 px, dropout 0.2)."""
    return _bn("b0", locals())


@register_model
def efficientnet_b1(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B1 (width 1.0, depth 1.1, 240 px, dropout 0.2)."""
    return _bn("b1", locals())


@register_model
def efficientnet_b2(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B2 (width 1.1, depth 1.2, 260 px, dropout 0.3)."""
    return _bn("b2", locals())


@register_model
def efficientnet_b3(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B3 (width 1.2, depth 1.4, 300 px, dropout 0.3)."""
    return _bn("b3", locals())


@register_model
def efficientnet_b4(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B4 (width 1.4, depth 1.8, 380 px, dropout 0.4)."""
    return _bn("b4", locals())


@register_model
def efficientnet_b5(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B5 (width 1.6, depth 2.2, 456 px, dropout 0.4; BN eps 1e-3, momentum 0.01)."""
    return _bn("b5", locals())


@register_model
def efficientnet_b6(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B6 (width 1.8, depth 2.6, 528 px, dropout 0.5; BN eps 1e-3, momentum 0.01)."""
    return _bn("b6", locals())


@register_model
def efficientnet_b7(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B7 (width 2.0, depth 3.1, 600 px, dropout 0.5; BN eps 1e-3, momentum 0.01)."""
    return _bn("b7", locals())


@register_model
def efficientnet_scaled(*, num_classes: int, in_chans: int = 3, head: str | None = None,
                        head_kwargs: dict | None = None, input_size: int | tuple[int, int] | None = None,
                        phi: float = 0.0, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15,
                        base_resolution: int = 224, drop_rate: float = 0.2,
                        stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNet-B0 compound-scaled by ``phi`` (Tan & Le 2019, eq. 3).

    Depth ``alpha^phi`` (layers per stage ``ceil(n * d)``), width ``beta^phi`` (channels rounded to
    multiples of 8), native resolution ``round(base_resolution * gamma^phi)`` (the default input
    size; ``input_size`` overrides it). ``phi=0`` is exactly B0. The final 1x1 conv is 4x the last
    stage's width (1280 at phi=0), as in the B-series.

    Args:
        phi: compound coefficient (may be fractional or negative for smaller proxies).
        alpha, beta, gamma: per-dimension bases (each >= 1).
        base_resolution: B0's resolution (224; 32 for a CIFAR proxy).
        drop_rate: dropout of the default head.
        stochastic_depth_prob: drop probability of the last block.
    """
    d, w, r = compound_coefficients(phi, alpha, beta, gamma)
    res = int(round(base_resolution * r))
    return _create_efficientnet(f"efficientnet_scaled(phi={phi:g})", w, d, res, drop_rate, num_classes=num_classes,
                                in_chans=in_chans, head=head, head_kwargs=head_kwargs, input_size=input_size,
                                stochastic_depth_prob=stochastic_depth_prob)


# ------------------------------------------------------------------------------------------------
# grid search for (alpha, beta, gamma)

@dataclass(frozen=True)
class GridPoint:
    """One candidate of :func:`grid_search_compound` and its score."""

    alpha: float
    beta: float
    gamma: float
    flops_factor: float  # alpha * beta^2 * gamma^2
    score: float


def grid_search_compound(
    evaluate: Callable[[float, float, float], float],
    *,
    alphas: Iterable[float] = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5),
    betas: Iterable[float] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3),
    gammas: Iterable[float] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3),
    target: float = 2.0,
    tolerance: float = 0.1,
    maximize: bool = True,
) -> tuple[GridPoint, list[GridPoint]]:
    """Grid search for the compound-scaling bases under ``alpha * beta^2 * gamma^2 ~ target``.

    The paper's step 1 (sec. 3.3): fix phi = 1, try every (alpha, beta, gamma) of the grid whose
    FLOPs factor ``alpha * beta^2 * gamma^2`` is within ``tolerance`` (relative) of ``target``, train
    and evaluate the scaled proxy model with each, keep the best.

    Args:
        evaluate: ``evaluate(alpha, beta, gamma) -> score``; typically builds
            ``efficientnet_scaled(phi=1, alpha=..., beta=..., gamma=..., base_resolution=...)``,
            trains it briefly on a proxy task and returns the validation accuracy. Called once per
            admissible grid point, in a fixed (sorted) order.
        alphas, betas, gammas: candidate values (each >= 1).
        target: FLOPs budget factor (2 in the paper).
        tolerance: admissible relative deviation ``|f / target - 1|``.
        maximize: ``True`` for accuracies, ``False`` for losses.

    Example (a small proxy; the data must be resized to the scaled resolution, since the engine
    builds the model for the data's image size — ``digits`` and ``synthetic`` take ``image_size``)::

        def evaluate(alpha, beta, gamma):
            cfg = TrainConfig(
                data=DataConfig(name="digits", options={"image_size": round(32 * gamma)}),
                model=ModelConfig(name="efficientnet_scaled", kwargs=dict(
                    phi=1, alpha=alpha, beta=beta, gamma=gamma, base_resolution=32)),
                epochs=5)
            return train(cfg, out_dir / f"{alpha}_{beta}_{gamma}").val["accuracy"]

        best, points = grid_search_compound(evaluate)

    Returns:
        ``(best, all_points)`` — all evaluated points in evaluation order.

    Raises:
        ConfigError: no grid point satisfies the constraint, a value below 1, or a bad tolerance.
    """
    if tolerance < 0 or target <= 0:
        raise ConfigError(f"need target > 0 and tolerance >= 0, got {target!r}, {tolerance!r}")
    grid = [sorted({float(v) for v in vs}) for vs in (alphas, betas, gammas)]
    if any(v < 1 for vs in grid for v in vs):
        raise ConfigError(f"alpha, beta and gamma must be >= 1 (the paper's constraint), got {grid}")
    cands = [(a, b, g) for a, b, g in itertools.product(*grid) if abs(a * b * b * g * g / target - 1) <= tolerance]
    if not cands:
        raise ConfigError(f"no (alpha, beta, gamma) in the grid has alpha*beta^2*gamma^2 within "
                          f"{tolerance:.0%} of {target}; widen the grid or the tolerance")
    points = []
    for a, b, g in cands:
        score = float(evaluate(a, b, g))
        points.append(GridPoint(a, b, g, a * b * b * g * g, score))
    finite = [p for p in points if math.isfinite(p.score)]
    if not finite:
        raise ConfigError("every grid point scored NaN/inf; check the evaluate callable")
    best = (max if maximize else min)(finite, key=lambda p: p.score)
    return best, points
