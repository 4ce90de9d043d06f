"""The study file: one YAML in, a grid of fair runs out (SPEC §5).

A study names a base run (``data``, ``model``, ``train``), a set of named ``variants`` that override
model or training options, the ``seeds``, the ``baseline`` variant and optionally several
``datasets``. :meth:`Study.resolve` turns every (dataset, variant, seed) into a full, validated
:class:`archlab.train.config.TrainConfig`.

Example::

    name: quickstart
    data: {name: digits, options: {image_size: 28}}
    model: {name: mnist_cnn}
    train: {epochs: 10, optim: {name: adam, lr: 0.001}}
    seeds: 5                      # = [0, 1, 2, 3, 4]
    baseline: linear
    variants:
      linear: {model: {head: linear}}
      mlp: {model: {head: mlp}}
      low_lr: {train: {optim: {lr: 1.0e-6}}}
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_serializer, model_validator

from archlab._seed import derive_seed
from archlab._validation import load_yaml, validate_config
from archlab.errors import ConfigError, close_matches
from archlab.plugins import import_plugins
from archlab.study.matching import MatchConfig
from archlab.study.metrics import default_margin
from archlab.study.tuning import TuneConfig
from archlab.train.config import DataConfig, ModelConfig, TrainConfig

__all__ = ["Study", "Variant", "SmokeConfig", "SeedPlan", "load_study", "RunKey", "DEFAULT_MARGINS",
           "study_from_dict"]

# Equivalence margins per metric (absolute, in the metric's own unit): the registered defaults
# (archlab.study.metrics: 1 pp for accuracy/F1/Dice, none for a loss), read through Study.margin.
DEFAULT_MARGINS: dict[str, float] = {m: default_margin(m) for m in ("accuracy", "f1_macro", "dice")}  # type: ignore[misc]

# Names become folder names (runs/<dataset>/<variant>/seed<k>): a first character that is a letter,
# digit or underscore rules out "." and ".." (and hidden folders), and the length is bounded.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$")
_NAME_RULE = "letters, digits and _ . + - (at most 100, not starting with . + -)"
_MAX_SEED = 2**63 - 1  # SQLite's INTEGER and torch's manual_seed range
# TrainConfig keys a study sets in `train:` (data, model and seed come from the study itself).
_TRAIN_KEYS = set(TrainConfig.model_fields) - {"data", "model", "seed", "plugins"}  # plugins: from `imports:`


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    """Overrides that make a variant: deep-merged into the base ``model`` and ``train`` sections."""

    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    # training-split cleaning only ({clean: {...}}, archlab.data.cleaning): val/test stay the same;
    # `image_size` only in a study with `vary: [resolution]` (the splits resized after splitting)
    data: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    # capacity matching (archlab.study.matching): a model knob turned to reach another variant's size
    match: MatchConfig | None = None
    # this variant's own tuning budget (archlab.study.tuning), instead of the study's `tune:`
    tune: TuneConfig | None = None

    @model_serializer(mode="wrap")
    def _unset_keys_left_out(self, handler: Any) -> dict[str, Any]:
        return _without_unset(handler(self), ("match", "tune"))

    @field_validator("data")
    @classmethod
    def _train_only(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - {"clean", "image_size"})
        if bad:
            raise ValueError(f"a variant's data may only set `clean` (training-split cleaning, so val/test stay "
                             f"identical across variants) or, in a study with `vary: [resolution]`, "
                             f"`image_size`; got {bad}")
        if v.get("clean") is not None:
            from archlab.train.config import CleanConfig

            CleanConfig.model_validate(v["clean"])  # its errors name data.clean.<key>
        return v


class SeedPlan(_Strict):
    """``seeds: {min: 3, max: 30, until: conclusive}``: seeds added in rounds until decided.

    The runner trains ``min`` seeds, then ``step`` more at a time, and stops adding seeds to a
    comparison once its sequential test decides it (better / worse / equivalent) or ``max`` is
    reached (:mod:`archlab.study.sequential`). The seeds are ``0 .. max-1`` in order, so every
    variant that still runs gets the same seeds as the baseline.
    """

    min: int = Field(3, ge=2)  # a paired test needs at least two pairs; three is the least useful
    max: int = Field(20, ge=2, le=1000)
    step: int = Field(1, ge=1)  # seeds added per round (one look at the data per round)
    until: Literal["conclusive"] = "conclusive"
    # alpha spending over the looks (archlab.study.sequential, docs/statistics.md): quadratic decides
    # huge differences at the first look; obrien_fleming keeps the most power at the last look
    spending: Literal["quadratic", "obrien_fleming", "pocock", "linear", "cubic"] = "quadratic"

    @model_validator(mode="after")
    def _order(self) -> SeedPlan:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is smaller than min ({self.min})")
        return self


class SmokeConfig(_Strict):
    """What ``--smoke`` replaces: tiny synthetic data, few epochs and seeds (used by the tests)."""

    data: DataConfig | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | SeedPlan | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    analyses: dict[str, dict[str, Any]] = Field(default_factory=dict)  # options merged over the study's
    tune: dict[str, Any] = Field(default_factory=dict)  # merged over every `tune:` (e.g. {trials: 2})
    budgets: list[int] | None = None  # replaces `budgets:` (within the smoke run's epochs)

    @model_serializer(mode="wrap")
    def _unset_keys_left_out(self, handler: Any) -> dict[str, Any]:
        return _without_unset(handler(self), ("tune", "budgets"))

    @field_validator("seeds", mode="before")
    @classmethod
    def _plan(cls, v: Any) -> Any:
        return _seed_plan(v, "smoke.seeds") if isinstance(v, dict) else v


class RunKey(BaseModel):
    """One cell of the grid."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    variant: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.variant}/seed{self.seed}"


class Study(_Strict):
    """A validated study file."""

    name: str
    description: str = ""
    data: DataConfig | None = None  # the dataset (or use `datasets` for several)
    datasets: list[DataConfig] | None = None  # the same grid on several datasets
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig keys except data/model/seed
    variants: dict[str, Variant]
    seeds: list[int]  # a count (seeds: 5 = [0..4]), a list, or {min, max, until: conclusive}
    seeds_plan: SeedPlan | None = None  # set from `seeds: {min, max, ...}` (adaptive seeds)
    baseline: str
    split: Literal["fixed", "per_seed"] = "fixed"  # per_seed: the train/val split is redrawn per seed
    margins: dict[str, float] = Field(default_factory=dict)  # equivalence margin per metric (DEFAULT_MARGINS)
    alpha: float = Field(0.05, gt=0, lt=0.5)  # family-wise error rate of the study's verdicts
    primary_metric: str | None = None  # the decisive metric (None: the monitor, else accuracy)
    analyses: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-run analyses (§6)
    tune: TuneConfig | None = None  # the same tuning budget for every variant (archlab.study.tuning)
    budgets: list[int] = Field(default_factory=list)  # epochs at which each run also tests (archlab.study.budgets)
    # what may differ between variants besides model/train: [resolution] lets a variant set
    # data.image_size (the variable under study, e.g. compound scaling); the report says so
    vary: list[Literal["resolution"]] = Field(default_factory=list)
    smoke: SmokeConfig | None = None
    imports: list[str] = Field(default_factory=list)  # user code: files (relative to the study file) or modules
    # the imported plugins' records ({module, path, sha256}), set by load_study / with_plugins
    _plugins: list[dict[str, str]] = PrivateAttr(default_factory=list)

    @property
    def plugins(self) -> list[dict[str, str]]:
        """The records of the study's imported plugins (every run's config carries them)."""
        return list(self._plugins)

    def with_plugins(self, records: list[dict[str, str]]) -> Study:
        """This study with the records of its imported plugins (:func:`archlab.plugins.import_plugins`)."""
        out = self.model_copy()
        out._plugins = [dict(r) for r in records]
        return out

    @model_serializer(mode="wrap")
    def _unset_keys_left_out(self, handler: Any) -> dict[str, Any]:
        # a study without tune:/budgets:/imports: is recorded (meta `study`) exactly as before they existed
        return _without_unset(handler(self), ("tune", "budgets", "imports", "vary"))

    @model_validator(mode="before")
    @classmethod
    def _seed_plan(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("seeds"), dict):
            raw = dict(raw)
            plan = _seed_plan(raw.pop("seeds"), "seeds")
            raw["seeds_plan"] = plan
            raw["seeds"] = list(range(plan.max))
        return raw

    @field_validator("analyses", mode="before")
    @classmethod
    def _analyses(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):  # analyses: [rotation, convergence] = default options
            if not all(isinstance(a, str) for a in v):
                raise ValueError("analyses must be a list of names or a mapping name -> options")
            return {a: {} for a in v}
        if isinstance(v, dict):
            return {k: ({} if o is None else o) for k, o in v.items()}
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("seeds must be a count, a list of integers or {min, max, until: conclusive}")
        if isinstance(v, int):
            if v < 1:
                raise ValueError("seeds must be at least 1 (a count) or a non-empty list")
            if v > 10_000:
                raise ValueError(f"seeds: {v} runs per variant is more than the limit of 10000")
            return list(range(v))
        if isinstance(v, list):
            for s in v:
                if isinstance(s, bool) or not isinstance(s, int):
                    raise ValueError(f"seeds must be integers, got {s!r}")
                if not 0 <= s <= _MAX_SEED:
                    raise ValueError(f"seed {s} is outside 0..2**63-1")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name {v!r} may only use {_NAME_RULE}")
        return v

    @model_validator(mode="after")
    def _check(self) -> Study:
        if not self.seeds:
            raise ValueError("seeds is empty: give a count (seeds: 5) or a list (seeds: [0, 1, 2])")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds has duplicates: {self.seeds}")
        if not self.variants:
            raise ValueError("variants is empty: name at least the baseline variant")
        for name in self.variants:
            if not _NAME.match(name):
                raise ValueError(f"variant name {name!r} may only use {_NAME_RULE}")
        if self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not among the variants {sorted(self.variants)}")
        if (self.data is None) == (self.datasets is None):
            raise ValueError("give exactly one of `data` (one dataset) or `datasets` (a list)")
        if self.datasets is not None:
            labels = [dataset_label(d) for d in self.datasets]
            if len(set(labels)) != len(labels):
                raise ValueError(
                    f"datasets repeat: {labels}; give each entry a distinct `label:` (e.g. label: xray_a)"
                )
        for d in self.dataset_configs().values():
            label = dataset_label(d)
            if not _NAME.match(label):
                raise ValueError(f"dataset label {label!r} may only use {_NAME_RULE}; set `label:` on the entry")
        if any(isinstance(b, bool) or b < 1 for b in self.budgets) or sorted(set(self.budgets)) != self.budgets:
            raise ValueError(f"budgets must be increasing positive epoch counts, e.g. [10, 50, 200]; got {self.budgets}")
        for metric, m in self.margins.items():
            if not (isinstance(m, (int, float)) and m > 0 and m == m and m != float("inf")):
                raise ValueError(f"margins.{metric} must be a positive number, got {m!r}")
        _check_train_keys(self.train, "train")
        for name, v in self.variants.items():
            _check_train_keys(v.train, f"variants.{name}.train")
            if v.match is not None:
                _check_match(name, v.match, self.variants)
            if "image_size" in v.data and "resolution" not in self.vary:
                raise ValueError(
                    f"variants.{name}.data.image_size: a per-variant resolution changes the input, so it "
                    f"is refused unless the study declares it the variable under study: add `vary: [resolution]`"
                )
        return self

    def tuning(self, variant: str) -> TuneConfig | None:
        """The tuning budget of ``variant``: its own ``tune:``, else the study's (``None``: untuned)."""
        own = self.variants[variant].tune
        return own if own is not None else self.tune

    def resolutions(self) -> dict[str, Any]:
        """Variant -> its own ``image_size`` (only variants that set one; ``vary: [resolution]``)."""
        return {name: v.data["image_size"] for name, v in self.variants.items() if "image_size" in v.data}

    # ------------------------------------------------------------------------------------------
    def margin(self, metric: str) -> float | None:
        """The equivalence margin of ``metric`` (the study's, else :data:`DEFAULT_MARGINS`)."""
        return self.margins.get(metric, default_margin(metric))

    def decisive_metric(self) -> str:
        """The primary metric: declared, else the monitor when it is a test metric, else accuracy."""
        if self.primary_metric:
            return self.primary_metric
        monitor = self.train.get("monitor")
        return monitor if monitor in ("accuracy", "f1_macro", "dice") else "accuracy"  # the engine's monitors

    def with_smoke(self) -> Study:
        """The study with its ``smoke`` section applied (synthetic data, tiny budget)."""
        if self.smoke is None:
            raise ConfigError(f"study {self.name!r} has no `smoke:` section; --smoke needs one")
        s = self.smoke
        upd: dict[str, Any] = {"train": _merge(self.train, s.train)}
        if s.data is not None:
            upd.update(data=s.data, datasets=None)
        if isinstance(s.seeds, SeedPlan):
            upd.update(seeds=list(range(s.seeds.max)), seeds_plan=s.seeds)
        elif s.seeds is not None:
            upd.update(seeds=s.seeds, seeds_plan=None)
        if s.analyses:  # smaller analysis options (fewer images/angles) for the smoke run
            upd["analyses"] = {k: {**o, **s.analyses.get(k, {})} for k, o in self.analyses.items()}
        if s.budgets is not None:
            upd["budgets"] = s.budgets
        if s.tune:  # a smaller tuning budget for the smoke run, the study's and every variant's
            if self.tune is not None:
                upd["tune"] = TuneConfig.model_validate({**self.tune.model_dump(), **s.tune})
            upd["variants"] = {n: v if v.tune is None else v.model_copy(
                update={"tune": TuneConfig.model_validate({**v.tune.model_dump(), **s.tune})})
                for n, v in self.variants.items()}
        if s.model:
            upd["model"] = ModelConfig.model_validate(_merge(self.model.model_dump(exclude={"pretrained_sha256"}), s.model))
        return self.model_copy(update=upd)

    def dataset_configs(self) -> dict[str, DataConfig]:
        """The datasets of the grid by label."""
        items = self.datasets if self.datasets is not None else [self.data]
        return {dataset_label(d): d for d in items}

    def grid(self) -> list[RunKey]:
        """Every (dataset, variant, seed), baseline first within each dataset and seed order."""
        order = [self.baseline] + [v for v in self.variants if v != self.baseline]
        return [RunKey(dataset=d, variant=v, seed=s) for d in self.dataset_configs() for s in self.seeds for v in order]

    def resolve(self, key: RunKey) -> TrainConfig:
        """The full run config of one grid cell (validated; errors name the variant)."""
        data = self.dataset_configs()[key.dataset]
        variant = self.variants[key.variant]
        raw = _merge(self.train, variant.train)
        # The thread count is part of every run's config (float reductions depend on it), fixed by
        # the study, never by --workers or the machine: one thread per run unless the study says.
        raw.setdefault("threads", 1)
        if self.budgets:  # declared before the study runs: every run tests at these epochs too
            raw["budgets"] = list(self.budgets)
        # the weights file's hash is recomputed from the path the variant ends up with
        raw["model"] = _merge(self.model.model_dump(exclude={"pretrained_sha256"}), variant.model)
        over = {k: v for k, v in variant.data.items() if k != "image_size"}
        raw["data"] = _merge(data.model_dump(), over)
        if "image_size" in variant.data:  # resized after the split (archlab.data.resolution)
            raw["data"]["resize"] = variant.data["image_size"]
        if self.split == "per_seed":  # train/val redrawn per seed (test kept), identical across variants
            raw["data"]["resample_seed"] = derive_seed(data.split_seed, "split", key.seed) & 0x7FFFFFFF
        raw["seed"] = key.seed
        if self._plugins:
            raw["plugins"] = self.plugins
        return validate_config(TrainConfig, raw, f"study {self.name!r} variant {key.variant!r}")


def _seed_plan(raw: Any, where: str) -> SeedPlan:
    from pydantic import ValidationError

    try:
        return SeedPlan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}{'.' + loc if loc else ''}: {msg} (expected {{min: 3, max: 20, until: conclusive}})") from None


def _without_unset(out: Any, keys: tuple[str, ...]) -> Any:
    """``out`` (a dump) without the newer keys that are unset (``None`` or empty)."""
    if isinstance(out, dict):
        for k in keys:
            if k in out and not out[k]:
                del out[k]
    return out


def _check_match(name: str, match: MatchConfig, variants: dict[str, Variant]) -> None:
    where = f"variants.{name}.match"
    if match.target not in variants:
        hint = close_matches(match.target, variants)
        raise ValueError(f"{where}.{match.measure}: {match.target!r} is not a variant"
                         + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else f" ({sorted(variants)})"))
    if match.target == name:
        raise ValueError(f"{where}.{match.measure}: a variant cannot match its own size")
    if variants[match.target].match is not None:
        raise ValueError(f"{where}.{match.measure}: {match.target!r} is itself matched; match a variant of fixed size")


def _check_train_keys(train: dict[str, Any], where: str) -> None:
    for key in train:
        if key not in _TRAIN_KEYS:
            hint = close_matches(str(key), _TRAIN_KEYS)
            fix = f"did you mean {', '.join(repr(h) for h in hint)}?" if hint else f"allowed: {', '.join(sorted(_TRAIN_KEYS))}"
            raise ValueError(f"unknown key '{where}.{key}'; {fix}")


def dataset_label(d: DataConfig) -> str:
    """Short label of a dataset entry: its ``label`` when given, else its name plus an image size."""
    if d.label:
        return d.label
    size = d.options.get("image_size")
    label = d.name if size is None else f"{d.name}{size}"
    return label


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_study(path: str | Path, *, smoke: bool = False) -> Study:
    """Read and validate a study file; every variant's run config is validated too."""
    path = Path(path)
    raw = load_yaml(path)
    raw.setdefault("name", path.stem)
    return study_from_dict(raw, path, smoke=smoke)


def study_from_dict(raw: dict[str, Any], path: str | Path | None = None, *, smoke: bool = False,
                    base: str | Path | None = None) -> Study:
    """Validate a study given as a mapping (a parsed study file, named ``path`` in errors).

    The study's ``imports`` (and the installed ``archlab.plugins``) are imported first, so the
    components they register validate like built-in ones; they are relative to ``base``, else the
    study file's folder, else the working folder.
    """
    where = str(path) if path is not None else f"study {raw.get('name', '')!s}".strip()
    folder = base if base is not None else (Path(path).parent if path is not None else None)
    records = import_plugins(raw.get("imports") or [], folder, where)
    study = validate_config(Study, raw, where).with_plugins(records)
    if smoke:
        study = study.with_smoke()
    for key in study.grid()[: len(study.variants) * len(study.dataset_configs())]:
        try:
            study.resolve(key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return study
