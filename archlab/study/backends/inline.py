"""The inline executor: every run in the study process, one after another (``--workers 1``).

Also the executor of a round that one process serves (one run, or one worker's worth of cores):
:class:`archlab.study.backends.local.LocalExecutor` hands such a round here.
"""

from __future__ import annotations

from collections.abc import Sequence

from archlab.study.backends.base import Executor, OnFinish, OnStart, RunTask
from archlab.study.execute import execute_run

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs each task in this process, in order (no worker process, nothing to stop)."""

    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        for t in tasks:
            on_start(t)
            on_finish(t, execute_run(t.config_json, t.out, t.owner))
