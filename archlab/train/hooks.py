"""Hooks: what the training loop does besides training, called at fixed points of :func:`~archlab.train.engine.fit`.

The loop calls, for every hook in order:

- ``on_start(run, state)`` once, before the first step;
- ``on_step(run, state)`` after every optimizer step;
- ``on_snapshot(run, state)`` every ``checkpoint_every_steps`` steps inside an epoch, once the
  partial sums and the time are written into ``state`` (a resume can start from it);
- ``on_epoch(run, state, row)`` after every epoch, with its history row; ``state`` is then the
  position of the next epoch (also a resume point);
- ``on_end(run, state)`` after the last epoch, before the test.

A hook must not change the run's numbers: no random draw, no tensor of the model touched in
place. The ones here: :class:`GateRecorder` (per-epoch gate values of a connected net),
:class:`TensorBoardCurves` (event files, a view only) and :class:`Callbacks` (progress bars, the
study's heartbeat). The run folder's checkpointing is :class:`archlab.train.engine.RunFolder`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.analysis.connections import read_gates
from archlab.layers.gated_connection import GatedConnection
from archlab.train.run import Run
from archlab.train.state import TrainState
from archlab.train.tensorboard import TensorBoardLogger, open_tensorboard

__all__ = ["BUDGET_PREFIX", "BudgetTests", "Callbacks", "GateRecorder", "Hook", "TensorBoardCurves"]

BUDGET_PREFIX = "budget_test_"  # history keys of the test metrics at a declared budget (epoch)


class Hook:
    """A hook that does nothing at every point; subclasses override the points they need."""

    def on_start(self, run: Run, state: TrainState) -> None:
        """Before the first step (after a resume: ``state`` is where training continues)."""

    def on_step(self, run: Run, state: TrainState) -> None:
        """After each optimizer step (``state.global_step`` counts it)."""

    def on_snapshot(self, run: Run, state: TrainState) -> None:
        """Inside an epoch, when ``state`` is complete (every ``checkpoint_every_steps`` steps)."""

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        """After each epoch; ``row`` is its history entry, ``state`` the next epoch's start."""

    def on_end(self, run: Run, state: TrainState) -> None:
        """After training, before the test split is evaluated."""


class GateRecorder(Hook):
    """Record the values of every :class:`~archlab.layers.gated_connection.GatedConnection` after each epoch.

    The snapshots go to ``state.gates`` (so a resumed run keeps the earlier epochs) and from there
    into the result's ``extras["gates"]``, which the connections analysis reads.
    """

    def __init__(self) -> None:
        self.active = False

    def on_start(self, run: Run, state: TrainState) -> None:
        self.active = any(isinstance(m, GatedConnection) for m in run.model.modules())

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        if self.active:
            state.gates.append(read_gates(run.model))


class TensorBoardCurves(Hook):
    """Per-epoch curves in ``run_dir/tensorboard`` when ``config.tensorboard`` is on (:mod:`archlab.train.tensorboard`).

    Args:
        run_dir: the run folder; ``None`` (an in-memory run) writes nothing.
    """

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir
        self.logger: TensorBoardLogger | None = None

    def on_start(self, run: Run, state: TrainState) -> None:
        self.logger = open_tensorboard(
            run.config, self.run_dir, start_epoch=state.epoch, main=run.processes.is_main
        )

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        if self.logger is not None:
            self.logger.log_epoch(row)

    def on_end(self, run: Run, state: TrainState) -> None:
        if self.logger is not None:
            self.logger.close()


class BudgetTests(Hook):
    """At each declared budget (``config.budgets``, epochs) evaluate the test split once, with the
    best-validation weights up to that epoch, into the epoch's history row (``budget_test_<metric>``).

    The model's current weights (and BatchNorm statistics) are put back afterwards and the pass
    draws nothing random, so training goes on exactly as without budgets. The row is written before
    the checkpoint saves it, so a resumed run keeps the earlier budgets' values. A budget after an
    early stop is the final test (:func:`archlab.study.budgets.budget_metrics`).
    """

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        if state.epoch not in run.config.budgets or run.test_loader is None:
            return
        current = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        was_training = run.model.training
        if state.best_weights is not None:
            run.model.load_state_dict(state.best_weights)
        metrics, _, _ = run.task.evaluate(run.model, run.test_loader, run.loss_fn, amp=run.precision.enabled,
                                          dist=run.processes.context)
        run.model.load_state_dict(current)
        run.model.train(was_training)
        row.update({BUDGET_PREFIX + k: float(v) for k, v in metrics.items()})


class Callbacks(Hook):
    """The caller's progress callbacks: ``on_step(global_step)`` and ``on_epoch(row)``.

    A callback that raises stops the run; the last checkpoint stays resumable.
    """

    def __init__(
        self,
        on_step: Callable[[int], Any] | None = None,
        on_epoch: Callable[[dict[str, float]], Any] | None = None,
    ):
        self.step_fn, self.epoch_fn = on_step, on_epoch

    def on_step(self, run: Run, state: TrainState) -> None:
        if self.step_fn is not None:
            self.step_fn(state.global_step)

    def on_epoch(self, run: Run, state: TrainState, row: dict[str, float]) -> None:
        if self.epoch_fn is not None:
            self.epoch_fn(row)
