"""Reading YAML configs into pydantic models with errors that name the file, key and fix."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from archlab.errors import ConfigError, close_matches

__all__ = ["load_yaml", "validate_config", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """``yaml.safe_load`` a mapping from ``path``; ConfigError for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def validate_config(cls: type[M], data: dict[str, Any], source: str = "config") -> M:
    """``cls.model_validate(data)`` with one readable ConfigError for all problems."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, cls, source)) from None


def format_validation_error(exc: ValidationError, cls: type[BaseModel], source: str) -> str:
    """One line per problem: ``source: key 'a.b': what is wrong (expected ...)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(cls, err["loc"][:-1])
            known = list(parent.model_fields) if parent is not None else []
            hint = close_matches(str(err["loc"][-1]), known)
            msg = f"unknown key {loc!r}"
            msg += f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else (
                f"; allowed keys: {', '.join(known)}" if known else ""
            )
        elif kind == "missing":
            msg = f"missing required key {loc!r}"
        elif not loc:  # a whole-model check: its message says everything
            msg = str(err["msg"]).removeprefix("Value error, ")
        else:
            got = err.get("input")
            got_s = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            msg = f"key {loc!r}: {err['msg']} (got {got_s})"
        lines.append(f"{source}: {msg}")
    return "\n".join(lines)


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested pydantic model class at ``loc`` (None when not a model).

    Walks through fields, ``X | None`` unions, ``dict[str, X]`` values and ``list[X]`` items.
    """
    current: Any = cls
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (dict, Mapping) and len(args) == 2:
            current = args[1]
        elif origin in (list, tuple, Sequence) and args:
            current = args[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X`` (the first pydantic model, dict or list among a union's members)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in members:
            if (isinstance(a, type) and issubclass(a, BaseModel)) or typing.get_origin(a) in (dict, list):
                return a
        return members[0] if members else tp
    return tp
