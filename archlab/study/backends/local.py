"""The local executor: a study's runs in worker processes on this machine (SPEC §5, §11).

The only module of archlab that knows about processes. It holds

- the start method: workers fork from a fork server that imported torch, archlab and the training
  engine once (:data:`WORKER_PRELOAD`), so a worker is ready in milliseconds instead of a spawned
  interpreter's seconds of imports; the server starts before the study process imports torch
  (``archlab study run`` calls :func:`start_worker_server` first), so the two import side by side;
- the pool (:class:`Pool`): started in the background (:meth:`LocalExecutor.warm`) while the
  study process runs its preflight, kept across the rounds of adaptive seeds; each worker loads the
  study's first dataset when it starts, takes the study's environment and working folder, and dies
  with the study process (kill -9 included);
- the preflight's optimizer check in the workers (:meth:`LocalExecutor.check_optimizers`: a torch
  optimizer imports ``torch._dynamo``, which the fork server holds already);
- the round loop (:meth:`LocalExecutor.run`), which survives a worker killed from outside: the
  pool is rebuilt and each run it took down is retried alone, resuming from its checkpoint.

This module imports nothing heavy at import time: the CLI imports it before torch to start the
fork server. The torch-backed modules it calls (the run itself, the preflight's optimizer check)
are therefore imported inside the functions that use them, marked so.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from multiprocessing.connection import wait as wait_for
from typing import Any

from archlab.errors import ArchlabError, ConfigError, with_context
from archlab.plugins import ensure_plugins
from archlab.study.backends.base import Executor, OnFinish, OnStart, Outcome, RunTask

__all__ = [
    "LocalExecutor", "Pool", "WORKER_PRELOAD", "MAX_WORKER_DEATHS", "worker_context", "start_worker_server",
    "execute_in_worker", "adopt_context", "prepare_report", "choose_workers", "choose_threads",
]

log = logging.getLogger(__name__)

MAX_WORKER_DEATHS = 2  # a run whose worker is killed this often while running alone is failed

#: What every worker needs before its first step, imported once by the fork server: workers fork
#: from it ready to train instead of each importing torch, archlab and the ``torch._dynamo`` that
#: torch.optim's constructor imports (about 2.3 s per spawned worker on a 2-core machine).
WORKER_PRELOAD = ("torch", "archlab.models", "archlab.heads", "archlab.study.execute", "archlab.train.engine",
                  "archlab.analysis.flops", "torch._dynamo", "archlab.study.backends._fork_server")


def choose_threads(workers: int) -> int:
    """Torch threads that ``workers`` parallel runs can each use on this machine (at least one).

    Not used to set a run's thread count (that is ``train.threads``, part of the run's config);
    kept for benchmarks that compare schedules.
    """
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def choose_workers(runs: int, threads: int = 1) -> int:
    """Worker processes for ``workers="auto"``: as many ``threads``-thread runs as there are cores.

    Runs of a study are independent, so running them side by side scales with the cores, while one
    run's small convolutions and matmuls use a second intra-op thread poorly. bench/study.py, 2
    cores: the quickstart's 15 runs (5 heads x 3 seeds) took 36.6 s this way vs 53.8 s in one
    process with 2 threads. Workers fork from a preloaded fork server (:func:`worker_context`)
    started before the study process imports torch, so their start-up overlaps the study's own
    (measured with spawned workers, which cost a few seconds each: a study of a few one-second runs
    was faster in one process on an idle machine, 6 such runs 9.9 s vs 6.7 s, and slower on a busy
    one, 13.8 s vs 50.6 s at load average 4-6). The choice changes only the schedule, never a
    result: every run uses its config's thread count.
    """
    return max(1, min((os.cpu_count() or 1) // max(1, threads), runs))


# ------------------------------------------------------------------------------------------------
# Worker processes


def adopt_context(env: dict[str, str] | None, cwd: str | None) -> None:
    """Take the study process's environment and working folder (what a spawned child inherits)."""
    if env is not None and env != os.environ:
        os.environ.clear()
        os.environ.update(env)
    if cwd is not None and cwd != os.getcwd():  # relative data and run paths resolve as in the study
        os.chdir(cwd)


def _init_worker(parent_pid: int, data_jsons: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 cwd: str | None = None, plugins: tuple[dict[str, str], ...] = ()) -> None:
    """Worker set-up: leave Ctrl-C to the study process, and die with it.

    Workers leave Ctrl-C to the study process, which stops them (:meth:`LocalExecutor.kill`). If
    the study process is killed (kill -9), a worker notices at once, whether it is training (the
    per-step watchdog of :func:`execute_in_worker` also checks) or idle, waiting for its next task:
    an idle worker blocks on the task queue, which a dead parent never closes for it. The study
    process is watched through the sentinel multiprocessing gives every child (a pipe that closes
    when it dies): a worker forked by the fork server is not the study process's child, so its
    parent pid says nothing.
    """
    # torch-backed; imported here, in the worker (the fork server preloaded it), never at import time
    from archlab.study.execute import load_splits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    adopt_context(env, cwd)  # the study process's environment and folder, as a spawned child has them
    parent = mp.parent_process()

    def watch() -> None:
        if parent is not None:
            wait_for([parent.sentinel])
        else:  # not started by multiprocessing (never the case in a pool): poll the pid
            while os.getppid() == parent_pid:
                time.sleep(0.2)
        os._exit(3)

    threading.Thread(target=watch, name="archlab-parent-watch", daemon=True).start()

    try:  # the study's plugins, after the fork server's preload (each run checks them again)
        ensure_plugins(plugins, "worker")
    except ArchlabError:  # the first run reports it, with its context
        pass
    for data_json in data_jsons:  # the study's datasets, loaded before the first run arrives
        try:
            load_splits(data_json)
        except Exception:  # noqa: BLE001 - the run that needs it reports the error with its context
            pass


def execute_in_worker(config_json: str, out: str, owner: dict[str, Any] | None, env: dict[str, str],
                      cwd: str | None = None) -> Outcome:
    """:func:`archlab.study.execute.execute_run` in a worker process of the study's pool.

    ``env`` and ``cwd`` are the study process's environment and working folder when the run was
    submitted: a worker forked by the fork server would otherwise keep those the server started
    with (spawn semantics: a run sees the environment and relative paths of the study as it starts).
    A worker whose study process has died (kill -9) exits at the run's next step instead of racing
    the run's next attempt.
    """
    # torch-backed; imported here, in the worker (the fork server preloaded it), never at import time
    from archlab.study.execute import execute_run

    adopt_context(env, cwd)
    parent = mp.parent_process()

    def watchdog() -> None:
        if parent is not None and not parent.is_alive():
            os._exit(3)

    return execute_run(config_json, out, owner, watchdog=watchdog)


def worker_context():
    """The start method of worker processes: a fork server holding :data:`WORKER_PRELOAD` where the
    platform has one (Linux, macOS), else spawn.

    Never plain fork: forking the study process after torch/OpenMP started threads can deadlock.
    The fork server is a fresh single-threaded interpreter that only imported modules, so its
    children start clean. Their environment and working folder are the study process's at submit time
    (:func:`execute_in_worker`), as with spawn.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        return ctx
    return mp.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now, so its imports overlap the study process's preflight."""
    if worker_context().get_start_method() == "forkserver":
        forkserver.ensure_running()


class Pool:
    """The study's worker processes, started once and kept across rounds of adaptive seeds.

    Args:
        data_jsons: the study's dataset configs; each worker loads them when it starts.
    """

    def __init__(self, data_jsons: Sequence[str] | None = None,
                 plugins: Sequence[dict[str, str]] = ()) -> None:
        self.executor: ProcessPoolExecutor | None = None
        self.workers = 0
        self.data_jsons = tuple(data_jsons or ())
        self.plugins = tuple(plugins)
        self._warming: threading.Thread | None = None

    def warm(self, workers: int) -> None:
        """Start ``workers`` processes in the background (they import and load the data while the
        study process prepares); :meth:`get` waits for that start."""

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
                max_workers=workers, mp_context=worker_context(), initializer=_init_worker,
                initargs=(os.getpid(), self.data_jsons, dict(os.environ), os.getcwd(), self.plugins),
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
        """Let the workers finish their tasks and exit."""
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

    def load() -> None:
        try:
            import archlab.study.report  # noqa: F401  - a background import, the point of this function
        except Exception:  # noqa: BLE001 - the report itself raises it, with its context
            pass

    threading.Thread(target=load, name="archlab-report-import", daemon=True).start()


# ------------------------------------------------------------------------------------------------
# The executor


class LocalExecutor(Executor):
    """Runs a study's rounds on a pool of local worker processes.

    Args:
        workers: worker processes, or ``"auto"`` (:func:`choose_workers` for each round's runs).
        data_jsons: dataset configs every worker loads when it starts (the first runs' data).
        plugins: the study's plugin records (:mod:`archlab.plugins`), imported by every worker at start.

    A round that one process serves (a single run, or ``"auto"`` on one core) runs in the study
    process (:class:`archlab.study.backends.inline.InlineExecutor`).
    """

    def __init__(self, workers: int | str, data_jsons: Sequence[str] = (),
                 plugins: Sequence[dict[str, str]] = ()) -> None:
        self.workers = workers
        self.pool = Pool(data_jsons, plugins)
        self.checks_optimizers = False

    def _size(self, runs: int, threads: int) -> int:
        return choose_workers(runs, threads) if self.workers == "auto" else int(self.workers)

    def warm(self, runs: int, threads: int) -> None:
        """Start the workers that ``runs`` runs need now, beside the preflight (nothing for one run)."""
        if runs > 1:
            self.pool.warm(self._size(runs, threads))
            self.checks_optimizers = True

    def check_optimizers(self, checks: Sequence[tuple[str, Any]]) -> None:
        """Build each config's optimizer and scheduler in a worker; in this process where none can.

        The workers are up by now (or nearly): their fork server started before this process. A
        broken pool (a worker killed) cannot take a check: that config is checked here instead.

        Raises:
            ArchlabError: the first config that cannot be built, with its ``where`` named.
        """
        # torch-backed; imported when the preflight runs, never when the CLI imports this module
        from archlab.study.execute import load_splits
        from archlab.train.preflight import check_optimization, check_optimization_in_worker

        futures = [(where, cfg, self._submit_quietly(check_optimization_in_worker, cfg.model_dump_json()))
                   for where, cfg in checks]
        for where, cfg, fut in futures:
            try:
                error = fut.result() if fut is not None else None
            except Exception:  # noqa: BLE001 - the pool broke (a worker killed): checked here below
                fut = None
            if fut is None:
                try:
                    check_optimization(cfg, load_splits(cfg.data.model_dump_json()))
                except ArchlabError as exc:
                    raise with_context(exc, where) from None
            elif error is not None:
                raise ConfigError(f"{where}: {error}")

    def _submit_quietly(self, fn: Callable[..., Any], *args: Any) -> Future | None:
        """``fn(*args)`` submitted to the pool, or None when the pool cannot take it (a worker was killed)."""
        try:
            return self.pool.get().submit(fn, *args)
        except Exception:  # noqa: BLE001 - the caller does the work itself
            return None

    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        """Run a round: on ``workers`` processes, or in this process when one is all it takes."""
        # torch-backed (the run itself); imported when a round runs, never when the CLI imports this module
        from archlab.study.backends.inline import InlineExecutor

        n = self._size(len(tasks), max((t.threads for t in tasks), default=1))
        if n == 1 or len(tasks) <= 1:
            InlineExecutor().run(tasks, on_start, on_finish)
        else:
            self._run_parallel(list(tasks), n, on_start, on_finish)

    def _run_parallel(self, tasks: list[RunTask], workers: int, on_start: OnStart, on_finish: OnFinish) -> None:
        """Run ``tasks`` on ``workers`` worker processes; a worker killed from outside is survived.

        A worker killed from outside (the OOM killer, kill -9) breaks the whole process pool, and every
        run in flight comes back with ``BrokenProcessPool`` although only one of them was killed. Those
        runs become suspects: the pool is rebuilt and each suspect runs again *alone*, resuming from its
        last checkpoint. A suspect whose worker dies while it runs alone is the cause: after
        :data:`MAX_WORKER_DEATHS` such deaths it is recorded failed ("worker killed"); the others go on.
        An exception here (Ctrl-C, a database error in ``on_finish``) leaves the workers to
        :meth:`kill`, which the runner's ``with`` block calls.
        """
        warmed = False
        pending = list(tasks)
        suspects: list[RunTask] = []
        deaths: dict[int, int] = {}
        running: dict[Future, RunTask] = {}
        pool = self.pool.get(workers)

        def submit(t: RunTask) -> None:
            on_start(t)
            running[pool.submit(execute_in_worker, t.config_json, t.out, t.owner, dict(os.environ), os.getcwd())] = t

        while pending or suspects or running:
            if suspects:  # isolate: one suspect at a time, nothing beside it
                if not running:
                    submit(suspects.pop(0))
            else:
                while pending and len(running) < workers:
                    submit(pending.pop(0))
            if not warmed and not pending and not suspects and len(running) < workers:
                warmed = True  # a core is idle until the last runs end: import the report's libraries there
                prepare_report()
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                t = running.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if not running and len(done) == 1:  # it ran alone: its own run killed it
                        deaths[t.run_id] = deaths.get(t.run_id, 0) + 1
                    if deaths.get(t.run_id, 0) >= MAX_WORKER_DEATHS:
                        on_finish(t, {"ok": False, "error": (
                            f"worker killed: the process training this run died {deaths[t.run_id]} times while it "
                            "ran alone (killed from outside, e.g. by the out-of-memory killer); lower batch_size or "
                            "run fewer workers, then --retry-failed")})
                    else:
                        log.warning("a worker process died; run %s will be resumed", t.key.label)
                        suspects.append(t)
                    continue
                except Exception as exc:  # the result could not come back (pickling, ...)
                    outcome = {"ok": False, "error": f"worker error: {type(exc).__name__}: {exc}"}
                on_finish(t, outcome)
            if broken:
                for fut, t in list(running.items()):  # the rest of the broken pool's runs
                    running.pop(fut)
                    suspects.append(t)
                pool = self.pool.renew()

    def close(self) -> None:
        self.pool.close()

    def kill(self) -> None:
        self.pool.kill()
