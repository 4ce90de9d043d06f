"""Build large backbones without paying for PyTorch's default initialisation first.

``nn.Conv2d``/``nn.Linear`` initialise their weights when constructed; torchvision-style families
then overwrite every weight with their own initialisation, so half of the construction time of a
VGG/EfficientNet/DenseNet (random number generation for tens of millions of weights) is wasted.
Families therefore construct their modules on the ``meta`` device, allocate them on the target
device with ``to_empty`` and run their own initialisation once — which must then set *every*
parameter and buffer. Built under ``torch.device("meta")`` (shape-only checks), nothing is
allocated or initialised at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn

__all__ = ["meta_construction", "materialize", "reset_norms"]


@contextlib.contextmanager
def meta_construction() -> Iterator[torch.device]:
    """Construct modules on the meta device; yields the device they should end up on."""
    target = torch.get_default_device()
    with torch.device("meta"):
        yield target


@torch.no_grad()
def materialize(module: nn.Module, device: torch.device, init: Callable[[], None]) -> None:
    """Allocate ``module`` (built under :func:`meta_construction`) on ``device`` and initialise it.

    ``init`` must set every parameter and buffer of ``module`` (``to_empty`` leaves them
    uninitialised). Nothing happens when ``device`` is itself the meta device.
    """
    if device.type == "meta":
        return
    module.to_empty(device=device)
    init()


def reset_norms(module: nn.Module) -> None:
    """BatchNorm/GroupNorm/LayerNorm: weight 1, bias 0, running statistics reset."""
    for m in module.modules():
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            m.reset_parameters()
