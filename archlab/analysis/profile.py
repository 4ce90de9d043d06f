"""Model profile: parameters, FLOPs, output shape per stage, latency (SPEC §2.1, §6 profile)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from archlab.analysis.flops import count_flops
from archlab.errors import ConfigError

__all__ = ["Profile", "profile", "count_parameters"]


@dataclass
class Profile:
    """What :func:`profile` measures.

    Attributes:
        params_total / params_trainable: parameter counts.
        params_per_module: parameters of each top-level module (``backbone``, ``head`` ...).
        params_per_stage: parameters of each top-level child of the backbone (when there is one).
        flops: forward FLOPs for one batch of ``input_size`` (multiply-add = 2 FLOPs), from
            ``torch.utils.flop_counter``'s formulas (:mod:`archlab.analysis.flops`).
        stage_shapes: output shape (without batch) of every top-level child of the backbone and
            of the head, in execution order.
        latency_ms: median forward time in milliseconds (``None`` when not measured).
        peak_memory_mb: peak CUDA memory of one forward pass (``None`` on CPU).
    """

    input_size: tuple[int, ...]
    params_total: int
    params_trainable: int
    params_per_module: dict[str, int]
    params_per_stage: dict[str, int]
    flops: int
    stage_shapes: dict[str, list[int]] = field(default_factory=dict)
    latency_ms: float | None = None
    peak_memory_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def profile(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    latency_runs: int = 0,
    device: str | torch.device | None = None,
) -> Profile:
    """Profile ``model`` on a zero input of ``input_size``.

    Args:
        model: any module; archlab classifiers also get per-stage shapes of their backbone.
        input_size: ``(B, C, H, W)`` or ``(C, H, W)`` (batch 1 is then used).
        latency_runs: number of timed forward passes (after 2 warm-up passes); 0 skips timing.
        device: where to run (default: where the model's parameters are).

    Returns:
        A :class:`Profile`.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = (1, *size)
    if len(size) != 4 or any(s < 1 for s in size):
        raise ConfigError(f"input_size must be (C, H, W) or (B, C, H, W) with positive sizes, got {input_size!r}")
    ref = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (ref.device if ref is not None else torch.device("cpu"))
    was_training = model.training
    model.eval()
    x = torch.zeros(size, device=dev)

    shapes: dict[str, list[int]] = {}
    hooks = []
    backbone = getattr(model, "backbone", None)
    stage_parent = backbone if isinstance(backbone, nn.Module) else model
    prefix = "backbone." if stage_parent is not model else ""
    for name, child in stage_parent.named_children():
        hooks.append(child.register_forward_hook(_shape_hook(shapes, prefix + name)))
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module) and stage_parent is not model:
        hooks.append(head.register_forward_hook(_shape_hook(shapes, "head")))
    try:
        flops = sum(count_flops(model, x).values())
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot profile with input_size {size}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        for h in hooks:
            h.remove()

    latency = None
    if latency_runs > 0:
        for _ in range(2):
            model(x)
        times = []
        for _ in range(latency_runs):
            _sync(dev)
            t0 = time.perf_counter()
            model(x)
            _sync(dev)
            times.append((time.perf_counter() - t0) * 1e3)
        latency = float(sorted(times)[len(times) // 2])
    peak = None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        model(x)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    model.train(was_training)

    return Profile(
        input_size=size,
        params_total=count_parameters(model),
        params_trainable=count_parameters(model, trainable_only=True),
        params_per_module={n: count_parameters(m) for n, m in model.named_children()},
        params_per_stage={n: count_parameters(m) for n, m in stage_parent.named_children()}
        if stage_parent is not model
        else {},
        flops=flops,
        stage_shapes=shapes,
        latency_ms=latency,
        peak_memory_mb=peak,
    )


def _shape_hook(store: dict[str, list[int]], name: str):
    def hook(_module: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            store[name] = list(out.shape[1:])

    return hook


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
