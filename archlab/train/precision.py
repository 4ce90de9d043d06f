"""Mixed precision as a strategy of the training step: autocast, loss scaling and the optimizer step.

SPEC §4: mixed precision on GPU. On CUDA with ``amp`` the forward pass runs under autocast to
bfloat16 where the GPU supports it, else to float16 with a gradient scaler (float16 needs loss
scaling; bfloat16 has float32's range, and the scaler's inf check would sync every step). On the
CPU, and with ``amp: false``, every call here is plain float32: ``backward`` then ``step`` — the
same operations, in the same order, as a loop without this class.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["MixedPrecision", "autocast"]


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """The autocast context of a run on ``device``: bfloat16 (or float16) on CUDA when ``enabled``."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


class MixedPrecision:
    """Autocast, backward and optimizer step of one run, with a gradient scaler when float16 needs one.

    Args:
        device: the run's device.
        enabled: the run's resolved ``amp`` option (only CUDA uses it).

    Attributes:
        enabled: whether autocast is on (``amp`` on a CUDA device).
        scaler: the float16 gradient scaler, or ``None``.
    """

    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        self.enabled = bool(enabled) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and not torch.cuda.is_bf16_supported() else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass and the loss run in."""
        return autocast(self.device, self.enabled)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of ``loss``, unscaled (ready for clipping). Shape: loss ``()``."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step (skipped by the scaler when a float16 gradient overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state for the checkpoint (``{}`` without a scaler)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the scaler from a checkpoint (a checkpoint without one leaves it fresh)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
