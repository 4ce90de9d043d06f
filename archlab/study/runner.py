"""Running a study: expand the grid, run what is not done, store everything (SPEC §5, §11).

Fairness by construction (what makes variants comparable):
- The split depends on the dataset entry's ``split_seed`` only, so every variant and seed of a
  dataset sees the same train/val/test split (with ``split: per_seed`` it is redrawn per seed,
  still identical across the variants of a seed).
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

One study, one answer (SPEC §5, §11):
- A run's numbers depend only on its recorded config, whose ``threads`` the study fixes (default
  1): ``--workers``, the core count and the backend change the schedule, never a result.
- A recorded run whose config the study file now changes is never resumed or re-labelled: the
  study stops with the differing keys named (a run that never trained just takes the new config;
  a failed one restarts afresh under ``--retry-failed``, its old folder kept under ``replaced/``).
- Every run folder is ``runs/<dataset>/<variant>/seed<k>`` with validated names, and carries
  ``owner.json`` (study id, cell, config digest): a copied or foreign folder is refused.
- A folder holding another study (name or baseline) is refused.
- A worker killed from outside costs only a retry of the runs it took down
  (:func:`_run_parallel`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError, ConfigError, with_context
from archlab.study.config import RunKey, Study
from archlab.study.execute import RunTask, execute_in_worker, execute_run, load_splits, run_dir
from archlab.study.store import DB_NAME, StudyStore
from archlab.study.workers import Pool, prepare_report
from archlab.train.config import TrainConfig

__all__ = ["run_study", "StudyLock", "preflight", "run_dir", "choose_threads", "choose_workers"]

log = logging.getLogger(__name__)

MAX_WORKER_DEATHS = 2  # a run whose worker is killed this often while running alone is failed

Event = Callable[[str, "RunKey | None", dict[str, Any]], None]  # key None for "round"


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
    process with 2 threads. Workers fork from a preloaded fork server (:mod:`archlab.study.workers`)
    started before the study process imports torch, so their start-up overlaps the study's own
    (measured with spawned workers, which cost a few seconds each: a study of a few one-second runs
    was faster in one process on an idle machine, 6 such runs 9.9 s vs 6.7 s, and slower on a busy
    one, 13.8 s vs 50.6 s at load average 4-6). The choice changes only the schedule, never a
    result: every run uses its config's thread count.
    """
    return max(1, min((os.cpu_count() or 1) // max(1, threads), runs))


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


def preflight(study: Study, pool: Pool | None = None) -> None:
    """Check, before anything runs, everything a run builds: data, model, loaders, loss, optimizer, schedule.

    Every dataset is loaded and every variant's config is built once (:func:`archlab.train.preflight.check_run`),
    so a typo in a loss, scheduler or augmentation option stops the study here with exit 2.

    Args:
        pool: the study's started worker pool; the optimizer and scheduler of each variant are then
            built there (:func:`archlab.train.preflight.check_optimization_in_worker`: a torch
            optimizer imports ``torch._dynamo``, which the workers' fork server holds already and
            this process would otherwise import for nothing), the rest here.

    Raises:
        ArchlabError: with the dataset / variant named; nothing has been run.
    """
    from archlab.train.preflight import check_optimization, check_optimization_in_worker, check_run

    if study.analyses:  # a typo in an analysis option stops the study before any training
        from archlab.study.analyses import check_analyses

        check_analyses(study.analyses)
    remote: list[tuple[str, TrainConfig]] = []  # (context, config) whose optimizer the workers build
    for label, data in study.dataset_configs().items():
        try:
            splits = load_splits(data.model_dump_json())
        except ArchlabError as exc:
            raise with_context(exc, f"study {study.name!r} dataset {label!r}") from None
        for variant in study.variants:
            where = f"study {study.name!r} variant {variant!r} on {label!r}"
            try:
                cfg = resolved_config(study, RunKey(dataset=label, variant=variant, seed=study.seeds[0]))
                check_run(cfg, load_splits(cfg.data.model_dump_json()) if cfg.data != data else splits,
                          optimization=pool is None)
            except ArchlabError as exc:
                raise with_context(exc, where) from None
            if pool is not None:
                remote.append((where, cfg))
    if remote:  # the workers are up by now (or nearly): their fork server started before this process
        futures = [(where, cfg, _submit_quietly(pool, check_optimization_in_worker, cfg.model_dump_json()))
                   for where, cfg in remote]
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


def _submit_quietly(pool: Pool, fn: Callable[..., Any], *args: Any) -> Any:
    """``pool.submit(fn, *args)``, or None when the pool cannot take it (broken: a worker was killed)."""
    try:
        return pool.get().submit(fn, *args)
    except Exception:  # noqa: BLE001 - the caller does the work itself
        return None


def resolved_config(study: Study, key: RunKey) -> TrainConfig:
    """The config a run of ``key`` records and trains with: the study's, speed options made concrete.

    ``"auto"`` speed options become ``true``/``false`` by a fixed rule of the model and device type
    (:func:`archlab.train.speed.resolve_speed_options`), so the stored config says what ran.
    """
    from archlab.train.speed import resolve_speed_options

    cfg = study.resolve(key)
    return resolve_speed_options(cfg, load_splits(cfg.data.model_dump_json()))


def _claim_study(store: StudyStore, study: Study, out: Path) -> str:
    """Record this study in its database, or refuse a folder that holds another study; returns its id."""
    name, baseline = store.get_meta("name"), store.get_meta("baseline")
    if name is not None and name != study.name:
        raise ConfigError(
            f"{out} holds study {name!r}, not {study.name!r}; results of two studies are never mixed — "
            "use another --out (or the original study file)"
        )
    if baseline is not None and baseline != study.baseline:
        raise ConfigError(
            f"{out}: study {study.name!r} was run with baseline {baseline!r}, the file now says {study.baseline!r}; "
            "restore `baseline:` or use another --out"
        )
    study_id = store.get_meta("study_id")
    if study_id is None:
        study_id = uuid.uuid4().hex
        store.set_meta("study_id", study_id)
    store.set_meta("study", study.model_dump(mode="json"))
    store.set_meta("name", study.name)
    store.set_meta("baseline", study.baseline)
    return study_id


def _has_progress(folder: Path) -> bool:
    """True when a run folder holds training progress (a checkpoint, best weights or a result)."""
    from archlab.train.checkpoint import checkpoint_folders
    from archlab.train.engine import BEST_WEIGHTS, CKPT_DIR, RESULT_FILE

    paths = (*checkpoint_folders(folder / CKPT_DIR), folder / BEST_WEIGHTS, folder / RESULT_FILE)
    return any(p.exists() for p in paths)


def _set_aside(out: Path, folder: Path) -> Path:
    """Move a run folder whose config was replaced under ``out/replaced/`` (nothing is deleted)."""
    rel = folder.relative_to(out / "runs")
    for i in range(1, 10_000):
        dest = out / "replaced" / rel.parent / f"{rel.name}.{i}"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, dest)
            return dest
    raise ConfigError(f"{out / 'replaced'} is full; clean it up")


def _task_for(store: StudyStore, study: Study, out: Path, key: RunKey, study_id: str,
              retry_failed: bool) -> tuple[RunTask | None, str]:
    """The task of one grid cell, or None when it is done/failed; refuses a changed recorded config."""
    from archlab.train.engine import config_diff, normalize_config

    cfg = resolved_config(study, key).model_dump(mode="json")
    canon = json.loads(json.dumps(cfg, sort_keys=True))
    run_id, status, stored = store.ensure_run(key.dataset, key.variant, key.seed, cfg)
    folder = run_dir(out, key)
    if stored != canon and normalize_config(stored) == canon:
        store.migrate_config(run_id, cfg)  # recorded before options were added: the same computation
        stored = canon
    if stored != canon:
        diff = "; ".join(config_diff(stored, canon)[:6])
        if status == "failed" and retry_failed:
            # A failed run retried under a corrected config starts afresh; its old folder is kept aside.
            if folder.exists():
                moved = _set_aside(out, folder)
                log.warning("run %s: config changed (%s); old folder kept at %s", key.label, diff, moved)
            store.replace_config(run_id, cfg)
        elif status in ("pending", "running") and not (folder.exists() and _has_progress(folder)):
            store.replace_config(run_id, cfg)  # never trained: nothing was computed under the old config
        else:
            what = {"done": "finished", "failed": "failed", "pending": "started", "running": "started"}[status]
            if status == "failed":
                fix = "run again with --retry-failed to redo it under the new config"
            elif status == "done":
                fix = "restore the study file, or use a new --out for the new config"
            else:
                fix = f"restore the study file, or use a new --out (to discard that progress, move {folder} away)"
            raise ConfigError(
                f"{out}: run {key.label} was {what} with another config than the study file now gives "
                f"({diff}); a result is only ever stored for the config that computed it — {fix}"
            )
    if status == "done" or (status == "failed" and not retry_failed):
        return None, status
    # Whose folder this is; the config itself is checked against the checkpoint and result inside.
    owner = {"study_id": study_id, "dataset": key.dataset, "variant": key.variant, "seed": key.seed}
    return RunTask(key, run_id, json.dumps(cfg), str(folder), owner), status


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
        workers: parallel worker processes (1: in this process), or ``"auto"``
            (:func:`choose_workers`: one per core for one-thread runs; the CLI's default). Changes only the schedule: each run uses its config's
            ``threads``, so results are identical for any ``workers`` (and on Ray).
        retry_failed: run failed runs again (by default they keep their recorded failure); a failed
            run whose variant's config was corrected restarts afresh.
        on_event: progress callback ``(kind, key, info)`` with kind in
            ``skip | start | done | failed | round``.
        report: write the Markdown/HTML report at the end.
        ray_address: run every run as a Ray task on this cluster (``"local"``: start a local
            instance) instead of local worker processes; ``out`` must then be on a path every
            node sees. Needs ``pip install archlab[ray]``.

    With ``seeds: {min, max, until: conclusive}`` the seeds run in rounds (``min`` first, then
    ``step`` more): after each round the sequential test (:mod:`archlab.study.sequential`) decides
    each comparison on the primary metric, and a decided variant gets no more seeds. The rounds are
    recomputed from the stored results, so resume, kill -9 and any ``workers`` give the same runs.

    Returns:
        The open :class:`StudyStore`.

    Raises:
        KeyboardInterrupt: after the runs in flight were stopped and put back to ``pending``.
    """
    out = Path(out)
    auto = workers == "auto"
    if not auto and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be 'auto' or an int of at least 1, got {workers!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; give a folder for the study")
    if ray_address is not None:
        from archlab.study.backends.ray import require_ray

        require_ray()
    # worker processes, kept across rounds; started now, so that the fork server's imports and each
    # worker's data loading run beside the preflight instead of after it
    pools = Pool([d.model_dump_json() for d in study.dataset_configs().values()][:1])  # the first runs' data
    try:
        warmed = ray_address is None and workers != 1 and len(study.grid()) > 1
        if warmed:
            threads = max(int(study.resolve(k).threads or 1) for k in study.grid()[:1])
            pools.warm(choose_workers(len(study.grid()), threads) if auto else int(workers))
        preflight(study, pools if warmed else None)
    except BaseException:
        pools.kill()
        raise
    emit = on_event or (lambda *a: None)
    try:
        with StudyLock(out):
            store = StudyStore(out / DB_NAME)
            study_id = _claim_study(store, study, out)
            in_flight: dict[int, RunTask] = {}

            def start(t: RunTask) -> None:
                store.mark_running(t.run_id)
                in_flight[t.run_id] = t
                emit("start", t.key, {"out": t.out})

            def finish(t: RunTask, outcome: dict[str, Any]) -> None:
                _record(store, t, outcome, emit)
                in_flight.pop(t.run_id, None)

            def execute(tasks: list[RunTask]) -> None:
                if not tasks:
                    return
                threads = max(int(json.loads(t.config_json).get("threads") or 1) for t in tasks)
                n = choose_workers(len(tasks), threads) if auto else workers
                if ray_address is not None:
                    from archlab.study.backends.ray import run_on_ray

                    run_on_ray(tasks, ray_address, start=start, finish=finish)
                elif n == 1 or len(tasks) <= 1:
                    for t in tasks:
                        start(t)
                        finish(t, execute_run(t.config_json, t.out, t.owner))
                else:
                    _run_parallel(tasks, n, start, finish, pools)

            try:
                for keys in _rounds(study, store, emit):
                    tasks = []
                    for key in keys:
                        task, status = _task_for(store, study, out, key, study_id, retry_failed)
                        if task is None:
                            emit("skip", key, {"status": status})
                        else:
                            tasks.append(task)
                    execute(tasks)
                pools.close()
            except KeyboardInterrupt:
                # Not a failure: the runs in flight keep their checkpoints and resume on the next run.
                # A second Ctrl-C while this is recorded must not leave runs marked running.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    store.mark_interrupted(list(in_flight))
                finally:
                    signal.signal(signal.SIGINT, previous)
                log.warning("interrupted; %d run(s) stopped and left resumable", len(in_flight))
                raise
            finally:
                pools.kill()  # no-op after close(); stops workers on any error
            if study.analyses:
                from archlab.study.analyses import run_analysis_phase

                run_analysis_phase(store, study, out, emit)
            if report:
                write_study_report(store, out, study)
    except BaseException:
        pools.kill()  # a refused lock or database: the warmed workers go too
        raise
    return store


def _rounds(study: Study, store: StudyStore, emit: Event):
    """The grid cells to run, round by round (one round for a fixed seed list).

    Adaptive seeds: round ``r`` holds seeds ``0 .. looks[r]-1`` of every (dataset, variant) still
    undecided (the baseline runs while any variant of its dataset does). Decisions are recomputed
    from the stored results after each round, so a resumed study takes the same rounds.
    """
    grid = study.grid()
    plan = study.seeds_plan
    if plan is None:
        yield grid
        return
    from archlab.study.sequential import plan_looks, sequential_decisions

    looks = plan_looks(plan.min, plan.max, plan.step)
    metric = study.decisive_metric()
    undecided = {(k.dataset, k.variant) for k in grid if k.variant != study.baseline}
    undecided_all = set(undecided)  # the comparisons that share the study's alpha
    given: set[RunKey] = set()  # each cell is handed out once per invocation

    def wanted(k: RunKey, n: int) -> bool:
        active = {d for d, _ in undecided}
        return k.seed < n and ((k.dataset, k.variant) in undecided or (k.variant == study.baseline and k.dataset in active))

    for r, n in enumerate(looks):
        keys = [k for k in grid if k not in given and wanted(k, n)]
        given.update(keys)
        # at most this many cells in all: those handed out, plus what the undecided could still take
        most = len(given) + sum(1 for k in grid if k not in given and wanted(k, looks[-1]))
        emit("round", None, {"round": r + 1, "seeds": n, "comparisons": len(undecided), "max_runs": most})
        yield keys
        decisions = sequential_decisions(
            store.rows(with_history=False, with_predictions=False), baseline=study.baseline, metric=metric,
            margin=study.margin(metric), alpha=study.alpha, looks=looks, family=len(undecided_all),
        )
        undecided = {c for c in undecided if not (c in decisions and decisions[c].decided)}
        if not undecided:
            return


def _run_parallel(
    tasks: list[RunTask],
    workers: int,
    start: Callable[[RunTask], None],
    finish: Callable[[RunTask, dict[str, Any]], None],
    pools: Pool | None = None,
) -> None:
    """Run ``tasks`` on ``workers`` worker processes; a worker killed from outside is survived.

    A worker killed from outside (the OOM killer, kill -9) breaks the whole process pool, and every
    run in flight comes back with ``BrokenProcessPool`` although only one of them was killed. Those
    runs become suspects: the pool is rebuilt and each suspect runs again *alone*, resuming from its
    last checkpoint. A suspect whose worker dies while it runs alone is the cause: after
    :data:`MAX_WORKER_DEATHS` such deaths it is recorded failed ("worker killed"); the others go on.
    """
    from concurrent.futures.process import BrokenProcessPool

    own = pools is None
    pools = pools or Pool()
    warmed = False
    pending = list(tasks)
    suspects: list[RunTask] = []
    deaths: dict[int, int] = {}
    running: dict[Any, RunTask] = {}

    def submit(t: RunTask) -> None:
        start(t)
        running[pool.submit(execute_in_worker, t.config_json, t.out, t.owner, dict(os.environ), os.getcwd())] = t

    try:
        pool = pools.get(workers)
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
                    alone = not running and len(done) == 1
                    if alone:
                        deaths[t.run_id] = deaths.get(t.run_id, 0) + 1
                    if deaths.get(t.run_id, 0) >= MAX_WORKER_DEATHS:
                        finish(t, {"ok": False, "error": (
                            f"worker killed: the process training this run died {deaths[t.run_id]} times while it "
                            "ran alone (killed from outside, e.g. by the out-of-memory killer); lower batch_size or "
                            "run fewer workers, then --retry-failed")})
                    else:
                        log.warning("a worker process died; run %s will be resumed", t.key.label)
                        suspects.append(t)
                    continue
                except Exception as exc:  # the result could not come back (pickling, ...)
                    outcome = {"ok": False, "error": f"worker error: {type(exc).__name__}: {exc}"}
                finish(t, outcome)
            if broken:
                for fut, t in list(running.items()):  # the rest of the broken pool's runs
                    running.pop(fut)
                    suspects.append(t)
                pool = pools.renew()
    except BaseException:
        # Ctrl-C (or a database error): stop the workers now instead of waiting for their runs;
        # their checkpoints are crash-safe, so the runs resume later.
        pools.kill()
        raise
    if own:
        pools.close()


def _record(store: StudyStore, task: RunTask, outcome: dict[str, Any], emit: Event) -> None:
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
    rows = store.rows()
    from archlab.study.analyses import analysis_sections

    sections = analysis_sections(rows, store, baseline=baseline, alpha=study.alpha if study else 0.05)
    # margins, alpha, primary metric, seed plan, descriptions (an old folder's meta lacks some: defaults)
    settings = study.model_dump(mode="json") if study else store.get_meta("study")
    return write_report(rows, out, study_name=name, baseline=baseline, metrics=metrics, sections=sections,
                        settings=settings)
