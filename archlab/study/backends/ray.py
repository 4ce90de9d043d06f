"""Running a study's runs as Ray tasks (``archlab study run FILE --ray ADDRESS``, SPEC §10).

:class:`RayExecutor` follows the executor protocol of :mod:`archlab.study.backends.base`. Each run
is one Ray task that trains it with the same code as a local worker
(:func:`archlab.study.execute.execute_run`) and returns the result dict; the driver (the process that
called :func:`archlab.study.runner.run_study`) records it, so only the driver writes SQLite.

Fault handling:
- A worker or node lost mid-run: Ray runs the task again (``max_retries``); since run folders live
  on a path every node sees, the retry resumes from the run's last checkpoint. When the retries are
  used up the run is recorded failed with Ray's reason.
- An error inside a run (NaN loss, an exception) is not retried: it comes back as the run's failure
  record, exactly as with local workers.
- Ctrl-C on the driver cancels the tasks in flight; the runner puts those runs back to ``pending``.

Requirements on a real cluster: archlab installed on every node, and the study folder (and any
relative data path, which is resolved against the driver's working directory) on a shared file
system mounted at the same path everywhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError
from archlab.study.backends.base import Executor, OnFinish, OnStart, RunTask
from archlab.study.execute import execute_run

__all__ = ["MAX_RETRIES", "require_ray", "RayExecutor"]

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # reruns of a run whose worker died (each resumes from the last checkpoint)


def require_ray() -> None:
    """Raise a :class:`ConfigError` with the install command when Ray is not importable."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "--ray needs the Ray package, which is not installed: .venv/bin/pip install -e '.[ray]' in the archlab "
            "clone (or pip install 'ray>=2.9')"
        )


def _ray_execute(config_json: str, out: str, owner: dict[str, Any], cwd: str) -> dict[str, Any]:
    """The task body: train one run on a Ray worker (named so in ``ps``: ``ray::_ray_execute``)."""
    if os.path.isdir(cwd):  # relative data paths mean the driver's folder (on a shared file system)
        os.chdir(cwd)
    return execute_run(config_json, out, owner)


def _connect(address: str) -> bool:
    """Connect to ``address`` (``"local"``: a new local instance); True if this call started Ray."""
    import ray

    if ray.is_initialized():  # e.g. a test or a notebook that called ray.init itself
        return False
    try:
        if address == "local":  # always a new instance, never one found on this machine
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); "
            "give the head's address (e.g. ray://host:10001 or host:6379, or 'auto' on a cluster node) "
            "or 'local' to start a local instance"
        ) from None
    return True


class RayExecutor(Executor):
    """Executes each round's runs as Ray tasks on the cluster at ``address`` (``"local"``: a new local instance).

    Args:
        address: the cluster address, or ``"local"``.
        max_retries: Ray reruns of a task whose worker process or node died.

    Each task asks Ray for as many CPUs as its run's ``train.threads`` and trains with that many
    torch threads; at most as many runs are in flight as the cluster has CPUs. Every task's ``out``
    folder must be reachable from every node.
    """

    def __init__(self, address: str, max_retries: int = MAX_RETRIES) -> None:
        require_ray()
        self.address = address
        self.max_retries = max_retries

    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        """Execute ``tasks`` as Ray tasks; ``on_start``/``on_finish`` are called on the driver, in order.

        Ctrl-C or a database error on the driver stops what runs here (Ray's own shutdown or a
        cooperative cancel), so :meth:`kill` has nothing left to do.
        """
        # Ray is optional (archlab[ray]) and slow to import: only a study run with --ray imports it
        import ray
        from ray.exceptions import RayError

        started_here = _connect(self.address)
        remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(_ray_execute)
        cwd = os.getcwd()
        pending = [(t, t.threads) for t in tasks]
        running: dict[Any, tuple[RunTask, int]] = {}
        try:
            capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
            largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
            too_big = sorted({cpus for _, cpus in pending if cpus > largest})
            if too_big:  # such a task would wait forever for a node that big
                raise ConfigError(
                    f"train.threads={too_big[-1]} asks every Ray task for {too_big[-1]} CPUs, but the largest node "
                    f"of the cluster at {self.address!r} has {largest}; lower train.threads or add bigger nodes"
                )
            used = 0
            while pending or running:
                while pending and (not running or used + pending[0][1] <= capacity):
                    t, cpus = pending.pop(0)
                    on_start(t)
                    ref = remote.options(num_cpus=cpus).remote(t.config_json, str(Path(t.out).resolve()), t.owner, cwd)
                    running[ref] = (t, cpus)
                    used += cpus
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    t, cpus = running.pop(ref)
                    used -= cpus
                    try:
                        outcome = ray.get(ref)
                    except RayError as exc:  # the retries are used up (worker or node lost)
                        why = (str(exc).strip().splitlines() or [""])[0]
                        outcome = {"ok": False, "error": f"Ray task lost after {self.max_retries} retries: {type(exc).__name__}: {why}"}
                    on_finish(t, outcome)
        except BaseException:  # Ctrl-C or a database error on the driver: stop what runs
            # A local instance is stopped whole by ray.shutdown() below (its workers die with it).
            # Force-cancelling a task that is finishing at that moment can abort the driver inside
            # Ray's core (seen with ray 2.60: "Tried to complete task that was not pending"), so on a
            # cluster only the tasks not yet done are cancelled, cooperatively (KeyboardInterrupt in
            # the task; the run's last checkpoint stays resumable).
            if not started_here and running:
                _, not_done = ray.wait(list(running), num_returns=len(running), timeout=0)
                for ref in not_done:
                    ray.cancel(ref, force=False)
            raise
        finally:
            if started_here:
                ray.shutdown()
