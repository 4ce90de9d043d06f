"""An equal tuning budget per variant: ``tune:`` (Melis et al. 2018; Dodge et al. 2019).

A study (or one variant) declares a search space and a number of trials::

    tune:
      space: {train.optim.lr: loguniform(1e-4, 1e-2), train.optim.weight_decay: [0, 5e-4]}
      trials: 12
      sampler: tpe            # or random
      seeds_per_trial: 1
      round: 4                # trials proposed (and run in parallel) per round

Every variant gets the same space and the same number of trials; each trial is scored on the
**validation** split only (the mean over its ``seeds_per_trial`` seeds) and the variant then runs
its seed phase at its best trial's config.

Reproducibility (the design choice): trials are proposed in **rounds of a fixed size**. The
proposals of round ``r`` of a variant are a pure function of (the sampler seed of that variant,
``r``, the scores of rounds ``0 .. r-1`` in trial-number order): a fresh Optuna sampler is seeded
with ``derive_seed(sampler_seed, variant, r)``, the earlier trials are added to it in trial-number
order (``add_trial``), and ``round`` trials are asked. Nothing depends on which worker finished
first, so resume, kill -9, ``--workers`` and Ray give the same trials, configs and choice — the same
rule the adaptive seed rounds follow (:mod:`archlab.study.sequential`). Optuna's TPE given the
same told history and seed is deterministic; its first ``n_startup`` trials are random draws.

Seeds: trial ``t``'s seeds are :func:`tuning_seeds` — derived from ``("tune", t, j)`` and checked
disjoint from the seed phase's seeds, so no seed-phase result is a tuning result re-used. Trial
``t`` has the same seeds in every variant (paired trials).

The test split is never read while tuning: :func:`guard_test` wraps a run's splits so that any
access to ``.test`` raises :class:`TestSplitAccess`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from archlab._seed import derive_seed
from archlab.errors import ArchlabError, ConfigError

__all__ = ["TuneConfig", "Param", "Trial", "TuneResult", "TestSplitAccess", "parse_space", "tuning_seeds",
           "propose_round", "run_tuning", "best_trial", "overrides_for", "guard_test", "require_optuna"]

_MAX_SEED = (1 << 63) - 1
_FN = re.compile(r"^\s*(loguniform|uniform|int|logint)\s*\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)\s*$")
_SECTIONS = ("train.", "model.")  # what a trial may change (data and seeds stay the study's)


class TestSplitAccess(ArchlabError, RuntimeError):
    __test__ = False  # not a pytest test class
    """The test split was read during a tuning trial (selection must read the validation split only)."""


@dataclass(frozen=True)
class Param:
    """One dimension of the search space.

    Attributes:
        key: dotted path in the run config (``train.optim.lr``).
        kind: ``loguniform``, ``uniform``, ``int``, ``logint`` or ``choice``.
        low, high: bounds of a range (inclusive); choices: the values of a ``choice``.
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number") from None


def parse_space(raw: Mapping[str, Any], where: str = "tune.space") -> dict[str, Param]:
    """Validate a search space ``{key: "loguniform(a, b)" | "uniform(a, b)" | "int(a, b)" | [choices]}``."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where} must be a non-empty mapping key -> distribution, "
                          "e.g. {train.optim.lr: loguniform(1e-4, 1e-2)}")
    out = {}
    for key, spec in raw.items():
        at = f"{where}.{key}"
        if not isinstance(key, str) or not key.startswith(_SECTIONS) or ".." in key or key.endswith("."):
            raise ConfigError(f"{at}: a tuned key is a dotted path under train. or model. "
                              f"(e.g. train.optim.lr), got {key!r}")
        if key in ("train.epochs", "train.seed"):
            raise ConfigError(f"{at}: the tuning budget cannot change {key} (every trial trains as the study says)")
        if isinstance(spec, list):
            if not spec or len(set(map(repr, spec))) != len(spec):
                raise ConfigError(f"{at}: a choice is a non-empty list of distinct values, got {spec!r}")
            out[key] = Param(key, "choice", choices=tuple(spec))
            continue
        if isinstance(spec, Mapping) and len(spec) == 1:  # {loguniform: [1e-4, 1e-2]}
            (fn, bounds), = spec.items()
            if isinstance(bounds, list) and len(bounds) == 2:
                spec = f"{fn}({bounds[0]}, {bounds[1]})"
        m = _FN.match(spec) if isinstance(spec, str) else None
        if m is None:
            hint = (" (in a YAML {...} mapping the comma splits it: quote it, \"loguniform(1e-4, 1e-2)\")"
                    if isinstance(spec, str) and "(" in spec and ")" not in spec else "")
            raise ConfigError(f"{at}: expected loguniform(a, b), uniform(a, b), int(a, b), logint(a, b), "
                              f"{{loguniform: [a, b]}} or a list of choices, got {spec!r}{hint}")
        kind, lo, hi = m.group(1), _number(m.group(2), at), _number(m.group(3), at)
        if not lo < hi:
            raise ConfigError(f"{at}: the low bound {lo:g} must be below the high bound {hi:g}")
        if kind.startswith("log") and lo <= 0:
            raise ConfigError(f"{at}: {kind} needs a positive low bound, got {lo:g}")
        if kind in ("int", "logint") and (lo != int(lo) or hi != int(hi)):
            raise ConfigError(f"{at}: {kind} needs integer bounds, got {lo:g}, {hi:g}")
        out[key] = Param(key, kind, lo, hi)
    return out


class TuneConfig(BaseModel):
    """``tune:``: the search space, the trial budget and the sampler (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: dict[str, Any]
    trials: int = Field(12, ge=1, le=10_000)
    sampler: Literal["tpe", "random"] = "tpe"
    seeds_per_trial: int = Field(1, ge=1, le=100)
    round: int = Field(4, ge=1, le=1000)  # trials per round: fixed, so the choice never depends on scheduling
    seed: int = Field(0, ge=0)  # the sampler seed (per variant: derived with the variant's name)
    n_startup: int = Field(4, ge=1)  # TPE's random trials before it models the scores

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_space(v, "space")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    def params(self) -> dict[str, Param]:
        """The parsed search space."""
        return parse_space(self.space)

    def rounds(self) -> list[range]:
        """Trial numbers of each round."""
        return [range(s, min(s + self.round, self.trials)) for s in range(0, self.trials, self.round)]


@dataclass(frozen=True)
class Trial:
    """One tuning trial of a variant.

    Attributes:
        number: 0-based trial number; params: the tried values by dotted key; seeds: its seeds;
        value: the mean validation score over its seeds (``None`` until scored or when it failed).
    """

    number: int
    params: dict[str, Any]
    seeds: tuple[int, ...]
    value: float | None = None


@dataclass(frozen=True)
class TuneResult:
    """The trials of one variant and the chosen one."""

    variant: str
    trials: tuple[Trial, ...]
    best: Trial | None


def require_optuna() -> Any:
    """Import Optuna or say how to install it (``pip install archlab[tune]``)."""
    try:
        import optuna  # optional extra: only studies with `tune:` need it
    except ImportError:
        raise ConfigError("`tune:` needs Optuna: pip install 'archlab[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tuning_seeds(trials: int, seeds_per_trial: int, seed_phase: Sequence[int]) -> list[tuple[int, ...]]:
    """The seeds of every trial: derived from ``("tune", trial, j)``, disjoint from ``seed_phase``.

    A derived seed that collides with a seed-phase seed (or an earlier tuning seed) is re-derived
    with a counter, so the two phases never share a seed.
    """
    taken = set(int(s) for s in seed_phase)
    out = []
    for t in range(trials):
        row = []
        for j in range(seeds_per_trial):
            bump = 0
            while True:
                s = derive_seed("tune", t, j, bump) & 0x7FFFFFFF  # within every RNG's range
                if s not in taken:
                    break
                bump += 1
            taken.add(s)
            row.append(s)
        out.append(tuple(row))
    return out


def _distribution(optuna: Any, p: Param) -> Any:
    d = optuna.distributions
    if p.kind == "choice":
        return d.CategoricalDistribution(list(p.choices))
    if p.kind in ("int", "logint"):
        return d.IntDistribution(int(p.low), int(p.high), log=p.kind == "logint")
    return d.FloatDistribution(p.low, p.high, log=p.kind == "loguniform")


def _sampler(optuna: Any, cfg: TuneConfig, seed: int) -> Any:
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup)


def propose_round(cfg: TuneConfig, variant: str, r: int, told: Sequence[Trial], *,
                  higher_is_better: bool = True) -> list[dict[str, Any]]:
    """The params of round ``r``'s trials: a pure function of the seed, ``variant``, ``r`` and ``told``.

    Args:
        cfg: the tuning config.
        variant: the variant's name (part of its sampler seed).
        r: the round number.
        told: the scored trials of the earlier rounds (any order; added in trial-number order; a
            failed trial, ``value None``, is told as failed).
        higher_is_better: the direction of the validation metric.
    """
    optuna = require_optuna()
    space = cfg.params()
    dists = {k: _distribution(optuna, p) for k, p in space.items()}
    study = optuna.create_study(direction="maximize" if higher_is_better else "minimize",
                                sampler=_sampler(optuna, cfg, derive_seed(cfg.seed, "tune-sampler", variant, r) & 0xFFFFFFFF))
    for t in sorted(told, key=lambda t: t.number):
        state = optuna.trial.TrialState.COMPLETE if t.value is not None else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=dict(t.params), distributions=dists, state=state,
                                                  value=t.value))
    out = []
    for _ in cfg.rounds()[r]:
        trial = study.ask(dists)
        out.append({k: trial.params[k] for k in space})
    return out


def best_trial(trials: Sequence[Trial], *, higher_is_better: bool = True) -> Trial | None:
    """The best scored trial; ties go to the lowest trial number."""
    scored = [t for t in trials if t.value is not None]
    if not scored:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(scored, key=lambda t: (sign * t.value, t.number))


Evaluate = Callable[[Sequence[Trial]], Sequence[float | None]]


def run_tuning(cfg: TuneConfig, variant: str, evaluate: Evaluate, *, seed_phase: Sequence[int],
               higher_is_better: bool = True) -> TuneResult:
    """Run the trials of one variant round by round.

    Args:
        cfg: the tuning config.
        variant: the variant's name.
        evaluate: scores a round's trials (params and seeds set, in trial-number order) on the
            validation split; returns one value (or ``None`` for a failed trial) per trial. An
            executor may run them in parallel: only the returned values matter.
        seed_phase: the seed phase's seeds (the tuning seeds avoid them).
        higher_is_better: the direction of the validation metric.

    Returns:
        Every trial with its value, and the best one.
    """
    seeds = tuning_seeds(cfg.trials, cfg.seeds_per_trial, seed_phase)
    done: list[Trial] = []
    for r, numbers in enumerate(cfg.rounds()):
        params = propose_round(cfg, variant, r, done, higher_is_better=higher_is_better)
        batch = [Trial(n, p, seeds[n]) for n, p in zip(numbers, params)]
        values = list(evaluate(batch))
        if len(values) != len(batch):
            raise ArchlabError(f"tuning {variant!r}: evaluate returned {len(values)} values for {len(batch)} trials")
        done += [Trial(t.number, t.params, t.seeds, None if v is None else float(v)) for t, v in zip(batch, values)]
    return TuneResult(variant, tuple(done), best_trial(done, higher_is_better=higher_is_better))


def overrides_for(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A trial's params as variant overrides: ``{"train.optim.lr": x}`` -> ``{"train": {"optim": {"lr": x}}}``."""
    out: dict[str, dict[str, Any]] = {"train": {}, "model": {}}
    for key, value in params.items():
        section, *path = key.split(".")
        node = out[section]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return {k: v for k, v in out.items() if v}


class _GuardedSplits:
    """The splits of a tuning trial: ``train`` and ``val`` as given, ``test`` raises."""

    def __init__(self, splits: Any, where: str) -> None:
        self._splits = splits
        self._where = where

    @property
    def train(self) -> Any:
        return self._splits.train

    @property
    def val(self) -> Any:
        return self._splits.val

    @property
    def test(self) -> Any:
        raise TestSplitAccess(f"{self._where}: the test split was read during a tuning trial; trials select on "
                            "the validation split only")

    def sizes(self) -> dict[str, int]:
        return {"train": len(self._splits.train), "val": len(self._splits.val)}

    def __getattr__(self, name: str) -> Any:  # anything else of the splits, as it is
        return getattr(self._splits, name)


def guard_test(splits: Any, where: str = "tuning trial") -> Any:
    """``splits`` with a ``test`` that raises :class:`TestSplitAccess` (train/val unchanged)."""
    return _GuardedSplits(splits, where)
