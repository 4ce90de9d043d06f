"""Running a study: take the folder, plan the rounds, hand their runs to an executor, store everything (SPEC §5, §11).

The walk of one ``run_study`` call:

1. **Lock** the study folder (:class:`StudyLock`): a second ``study run`` of it is refused here,
   before any worker starts or any dataset loads.
2. **Executor** (:mod:`archlab.study.backends`): inline (``workers=1``), local worker processes or
   Ray; it starts its workers now (:meth:`~archlab.study.backends.base.Executor.warm`), so their
   start-up overlaps the preflight.
3. **Preflight** (:func:`preflight`): every dataset is loaded and every variant's run built once.
4. **Store**: the database is opened and claimed for this study (:class:`archlab.study.store.StudyStore`).
5. **Rounds** (:func:`_rounds`): the grid, or with ``seeds: {until: conclusive}`` round after round
   of seeds until the sequential test decides; each round's cells become tasks (:func:`_task_for`)
   and go to ``executor.run``, whose callbacks (:class:`RunRecorder`) mark runs running and store
   their outcomes in this process, the only writer of the database.
6. The analysis phase (:mod:`archlab.study.analyses`) and the report, still under the lock.

Leaving the executor's ``with`` block by an exception stops its workers — the one place they are
stopped. A run's config is resolved in one place, :class:`RunConfigs`. This module imports torch
but not the training engine: the engine's imports run after the workers started, beside them.

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
keep their reason and are retried only with ``retry_failed``. Ctrl-C stops the workers and puts
the runs in flight back to ``pending``: a re-run resumes them.

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
  (:class:`archlab.study.backends.local.LocalExecutor`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError, ConfigError, with_context
from archlab.plugins import describe_plugin_change
from archlab.study.analyses import analysis_sections, check_analyses, run_analysis_phase
from archlab.study.backends.base import Executor, Outcome, RunTask
from archlab.study.backends.inline import InlineExecutor
from archlab.study.backends.local import LocalExecutor, choose_threads, choose_workers
from archlab.study.backends.ray import RayExecutor, require_ray
from archlab.study.config import DEFAULT_MARGINS, RunKey, Study
from archlab.study.execute import load_splits, run_dir
from archlab.study.matching import MatchResult, apply_knob, resolve_match
from archlab.study.metrics import report_metrics
from archlab.study.store import DB_NAME, StudyStore
from archlab.study.tune_phase import TUNE_DB, TUNE_DIR, TrialConfigs, apply_params, tuning_phase, tuning_summary
from archlab.train.config import TrainConfig
from archlab.train.speed import resolve_speed_options

__all__ = ["run_study", "StudyLock", "preflight", "RunConfigs", "RunRecorder", "run_dir", "choose_threads",
           "choose_workers", "write_study_report"]

log = logging.getLogger(__name__)

Event = Callable[[str, "RunKey | None", dict[str, Any]], None]  # key None for "round" and "look"


class StudyLock:
    """An exclusive lock on a study folder (a second ``study run`` of it stops with a message)."""

    def __init__(self, out: Path):
        self.path = out / ".study.lock"
        self.fd: int | None = None

    def __enter__(self) -> StudyLock:
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
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class RunConfigs:
    """The configs of a study's runs, each resolved here and only here, once per run.

    Args:
        study: the validated study.

    :meth:`plain` is the study's config of a cell (:meth:`archlab.study.config.Study.resolve`),
    available before any data is loaded (its thread count sizes the workers). :meth:`resolved` is
    what a run records and trains with: ``"auto"`` speed options made ``true``/``false`` by a fixed
    rule of the model and device type (:func:`archlab.train.speed.resolve_speed_options`), so the
    stored config says what ran. The preflight and the tasks share them.
    """

    def __init__(self, study: Study, tuned: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.study = study
        self.tuned = tuned or {}  # (dataset, variant) -> its chosen trial's params (the tuning phase)
        self._plain: dict[RunKey, TrainConfig] = {}
        self._resolved: dict[RunKey, TrainConfig] = {}
        self.matches: dict[tuple[str, str], MatchResult] = {}  # (dataset, variant) -> its `match:` value

    def plain(self, key: RunKey) -> TrainConfig:
        """The cell's config as the study file gives it (speed options may still be ``"auto"``).

        A variant with ``match:`` gets the knob value that matches its target's size on this
        dataset (:mod:`archlab.study.matching`; searched once per dataset, loading its data).
        """
        if key not in self._plain:
            cfg = self.study.resolve(key)
            if (key.dataset, key.variant) in self.tuned:
                cfg = apply_params(cfg, self.tuned[(key.dataset, key.variant)], f"variant {key.variant!r} (tuned)")
            match = self.study.variants[key.variant].match
            if match is not None:
                where = f"study {self.study.name!r} variant {key.variant!r} on {key.dataset!r}"
                found = self.matches.get((key.dataset, key.variant))
                if found is None:
                    ref = self.plain(RunKey(dataset=key.dataset, variant=match.target, seed=key.seed))
                    cfg, found = resolve_match(cfg, ref, match, load_splits(cfg.data.model_dump_json()), where)
                    self.matches[(key.dataset, key.variant)] = found
                else:
                    cfg = apply_knob(cfg, match.key, found.value, where)
            self._plain[key] = cfg
        return self._plain[key]

    def resolved(self, key: RunKey) -> TrainConfig:
        """The config the run of ``key`` records and trains with (loads the run's data once)."""
        if key not in self._resolved:
            cfg = self.plain(key)
            self._resolved[key] = resolve_speed_options(cfg, load_splits(cfg.data.model_dump_json()))
        return self._resolved[key]


def preflight(study: Study, executor: Executor | None = None, configs: RunConfigs | None = None) -> None:
    """Check, before anything runs, everything a run builds: data, model, loaders, loss, optimizer, schedule.

    Every dataset is loaded and every variant's config is built once (:func:`archlab.train.preflight.check_run`),
    so a typo in a loss, scheduler or augmentation option stops the study here with exit 2.

    Args:
        executor: the study's executor; when it :attr:`~archlab.study.backends.base.Executor.checks_optimizers`
            (started local workers: a torch optimizer imports ``torch._dynamo``, which their fork
            server holds already and this process would otherwise import for nothing), the
            optimizer and scheduler of each variant are built there, the rest here.
        configs: the study's run configs (a new :class:`RunConfigs` when ``None``).

    Raises:
        ArchlabError: with the dataset / variant named; nothing has been run.
    """
    # the engine's imports (~0.7 s: data, augmentation, profiler) come after the workers started, so
    # they overlap the workers' start-up; this module itself imports only torch (study start-up)
    from archlab.train.preflight import check_run

    configs = configs or RunConfigs(study)
    remote = executor is not None and executor.checks_optimizers
    if study.analyses:  # a typo in an analysis option stops the study before any training
        check_analyses(study.analyses)
    checks: list[tuple[str, TrainConfig]] = []  # (context, config) whose optimizer the executor builds
    for label, data in study.dataset_configs().items():
        try:
            splits = load_splits(data.model_dump_json())
        except ArchlabError as exc:
            raise with_context(exc, f"study {study.name!r} dataset {label!r}") from None
        for variant in study.variants:
            where = f"study {study.name!r} variant {variant!r} on {label!r}"
            try:
                cfg = configs.resolved(RunKey(dataset=label, variant=variant, seed=study.seeds[0]))
                check_run(cfg, load_splits(cfg.data.model_dump_json()) if cfg.data != data else splits,
                          optimization=not remote)
            except ArchlabError as exc:
                raise with_context(exc, where) from None
            checks.append((where, cfg))
    if remote and checks:
        executor.check_optimizers(checks)


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


def _task_for(store: StudyStore, configs: RunConfigs | TrialConfigs, out: Path, key: RunKey, study_id: str,
              retry_failed: bool, phase: str | None = None) -> tuple[RunTask | None, str]:
    """The task of one grid cell, or None when it is done/failed; refuses a changed recorded config."""
    # after the preflight, which imported the engine (kept out of this module's imports: study start-up)
    from archlab.train.engine import config_diff, normalize_config

    resolved = configs.resolved(key)
    # JSON values already (str keys, lists): equal to the stored config read back iff the same config
    cfg = resolved.model_dump(mode="json")
    run_id, status, stored = store.ensure_run(key.dataset, key.variant, key.seed, cfg)
    folder = run_dir(out, key)
    if stored != cfg and normalize_config(stored) == cfg:
        store.migrate_config(run_id, cfg)  # recorded before options were added: the same computation
        stored = cfg
    if stored != cfg:
        diff = "; ".join((describe_plugin_change(stored, cfg) or config_diff(stored, cfg))[:6])
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
    if phase is not None:  # a tuning trial: the worker hides the test split (archlab.study.tune_phase)
        owner["phase"] = phase
    return RunTask(key, run_id, json.dumps(cfg), str(folder), owner, int(resolved.threads or 1)), status


def _round_tasks(store: StudyStore, configs: RunConfigs | TrialConfigs, out: Path, keys: Sequence[RunKey],
                 study_id: str, retry_failed: bool, emit: Event, phase: str | None = None) -> list[RunTask]:
    """The tasks of one round's cells; a cell that is done (or failed, kept) is reported skipped."""
    tasks = []
    for key in keys:
        task, status = _task_for(store, configs, out, key, study_id, retry_failed, phase)
        if task is None:
            emit("skip", key, {"status": status})
        else:
            tasks.append(task)
    return tasks


class RunRecorder:
    """The executor's callbacks, in the study process: the only writer of the study database.

    Args:
        store: the open study database.
        emit: the progress callback of :func:`run_study`.
    """

    def __init__(self, store: StudyStore, emit: Event) -> None:
        self.store = store
        self.emit = emit
        self.in_flight: dict[int, RunTask] = {}

    def start(self, task: RunTask) -> None:
        """``on_start``: mark the run running (one more attempt)."""
        self.store.mark_running(task.run_id)
        self.in_flight[task.run_id] = task
        self.emit("start", task.key, {"out": task.out})

    def finish(self, task: RunTask, outcome: Outcome) -> None:
        """``on_finish``: store the result (the run is done) or the failure with its reason."""
        if outcome["ok"]:
            self.store.record_result(task.run_id, outcome["result"])
            self.emit("done", task.key, outcome["result"])
        else:
            self.store.mark_failed(task.run_id, outcome["error"])
            log.warning("run %s failed: %s", task.key.label, outcome["error"].splitlines()[0])
            self.emit("failed", task.key, {"error": outcome["error"]})
        self.in_flight.pop(task.run_id, None)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """On Ctrl-C, put the runs in flight back to ``pending`` (they keep their checkpoints), then re-raise."""
        try:
            yield
        except KeyboardInterrupt:
            # Not a failure: the runs resume on the next `study run`. A second Ctrl-C while this is
            # recorded must not leave runs marked running.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self.store.mark_interrupted(list(self.in_flight))
            finally:
                signal.signal(signal.SIGINT, previous)
            log.warning("interrupted; %d run(s) stopped and left resumable", len(self.in_flight))
            raise


def _make_executor(study: Study, workers: int | str, ray_address: str | None) -> Executor:
    """The study's executor: Ray, the study process alone (``workers=1``), or local worker processes."""
    if ray_address is not None:
        return RayExecutor(ray_address)
    if workers == 1:
        return InlineExecutor()
    first = next(iter(study.dataset_configs().values()))  # the first runs' data, loaded by each worker
    return LocalExecutor(workers, [first.model_dump_json()], study.plugins)


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
            (:func:`choose_workers`: one per core for one-thread runs; the CLI's default). Changes only
            the schedule: each run uses its config's ``threads``, so results are identical for any
            ``workers`` (and on Ray).
        retry_failed: run failed runs again (by default they keep their recorded failure); a failed
            run whose variant's config was corrected restarts afresh.
        on_event: progress callback ``(kind, key, info)`` with kind in
            ``skip | start | done | failed | round | look`` (key ``None`` for ``round``, announced
            before each round of adaptive seeds, and ``look``, after it: ``info["decisions"]``
            maps ``(dataset, variant)`` to its :class:`~archlab.study.sequential.SequentialDecision`;
            tuning trials: ``trial_skip | trial_start | trial_done | trial_failed``).
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
        ConfigError: a bad ``workers`` or ``out``, a folder locked by another ``study run`` (before
            any worker starts or any dataset loads), a config the preflight refuses.
        KeyboardInterrupt: after the runs in flight were stopped and put back to ``pending``.
    """
    out = Path(out)
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be 'auto' or an int of at least 1, got {workers!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; give a folder for the study")
    if ray_address is not None:
        require_ray()  # before the folder is made
    emit = on_event or (lambda *a: None)
    grid = study.grid()
    with StudyLock(out):
        configs = RunConfigs(study)
        with _make_executor(study, workers, ray_address) as executor:
            executor.warm(len(grid), int(configs.plain(grid[0]).threads or 1))  # beside the preflight
            preflight(study, executor, configs)
            store = StudyStore(out / DB_NAME)
            study_id = _claim_study(store, study, out)
            if any(study.tuning(v) is not None for v in study.variants):  # every variant at its best trial
                configs = _tune(study, store, configs, executor, out, study_id, retry_failed, emit)
            recorder = RunRecorder(store, emit)
            with recorder.interruptible():
                for keys in _rounds(study, store, emit):
                    tasks = _round_tasks(store, configs, out, keys, study_id, retry_failed, emit)
                    if tasks:
                        executor.run(tasks, recorder.start, recorder.finish)
            if configs.matches:  # the resolved knob of every matched variant, for the report
                store.set_meta("matches", [
                    {"dataset": ds, "variant": v, "reference": study.variants[v].match.target, "key": m.key,
                     "value": m.value, "count": m.count, "target": m.target, "measure": m.measure}
                    for (ds, v), m in configs.matches.items()])
        if study.analyses:
            run_analysis_phase(store, study, out, emit)
        if report:
            write_study_report(store, out, study)
    return store


def _tune(study: Study, store: StudyStore, configs: RunConfigs, executor: Executor, out: Path, study_id: str,
          retry_failed: bool, emit: Event) -> RunConfigs:
    """The tuning phase (:mod:`archlab.study.tune_phase`); returns the seed phase's configs at the chosen trials."""
    trials = StudyStore(out / TUNE_DB)
    _claim_study(trials, study, out)
    # trial events are their own kinds (trial_start, trial_done, ...): a trial has no test metrics
    def trial_emit(kind: str, key: RunKey | None, info: dict[str, Any]) -> None:
        emit(f"trial_{kind}", key, info)

    recorder = RunRecorder(trials, trial_emit)

    def run_round(trial_configs: TrialConfigs, keys: list[RunKey]) -> None:
        tasks = _round_tasks(trials, trial_configs, out / TUNE_DIR, keys, study_id, retry_failed, trial_emit,
                             phase="tune")
        if tasks:
            with recorder.interruptible():
                executor.run(tasks, recorder.start, recorder.finish)

    results = tuning_phase(study, trials, configs.plain, run_round)
    store.set_meta("tuning", tuning_summary(results, study.decisive_metric()))
    tuned = {c: dict(r.best.params) for c, r in results.items() if r.best is not None}
    return RunConfigs(study, tuned=tuned)


def _rounds(study: Study, store: StudyStore, emit: Event) -> Iterator[list[RunKey]]:
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
    # scipy-backed: imported by adaptive studies only, so a fixed-seed study starts without it
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
        emit("round", None, {"round": r + 1, "rounds": len(looks), "seeds": n, "comparisons": len(undecided),
                             "max_runs": most, "runs": len(keys)})
        yield keys
        decisions = sequential_decisions(
            store.rows(with_history=False, with_predictions=False), baseline=study.baseline, metric=metric,
            margin=study.margin(metric), alpha=study.alpha, looks=looks, family=len(undecided_all),
            spend=plan.spending,
        )
        # the look after the round: each comparison that took part, stopped or continuing (its
        # SequentialDecision carries the reason codes; archlab.study.wording says them)
        emit("look", None, {"round": r + 1, "seeds": n, "metric": metric, "margin": study.margin(metric),
                            "decisions": {c: decisions[c] for c in sorted(undecided) if c in decisions}})
        undecided = {c for c in undecided if not (c in decisions and decisions[c].decided)}
        if not undecided:
            return


def write_study_report(store: StudyStore, out: Path, study: Study | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the study in ``out``."""
    # matplotlib/scipy-backed: imported here (or beforehand in a background thread while the last
    # runs train, archlab.study.backends.local.prepare_report), never when the study starts
    from archlab.study.budgets import budget_verdicts
    from archlab.study.effort_report import budget_section, effort_sections
    from archlab.study.report import write_report

    name = study.name if study else store.get_meta("name", out.name)
    baseline = study.baseline if study else store.get_meta("baseline")
    train_cfg = study.train if study else (store.get_meta("study") or {}).get("train", {})
    metrics = report_metrics(train_cfg.get("monitor"))
    rows = store.rows()
    sections = analysis_sections(rows, store, baseline=baseline, alpha=study.alpha if study else 0.05)
    sections += effort_sections(store.get_meta("tuning"), store.get_meta("matches"))  # tune: / match:
    # margins, alpha, primary metric, seed plan, descriptions (an old folder's meta lacks some: defaults)
    settings = study.model_dump(mode="json") if study else store.get_meta("study")
    if settings and settings.get("budgets"):  # budgets: the verdict per training budget
        metric = study.decisive_metric() if study else metrics[0]
        alpha = settings.get("alpha", 0.05)
        margin = study.margin(metric) if study else (settings.get("margins") or {}).get(metric, DEFAULT_MARGINS.get(metric))
        sections.append(budget_section(budget_verdicts(rows, settings["budgets"], baseline=baseline, metric=metric,
                                                       alpha=alpha, margin=margin), metric))
    return write_report(rows, out, study_name=name, baseline=baseline, metrics=metrics, sections=sections,
                        settings=settings)
