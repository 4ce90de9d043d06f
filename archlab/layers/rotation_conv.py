"""Rotation-invariant 3x3 convolution (seed 002, "exploring alternative neural computational models").

Reference: the blog in seed 002 (raghakot, "Rotation-invariant convolutions", 2016; code
``exp2/layers.py``). A neuron matches its input against every discrete rotation of its filter and
keeps the best match: ``max{r^1 W . X, ..., r^k W . X}``. Rotations of a 3x3 kernel are done without
interpolation by *rolling the outer ring* of the kernel clockwise, the centre fixed: one step is a
(skewed) 45 degree rotation (8 rotations), two steps are an exact 90 degree rotation (4 rotations).

All rotated kernels are gathered from the one ``weight`` parameter through a precomputed index
buffer, so the layer has exactly the parameters (and parameter names) of an ``nn.Conv2d`` with the
same arguments, and ``from_conv`` moves trained ordinary weights in (the seed's transplant test).

Implementation (measured by ``bench/rotation_conv.py``, fwd+bwd, 8 rotations, 64->64, 16x16,
batch 32, 2 CPU threads): the R rotated kernels are stacked into one ``(R * out, in, k, k)`` kernel
and applied in a single convolution call, followed by a custom max over rotations
(:class:`_RotationMax`). On an idle 2-core CPU this ran at 0.97x the time of one plain convolution
with 8x the outputs and 0.65x the seed's loop of 8 convolutions (one large GEMM uses the cores
better than R small ones and the input is unfolded once). Under CPU contention the extra small
ops cost more (1.2-1.3x the plain conv seen). The same strategy is used on every device; it has
not been timed on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.layers.normalized import normalize_weight

__all__ = ["RotationInvariantConv2d", "SEED_PERMUTATION", "ring_shift_permutation", "rotation_permutations"]

#: The blog's clockwise shift-1 permutation (``exp2/layers.py``): ``rotated[i] = w[SEED_PERMUTATION[i]]``
#: for the 9 kernel positions in row-major order, as (row, col) pairs.
SEED_PERMUTATION: tuple[tuple[int, int], ...] = (
    (1, 0), (0, 0), (0, 1),
    (2, 0), (1, 1), (0, 2),
    (2, 1), (2, 2), (1, 2),
)  # fmt: skip

_ROTATIONS = (4, 8)
_POOLS = ("max", "concat")


def ring_shift_permutation() -> torch.Tensor:
    """Flat gather index of one clockwise roll of a 3x3 kernel's outer ring (centre fixed).

    ``w.flatten(-2)[..., p]`` is ``w`` with each ring element moved one place clockwise, i.e.
    ``rotated[i] = w[p[i]]``; equal to the seed's ``tf.gather_nd(w, permutation)``.

    Returns:
        ``(9,)`` int64 tensor.
    """
    return torch.tensor([r * 3 + c for r, c in SEED_PERMUTATION], dtype=torch.long)


def rotation_permutations(rotations: int, kernel_size: int = 3) -> torch.Tensor:
    """Gather indices of all ``rotations`` rotated kernels, the identity first.

    ``rotations=8``: ``r`` clockwise ring rolls of a 3x3 kernel (45 degrees each, the seed's
    ``Convolution2D_8``). ``rotations=4``: 90 degree clockwise rotations; for 3x3 kernels these are
    two ring rolls (the seed's ``Convolution2D_4``), for other odd sizes the exact ``rot90``.

    Args:
        rotations: 4 or 8.
        kernel_size: odd kernel size (8 rotations need 3).

    Returns:
        ``(rotations, kernel_size**2)`` int64 tensor; row ``r`` gathers rotation ``r``.

    Raises:
        ConfigError: ``rotations`` not in {4, 8}, or a kernel size the rotation is not defined for.
    """
    _check_rotation_args(rotations, kernel_size)
    k2 = kernel_size * kernel_size
    if kernel_size == 3:
        step = ring_shift_permutation() if rotations == 8 else ring_shift_permutation()[ring_shift_permutation()]
    else:
        # Exact 90 degree clockwise rotation of a k x k index grid: rotated = rot90(w, -1).
        step = torch.rot90(torch.arange(k2).view(kernel_size, kernel_size), -1, (0, 1)).reshape(-1)
    perms = [torch.arange(k2)]
    for _ in range(rotations - 1):
        perms.append(perms[-1][step])  # one more step: rotated_{r+1}[i] = rotated_r[step[i]]
    return torch.stack(perms)  # (R, k*k)


def _check_rotation_args(rotations: int, kernel_size: int) -> None:
    if isinstance(rotations, bool) or rotations not in _ROTATIONS:
        raise ConfigError(
            f"rotations={rotations!r} is not supported; allowed: 4 (90 degree steps) or 8 (45 degree ring shifts)"
        )
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size={kernel_size!r} must be an odd positive int (3 for ring-shift rotations)")
    if rotations == 8 and kernel_size != 3:
        raise ConfigError(
            f"kernel_size={kernel_size} is not supported with rotations=8: the 45 degree ring-shift rotation "
            "is defined for 3x3 kernels only; allowed kernel_size: 3 (or use rotations=4 for other odd sizes)"
        )


class _RotationMax(torch.autograd.Function):
    """Max over the rotation axis (dim 1) of ``(B, R, O, H, W)``, with a lean backward.

    Values and gradient equal ``v.max(1).values`` (NaN propagates; on exact ties, e.g. an all-zero
    patch, the whole gradient goes to the first maximal rotation). The blog's ``tf.reduce_max``
    split it evenly between tied rotations instead; both are subgradients of the max, and the
    forward values are identical. Cheaper than the builtins (measured on CPU, fwd+bwd of the
    pooling alone, 1 thread: ~17 ms vs ~28 ms for ``max`` and ~51 ms for ``amax`` at the benchmark size):
    the forward is ``amax`` plus three byte-sized passes that keep the arg-max as uint8
    (``B*O*H*W`` bytes, not the 8x larger conv output); the backward is one memset and one scatter.
    """

    @staticmethod
    def forward(v: torch.Tensor) -> torch.Tensor:
        return v.amax(1)  # (B, O, H, W)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        (v,) = inputs
        R = v.shape[1]
        # First arg-max in a few whole-tensor ops: rotation r scores R - r where it hits the max.
        score = torch.arange(R, 0, -1, device=v.device, dtype=torch.uint8).view(1, R, 1, 1, 1)
        hits = (v == output.unsqueeze(1)).view(torch.uint8)  # (B, R, O, H, W) 0/1
        idx = (R - (hits * score).amax(1)).clamp_(max=R - 1)  # (B, O, H, W) uint8; NaN rows -> R-1
        ctx.save_for_backward(idx)
        ctx.rotations = R

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (idx,) = ctx.saved_tensors
        B, O, H, W = idx.shape
        out = torch.zeros(B, ctx.rotations, O, H, W, dtype=grad.dtype, device=grad.device)
        return out.scatter_(1, idx.long().unsqueeze(1), grad.unsqueeze(1))  # (B, R, O, H, W)


class RotationInvariantConv2d(nn.Conv2d):
    """Convolution whose filters respond to every discrete rotation of themselves.

    Args:
        in_channels: input channels.
        out_channels: filters (outputs per rotation).
        rotations: 8 (clockwise ring roll, 45 degrees, centre fixed) or 4 (two rolls, 90 degrees).
        pool: ``"max"`` keeps the best-matching rotation per position (the seed); ``"concat"``
            keeps all rotations as ``out_channels * rotations`` channels (the seed's "try
            concatenating" idea), grouped per filter: channel ``o * rotations + r``.
        squeeze: with ``pool="concat"``, a 1x1 convolution (no bias) maps the
            ``out_channels * rotations`` channels back to ``out_channels`` (the seed's
            "squeeze net style compression"). It adds ``out_channels**2 * rotations`` parameters.
        kernel_size: 3 (the seed); other odd sizes only with ``rotations=4``.
        stride, padding, dilation: as :class:`torch.nn.Conv2d` (padding may be ``"same"``/``"valid"``).
        bias: add a bias per filter after pooling (the seed adds it after the max; identical since
            the bias is the same for every rotation).
        normalize: divide each filter by its L2 norm + 1e-8 first (seed 002's weight
            normalization, :mod:`archlab.layers.normalized`; a ring roll keeps the norm).

    Attributes:
        weight, bias: the parameters of the equivalent ``nn.Conv2d`` (same names and shapes).
        perm: non-persistent buffer ``(rotations, k*k)`` of gather indices (not in the state dict).

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: ``(B, C, H', W')`` with ``C = out_channels`` (``max`` or ``concat`` + ``squeeze``)
          or ``out_channels * rotations`` (``concat``); ``H', W'`` as for ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rotations: int = 4,
        pool: str = "max",
        squeeze: bool = False,
        kernel_size: int = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        normalize: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        _check_rotation_args(rotations, kernel_size)
        if pool not in _POOLS:
            raise ConfigError(f"pool={pool!r} is not supported; allowed: {', '.join(repr(p) for p in _POOLS)}")
        if squeeze and pool != "concat":
            raise ConfigError(f"squeeze=True needs pool='concat' (got pool={pool!r}); allowed: pool='concat'")
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            bias=bias, device=device, dtype=dtype,
        )  # fmt: skip
        self.rotations, self.pool, self.normalize = rotations, pool, bool(normalize)
        self.register_buffer("perm", rotation_permutations(rotations, kernel_size).to(device), persistent=False)
        self.squeeze = (
            nn.Conv2d(out_channels * rotations, out_channels, 1, bias=False, device=device, dtype=dtype)
            if squeeze
            else None
        )

    @property
    def out_features(self) -> int:
        """Channels of the output."""
        return self.out_channels * (self.rotations if self.pool == "concat" and self.squeeze is None else 1)

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, rotations: int = 4, pool: str = "max", squeeze: bool = False, normalize: bool = False
    ) -> RotationInvariantConv2d:
        """A rotation-invariant layer carrying a trained ``nn.Conv2d``'s weights (transplant).

        Args:
            conv: an ordinary convolution (square odd kernel, ``groups=1``).
            rotations, pool, squeeze, normalize: as the constructor (a squeeze conv is freshly
                initialised).

        Returns:
            A new layer on ``conv``'s device and dtype with a copy of its weight and bias.

        Raises:
            ConfigError: ``conv`` cannot be made rotation-invariant (groups, non-square kernel,
                ``padding_mode`` other than zeros).
        """
        kh, kw = conv.kernel_size
        if kh != kw:
            raise ConfigError(f"from_conv needs a square kernel, got kernel_size={conv.kernel_size}; allowed: (3, 3)")
        if conv.groups != 1:
            raise ConfigError(f"from_conv needs groups=1, got groups={conv.groups}")
        if conv.padding_mode != "zeros":
            raise ConfigError(f"from_conv needs padding_mode='zeros', got {conv.padding_mode!r}")
        layer = cls(
            conv.in_channels, conv.out_channels, rotations=rotations, pool=pool, squeeze=squeeze, kernel_size=kh,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
            normalize=normalize, device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.train(conv.training)
        return layer

    def rotated_weights(self, grouping: str = "filter") -> torch.Tensor:
        """All rotated kernels stacked for one convolution call.

        Differentiable: the gradient flows back into the one ``weight``.

        Args:
            grouping: ``"filter"`` puts filter ``o``, rotation ``r`` at ``o * R + r`` (the concat
                output order); ``"rotation"`` puts it at ``r * O + o`` (used for the max, whose
                reduction is then over R contiguous slabs).

        Shape:
            ``(out_channels * rotations, in_channels, k, k)``
        """
        O, I, kh, kw = self.weight.shape
        weight = normalize_weight(self.weight) if self.normalize else self.weight
        w = weight.flatten(2)[:, :, self.perm]  # (O, I, R, k*k) gather from the one weight
        w = w.permute(2, 0, 1, 3) if grouping == "rotation" else w.transpose(1, 2)  # (R, O, I, kk) | (O, R, I, kk)
        return w.reshape(O * self.rotations, I, kh, kw)  # (O*R, I, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouping = "rotation" if self.pool == "max" else "filter"
        w = self.rotated_weights(grouping)  # (O*R, I, k, k)
        y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation)  # (B, O*R, H', W')
        B, _, H, W = y.shape
        if self.pool == "max":
            v = y.view(B, self.rotations, self.out_channels, H, W)  # (B, R, O, H', W')
            y = _RotationMax.apply(v) if torch.is_grad_enabled() and v.requires_grad else v.amax(1)  # (B, O, H', W')
            return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)
        if self.bias is not None:
            y = (y.view(B, self.out_channels, self.rotations, H, W) + self.bias.view(1, -1, 1, 1, 1)).view(B, -1, H, W)
        return y if self.squeeze is None else self.squeeze(y)  # (B, O*R | O, H', W')

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", rotations={self.rotations}, pool={self.pool!r}"
        s += ", normalize=True" if self.normalize else ""
        return s + (", squeeze=True" if self.squeeze is not None else "")
