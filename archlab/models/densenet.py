"""DenseNet-121/161/169/201 (torchvision layout and names) and DenseNet-BC for CIFAR (seed 004).

Reference: Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017 (arXiv 1608.06993).

- ``densenet121/161/169/201``: torchvision's ``DenseNet`` — 7x7/2 conv, 3x3/2 max-pool, four dense
  blocks (growth 32, bottleneck 4k) with compressing transitions, final BN; the backbone is
  torchvision's ``features`` followed by the ReLU of torchvision's ``forward``; torchvision's
  ``classifier`` is the default ``linear`` head with global average pooling (``classifier.*`` ->
  ``fc.*``). densenet121 with 1000 classes has torchvision's 7,978,856 parameters. densenet161 is
  the wide one: k=48, 96 initial channels, blocks 6-12-36-24 (28,681,000 parameters).
- ``densenet_bc``: the paper's CIFAR network — 3x3 conv with 2k channels (16 without the
  bottleneck), three dense blocks of (L - 4) / 6 bottleneck layers ((L - 4) / 3 plain layers),
  transitions with compression theta, BN-ReLU, global pool. L=100, k=12 has 0.77M parameters
  ("0.8M" in the paper's table 2).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.layers.dense import DenseBlock, Transition
from archlab.models._classifier import Classifier, build_classifier
from archlab.layers._init import materialize, meta_construction, reset_norms
from archlab.pretrained import WeightLayout

__all__ = ["DenseNet", "densenet121", "densenet161", "densenet169", "densenet201", "densenet_bc", "remap_densenet_keys"]

# Legacy torchvision checkpoints (the published ImageNet files) name the layer parts
# "norm.1"/"conv.2" instead of "norm1"/"conv2"; torchvision itself renames them on load.
_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def remap_densenet_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename legacy torchvision DenseNet keys (``denselayer1.norm.1.weight`` -> ``norm1.weight``)."""
    out = {}
    for k, v in sd.items():
        m = _LEGACY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


class DenseNet(nn.Module):
    """DenseNet feature extractor (torchvision's ``features`` + the final ReLU).

    Args:
        growth_rate: k, maps added per layer.
        block_config: layers per dense block.
        num_init_features: channels of the first convolution.
        bn_size: bottleneck width factor (``bn_size * k`` maps in the 1x1 conv).
        drop_rate: dropout after each layer.
        compression: theta, transitions keep ``floor(theta * C)`` channels.
        bottleneck: use the 1x1 bottleneck in every layer.
        imagenet_stem: 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (ImageNet); otherwise a single 3x3
            stride-1 convolution (the paper's CIFAR networks).
        in_chans: input channels.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, C_final, H', W')``; (1024, 7, 7) for densenet121 at 224x224, (342, 8, 8)
          for DenseNet-BC L=100 k=12 at 32x32.
    """

    weight_layout = WeightLayout(
        family="densenet",
        head_map={"classifier.": "fc."},
        drop_prefixes=("classifier.",),
        first_conv="features.conv0.weight",
        remap=remap_densenet_keys,
    )

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        compression: float = 0.5,
        bottleneck: bool = True,
        imagenet_stem: bool = True,
        in_chans: int = 3,
    ):
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ConfigError(f"compression must be in (0, 1], got {compression!r}")
        if growth_rate < 1 or not block_config:
            raise ConfigError(f"need growth_rate >= 1 and >= 1 block, got {growth_rate!r}, {block_config!r}")
        with meta_construction() as device:  # skip nn's default init: _init_weights sets everything
            if imagenet_stem:
                stem = [
                    ("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            else:
                stem = [("conv0", nn.Conv2d(in_chans, num_init_features, 3, padding=1, bias=False))]
            self.features = nn.Sequential(OrderedDict(stem))
            ch = num_init_features
            for i, n in enumerate(block_config):
                block = DenseBlock(n, ch, growth_rate, bn_size, drop_rate, bottleneck)
                self.features.add_module(f"denseblock{i + 1}", block)
                ch = block.out_channels
                if i != len(block_config) - 1:
                    out = int(ch * compression)  # torchvision: num_features // 2 == int(0.5 * C)
                    self.features.add_module(f"transition{i + 1}", Transition(ch, out))
                    ch = out
            self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(ch))
        self.out_channels = ch
        materialize(self, device, self._init_weights)

    def _init_weights(self) -> None:
        """torchvision's DenseNet initialisation (convs have no bias)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        reset_norms(self)

    def dense_blocks(self) -> list[tuple[str, DenseBlock, nn.Module | None]]:
        """``(name, block, following transition or None)`` for each dense block, in order."""
        mods = list(self.features.named_children())
        out = []
        for i, (name, m) in enumerate(mods):
            if isinstance(m, DenseBlock):
                nxt = mods[i + 1][1] if i + 1 < len(mods) and isinstance(mods[i + 1][1], Transition) else None
                out.append((name, m, nxt))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # (B, C, H', W'); torchvision applies this ReLU in forward()


def _create_densenet(name: str, backbone: DenseNet, *, num_classes: int, in_chans: int, head: str | None,
                     head_kwargs: dict | None, input_size: int | tuple[int, int] | None,
                     default_input_size: int) -> Classifier:
    return build_classifier(
        backbone,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=default_input_size,
        default_head=("linear", {"global_pool": "avg"}),
        model_name=name,
    )


def _imagenet(name: str, growth: int, blocks: tuple[int, ...], init: int, *, num_classes: int, in_chans: int,
              head: str | None, head_kwargs: dict | None, input_size: int | tuple[int, int] | None,
              drop_rate: float) -> Classifier:
    backbone = DenseNet(growth, blocks, init, drop_rate=drop_rate, in_chans=in_chans)
    return _create_densenet(name, backbone, num_classes=num_classes, in_chans=in_chans, head=head,
                            head_kwargs=head_kwargs, input_size=input_size, default_input_size=224)


@register_model
def densenet121(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                input_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0) -> Classifier:
    """DenseNet-121 (torchvision ``densenet121``: k=32, blocks 6-12-24-16)."""
    return _imagenet("densenet121", 32, (6, 12, 24, 16), 64, **locals())


@register_model
def densenet161(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                input_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0) -> Classifier:
    """DenseNet-161 (torchvision ``densenet161``: k=48, 96 initial channels, blocks 6-12-36-24)."""
    return _imagenet("densenet161", 48, (6, 12, 36, 24), 96, **locals())


@register_model
def densenet169(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                input_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0) -> Classifier:
    """DenseNet-169 (torchvision ``densenet169``: k=32, blocks 6-12-32-32)."""
    return _imagenet("densenet169", 32, (6, 12, 32, 32), 64, **locals())


@register_model
def densenet201(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                input_size: int | tuple[int, int] | None = None, drop_rate: float = 0.0) -> Classifier:
    """DenseNet-201 (torchvision ``densenet201``: k=32, blocks 6-12-48-32)."""
    return _imagenet("densenet201", 32, (6, 12, 48, 32), 64, **locals())


@register_model
def densenet_bc(*, num_classes: int, in_chans: int = 3, head: str | None = None, head_kwargs: dict | None = None,
                input_size: int | tuple[int, int] | None = None, depth: int = 100, growth_rate: int = 12,
                compression: float = 0.5, bottleneck: bool = True, drop_rate: float = 0.0) -> Classifier:
    """DenseNet(-BC) for CIFAR (Huang et al. 2017, sec. 3): three dense blocks on 32x32 inputs.

    Args:
        depth: L, total depth; ``(L - 4)`` must divide by 6 with the bottleneck (each layer has two
            convolutions), by 3 without.
        growth_rate: k.
        compression: theta of the transitions (0.5 = "C"; 1 = none).
        bottleneck: 1x1 bottleneck layers ("B").
        drop_rate: dropout after each layer (the paper uses 0.2 without data augmentation).
    """
    per_layer = 2 if bottleneck else 1
    if depth < 4 or (depth - 4) % (3 * per_layer) != 0:
        raise ConfigError(f"densenet_bc depth must be 4 + 3 * {per_layer} * n (e.g. 40, 100, 190 with "
                          f"bottleneck=True; 40, 100 without), got {depth!r}")
    n = (depth - 4) // (3 * per_layer)
    # The paper: 2k initial channels for DenseNet-BC, 16 for the plain DenseNet.
    init = 2 * growth_rate if bottleneck and compression < 1 else 16
    backbone = DenseNet(growth_rate, (n, n, n), init, drop_rate=drop_rate, compression=compression,
                        bottleneck=bottleneck, imagenet_stem=False, in_chans=in_chans)
    return _create_densenet("densenet_bc", backbone, num_classes=num_classes, in_chans=in_chans, head=head,
                            head_kwargs=head_kwargs, input_size=input_size, default_input_size=32)
