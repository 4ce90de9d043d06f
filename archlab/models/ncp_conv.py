"""The convolutional perception head of the original Neural Circuit Policy paper.

Reference: Lechner, Hasani, Amini, Henzinger, Rus and Grosu, "Neural circuit policies enabling
auditable autonomy", Nature Machine Intelligence 2020 (the lane-keeping agent). Five convolutions
(24 5x5 s2, 36 5x5 s2, 48 3x3 s2, 64 3x3 s1, 8 3x3 s1), each followed by ReLU; each of the 8
final feature maps is flattened and mapped by its *own* Dense(4), giving 4 x 8 = 32 features: the
32 sensory neurons of the original NCP (``ncp_original``'s wiring).

Departure from the paper: the convolutions pad by ``k // 2`` so that small images (digits, 28x28,
32x32 CIFAR) keep a map after five layers; the paper's unpadded layers need at least 53x53 inputs.
``padding="valid"`` restores them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from archlab._registry import register_model
from archlab.errors import ConfigError
from archlab.models._classifier import Classifier, build_classifier, to_2tuple

__all__ = ["NCPConv", "PerMapDense", "ncp_conv"]

#: (out_channels, kernel, stride) of the five convolutions.
NCP_CONV_LAYERS: tuple[tuple[int, int, int], ...] = ((24, 5, 2), (36, 5, 2), (48, 3, 2), (64, 3, 1), (8, 3, 1))


class PerMapDense(nn.Module):
    """One Linear per feature map: map ``c`` flattened -> ``out_per_map`` features.

    Args:
        maps: number of feature maps (C).
        in_per_map: H * W of each map.
        out_per_map: outputs of each map's Linear (4 in the paper).

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C * out_per_map)``, map ``c``'s outputs at ``[c * out_per_map, (c + 1) * out_per_map)``
    """

    def __init__(self, maps: int, in_per_map: int, out_per_map: int = 4):
        super().__init__()
        self.maps, self.in_per_map, self.out_per_map = maps, in_per_map, out_per_map
        self.weight = nn.Parameter(torch.empty(maps, out_per_map, in_per_map))
        self.bias = nn.Parameter(torch.empty(maps, out_per_map))
        bound = in_per_map**-0.5  # nn.Linear's default init, per map
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        y = torch.einsum("bcp,cop->bco", x.reshape(B, C, H * W), self.weight) + self.bias  # (B, C, out)
        return y.reshape(B, C * self.out_per_map)  # (B, C * out)

    def extra_repr(self) -> str:
        return f"maps={self.maps}, in_per_map={self.in_per_map}, out_per_map={self.out_per_map}"


class NCPConv(nn.Module):
    """The NCP paper's convolutional head: five ReLU convolutions, then a Dense(4) per final map.

    Args:
        in_chans: input channels.
        input_size: ``(H, W)`` of the input (the per-map Dense layers depend on it).
        padding: ``"same"`` (``k // 2``, the default, see the module docstring) or ``"valid"``
            (the paper's).
        features_per_map: outputs of each map's Dense (4 in the paper: 8 maps x 4 = 32).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, 8 * features_per_map)``; (B, 32) by default.

    Raises:
        ConfigError: an unknown ``padding`` or an input too small for the five convolutions.
    """

    def __init__(self, in_chans: int, input_size: tuple[int, int], padding: str = "same", features_per_map: int = 4):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ConfigError(f"padding must be 'same' or 'valid', got {padding!r}")
        layers: dict[str, nn.Module] = {}
        h, w = input_size
        ch = in_chans
        for i, (out, k, s) in enumerate(NCP_CONV_LAYERS, start=1):
            p = k // 2 if padding == "same" else 0
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if h < 1 or w < 1:
                raise ConfigError(
                    f"ncp_conv: input {tuple(input_size)} is too small for conv{i} with padding={padding!r}; "
                    "use padding='same' or inputs of at least 53x53"
                )
            layers[f"conv{i}"] = nn.Conv2d(ch, out, k, stride=s, padding=p)
            layers[f"act{i}"] = nn.ReLU(inplace=True)
            ch = out
        self.convs = nn.Sequential(OrderedDict(layers))
        self.dense = PerMapDense(ch, h * w, features_per_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convs(x))  # (B, 8 * features_per_map)


@register_model
def ncp_conv(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    padding: str = "same",
    features_per_map: int = 4,
) -> Classifier:
    """The NCP paper's conv head (32 sensory features) with a linear head by default."""
    size = to_2tuple(input_size if input_size is not None else 64)
    return build_classifier(
        NCPConv(in_chans, size, padding, features_per_map),
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=size,
        head=head,
        head_kwargs=head_kwargs,
        default_input_size=64,
        model_name="ncp_conv",
    )
