"""The executor protocol: what the runner hands a backend, and what the backend hands back (SPEC §10, §11).

The runner plans a round of runs and passes its :class:`RunTask` list to
:meth:`Executor.run` together with two callbacks, both called in the study process, in order:

- ``on_start(task)`` just before the task is handed to whatever executes it (the runner marks the
  run ``running``);
- ``on_finish(task, outcome)`` with the run's outcome, ``{"ok": True, "result": ...}`` or
  ``{"ok": False, "error": ...}``, as soon as it arrives (the runner stores it).

So the study process is the only writer of the study database whatever the backend. An executor
is a context manager: leaving the ``with`` block normally lets its workers finish
(:meth:`Executor.close`), leaving it by an exception (Ctrl-C, a database error, a refused config)
stops them at once (:meth:`Executor.kill`) — the one place the runner stops workers.

This module imports nothing heavy: :mod:`archlab.study.backends.local` builds on it and is
imported by the CLI before torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RunTask", "Outcome", "OnStart", "OnFinish", "Executor"]

#: A run's outcome: ``{"ok": True, "result": RunResult dict}`` or ``{"ok": False, "error": text}``.
Outcome = dict[str, Any]


@dataclass(frozen=True)
class RunTask:
    """One run to execute.

    Attributes:
        key: its grid cell (:class:`archlab.study.config.RunKey`).
        run_id: its row in the study database.
        config_json: its resolved config (:class:`archlab.train.config.TrainConfig` as JSON).
        out: its run folder.
        owner: the identity its folder carries (``owner.json``: study id and cell).
        threads: its config's ``threads`` (torch intra-op threads; CPUs a Ray task asks for).
    """

    key: Any
    run_id: int
    config_json: str
    out: str
    owner: dict[str, Any]
    threads: int = 1


OnStart = Callable[[RunTask], None]
OnFinish = Callable[[RunTask, Outcome], None]


class Executor(ABC):
    """Executes a study's runs: in the study process, in local worker processes, or on Ray.

    Subclasses implement :meth:`run`; those holding processes also :meth:`close` and :meth:`kill`.
    """

    #: True when :meth:`check_optimizers` builds the optimizers where the runs will train (the
    #: preflight then leaves that part to it).
    checks_optimizers: bool = False

    def warm(self, runs: int, threads: int) -> None:
        """Start, in the background, what ``runs`` runs of ``threads`` threads will need (default: nothing)."""

    def check_optimizers(self, checks: Sequence[tuple[str, Any]]) -> None:
        """Build the optimizer and scheduler of each ``(where, TrainConfig)`` (only when :attr:`checks_optimizers`).

        Raises:
            ArchlabError: the first that cannot be built, with ``where`` named.
        """
        raise NotImplementedError(f"{type(self).__name__} leaves the optimizer check to the preflight")

    @abstractmethod
    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        """Execute ``tasks``, calling ``on_start`` and ``on_finish`` for each in the study process."""

    def close(self) -> None:
        """Let the workers finish and release them (normal end of a study)."""

    def kill(self) -> None:
        """Stop every worker now; the runs in flight resume later from their last checkpoints."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.kill()
            return
        try:
            self.close()
        except BaseException:  # Ctrl-C while the workers finish: stop them instead
            self.kill()
            raise
