"""The study's worker processes: start method, start-up and the pool (SPEC §5, §11).

Workers fork from a fork server that imported torch, archlab and the training engine once
(:data:`WORKER_PRELOAD`), so a worker is ready in milliseconds instead of a spawned interpreter's
seconds of imports; the server starts before the study process imports torch (``archlab study
run`` calls :func:`start_worker_server` first), so the two import side by side. Each worker loads
the study's datasets when it starts, and dies with the study process (kill -9 included).

This module imports nothing heavy: the CLI uses it before torch is loaded.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["Pool", "WORKER_PRELOAD", "start_worker_server", "prepare_report"]


def _init_worker(parent_pid: int, data_jsons: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
    """Worker set-up: leave Ctrl-C to the study process, and die with it.

    Workers leave Ctrl-C to the study process, which stops them (see _run_parallel). If the study
    process is killed (kill -9), a worker notices at once, whether it is training (the per-step
    watchdog of :func:`archlab.study.execute.execute_run` also checks) or idle, waiting for its
    next task: an idle worker blocks on the task queue, which a dead parent never closes for it.
    The study process is watched through the sentinel multiprocessing gives every child (a pipe
    that closes when it dies): a worker forked by the fork server is not the study process's child,
    so its parent pid says nothing.
    """
    import multiprocessing as mp
    import threading
    from multiprocessing.connection import wait as wait_for

    from archlab.study.execute import adopt_context, load_splits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    adopt_context(env, cwd)  # the study process's environment and folder, as a spawned child has them
    parent = mp.parent_process()

    def watch() -> None:
        if parent is not None:
            wait_for([parent.sentinel])
        else:  # not started by multiprocessing (never the case in a pool): poll the pid
            import time

            while os.getppid() == parent_pid:
                time.sleep(0.2)
        os._exit(3)

    threading.Thread(target=watch, name="archlab-parent-watch", daemon=True).start()

    for data_json in data_jsons:  # the study's datasets, loaded before the first run arrives
        try:
            load_splits(data_json)
        except Exception:  # noqa: BLE001 - the run that needs it reports the error with its context
            pass


#: What every worker needs before its first step, imported once by the fork server: workers fork
#: from it ready to train instead of each importing torch, archlab and the ``torch._dynamo`` that
#: torch.optim's constructor imports (about 2.3 s per spawned worker on a 2-core machine).
WORKER_PRELOAD = ("torch", "archlab.models", "archlab.heads", "archlab.study.execute", "archlab.train.engine",
                  "archlab.analysis.flops", "torch._dynamo", "archlab.study._fork_server")


def _worker_context():
    """The start method of worker processes: a fork server holding :data:`WORKER_PRELOAD` where the
    platform has one (Linux, macOS), else spawn.

    Never plain fork: forking the study process after torch/OpenMP started threads can deadlock.
    The fork server is a fresh single-threaded interpreter that only imported modules, so its
    children start clean. Their environment and working folder are the study process's at submit time
    (:func:`archlab.study.execute.execute_in_worker`), as with spawn.
    """
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        return ctx
    return mp.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now, so its imports overlap the study process's preflight."""
    ctx = _worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


class Pool:
    """The study's worker processes, started once and kept across rounds of adaptive seeds.

    Args:
        data_jsons: the study's dataset configs; each worker loads them when it starts.
    """

    def __init__(self, data_jsons: list[str] | None = None) -> None:
        self.executor: ProcessPoolExecutor | None = None
        self.workers = 0
        self.data_jsons = tuple(data_jsons or ())
        self._warming: Any = None  # the thread of warm(), if any

    def warm(self, workers: int) -> None:
        """Start ``workers`` processes in the background (they import and load the data while the
        study process prepares); :meth:`get` waits for that start."""
        import threading

        def start() -> None:
            start_worker_server()
            pool = self._create(workers)
            for _ in range(workers):  # each submit starts one more process, up to ``workers``
                pool.submit(os.getpid)

        if workers >= 2:
            self._warming = threading.Thread(target=start, name="archlab-worker-start", daemon=True)
            self._warming.start()

    def _wait_warm(self) -> None:
        if self._warming is not None:
            self._warming.join()
            self._warming = None

    def _create(self, workers: int) -> ProcessPoolExecutor:
        if self.executor is None or self.workers < workers:  # a larger pool serves fewer runs too
            self._shutdown()
            self.executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=_worker_context(), initializer=_init_worker,
                initargs=(os.getpid(), self.data_jsons, dict(os.environ), os.getcwd()),
            )
            self.workers = workers
        return self.executor

    def get(self, workers: int | None = None) -> ProcessPoolExecutor:
        """The pool, with at least ``workers`` processes (``None``: the pool as started)."""
        self._wait_warm()
        return self._create(workers or max(1, self.workers))

    def renew(self) -> ProcessPoolExecutor:
        """A fresh pool after the old one broke (a worker was killed)."""
        workers = self.workers
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        return self.get(workers)

    def kill(self) -> None:
        """Stop busy workers now (Ctrl-C); their runs resume from their last checkpoints."""
        self._wait_warm()
        if self.executor is not None:
            # the executor has no public way to stop busy workers, hence its private process table
            for proc in list((getattr(self.executor, "_processes", None) or {}).values()):
                proc.terminate()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    def close(self) -> None:
        self._wait_warm()
        self._shutdown()

    def _shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None


def prepare_report() -> None:
    """Import the report's libraries (scipy.stats, matplotlib: about a second) in a background thread.

    Called when the last runs of a study leave a core idle, so the report that follows them does
    not start with those imports. Only imports: nothing is computed or written.
    """
    import threading

    def load() -> None:
        try:
            import archlab.study.report  # noqa: F401
        except Exception:  # noqa: BLE001 - the report itself raises it, with its context
            pass

    threading.Thread(target=load, name="archlab-report-import", daemon=True).start()
