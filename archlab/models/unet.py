"""U-Net with a ``has_mask`` branch, for the ultrasound-nerve segmentation of seed 002.

References:
    - Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
      Segmentation" (MICCAI 2015): the contracting path, the expanding path with skip
      concatenations, 2x2 up-convolutions and a 1x1 output convolution.
    - Seed 002 (Kaggle ultrasound nerve segmentation): "I stated with a U-Net ... retrofitted it
      with batch normalization, ELU activation, and dropout", and because ~60 % of the images have
      an empty mask, "add a Dense layer towards the end of encoder an predict whether the image
      contains the mask or not. Lets call this value has_mask. During test/submission time, I could
      simply zero out all the segmentation mask values if has_mask = False."

Departures from the paper, with reasons: 3x3 convolutions are padded ("same"), so the mask has
the input's size and no cropping is needed (the seed's Keras U-Net does the same); each conv is
followed by BatchNorm and ELU and each block has a Dropout2d between its two convs (the seed's
retrofit); the widths default to 16..128 (the paper's 64..1024 is far larger than the 5,635
training images need and than a CPU test allows).

The model returns a :class:`SegmentationOutput` (mask logits and the has_mask logit) in training
and evaluation alike; :meth:`UNet.predict_masks` turns it into mask probabilities and, with
``gate=True``, zeroes the masks of images whose ``sigmoid(has_mask) < gate_threshold``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab._registry import register_model
from archlab.errors import IncompatibleError
from archlab.models._classifier import to_2tuple

__all__ = ["UNet", "SegmentationOutput", "gate_masks", "unet"]


class SegmentationOutput(NamedTuple):
    """What a segmentation model returns.

    Shape:
        - masks: ``(B, 1, H, W)`` mask logits
        - has_mask: ``(B, 1)`` logit of "the image has a non-empty mask"
    """

    masks: torch.Tensor
    has_mask: torch.Tensor


def gate_masks(out: SegmentationOutput, *, gate: bool, threshold: float = 0.5) -> torch.Tensor:
    """Mask probabilities, zeroed where ``sigmoid(has_mask) < threshold`` when ``gate`` is on.

    Shape:
        - out.masks: ``(B, 1, H, W)``, out.has_mask: ``(B, 1)``
        - output: ``(B, 1, H, W)`` probabilities in [0, 1]
    """
    probs = torch.sigmoid(out.masks)  # (B, 1, H, W)
    if not gate:
        return probs
    keep = torch.sigmoid(out.has_mask) >= threshold  # (B, 1)
    return probs * keep[:, :, None, None].to(probs.dtype)


class ConvBlock(nn.Module):
    """Conv3x3 -> BN -> ELU -> Dropout2d -> Conv3x3 -> BN -> ELU (seed 002's retrofitted block).

    Shape:
        - Input: ``(B, in_chs, H, W)``
        - Output: ``(B, out_chs, H, W)``
    """

    def __init__(self, in_chs: int, out_chs: int, drop_rate: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ELU(inplace=True)
        self.drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act1(self.bn1(self.conv1(x))))
        return self.act2(self.bn2(self.conv2(x)))


class UpBlock(nn.Module):
    """2x2 up-convolution, concatenation with the skip, then a :class:`ConvBlock`.

    Shape:
        - x: ``(B, in_chs, h, w)``, skip: ``(B, skip_chs, H, W)`` with ``H in (2h, 2h+1)``
        - Output: ``(B, out_chs, H, W)``
    """

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, drop_rate: float = 0.0):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chs, out_chs, 2, stride=2)
        self.block = ConvBlock(out_chs + skip_chs, out_chs, drop_rate)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, out_chs, 2h, 2w)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:  # odd sizes: pad the upsampled map to the skip's size (instead of cropping)
            x = F.pad(x, (0, dw, 0, dh))
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net with BatchNorm, ELU, dropout and a ``has_mask`` classification branch.

    Args:
        in_chans: input channels.
        widths: channels per level, from the first encoder level to the bottleneck; the input is
            pooled ``len(widths) - 1`` times.
        drop_rate: Dropout2d inside every conv block.
        has_mask_drop_rate: dropout before the has_mask Dense layer.
        gate: zero the predicted mask where ``sigmoid(has_mask) < gate_threshold`` in
            :meth:`predict_masks` (the seed's submission trick). Training is the same either way.
        gate_threshold: the has_mask probability below which a mask is zeroed.
        input_size: the nominal ``(H, W)``; any size >= ``2 ** (len(widths) - 1)`` works.

    Attributes:
        task: ``"segmentation"`` (the engine trains and evaluates masks for such models).
        num_features: channels of the bottleneck (what :meth:`forward_features` returns).

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: :class:`SegmentationOutput` with masks ``(B, 1, H, W)`` and has_mask ``(B, 1)``
    """

    task = "segmentation"
    head_name = None  # no classification head: the outputs are the mask and has_mask

    def __init__(
        self,
        in_chans: int = 1,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        drop_rate: float = 0.1,
        has_mask_drop_rate: float = 0.5,
        gate: bool = True,
        gate_threshold: float = 0.5,
        input_size: tuple[int, int] = (64, 64),
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise IncompatibleError(f"unet: widths must list >= 2 positive channel counts, got {widths}")
        if not 0.0 <= gate_threshold <= 1.0:
            raise IncompatibleError(f"unet: gate_threshold must lie in [0, 1], got {gate_threshold}")
        min_side = 2 ** (len(widths) - 1)
        if min(input_size) < min_side:
            raise IncompatibleError(
                f"unet with {len(widths)} levels pools {len(widths) - 1} times and needs inputs of at "
                f"least {min_side}x{min_side}, got {input_size[0]}x{input_size[1]}; use fewer widths"
            )
        self.in_chans, self.input_size = in_chans, tuple(input_size)
        self.gate, self.gate_threshold = bool(gate), float(gate_threshold)
        self.num_features = widths[-1]
        self.num_classes = 1  # one binary mask channel
        self.encoder = nn.ModuleList(
            [ConvBlock(in_chans if i == 0 else widths[i - 1], w, drop_rate) for i, w in enumerate(widths[:-1])]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], drop_rate)
        self.decoder = nn.ModuleList(
            [UpBlock(widths[i + 1], widths[i], widths[i], drop_rate) for i in reversed(range(len(widths) - 1))]
        )
        self.mask_head = nn.Conv2d(widths[0], 1, 1)
        # the seed's "Dense layer towards the end of encoder": global pooling of the bottleneck
        self.has_mask_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(has_mask_drop_rate), nn.Linear(widths[-1], 1)
        )

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottleneck(x), skips  # (B, widths[-1], H / 2**L, W / 2**L)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features. Shape: ``(B, in_chans, H, W)`` -> ``(B, num_features, h, w)``."""
        return self._encode(x)[0]

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        z, skips = self._encode(x)
        has_mask = self.has_mask_head(z)  # (B, 1)
        for up, skip in zip(self.decoder, reversed(skips)):
            z = up(z, skip)
        return SegmentationOutput(self.mask_head(z), has_mask)  # (B, 1, H, W), (B, 1)

    def postprocess(self, out: SegmentationOutput) -> torch.Tensor:
        """Mask probabilities of a forward output, gated when ``self.gate`` (see :func:`gate_masks`)."""
        return gate_masks(out, gate=self.gate, threshold=self.gate_threshold)

    @torch.no_grad()
    def predict_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Mask probabilities for ``x`` in eval mode. Shape: ``(B, C, H, W)`` -> ``(B, 1, H, W)``."""
        return self.postprocess(self(x))

    def extra_repr(self) -> str:
        return f"gate={self.gate}, gate_threshold={self.gate_threshold}"


@register_model
def unet(
    *,
    num_classes: int,
    in_chans: int,
    head: str | None = None,
    head_kwargs: dict | None = None,
    input_size: int | tuple[int, int] | None = None,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    drop_rate: float = 0.1,
    has_mask_drop_rate: float = 0.5,
    gate: bool = True,
    gate_threshold: float = 0.5,
) -> UNet:
    """U-Net (BatchNorm, ELU, dropout) with a has_mask branch that gates the mask (seed 002)."""
    if num_classes not in (1, 2):
        raise IncompatibleError(
            f"unet segments one binary mask (image classes 'empty'/'mask'), so num_classes must be 1 or 2, "
            f"got {num_classes}; use a segmentation dataset (segmentation, synthetic_masks), or "
            "`archlab info unet --num-classes 2`"
        )
    if head is not None or head_kwargs:
        raise IncompatibleError(
            f"unet has no classification head (its outputs are a mask and has_mask), got head={head!r}; "
            "remove model.head / model.head_kwargs"
        )
    return UNet(
        in_chans,
        tuple(widths),
        drop_rate,
        has_mask_drop_rate,
        gate,
        gate_threshold,
        to_2tuple(input_size if input_size is not None else 64),
    )
