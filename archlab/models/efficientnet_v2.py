"""EfficientNetV2-S/M/L (torchvision layout and names).

Reference: Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv
2104.00298), table 4 (V2-S) and the released M/L configurations as torchvision builds them.

Stem 3x3/2 conv -> stages of Fused-MBConv (early, high-resolution; no SE) then MBConv (SE with
squeeze = input channels / 4, SiLU) -> 1x1 conv to 1280 -> pool -> dropout -> FC. All BatchNorms
have eps 1e-3 (torchvision's V2 setting); stochastic depth rises linearly to 0.2 at the last block.
Stages as ``(block, expand, kernel, stride, in, out, layers)``:

- V2-S: F1 3 1 24->24 x2; F4 3 2 24->48 x4; F4 3 2 48->64 x4; M4 3 2 64->128 x6;
  M6 3 1 128->160 x9; M6 3 2 160->256 x15; dropout 0.2, native 384 px.
- V2-M: F1 24->24 x3; F4 /2 ->48 x5; F4 /2 ->80 x5; M4 /2 ->160 x7; M6 ->176 x14; M6 /2 ->304 x18;
  M6 ->512 x5; dropout 0.3, native 480 px.
- V2-L: F1 32->32 x4; F4 /2 ->64 x7; F4 /2 ->96 x7; M4 /2 ->192 x10; M6 ->224 x19; M6 /2 ->384 x25;
  M6 ->640 x7; dropout 0.4, native 480 px.

The backbone is torchvision's ``features`` (``features.0`` stem, ``features.1..`` stages,
``features.-1`` the 1x1 head conv); torchvision's ``classifier`` (Dropout, Linear) is the default
``linear`` head with average pooling and the variant's dropout (``classifier.1.*`` -> ``fc.*``).
With 1000 classes the parameter counts equal torchvision's: 21,458,488 (S), 54,139,356 (M),
118,515,272 (L).
"""

from __future__ import annotations

from functools import partial

import torch.nn as nn

from archlab._registry import register_model
from archlab.models._classifier import Classifier, build_classifier
from archlab.models.efficientnet import EfficientNet, StageSpec
from archlab.pretrained import WeightLayout

__all__ = ["EfficientNetV2", "V2_STAGES", "V2_PARAMS", "efficientnet_v2_s", "efficientnet_v2_m",
           "efficientnet_v2_l"]


def _f(expand: int, stride: int, cin: int, cout: int, n: int) -> StageSpec:
    return StageSpec(expand, 3, stride, cin, cout, n, fused=True)


def _m(expand: int, stride: int, cin: int, cout: int, n: int) -> StageSpec:
    return StageSpec(expand, 3, stride, cin, cout, n)


#: the stages of each variant (all kernels are 3x3).
V2_STAGES: dict[str, tuple[StageSpec, ...]] = {
    "s": (_f(1, 1, 24, 24, 2), _f(4, 2, 24, 48, 4), _f(4, 2, 48, 64, 4), _m(4, 2, 64, 128, 6),
          _m(6, 1, 128, 160, 9), _m(6, 2, 160, 256, 15)),
    "m": (_f(1, 1, 24, 24, 3), _f(4, 2, 24, 48, 5), _f(4, 2, 48, 80, 5), _m(4, 2, 80, 160, 7),
          _m(6, 1, 160, 176, 14), _m(6, 2, 176, 304, 18), _m(6, 1, 304, 512, 5)),
    "l": (_f(1, 1, 32, 32, 4), _f(4, 2, 32, 64, 7), _f(4, 2, 64, 96, 7), _m(4, 2, 96, 192, 10),
          _m(6, 1, 192, 224, 19), _m(6, 2, 224, 384, 25), _m(6, 1, 384, 640, 7)),
}
#: (native resolution, dropout of the classifier) of each variant (torchvision's evaluation size).
V2_PARAMS: dict[str, tuple[int, float]] = {"s": (384, 0.2), "m": (480, 0.3), "l": (480, 0.4)}


class EfficientNetV2(EfficientNet):
    """EfficientNetV2 feature extractor (torchvision's ``features``).

    The same module tree as :class:`~archlab.models.efficientnet.EfficientNet` with Fused-MBConv
    stages first and a fixed 1280-channel head conv; it takes torchvision's V2 state dicts (timm's
    V2 names are another scheme and are not translated).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, 1280, H / 32, W / 32)``; (1280, 12, 12) for V2-S at 384x384.
    """

    weight_layout = WeightLayout(
        family="efficientnet",
        head_map={"classifier.1.": "fc."},
        drop_prefixes=("classifier.",),
        first_conv="features.0.0.weight",
    )


def _create(variant: str, *, num_classes: int, in_chans: int, head: str | None, head_kwargs: dict | None,
            input_size: int | tuple[int, int] | None, stochastic_depth_prob: float) -> Classifier:
    resolution, dropout = V2_PARAMS[variant]
    backbone = EfficientNetV2(V2_STAGES[variant], stochastic_depth_prob=stochastic_depth_prob,
                              norm_layer=partial(nn.BatchNorm2d, eps=1e-3), last_channel=1280, in_chans=in_chans)
    return build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=resolution,
        default_head=("linear", {"global_pool": "avg", "drop_rate": dropout}),
        model_name=f"efficientnet_v2_{variant}",
    )


@register_model
def efficientnet_v2_s(*, num_classes: int, in_chans: int = 3, head: str | None = None,
                      head_kwargs: dict | None = None, input_size: int | tuple[int, int] | None = None,
                      stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNetV2-S (torchvision ``efficientnet_v2_s``; 384 px, dropout 0.2)."""
    return _create("s", **locals())


@register_model
def efficientnet_v2_m(*, num_classes: int, in_chans: int = 3, head: str | None = None,
                      head_kwargs: dict | None = None, input_size: int | tuple[int, int] | None = None,
                      stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNetV2-M (torchvision ``efficientnet_v2_m``; 480 px, dropout 0.3)."""
    return _create("m", **locals())


@register_model
def efficientnet_v2_l(*, num_classes: int, in_chans: int = 3, head: str | None = None,
                      head_kwargs: dict | None = None, input_size: int | tuple[int, int] | None = None,
                      stochastic_depth_prob: float = 0.2) -> Classifier:
    """EfficientNetV2-L (torchvision ``efficientnet_v2_l``; 480 px, dropout 0.4)."""
    return _create("l", **locals())
