"""VGG's classifier as a head: adaptive average pool -> 3 fully connected layers (torchvision names).

Reference: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; layout and initialisation as torchvision's ``VGG.classifier``:
Linear(C*7*7, 4096) -> ReLU -> Dropout -> Linear(4096, 4096) -> ReLU -> Dropout -> Linear(4096, C),
stored as ``classifier.0/3/6`` so torchvision's classifier weights map one-to-one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab._registry import register_head
from archlab.errors import ConfigError, IncompatibleError
from archlab.layers._init import materialize, meta_construction

__all__ = ["VGGClassifierHead"]


@register_head("vgg_classifier")
class VGGClassifierHead(nn.Module):
    """torchvision's VGG classifier.

    Args:
        in_shape: per-sample feature shape ``(C, H, W)``.
        num_classes: number of logits.
        hidden: width of the two hidden layers (4096 in VGG).
        drop_rate: dropout after each hidden layer (0.5 in VGG).
        pool_size: side of torchvision's ``AdaptiveAvgPool2d`` (7). Maps larger than this are
            average-pooled to ``pool_size x pool_size``; smaller maps are used as they are (see
            ``always_pool``).
        always_pool: also pool maps smaller than ``pool_size`` up to it, exactly as torchvision.

    Departure from torchvision (default ``always_pool=False``): torchvision's adaptive pool
    *up-samples* maps smaller than 7x7 by replication (a 32x32 CIFAR image gives a 1x1 map copied
    49 times), which only multiplies the first Linear's weights by copies of the same inputs — the
    same function class with 49x the parameters (102M instead of 2M). At 224x224 input the map is
    7x7 and both agree exactly (same shapes, same parameter count, same outputs).

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        hidden: int = 4096,
        drop_rate: float = 0.5,
        pool_size: int = 7,
        always_pool: bool = False,
    ):
        super().__init__()
        if len(in_shape) != 3:
            raise IncompatibleError(
                f"vgg_classifier needs a (C, H, W) feature map, got features of shape {tuple(in_shape)}; "
                "use the 'linear' or 'mlp' head on flat features")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        if hidden < 1 or pool_size < 1:
            raise ConfigError(f"hidden and pool_size must be positive, got {hidden!r}, {pool_size!r}")
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        c, h, w = in_shape
        out_hw = (pool_size, pool_size) if always_pool else (min(h, pool_size), min(w, pool_size))
        self.avgpool = nn.AdaptiveAvgPool2d(out_hw)
        with meta_construction() as device:  # 100M+ weights at 224 px: skip nn's default init
            self.classifier = nn.Sequential(
                nn.Linear(c * out_hw[0] * out_hw[1], hidden),
                nn.ReLU(True),
                nn.Dropout(drop_rate),
                nn.Linear(hidden, hidden),
                nn.ReLU(True),
                nn.Dropout(drop_rate),
                nn.Linear(hidden, num_classes),
            )
        materialize(self, device, self._init_weights)

    def _init_weights(self) -> None:
        """torchvision's VGG classifier initialisation: weights N(0, 0.01), biases 0."""
        for m in self.classifier:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def fc(self) -> nn.Linear:
        """The output layer (``classifier.6``)."""
        return self.classifier[6]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C*h*w)
        return self.classifier(x)  # (B, num_classes)
