"""ResNet-18/34/50/101/152, Wide ResNet-50-2/101-2 and ResNeXt, torchvision layout and names.

References: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv 1512.03385); Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv
1605.07146); Xie, Girshick, Dollar, Tu & He, "Aggregated Residual Transformations for Deep Neural
Networks" (ResNeXt), CVPR 2017 (arXiv 1611.05431); Hu, Shen & Sun, "Squeeze-and-Excitation
Networks", CVPR 2018 (SE-ResNet). The backbone carries torchvision's names (``conv1``, ``bn1``,
``layer1..4``); torchvision's ``fc`` is the default ``linear`` head with global average pooling
(key ``fc.*``), so ``resnet18(num_classes=1000)`` has exactly torchvision's 11,689,512 parameters
and a torchvision state dict loads strictly into the backbone.

Wide ResNet and ResNeXt are the Bottleneck ResNets with torchvision's two width options: the 3x3
convolution of a block with ``planes`` output planes has ``int(planes * width_per_group / 64) *
groups`` channels in ``groups`` groups. ``wide_resnet50_2``/``101_2``: 1 group of 128 (twice
ResNet-50's inner width); ``resnextD_GxWd``: G groups of W channels (e.g. 32x4d: 32 groups of 4,
128 channels in the first stage). The outer (4 x planes) widths are ResNet's.

Options (departures from the ImageNet definition, off by default):

- ``cifar_stem=True``: conv1 is a 3x3 stride-1 convolution and there is no max-pool, the usual
  adaptation for 32x32 inputs (e.g. the ResNet-18 of the CIFAR speed runs). conv1's weight then
  has another shape than torchvision's (load ImageNet weights with ``strict=False``).
- ``se=True``: a Squeeze-Excitation module (ratio ``se_reduction``, 16 in SENet) on the residual
  branch of every block, as in SE-ResNet; its ``se.*`` keys are extra to torchvision's. A list of
  one bool per stage chooses the stages (``[true, true, true, false]``: seed 004's SE-ResNet without
  the last stage's SE blocks).
- ``activation``: the activation of every block and the stem (``relu``; any name of
  :data:`archlab.layers.activations.ACT_LAYERS`).
- ``norm_conv=True``: every convolution of the backbone (stem, blocks, projections; not SE's) is a
  weight-normalized :class:`~archlab.layers.NormalizedConv2d` (seed 002's neuron): same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.activations import get_act_layer
from archlab.layers.blocks import BasicBlock, Bottleneck, conv1x1, make_activation
from archlab.layers.normalized import normalize_convs
from archlab.layers.squeeze_excite import SqueezeExcitation
from archlab.models._classifier import Classifier, build_classifier
from archlab.layers._init import materialize, meta_construction, reset_norms
from archlab.pretrained import WeightLayout

__all__ = ["ResNet", "stage_flags", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
           "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]

_ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """ResNet feature extractor (torchvision's ``ResNet`` without ``avgpool``/``fc``).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        in_chans: input channels.
        cifar_stem: 3x3 stride-1 stem without max-pool (for 32x32 inputs).
        se: Squeeze-Excitation in every block, or one bool per stage.
        se_reduction: SE reduction ratio.
        zero_init_residual: zero the last BN of every residual branch (torchvision's option).
        widths: channels of the four stages.
        groups: groups of every Bottleneck's 3x3 convolution (ResNeXt's cardinality).
        width_per_group: channels per group of that convolution at 64 planes (64 = ResNet,
            128 = Wide ResNet-*-2, 4 or 8 = ResNeXt's "Gx4d"/"Gx8d").
        activation: activation name of the stem and every block.
        norm_conv: weight-normalized convolutions (not the SE layers').

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, widths[-1] * expansion, H / 32, W / 32)`` (``H / 8`` with the CIFAR stem);
          (512, 7, 7) for ResNet-18 at 224x224.
    """

    weight_layout = WeightLayout(
        family="resnet",
        head_map={"fc.": "fc."},
        drop_prefixes=("fc.", "head."),
        first_conv="conv1.weight",
    )

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_chans: int = 3,
        *,
        cifar_stem: bool = False,
        se: bool | Sequence[bool] = False,
        se_reduction: float = 16,
        zero_init_residual: bool = False,
        widths: Sequence[int] = (64, 128, 256, 512),
        groups: int = 1,
        width_per_group: int = 64,
        activation: str = "relu",
        norm_conv: bool = False,
    ):
        super().__init__()
        se_stages = stage_flags(se, len(widths), "se")
        act = get_act_layer(activation)
        if len(layers) != len(widths) or any(n < 1 for n in layers):
            raise ConfigError(f"layers must give >= 1 block for each of the {len(widths)} stages, "
                              f"got {list(layers)}")
        for what, v in (("groups", groups), ("width_per_group", width_per_group)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"ResNet {what} must be a positive int, got {v!r}")
        if block is BasicBlock and (groups, width_per_group) != (1, 64):
            raise ConfigError(f"BasicBlock ResNets (18/34) only take groups=1 and width_per_group=64, "
                              f"got groups={groups!r}, width_per_group={width_per_group!r}")
        self.groups, self.width_per_group = groups, width_per_group
        self.inplanes = widths[0]
        self.zero_init_residual = zero_init_residual
        with meta_construction() as device:  # skip nn's default init: _init_weights sets everything
            if cifar_stem:
                self.conv1 = nn.Conv2d(in_chans, self.inplanes, 3, stride=1, padding=1, bias=False)
            else:
                self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = make_activation(act)
            self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, padding=1)
            for i, (planes, n) in enumerate(zip(widths, layers)):
                se_r = se_reduction if se_stages[i] else None
                self.add_module(f"layer{i + 1}", self._make_layer(block, planes, n, 1 if i == 0 else 2, se_r, act))
        self.out_channels = self.inplanes
        materialize(self, device, self._init_weights)
        if norm_conv:
            skip = {id(m.fc1) for m in self.modules() if isinstance(m, SqueezeExcitation)}
            skip |= {id(m.fc2) for m in self.modules() if isinstance(m, SqueezeExcitation)}
            normalize_convs(self, skip=skip)

    def _init_weights(self) -> None:
        """torchvision's ResNet initialisation; SE layers keep PyTorch's default (as timm's SE-ResNets)."""
        se_convs = set()
        for m in self.modules():
            if isinstance(m, SqueezeExcitation):
                m.fc1.reset_parameters()
                m.fc2.reset_parameters()
                se_convs.update((id(m.fc1), id(m.fc2)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in se_convs:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        reset_norms(self)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int, se_reduction: float | None, act: type[nn.Module]) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        kw: dict = {"se_reduction": se_reduction}
        if act is not nn.ReLU:
            kw["act_layer"] = act
        if block is Bottleneck:
            kw.update(groups=self.groups, base_width=self.width_per_group)
        layers = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64e, H/4, W/4)
        x = self.layer2(x)  # (B, 128e, H/8, W/8)
        x = self.layer3(x)  # (B, 256e, H/16, W/16)
        return self.layer4(x)  # (B, 512e, H/32, W/32)


def stage_flags(value: bool | Sequence[bool], stages: int, option: str, owner: str = "ResNet") -> tuple[bool, ...]:
    """One bool for every stage from ``value``: a bool (all stages) or a list of ``stages`` bools.

    Raises:
        ConfigError: anything else (``"no"``, ``1``, a list of the wrong length or with non-bools):
            a truthy non-bool must never quietly switch the option on everywhere.
    """
    if isinstance(value, bool):
        return (value,) * stages
    if isinstance(value, (list, tuple)) and len(value) == stages and all(isinstance(v, bool) for v in value):
        return tuple(value)
    raise ConfigError(
        f"{owner}: {option}={value!r} is not understood; allowed: true, false, or a list of {stages} bools "
        f"(one per stage), e.g. [true, true, true, false]"
    )


def _create_resnet(depth: int, *, num_classes: int, in_chans: int, head: str | None,
                   head_kwargs: dict | None, input_size: int | tuple[int, int] | None,
                   cifar_stem: bool, se: bool | Sequence[bool], se_reduction: float, zero_init_residual: bool,
                   activation: str = "relu", norm_conv: bool = False,
                   groups: int = 1, width_per_group: int = 64, name: str | None = None) -> Classifier:
    block, layers = _ARCHS[depth]
    stage_flags(se, len(layers), "se", name or f"resnet{depth}")  # the message names the model
    backbone = ResNet(block, layers, in_chans, cifar_stem=cifar_stem, se=se, se_reduction=se_reduction,
                      zero_init_residual=zero_init_residual, groups=groups, width_per_group=width_per_group,
                      activation=activation, norm_conv=norm_conv)
    return build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=32 if cifar_stem else 224,
        default_head=("linear", {"global_pool": "avg"}),
        model_name=name or f"resnet{depth}",
    )


@register_model
def resnet18(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
             se_reduction: float = 16, zero_init_residual: bool = False,
             activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNet-18 (torchvision ``resnet18``); ``cifar_stem`` for 32x32 inputs, ``se`` for SE-ResNet-18."""
    return _create_resnet(18, **locals())


@register_model
def resnet34(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
             se_reduction: float = 16, zero_init_residual: bool = False,
             activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNet-34 (torchvision ``resnet34``); ``cifar_stem`` for 32x32 inputs, ``se`` for SE-ResNet-34."""
    return _create_resnet(34, **locals())


@register_model
def resnet50(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
             input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
             se_reduction: float = 16, zero_init_residual: bool = False,
             activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNet-50 (torchvision ``resnet50``, V1.5); ``cifar_stem`` for 32x32 inputs, ``se`` for SE-ResNet-50."""
    return _create_resnet(50, **locals())


@register_model
def resnet101(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
              input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
              se_reduction: float = 16, zero_init_residual: bool = False,
              activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNet-101 (torchvision ``resnet101``, V1.5); ``cifar_stem`` for 32x32 inputs, ``se`` for SE-ResNet-101."""
    return _create_resnet(101, **locals())


@register_model
def resnet152(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
              input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
              se_reduction: float = 16, zero_init_residual: bool = False,
              activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNet-152 (torchvision ``resnet152``, V1.5; blocks 3-8-36-3)."""
    return _create_resnet(152, **locals())


@register_model
def wide_resnet50_2(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
                    se_reduction: float = 16, zero_init_residual: bool = False,
                    activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """Wide ResNet-50-2 (torchvision ``wide_resnet50_2``): ResNet-50 with twice the inner width."""
    return _create_resnet(50, width_per_group=128, name="wide_resnet50_2", **locals())


@register_model
def wide_resnet101_2(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                     input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
                     se_reduction: float = 16, zero_init_residual: bool = False,
                     activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """Wide ResNet-101-2 (torchvision ``wide_resnet101_2``): ResNet-101 with twice the inner width."""
    return _create_resnet(101, width_per_group=128, name="wide_resnet101_2", **locals())


@register_model
def resnext50_32x4d(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                    input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
                    se_reduction: float = 16, zero_init_residual: bool = False,
                    activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNeXt-50 32x4d (torchvision ``resnext50_32x4d``): 32 groups of 4 channels at 64 planes."""
    return _create_resnet(50, groups=32, width_per_group=4, name="resnext50_32x4d", **locals())


@register_model
def resnext101_32x8d(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                     input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
                     se_reduction: float = 16, zero_init_residual: bool = False,
                     activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNeXt-101 32x8d (torchvision ``resnext101_32x8d``): 32 groups of 8 channels at 64 planes."""
    return _create_resnet(101, groups=32, width_per_group=8, name="resnext101_32x8d", **locals())


@register_model
def resnext101_64x4d(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                     input_size: int | tuple[int, int] | None = None, cifar_stem: bool = False, se: bool | Sequence[bool] = False,
                     se_reduction: float = 16, zero_init_residual: bool = False,
                     activation: str = "relu", norm_conv: bool = False) -> Classifier:
    """ResNeXt-101 64x4d (torchvision ``resnext101_64x4d``): 64 groups of 4 channels at 64 planes."""
    return _create_resnet(101, groups=64, width_per_group=4, name="resnext101_64x4d", **locals())
