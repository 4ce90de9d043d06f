"""Running a study: expand the grid, run what is not done, store everything (SPEC §5, §11).

Fairness by construction (what makes variants comparable):
- The split depends on the dataset entry's ``split_seed`` only, so every variant and seed of a
  dataset sees the same train/val/test split.
- For a given seed every variant gets the same batch order and the same augmentation draws: both
  are counter-based streams derived from ``(seed, epoch, step)`` (:mod:`archlab._seed`),
  independent of the model.
- Models are initialised from a stream derived from the seed, backbone first, so variants that
  share a backbone start from identical backbone weights.
- Every run of a study has the same schedule and number of epochs unless a variant explicitly
  overrides a training option (then that option is what the study varies).
- Selection (best epoch, early stopping, plateau) reads validation metrics; the engine evaluates
  the test split once per run, at the end.

Resumption: finished runs are skipped; an interrupted run (status ``running``) restarts from its
last checkpoint in ``DIR/runs/<dataset>/<variant>/seed<k>``; failed runs (NaN loss, an exception)
keep their reason and are retried only with ``retry_failed``. Only this process writes the
database; worker processes (or Ray tasks, :mod:`archlab.study.backends.ray`) send their results back.
Ctrl-C stops the workers and puts the runs in flight back to ``pending``: a re-run resumes them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ArchlabError, ConfigError, with_context
from archlab.study.config import RunKey, Study
from archlab.study.store import DB_NAME, StudyStore
from archlab.train.config import DataConfig, TrainConfig

__all__ = ["run_study", "StudyLock", "preflight", "run_dir", "choose_threads", "choose_workers"]

log = logging.getLogger(__name__)

Event = Callable[[str, RunKey, dict[str, Any]], None]


def run_dir(out: Path, key: RunKey) -> Path:
    """The folder of one run's checkpoints and result."""
    return out / "runs" / key.dataset / key.variant / f"seed{key.seed}"


def choose_threads(workers: int) -> int:
    """Torch threads per worker: the cores shared out, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def choose_workers(runs: int) -> int:
    """Worker processes for ``workers="auto"``: one single-threaded worker per core, at most one per run.

    Runs of a study are independent, so running them side by side scales with the cores, while one
    run's small convolutions and matmuls use a second intra-op thread poorly. bench/study.py, 2
    cores: the quickstart's 15 runs (5 heads x 3 seeds) took 36.6 s this way vs 53.8 s in one
    process with 2 threads. Each worker's start-up (spawn, import, data) costs a few seconds, so a
    study of a few one-second runs is faster in one process on an idle machine (6 such runs: 9.9 s
    vs 6.7 s), and slower on a busy one (6 runs at load average 4-6: 13.8 s vs 50.6 s). With ``"auto"`` every worker gets one thread however many runs are pending, so a
    resumed study sums in the same order.
    """
    return max(1, min(os.cpu_count() or 1, runs))


class StudyLock:
    """An exclusive lock on a study folder (a second ``study run`` of it stops with a message)."""

    def __init__(self, out: Path):
        self.path = out / ".study.lock"
        self.fd: int | None = None

    def __enter__(self) -> StudyLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is being run by another process (pid {other}); wait for it to finish "
                "or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@lru_cache(maxsize=4)
def _splits_for(data_json: str):
    from archlab.train.engine import prepare_data

    data = DataConfig.model_validate_json(data_json)
    return prepare_data(TrainConfig(data=data))


def preflight(study: Study) -> None:
    """Check, before anything runs, that every dataset loads and every variant's model builds.

    Raises:
        ArchlabError: with the dataset / variant named; nothing has been run.
    """
    from archlab.train.engine import build_run_model

    for label, data in study.dataset_configs().items():
        try:
            splits = _splits_for(data.model_dump_json())
        except ArchlabError as exc:
            raise with_context(exc, f"study {study.name!r} dataset {label!r}") from None
        for variant in study.variants:
            cfg = study.resolve(RunKey(dataset=label, variant=variant, seed=study.seeds[0]))
            try:
                build_run_model(cfg, splits)
            except ArchlabError as exc:
                raise with_context(exc, f"study {study.name!r} variant {variant!r} on {label!r}") from None


def _execute(config_json: str, out: str, threads: int, parent_pid: int | None) -> dict[str, Any]:
    """Train one run (in this process or a worker); returns the result dict or an error record."""
    from archlab.train.engine import train

    torch.set_num_threads(threads)
    config = TrainConfig.model_validate_json(config_json)

    def watchdog(_step: int) -> None:
        # A worker whose study process died (kill -9) stops instead of racing the next run.
        if parent_pid is not None and os.getppid() != parent_pid:
            os._exit(3)

    try:
        splits = _splits_for(config.data.model_dump_json())
        result = train(config, out, resume=True, splits=splits, on_step=watchdog if parent_pid else None)
        return {"ok": True, "result": result.to_dict()}
    except ArchlabError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a failed run is recorded with its reason; the study goes on
        tb = traceback.format_exc(limit=3)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{tb}"}


@dataclass
class _Task:
    key: RunKey
    run_id: int
    config_json: str
    out: str


def run_study(
    study: Study,
    out: str | Path,
    *,
    workers: int | str = 1,
    retry_failed: bool = False,
    on_event: Event | None = None,
    report: bool = True,
    ray_address: str | None = None,
) -> StudyStore:
    """Run every grid cell of ``study`` that is not done, storing results in ``out/results.sqlite``.

    Args:
        study: the validated study.
        out: the study folder.
        workers: parallel worker processes (each with ``cpu_count // workers`` threads), or
            ``"auto"``: :func:`choose_workers` processes with one thread each.
        retry_failed: run failed runs again (by default they keep their recorded failure).
        on_event: progress callback ``(kind, key, info)`` with kind in
            ``skip | start | done | failed``.
        report: write the Markdown/HTML report at the end.
        ray_address: run every run as a Ray task on this cluster (``"local"``: start a local
            instance) instead of local worker processes; ``out`` must then be on a path every
            node sees. Needs ``pip install archlab[ray]``.

    Returns:
        The open :class:`StudyStore`.

    Raises:
        KeyboardInterrupt: after the runs in flight were stopped and put back to ``pending``.
    """
    out = Path(out)
    auto = workers == "auto"
    if not auto and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be 'auto' or an int of at least 1, got {workers!r}")
    if ray_address is not None:
        from archlab.study.backends.ray import require_ray

        require_ray()
    preflight(study)
    emit = on_event or (lambda *a: None)
    with StudyLock(out):
        store = StudyStore(out / DB_NAME)
        store.set_meta("study", study.model_dump(mode="json"))
        store.set_meta("name", study.name)
        store.set_meta("baseline", study.baseline)
        tasks: list[_Task] = []
        for key in study.grid():
            cfg = study.resolve(key).model_dump(mode="json")
            run_id, status, stored = store.ensure_run(key.dataset, key.variant, key.seed, cfg)
            if stored != json.loads(json.dumps(cfg, sort_keys=True)):
                if status == "pending":
                    with store.tx() as c:
                        c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(cfg, sort_keys=True), run_id))
                else:
                    raise ConfigError(
                        f"{out}: run {key.label} was recorded with a different config than the study file now "
                        "gives; the study file changed — use a new --out (results of another study are never mixed)"
                    )
            if status == "done" or (status == "failed" and not retry_failed):
                emit("skip", key, {"status": status})
                continue
            tasks.append(_Task(key, run_id, json.dumps(cfg), str(run_dir(out, key))))
        if auto:  # threads fixed per machine (not per pending count): a resumed study sums alike
            workers, threads = choose_workers(len(tasks)), choose_threads(os.cpu_count() or 1)
        else:
            threads = choose_threads(workers)
        in_flight: dict[int, _Task] = {}

        def start(t: _Task) -> None:
            store.mark_running(t.run_id)
            in_flight[t.run_id] = t
            emit("start", t.key, {})

        def finish(t: _Task, outcome: dict[str, Any]) -> None:
            _record(store, t, outcome, emit)
            in_flight.pop(t.run_id, None)

        try:
            if ray_address is not None:
                from archlab.study.backends.ray import run_on_ray

                run_on_ray(tasks, ray_address, start=start, finish=finish)
            elif workers == 1 or len(tasks) <= 1:
                for t in tasks:
                    start(t)
                    finish(t, _execute(t.config_json, t.out, threads, None))
            else:
                _run_parallel(tasks, workers, threads, start, finish)
        except KeyboardInterrupt:
            # Not a failure: the runs in flight keep their checkpoints and resume on the next run.
            store.mark_interrupted(list(in_flight))
            log.warning("interrupted; %d run(s) stopped and left resumable", len(in_flight))
            raise
        if report:
            write_study_report(store, out, study)
    return store


def _init_worker(parent_pid: int) -> None:
    """Worker set-up: leave Ctrl-C to the study process, and die with it.

    Workers leave Ctrl-C to the study process, which stops them (see _run_parallel). If the study
    process is killed (kill -9), a worker notices within a fraction of a second, whether it is
    training (the per-step watchdog in ``_execute`` also checks) or idle, waiting for its next
    task: an idle worker blocks on the task queue, which a dead parent never closes for it.
    """
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(3)

    threading.Thread(target=watch, name="archlab-parent-watch", daemon=True).start()


def _run_parallel(
    tasks: list[_Task],
    workers: int,
    threads: int,
    start: Callable[[_Task], None],
    finish: Callable[[_Task, dict[str, Any]], None],
) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after torch/OpenMP initialisation can deadlock
    pending = list(tasks)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        running: dict[Any, _Task] = {}
        while pending or running:
            while pending and len(running) < workers:
                t = pending.pop(0)
                start(t)
                running[pool.submit(_execute, t.config_json, t.out, threads, os.getpid())] = t
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                t = running.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # a worker process died
                    outcome = {"ok": False, "error": f"worker died: {type(exc).__name__}: {exc}"}
                finish(t, outcome)
    except BaseException:
        # Ctrl-C (or a database error): stop the workers now instead of waiting for their runs;
        # their checkpoints are crash-safe, so the runs resume later. The executor has no public
        # way to stop busy workers, hence its private process table.
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _record(store: StudyStore, task: _Task, outcome: dict[str, Any], emit: Event) -> None:
    if outcome["ok"]:
        store.record_result(task.run_id, outcome["result"])
        emit("done", task.key, outcome["result"])
    else:
        store.mark_failed(task.run_id, outcome["error"])
        log.warning("run %s failed: %s", task.key.label, outcome["error"].splitlines()[0])
        emit("failed", task.key, {"error": outcome["error"]})


def write_study_report(store: StudyStore, out: Path, study: Study | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the study in ``out``."""
    from archlab.study.report import write_report

    name = study.name if study else store.get_meta("name", out.name)
    baseline = study.baseline if study else store.get_meta("baseline")
    # a study that selects on Dice (segmentation) compares Dice first; accuracy/F1 are then the
    # image-level "mask or empty" decisions, with McNemar on them
    train_cfg = study.train if study else (store.get_meta("study") or {}).get("train", {})
    metrics = ("dice", "accuracy", "f1_macro") if train_cfg.get("monitor") == "dice" else ("accuracy", "f1_macro")
    return write_report(store.rows(), out, study_name=name, baseline=baseline, metrics=metrics)
