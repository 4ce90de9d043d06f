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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from archlab._validation import load_yaml, validate_config
from archlab.errors import ConfigError, close_matches
from archlab.train.config import DataConfig, ModelConfig, TrainConfig

__all__ = ["Study", "Variant", "SmokeConfig", "load_study", "RunKey"]

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
# TrainConfig keys a study sets in `train:` (data, model and seed come from the study itself).
_TRAIN_KEYS = set(TrainConfig.model_fields) - {"data", "model", "seed"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    """Overrides that make a variant: deep-merged into the base ``model`` and ``train`` sections."""

    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class SmokeConfig(_Strict):
    """What ``--smoke`` replaces: tiny synthetic data, few epochs and seeds (used by the tests)."""

    data: DataConfig | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = None
    model: dict[str, Any] = Field(default_factory=dict)


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
    seeds: list[int]
    baseline: str
    smoke: SmokeConfig | None = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("seeds must be a count or a list of integers")
        if isinstance(v, int):
            if v < 1:
                raise ValueError("seeds must be at least 1 (a count) or a non-empty list")
            return list(range(v))
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("name may only use letters, digits and _ . + -")
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
                raise ValueError(f"variant name {name!r} may only use letters, digits and _ . + -")
        if self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not among the variants {sorted(self.variants)}")
        if (self.data is None) == (self.datasets is None):
            raise ValueError("give exactly one of `data` (one dataset) or `datasets` (a list)")
        if self.datasets is not None:
            labels = [dataset_label(d) for d in self.datasets]
            if len(set(labels)) != len(labels):
                raise ValueError(f"datasets repeat: {labels}")
        _check_train_keys(self.train, "train")
        for name, v in self.variants.items():
            _check_train_keys(v.train, f"variants.{name}.train")
        return self

    # ------------------------------------------------------------------------------------------
    def with_smoke(self) -> Study:
        """The study with its ``smoke`` section applied (synthetic data, tiny budget)."""
        if self.smoke is None:
            raise ConfigError(f"study {self.name!r} has no `smoke:` section; --smoke needs one")
        s = self.smoke
        upd: dict[str, Any] = {"train": _merge(self.train, s.train)}
        if s.data is not None:
            upd.update(data=s.data, datasets=None)
        if s.seeds is not None:
            upd["seeds"] = s.seeds
        if s.model:
            upd["model"] = ModelConfig.model_validate(_merge(self.model.model_dump(), s.model))
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
        raw["model"] = _merge(self.model.model_dump(), variant.model)
        raw["data"] = data.model_dump()
        raw["seed"] = key.seed
        return validate_config(TrainConfig, raw, f"study {self.name!r} variant {key.variant!r}")


def _check_train_keys(train: dict[str, Any], where: str) -> None:
    for key in train:
        if key not in _TRAIN_KEYS:
            hint = close_matches(str(key), _TRAIN_KEYS)
            fix = f"did you mean {', '.join(repr(h) for h in hint)}?" if hint else f"allowed: {', '.join(sorted(_TRAIN_KEYS))}"
            raise ValueError(f"unknown key '{where}.{key}'; {fix}")


def dataset_label(d: DataConfig) -> str:
    """Short label of a dataset entry: its name plus an image size when one is set."""
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
    study = validate_config(Study, raw, str(path))
    if smoke:
        study = study.with_smoke()
    for key in study.grid()[: len(study.variants) * len(study.dataset_configs())]:
        try:
            study.resolve(key)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return study
