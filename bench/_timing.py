"""Timing a training step on one resident batch: the pure-compute limit, and the memory-format probe.

Benchmarks only (a run never times itself: its result must depend on its recorded config alone,
:mod:`archlab.train.speed`). :func:`time_train_steps` is the limit ``bench/efficiency.py`` and
``bench/gpu.py`` divide the engine's rate by; :func:`probe_memory_format` times both memory formats,
interleaved, for ``bench/speed_rule.py``, which re-derives the channels_last rule with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from archlab.train.run import layout_stable_dropout
from archlab.train.speed import channels_last_for, conv_flop_share

__all__ = ["ProbeResult", "probe_memory_format", "time_train_steps"]


def time_train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    warmup: int = 3,
    channels_last: bool = False,
    amp: bool = False,
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
    step_times: list[float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per training step (fwd + bwd + Adam) of ``model`` on one resident batch.

    This is the pure-compute limit of a training loop: no data path, no metrics, no host syncs
    inside the timed steps. The model is trained in place (pass a copy).

    Args:
        model: the model (moved to ``x.device`` and to the memory format here).
        x / y: the batch and its labels, on the device.
        steps: timed steps (median of single-step times is not used: the mean over ``steps``
            consecutive steps, synchronised once at each end, is what a loop sustains).
        warmup: untimed steps first (allocator, oneDNN/cuDNN algorithm choice).
        channels_last: model and batch in ``torch.channels_last``.
        amp: autocast to bfloat16 (CUDA).
        optimizer: builds the optimizer from the parameters (default Adam, lr 1e-3).
        step_times: when given, each timed step is also timed on its own (synchronised) and its
            seconds appended here (a median of these resists other processes' load spikes).
        clock: the clock (``time.process_time`` measures this process's CPU time: on a CPU shared with
            other jobs it counts the work, not the waiting).

    Shape:
        - x: :math:`(B, C, H, W)`; y: :math:`(B,)`
    """
    device = x.device
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        layout_stable_dropout(model)  # as the engine does
        x = x.contiguous(memory_format=torch.channels_last)
    opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = clock()
    last = t0
    for _ in range(steps):
        step()
        if step_times is not None:
            _sync(device)
            now = clock()
            step_times.append(now - last)
            last = now
    _sync(device)
    return (clock() - t0) / steps


@dataclass
class ProbeResult:
    """What :func:`probe_memory_format` measured (seconds per training step, median of rounds)."""

    contiguous_s: float
    channels_last_s: float
    rounds: int
    steps: int
    conv_flop_share: float
    rule_choice: bool  # what resolve_speed_options picks for this model

    @property
    def faster(self) -> str:
        return "channels_last" if self.channels_last_s < self.contiguous_s else "contiguous"

    @property
    def speedup(self) -> float:
        """contiguous time / channels_last time (> 1: channels_last is faster)."""
        return self.contiguous_s / self.channels_last_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faster": self.faster, "speedup": self.speedup}


def probe_memory_format(
    build: Callable[[], nn.Module],
    input_size: tuple[int, int, int],
    *,
    batch_size: int = 64,
    num_classes: int = 10,
    device: str | torch.device = "cpu",
    rounds: int = 3,
    steps: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> ProbeResult:
    """Time a training step of ``build()`` in both memory formats, interleaved round by round.

    Used by ``bench/speed_rule.py`` to derive and check the channels_last rule, never by a run (a
    timed choice could differ between two runs of one config). With one CPU thread it times this
    process's CPU time (robust to other jobs on the machine), else the wall clock.

    Args:
        build: returns a fresh model (the same initial weights each call).
        input_size: ``(C, H, W)`` of one sample.
        batch_size / num_classes: the batch timed.
        device: where to time.
        rounds: interleaved rounds; each times ``steps`` steps of each format.
        steps / warmup: timed and untimed steps per round.
        seed: the random batch.

    Returns:
        A :class:`ProbeResult` (median seconds per step of each format).
    """
    device = torch.device(device)
    # one CPU thread: this process's CPU time is the work, whatever else runs on the machine
    clock = time.process_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_size), generator=g).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for cl in ((False, True) if r % 2 == 0 else (True, False)):  # alternate the order: no format always goes first
            times[cl].append(time_train_steps(build(), x, y, steps=steps, warmup=warmup, channels_last=cl, clock=clock))
    model = build()
    share = conv_flop_share(model, input_size)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return ProbeResult(
        contiguous_s=med[False],
        channels_last_s=med[True],
        rounds=rounds,
        steps=steps,
        conv_flop_share=share,
        rule_choice=channels_last_for(model, input_size),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
