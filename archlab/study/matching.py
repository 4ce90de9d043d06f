"""Capacity-matched variants: ``match:`` finds the width whose size equals another variant's.

A variant declares which of its integer options to turn and whose size to reach::

    variants:
      fc1: {model: {head: linear}}
      ncp_matched:
        model: {head: ncp_original}
        match: {params: fc1, key: model.head_kwargs.sensory, tolerance: 0.02}

``params: fc1`` matches the parameter count of variant ``fc1`` (``flops: fc1`` its FLOPs per
sample; ``scope: head`` counts the head's parameters alone) on each dataset of the study; ``key`` is a dotted path into the run config under
``model.`` (an integer part indexes a list: ``model.head_kwargs.hidden.0``). The size must grow
with the knob: :func:`search_knob` doubles the knob from ``range[0]`` until the size reaches the
target, then bisects to the smallest value that reaches it, and keeps that value or the one below,
whichever is closer. The chosen value is written into the variant's run config (so it is recorded
with every run and shown in the report); a target no value reaches within ``tolerance`` is one
error naming the closest reachable count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archlab._validation import validate_config
from archlab.analysis.profile import count_parameters, profile
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.run import build_run_model, model_input_size

__all__ = ["MatchConfig", "MatchResult", "search_knob", "set_knob", "apply_knob", "model_size", "resolve_match"]


class MatchConfig(BaseModel):
    """``match:`` of a variant: reach ``params`` (or ``flops``) of the named variant by turning ``key``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: str | None = None  # the variant whose parameter count is matched
    flops: str | None = None  # the variant whose FLOPs per sample are matched
    key: str  # dotted path of an integer option under model. (e.g. model.head_kwargs.hidden)
    tolerance: float = Field(0.02, gt=0, lt=1)  # relative: |count - target| <= tolerance * target
    range: tuple[int, int] = (1, 1 << 20)  # the values the knob may take
    # what is counted: the whole model (what runs store as `params`) or the head alone (a shared
    # backbone dominates the whole count, so a 2 % tolerance on it can hide a 10x head difference)
    scope: Literal["model", "head"] = "model"

    @model_validator(mode="after")
    def _check(self) -> MatchConfig:
        if (self.params is None) == (self.flops is None):
            raise ValueError("give exactly one of `params: VARIANT` or `flops: VARIANT`")
        if not self.key.startswith("model.") or ".." in self.key or self.key.endswith("."):
            raise ValueError(f"key must be a dotted path under model. (e.g. model.head_kwargs.hidden), got {self.key!r}")
        if self.scope == "head" and self.flops is not None:
            raise ValueError("scope: head counts parameters only; match flops with scope: model")
        if not 1 <= self.range[0] <= self.range[1]:
            raise ValueError(f"range must be [low, high] with 1 <= low <= high, got {list(self.range)}")
        return self

    @property
    def target(self) -> str:
        """The variant whose size is matched."""
        return self.params if self.params is not None else self.flops  # type: ignore[return-value]

    @property
    def measure(self) -> str:
        """``"params"`` or ``"flops"``."""
        return "params" if self.params is not None else "flops"


@dataclass(frozen=True)
class MatchResult:
    """The matched knob: its value, the size it gives and the target size."""

    key: str
    value: int
    count: int
    target: int
    measure: str

    @property
    def relative_error(self) -> float:
        """``(count - target) / target``."""
        return (self.count - self.target) / self.target


def set_knob(raw: dict[str, Any], key: str, value: int, where: str) -> dict[str, Any]:
    """``raw`` (a run config as a dict, changed in place and returned) with ``key`` set to ``value``."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: match.key {key!r}: {part!r} is not an index of a list of {len(node)}")
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: match.key {key!r}: {'.'.join(parts[:i])} is not a mapping")
        if node.get(part) is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"{where}: match.key {key!r}: {last!r} is not an index of a list of {len(node)} "
                              "(set the list in the variant first, e.g. head_kwargs: {hidden: [100]})")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{where}: match.key {key!r}: its parent is not a mapping or list")
    return raw


def apply_knob(config: TrainConfig, key: str, value: int, where: str) -> TrainConfig:
    """``config`` with the knob ``key`` set to ``value`` (validated again)."""
    return validate_config(TrainConfig, set_knob(config.model_dump(mode="json"), key, value, where), where)


def search_knob(count: Callable[[int], int], target: int, *, tolerance: float, low: int, high: int,
                what: str = "params", where: str = "match") -> tuple[int, int]:
    """The integer in ``[low, high]`` whose ``count`` is closest to ``target`` (size grows with it).

    Args:
        count: the size (parameters or FLOPs) at a knob value; non-decreasing in the value.
        target: the size to reach.
        tolerance: the largest relative distance accepted.
        low, high: the knob's range.
        what: the measure's name (for messages); where: the variant (for messages).

    Returns:
        ``(value, count(value))``.

    Raises:
        ConfigError: no value in range is within ``tolerance`` (naming the closest reachable
            count), or the size shrank as the knob grew (not a monotone knob).
    """
    seen: dict[int, int] = {}

    def c(v: int) -> int:
        if v not in seen:
            seen[v] = int(count(v))
        return seen[v]

    # grow: double until the target is reached (never builds a model far larger than the target)
    lo, hi = low, low
    while c(hi) < target and hi < high:
        lo, hi = hi, min(high, hi * 2)
        if c(hi) < c(lo):
            raise ConfigError(f"{where}: {what} fell from {c(lo):,} to {c(hi):,} as the knob went {lo} -> {hi}; "
                              "match needs a knob the size grows with")
    if c(hi) >= target:  # bisect to the smallest value reaching the target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if c(mid) >= target:
                hi = mid
            else:
                lo = mid
    cands = [v for v in {lo, hi} if low <= v <= high]
    best = min(cands, key=lambda v: (abs(c(v) - target), v))
    if abs(c(best) - target) > tolerance * target:
        raise ConfigError(
            f"{where}: no value of the knob in [{low}, {high}] gives {what} within {tolerance:.1%} of {target:,}; "
            f"the closest reachable is {c(best):,} at {best} ({(c(best) - target) / target:+.1%}); "
            "choose another key, widen match.range or raise match.tolerance"
        )
    return best, c(best)


def model_size(config: TrainConfig, splits: Any, measure: str, scope: str = "model") -> int:
    """Parameters (``"params"``) or FLOPs per sample (``"flops"``) of the run's model, as runs store them.

    ``scope="head"``: the parameters of the classification head alone (``model.head``).
    """
    model = build_run_model(config, splits, pretrained=False)
    if scope == "head":
        return count_parameters(model.head)
    if measure == "params":
        return count_parameters(model)
    return int(profile(model, (1, splits.train.in_chans, *model_input_size(config, splits))).flops)


def resolve_match(config: TrainConfig, reference: TrainConfig, match: MatchConfig, splits: Any,
                  where: str) -> tuple[TrainConfig, MatchResult]:
    """``config`` with ``match.key`` set so that its size matches ``reference``'s.

    Args:
        config: the matched variant's run config (its knob value is replaced).
        reference: the run config of ``match.target`` on the same dataset.
        match: the variant's ``match:``.
        splits: the dataset's splits (for the class count and input shape).
        where: names the variant in messages.
    """
    target = model_size(reference, splits, match.measure, match.scope)

    def count(v: int) -> int:
        return model_size(apply_knob(config, match.key, v, where), splits, match.measure, match.scope)

    value, got = search_knob(count, target, tolerance=match.tolerance, low=match.range[0], high=match.range[1],
                             what=match.measure, where=where)
    return apply_knob(config, match.key, value, where), MatchResult(match.key, value, got, target, match.measure)
