"""The tuning phase of ``study run``: every variant's trials as stored runs, round by round.

The trials live in their own database, ``DIR/tuning.sqlite`` (a :class:`~archlab.study.store.StudyStore`
like the study's, one run row per (dataset, variant, trial seed)), and their folders under
``DIR/tuning/runs/``; the seed phase's ``results.sqlite`` never holds a trial, so every verdict,
analysis and export reads seed-phase runs only. A trial's run folder carries ``phase: tune`` in its
``owner.json``; the worker then hands the engine splits whose test split raises when read
(:func:`archlab.study.tuning.guard_test`) and trains without a test evaluation.

Round ``r`` of every tuned (dataset, variant) is proposed from the stored values of rounds
``0 .. r-1`` (:func:`archlab.study.tuning.propose_round`), all of them run together on the study's
executor, and the values are read back from the database: a resumed, killed or differently
scheduled study proposes the same trials, stores the same values and picks the same configs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archlab._validation import validate_config
from archlab.study.config import RunKey, Study
from archlab.study.execute import load_splits
from archlab.study.metrics import metric_direction
from archlab.study.record import RunRecord
from archlab.study.store import StudyStore
from archlab.study.tuning import Trial, TuneResult, best_trial, overrides_for, propose_round, tuning_seeds
from archlab.train.config import TrainConfig
from archlab.train.speed import resolve_speed_options

__all__ = ["TUNE_DB", "TUNE_DIR", "TrialConfigs", "apply_params", "tuning_phase", "tuning_summary"]

TUNE_DB = "tuning.sqlite"  # the trials' database, beside the study's results.sqlite
TUNE_DIR = "tuning"  # the trials' run folders: DIR/tuning/runs/<dataset>/<variant>/seed<k>

Cell = tuple[str, str]  # (dataset, variant)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_params(config: TrainConfig, params: Mapping[str, Any], where: str) -> TrainConfig:
    """``config`` with a trial's params (``{"train.optim.lr": x}``) set, validated again."""
    over = overrides_for(params)
    raw = _merge(config.model_dump(mode="json"), over.get("train", {}))
    if "model" in over:
        raw["model"] = _merge(raw["model"], over["model"])
    return validate_config(TrainConfig, raw, where)


class TrialConfigs:
    """The resolved configs of the trials (what the runner's tasks record and train with).

    Args:
        plain: the study's config of a cell (``RunConfigs.plain``: ``match:`` applied), called
            with the trial's seed.
    """

    def __init__(self, plain: Callable[[RunKey], TrainConfig]) -> None:
        self._plain = plain
        self._params: dict[RunKey, dict[str, Any]] = {}
        self._resolved: dict[RunKey, TrainConfig] = {}

    def set(self, key: RunKey, params: Mapping[str, Any]) -> None:
        """The params the trial run of ``key`` tries."""
        self._params[key] = dict(params)

    def resolved(self, key: RunKey) -> TrainConfig:
        """The trial's config: the variant's, with its params and the speed options resolved."""
        if key not in self._resolved:
            cfg = apply_params(self._plain(key), self._params[key], f"tuning trial {key.label}")
            self._resolved[key] = resolve_speed_options(cfg, load_splits(cfg.data.model_dump_json()))
        return self._resolved[key]


def _values(rows: Sequence[RunRecord], metric: str) -> dict[tuple[str, str, int], float | None]:
    out: dict[tuple[str, str, int], float | None] = {}
    for r in rows:
        v = (r.val or {}).get(metric) if r.status == "done" else None
        out[(r.dataset, r.variant, r.seed)] = float(v) if v is not None and math.isfinite(v) else None
    return out


def tuning_phase(study: Study, store: StudyStore, plain: Callable[[RunKey], TrainConfig],
                 run_round: Callable[[TrialConfigs, list[RunKey]], None]) -> dict[Cell, TuneResult]:
    """Run the trials of every tuned (dataset, variant), round by round.

    Args:
        study: the study (``tune:`` at study level or per variant).
        store: the trials' database.
        plain: the study's config of a cell (``RunConfigs.plain``).
        run_round: runs the trial runs of ``keys`` not yet stored (the runner's executor) and
            returns when each is done or failed.

    Returns:
        The trials and the chosen one of every tuned (dataset, variant), selected on the
        validation value of the study's primary metric.
    """
    metric = study.decisive_metric()
    higher, _ = metric_direction(metric)
    plans = {(ds, v): study.tuning(v) for ds in study.dataset_configs() for v in study.variants
             if study.tuning(v) is not None}
    seeds = {c: tuning_seeds(cfg.trials, cfg.seeds_per_trial, study.seeds) for c, cfg in plans.items()}
    configs = TrialConfigs(plain)
    done: dict[Cell, list[Trial]] = {c: [] for c in plans}
    for r in range(max((len(cfg.rounds()) for cfg in plans.values()), default=0)):
        batch: dict[Cell, list[Trial]] = {}
        keys: list[RunKey] = []
        for (ds, var), cfg in plans.items():
            if r >= len(cfg.rounds()):
                continue
            proposed = propose_round(cfg, f"{ds}/{var}", r, done[(ds, var)], higher_is_better=higher)
            batch[(ds, var)] = [Trial(n, p, seeds[(ds, var)][n]) for n, p in zip(cfg.rounds()[r], proposed)]
            for t in batch[(ds, var)]:
                for s in t.seeds:
                    key = RunKey(dataset=ds, variant=var, seed=s)
                    configs.set(key, t.params)
                    keys.append(key)
        run_round(configs, keys)
        values = _values(store.rows(with_history=False, with_predictions=False), metric)
        for (ds, var), trials in batch.items():
            for t in trials:
                got = [values.get((ds, var, s)) for s in t.seeds]
                value = None if any(g is None for g in got) else sum(got) / len(got)  # type: ignore[misc]
                done[(ds, var)].append(Trial(t.number, t.params, t.seeds, value))
    return {c: TuneResult(c[1], tuple(ts), best_trial(ts, higher_is_better=higher)) for c, ts in done.items()}


def tuning_summary(results: Mapping[Cell, TuneResult], metric: str) -> dict[str, Any]:
    """What the study records of its tuning phase (meta ``tuning``; the report reads it)."""
    return {
        "metric": metric,
        "cells": [
            {
                "dataset": ds, "variant": var,
                "trials": [{"number": t.number, "params": t.params, "seeds": list(t.seeds), "value": t.value}
                           for t in res.trials],
                "best": None if res.best is None else res.best.number,
            }
            for (ds, var), res in results.items()
        ],
    }
