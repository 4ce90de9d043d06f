"""VGG-11/13/16/19 with and without BatchNorm, torchvision layout and names.

Reference: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv 1409.1556), configurations A, B, D, E; BatchNorm variants and
initialisation as torchvision. The backbone is torchvision's ``features`` (3x3 convs, ReLU, 2x2
max-pools); torchvision's ``avgpool`` + ``classifier`` form the default head ``vgg_classifier``
(keys ``classifier.0/3/6``), so backbone keys + head keys are torchvision's state-dict keys and a
torchvision VGG has exactly the parameters of ``vgg16(num_classes=1000)`` (138,357,544).

Option ``se=True`` (seed 004) adds a :class:`~archlab.layers.SqueezeExcitation` after the last
ReLU of every stage (before its max-pool). It replaces that parameter-free ReLU module by a
ReLU+SE module at the same index, so every convolution keeps its torchvision name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.squeeze_excite import SqueezeExcitation
from archlab.models._classifier import Classifier, build_classifier
from archlab.layers._init import materialize, meta_construction, reset_norms
from archlab.pretrained import WeightLayout

__all__ = ["VGG", "ReLUSE", "VGG_CFGS", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
           "vgg19", "vgg19_bn"]

M = "M"
#: torchvision's configurations: channel widths, "M" = 2x2 max-pool.
VGG_CFGS: dict[str, list[int | str]] = {
    "A": [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "B": [64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    "D": [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
    "E": [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M],
}
_DEPTH_CFG = {11: "A", 13: "B", 16: "D", 19: "E"}


class ReLUSE(nn.Module):
    """ReLU followed by Squeeze-Excitation (VGG's SE attachment point, a parameter-free slot).

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, channels: int, reduction: float = 16):
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.se = SqueezeExcitation(channels, reduction=reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act(x))


class VGG(nn.Module):
    """VGG feature extractor (torchvision's ``VGG.features``).

    Args:
        cfg: widths and ``"M"`` pools (see :data:`VGG_CFGS`).
        batch_norm: BatchNorm after every convolution (the ``_bn`` variants).
        in_chans: input channels.
        se: add SE after the last ReLU of every stage.
        se_reduction: SE reduction ratio r.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, 512, H / 32, W / 32)`` (floor at each pool); (512, 7, 7) at 224x224.
    """

    weight_layout = WeightLayout(
        family="vgg",
        head_map={"classifier.": "classifier."},
        drop_prefixes=("classifier.", "pre_logits.", "head."),  # torchvision / timm classifiers
        first_conv="features.0.weight",
    )

    def __init__(self, cfg: Sequence[int | str], batch_norm: bool = False, in_chans: int = 3,
                 se: bool = False, se_reduction: float = 16):
        super().__init__()
        with meta_construction() as device:  # skip nn's default init: _init_weights sets everything
            layers: list[nn.Module] = []
            ch = in_chans
            for i, v in enumerate(cfg):
                if v == M:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    continue
                layers.append(nn.Conv2d(ch, int(v), kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(int(v)))
                last_in_stage = i + 1 == len(cfg) or cfg[i + 1] == M
                layers.append(ReLUSE(int(v), se_reduction) if se and last_in_stage else nn.ReLU(inplace=True))
                ch = int(v)
            self.features = nn.Sequential(*layers)
        self.out_channels = ch
        materialize(self, device, self._init_weights)

    def _init_weights(self) -> None:
        """torchvision's VGG initialisation; SE layers keep PyTorch's default (torchvision has none)."""
        se_convs = set()
        for m in self.modules():
            if isinstance(m, SqueezeExcitation):
                m.fc1.reset_parameters()
                m.fc2.reset_parameters()
                se_convs.update((id(m.fc1), id(m.fc2)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in se_convs:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        reset_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, H/32, W/32)


def _create_vgg(depth: int, batch_norm: bool, *, num_classes: int, in_chans: int, head: str | None,
                head_kwargs: dict | None, input_size: int | tuple[int, int] | None, se: bool,
                se_reduction: float, drop_rate: float) -> Classifier:
    if not 0.0 <= drop_rate < 1.0:
        raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    return build_classifier(
        VGG(VGG_CFGS[_DEPTH_CFG[depth]], batch_norm, in_chans, se=se, se_reduction=se_reduction),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=224,
        default_head=("vgg_classifier", {"drop_rate": drop_rate}),
        model_name=name,
    )


@register_model
def vgg11(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
          input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
          drop_rate: float = 0.5) -> Classifier:
    """VGG-11 (torchvision ``vgg11``); ``se`` adds SE after every stage."""
    return _create_vgg(11, False, **locals())


@register_model
def vgg11_bn(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
             drop_rate: float = 0.5) -> Classifier:
    """VGG-11 with BatchNorm (torchvision ``vgg11_bn``); ``se`` adds SE after every stage."""
    return _create_vgg(11, True, **locals())


@register_model
def vgg13(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
          input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
          drop_rate: float = 0.5) -> Classifier:
    """VGG-13 (torchvision ``vgg13``); ``se`` adds SE after every stage."""
    return _create_vgg(13, False, **locals())


@register_model
def vgg13_bn(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
             drop_rate: float = 0.5) -> Classifier:
    """VGG-13 with BatchNorm (torchvision ``vgg13_bn``); ``se`` adds SE after every stage."""
    return _create_vgg(13, True, **locals())


@register_model
def vgg16(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
          input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
          drop_rate: float = 0.5) -> Classifier:
    """VGG-16 (torchvision ``vgg16``); ``se`` adds SE after every stage."""
    return _create_vgg(16, False, **locals())


@register_model
def vgg16_bn(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
             drop_rate: float = 0.5) -> Classifier:
    """VGG-16 with BatchNorm (torchvision ``vgg16_bn``); ``se`` adds SE after every stage."""
    return _create_vgg(16, True, **locals())


@register_model
def vgg19(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
          input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
          drop_rate: float = 0.5) -> Classifier:
    """VGG-19 (torchvision ``vgg19``); ``se`` adds SE after every stage."""
    return _create_vgg(19, False, **locals())


@register_model
def vgg19_bn(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, se: bool = False, se_reduction: float = 16,
             drop_rate: float = 0.5) -> Classifier:
    """VGG-19 with BatchNorm (torchvision ``vgg19_bn``); ``se`` adds SE after every stage."""
    return _create_vgg(19, True, **locals())
