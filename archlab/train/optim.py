"""Optimizers and learning-rate schedules behind one uniform interface.

:func:`build_optimizer` makes ``adam``, ``adamw`` or ``sgd``. :func:`build_scheduler` wraps a
``torch.optim.lr_scheduler`` in a :class:`SchedulerWrapper`, so the training loop never needs to
know which schedule runs:

.. code-block:: python

    for epoch in range(epochs):
        for batch in loader:
            ...; optimizer.step(); sched.step_batch()
        sched.step_epoch(val_metrics[sched.monitor] if sched.monitor else None)

Per-step schedules (``cosine_restarts``, ``onecycle``) move on every optimizer step; per-epoch
schedules (``step``, ``plateau``) on every epoch; the other call is a no-op. ``plateau`` reads the
*validation* metric only (SPEC §1: model selection never sees the test split).

References:
    - ``cosine_restarts``: Loshchilov & Hutter 2017, "SGDR"; seed 000 restarts every 10 epochs.
    - ``onecycle``: Smith & Topin 2019, "Super-convergence".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as lrs

from archlab.errors import CheckpointError, ConfigError, UnknownNameError
from archlab.train.metrics import metric_mode

__all__ = [
    "SchedulerWrapper",
    "build_optimizer",
    "build_scheduler",
    "list_optimizers",
    "list_schedulers",
]

_OPTIMIZERS = ("adam", "adamw", "sgd")


def list_optimizers() -> list[str]:
    """Names accepted by :func:`build_optimizer`."""
    return sorted(_OPTIMIZERS)


def _positive(kind: str, name: str, value: Any, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{kind} option {name}={value!r} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{kind} option {name}={value!r} must be "
                          f"{'>= 0' if allow_zero else '> 0'}")


def build_optimizer(name: str, params: Iterable[Any], *, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9, nesterov: bool = False,
                    betas: tuple[float, float] = (0.9, 0.999), fused: bool = False) -> Optimizer:
    """Build an optimizer by name.

    ``momentum``/``nesterov`` apply to ``sgd`` only, ``betas`` to ``adam``/``adamw`` only; the
    others ignore them (``nesterov=True`` with an Adam optimizer is an error, being surely a
    mistake). ``weight_decay`` is L2 added to the gradient for ``adam``/``sgd`` and decoupled
    decay for ``adamw``; it defaults to 0 for all three (torch's AdamW default is 0.01).

    Args:
        name: ``adam``, ``adamw`` or ``sgd``.
        params: parameters or parameter groups (as for any torch optimizer).
        lr: learning rate (> 0).
        weight_decay: weight decay (>= 0).
        momentum: SGD momentum in [0, 1).
        nesterov: Nesterov momentum for SGD (needs ``momentum > 0``).
        betas: Adam coefficients, each in [0, 1).
        fused: torch's fused implementation (one kernel updates every parameter; CPU and CUDA):
            the same update up to float rounding, about 3x faster than the per-tensor loop on CPU
            (``train.fused_optimizer``, resolved by :func:`archlab.train.speed.resolve_speed_options`).

    Returns:
        The torch optimizer.

    Raises:
        UnknownNameError: unknown optimizer name.
        ConfigError: a value out of range or a combination that does not make sense.
    """
    if name not in _OPTIMIZERS:
        raise UnknownNameError("optimizer", name, _OPTIMIZERS)
    _positive("optimizer", "lr", lr)
    _positive("optimizer", "weight_decay", weight_decay, allow_zero=True)
    if name == "sgd":
        _positive("optimizer", "momentum", momentum, allow_zero=True)
        if momentum >= 1:
            raise ConfigError(f"optimizer option momentum={momentum!r} must be < 1")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9) or "
                              "nesterov=False")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=bool(nesterov),
                               weight_decay=weight_decay, **({"fused": True} if fused else {}))
    if nesterov:
        raise ConfigError(f"nesterov=True applies to sgd only, not to {name!r}; "
                          "set nesterov=False")
    betas = tuple(betas)  # type: ignore[assignment]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"optimizer option betas={betas!r} must be two numbers in [0, 1)")
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=betas, weight_decay=weight_decay, **({"fused": True} if fused else {}))


class SchedulerWrapper:
    """A learning-rate schedule with a uniform per-step / per-epoch interface.

    Args:
        name: the schedule's name (recorded in the state dict).
        optimizer: the optimizer whose learning rates it sets.
        scheduler: the wrapped torch scheduler, ``None`` for a constant learning rate.
        per_batch: True when the torch scheduler moves on optimizer steps, False on epochs.
        monitor: for ``plateau``, the validation metric :meth:`step_epoch` must be given.
        total_steps: the last optimizer step the schedule is defined for (``onecycle``); later
            :meth:`step_batch` calls keep the final learning rate.

    Attributes:
        batch_steps: optimizer steps seen so far.
        epochs_done: epochs seen so far.
    """

    def __init__(self, name: str, optimizer: Optimizer, scheduler: Any | None, *,
                 per_batch: bool, monitor: str | None = None, total_steps: int | None = None):
        self.name = name
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.per_batch = per_batch
        self.monitor = monitor
        self.total_steps = total_steps
        self.batch_steps = 0
        self.epochs_done = 0

    @property
    def lr(self) -> float:
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        """Advance after one optimizer step (moves per-step schedules)."""
        self.batch_steps += 1
        if self.scheduler is None or not self.per_batch:
            return
        if self.total_steps is not None and self.batch_steps >= self.total_steps:
            return  # OneCycleLR is only defined for total_steps - 1 steps; stay at the end
        self.scheduler.step()

    def step_epoch(self, val_metric: float | None = None) -> None:
        """Advance after one epoch (moves per-epoch schedules).

        Args:
            val_metric: the monitored *validation* metric (required by ``plateau``, ignored by
                the others).

        Raises:
            ConfigError: ``plateau`` called without ``val_metric``.
        """
        self.epochs_done += 1
        if self.scheduler is None or self.per_batch:
            return
        if isinstance(self.scheduler, lrs.ReduceLROnPlateau):
            if val_metric is None:
                what = repr(self.monitor) if self.monitor else "metric"
                raise ConfigError(f"scheduler 'plateau' needs the validation {what} each "
                                  "epoch: call step_epoch(val_metric)")
            self.scheduler.step(float(val_metric))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """Counters and the wrapped scheduler's state (plain types; ``weights_only`` loadable)."""
        return {
            "name": self.name,
            "batch_steps": self.batch_steps,
            "epochs_done": self.epochs_done,
            "scheduler": {} if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (load the optimizer's state dict as well).

        Raises:
            CheckpointError: the state belongs to another schedule.
        """
        if state.get("name") != self.name:
            raise CheckpointError(f"scheduler state is for {state.get('name')!r}, but this run "
                                  f"uses {self.name!r}; resume with the checkpoint's config")
        self.batch_steps = int(state["batch_steps"])
        self.epochs_done = int(state["epochs_done"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def __repr__(self) -> str:
        return (f"SchedulerWrapper({self.name!r}, lr={self.lr:.6g}, "
                f"batch_steps={self.batch_steps}, epochs_done={self.epochs_done})")


def _int_opt(name: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"scheduler option {name}={value!r} must be an integer >= {lo}")
    return value


def _make_none(opt: Optimizer, epochs: int, spe: int) -> SchedulerWrapper:
    return SchedulerWrapper("none", opt, None, per_batch=False)


def _make_cosine_restarts(opt: Optimizer, epochs: int, spe: int, period: int = 10,
                          T_mult: int = 1, eta_min: float = 0.0) -> SchedulerWrapper:
    _int_opt("period", period)
    _int_opt("T_mult", T_mult)
    _positive("scheduler", "eta_min", eta_min, allow_zero=True)
    # The period is counted in optimizer steps (period * steps_per_epoch), so the learning rate
    # falls smoothly within an epoch; identical to stepping with fractional epochs.
    sched = lrs.CosineAnnealingWarmRestarts(opt, T_0=period * spe, T_mult=T_mult,
                                            eta_min=eta_min)
    return SchedulerWrapper("cosine_restarts", opt, sched, per_batch=True)


def _make_plateau(opt: Optimizer, epochs: int, spe: int, monitor: str | None = None,
                  mode: str | None = None, factor: float = 0.1, patience: int = 10,
                  threshold: float = 1e-4, min_lr: float = 0.0,
                  cooldown: int = 0) -> SchedulerWrapper:
    if mode is not None and mode not in ("min", "max"):
        raise ConfigError(f"scheduler option mode={mode!r} must be 'min' or 'max'")
    if monitor is None and mode is None:
        monitor = "loss"
    if monitor is not None:
        derived = metric_mode(monitor)  # val loss goes down, accuracy up
        if mode is not None and mode != derived:
            raise ConfigError(f"plateau: mode={mode!r} contradicts monitor={monitor!r}, which "
                              f"is better {'higher' if derived == 'max' else 'lower'}; drop mode")
        mode = derived
    _positive("scheduler", "factor", factor)
    if factor >= 1:
        raise ConfigError(f"scheduler option factor={factor!r} must be < 1")
    _int_opt("patience", patience, lo=0)
    _int_opt("cooldown", cooldown, lo=0)
    _positive("scheduler", "threshold", threshold, allow_zero=True)
    _positive("scheduler", "min_lr", min_lr, allow_zero=True)
    sched = lrs.ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience,
                                  threshold=threshold, min_lr=min_lr, cooldown=cooldown)
    return SchedulerWrapper("plateau", opt, sched, per_batch=False, monitor=monitor)


def _make_step(opt: Optimizer, epochs: int, spe: int, step_size: int = 30,
               gamma: float = 0.1) -> SchedulerWrapper:
    _int_opt("step_size", step_size)  # default 30 epochs, gamma 0.1: torchvision's recipe
    _positive("scheduler", "gamma", gamma)
    return SchedulerWrapper("step", opt, lrs.StepLR(opt, step_size=step_size, gamma=gamma),
                            per_batch=False)


def _make_onecycle(opt: Optimizer, epochs: int, spe: int, max_lr: float | None = None,
                   pct_start: float = 0.3, div_factor: float = 25.0,
                   final_div_factor: float = 1e4, anneal_strategy: str = "cos",
                   cycle_momentum: bool = True, three_phase: bool = False) -> SchedulerWrapper:
    if max_lr is None:  # peak at the optimizer's configured learning rate(s)
        peak: float | list[float] = [float(g["lr"]) for g in opt.param_groups]
    else:
        _positive("scheduler", "max_lr", max_lr)
        peak = float(max_lr)
    if not 0 < pct_start < 1:
        raise ConfigError(f"scheduler option pct_start={pct_start!r} must be in (0, 1)")
    _positive("scheduler", "div_factor", div_factor)
    _positive("scheduler", "final_div_factor", final_div_factor)
    if anneal_strategy not in ("cos", "linear"):
        raise ConfigError(f"scheduler option anneal_strategy={anneal_strategy!r} must be "
                          "'cos' or 'linear'")
    total = epochs * spe
    if total < 2:
        raise ConfigError(f"onecycle needs at least 2 optimizer steps, got epochs * "
                          f"steps_per_epoch = {total}")
    sched = lrs.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=pct_start,
                           div_factor=div_factor, final_div_factor=final_div_factor,
                           anneal_strategy=anneal_strategy, cycle_momentum=bool(cycle_momentum),
                           three_phase=bool(three_phase))
    return SchedulerWrapper("onecycle", opt, sched, per_batch=True, total_steps=total)


_SCHEDULERS = {
    "none": (_make_none, ()),
    "cosine_restarts": (_make_cosine_restarts, ("period", "T_mult", "eta_min")),
    "plateau": (_make_plateau,
                ("monitor", "mode", "factor", "patience", "threshold", "min_lr", "cooldown")),
    "step": (_make_step, ("step_size", "gamma")),
    "onecycle": (_make_onecycle, ("max_lr", "pct_start", "div_factor", "final_div_factor",
                                  "anneal_strategy", "cycle_momentum", "three_phase")),
}


def list_schedulers() -> list[str]:
    """Names accepted by :func:`build_scheduler`."""
    return sorted(_SCHEDULERS)


def build_scheduler(name: str, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int,
                    **kw: Any) -> SchedulerWrapper:
    """Build a learning-rate schedule by name.

    Schedules and options (defaults in brackets):

    - ``none``: constant learning rate.
    - ``cosine_restarts``: SGDR, stepped every optimizer step; ``period`` in epochs [10, seed
      000], ``T_mult`` [1], ``eta_min`` [0].
    - ``plateau``: multiply by ``factor`` [0.1] after ``patience`` [10] epochs without
      improvement of the validation metric ``monitor`` ["loss"]; the direction comes from
      :func:`archlab.train.metrics.metric_mode` (``mode`` "min"/"max" may be given instead of
      ``monitor``, or with it when they agree). Also ``threshold`` [1e-4, relative],
      ``min_lr`` [0], ``cooldown`` [0].
    - ``step``: multiply by ``gamma`` [0.1] every ``step_size`` [30] epochs.
    - ``onecycle``: over ``epochs * steps_per_epoch`` optimizer steps; ``max_lr`` [the
      optimizer's lr], ``pct_start`` [0.3], ``div_factor`` [25], ``final_div_factor`` [1e4],
      ``anneal_strategy`` ["cos"], ``cycle_momentum`` [True], ``three_phase`` [False].

    Build the scheduler right after the optimizer and before loading a checkpoint into either
    (``onecycle`` sets the optimizer's learning rate when built).

    Args:
        name: schedule name.
        optimizer: the optimizer to drive.
        epochs: number of training epochs (>= 1).
        steps_per_epoch: optimizer steps per epoch (>= 1).
        **kw: options of the chosen schedule.

    Returns:
        The :class:`SchedulerWrapper`.

    Raises:
        UnknownNameError: unknown schedule name, or a ``monitor`` that is no metric.
        ConfigError: an option the schedule does not take, or a value out of range.
    """
    if name not in _SCHEDULERS:
        raise UnknownNameError("scheduler", name, _SCHEDULERS)
    _int_opt("epochs", epochs)
    _int_opt("steps_per_epoch", steps_per_epoch)
    factory, allowed = _SCHEDULERS[name]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        opts = ", ".join(allowed) if allowed else "none"
        raise ConfigError(f"scheduler {name!r} has no option {unknown[0]!r}; its options: {opts}")
    return factory(optimizer, epochs, steps_per_epoch, **kw)
