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

__all__ = ["load_yaml", "parse_yaml", "parse_yaml_value", "validate_config", "format_validation_error", "MAX_YAML_NODES"]

M = TypeVar("M", bound=BaseModel)


#: Most YAML nodes a config may expand to, aliases counted at their full size each time they are
#: used. A study file has a few hundred; the limit stops "billion laughs" alias bombs (a few lines
#: that expand to 10^9 nodes) before anything expands them in memory.
MAX_YAML_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no python tags, so no code runs)."""


def _expanded_size(node: yaml.Node, source: str) -> int:
    """Nodes of ``node`` with every alias expanded; ConfigError above :data:`MAX_YAML_NODES`.

    Aliases share one composed node, so the count is memoised per node: linear in the document.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: a YAML alias refers to itself (a recursive structure); configs are trees")
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total += sum(size(v) for v in n.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values (through its aliases "
                "*name); a config this large is an alias bomb or a mistake: write it out without nested aliases"
            )
        sizes[key] = total
        return total

    return size(node)


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)`` refusing alias bombs; ConfigError naming ``source`` for bad YAML.

    Args:
        text: the YAML document.
        source: what to name in errors (a file, ``--set key``).

    Raises:
        ConfigError: invalid YAML, a python tag (``!!python/...``: refused, no code runs), more
            than one document, or a document that expands to more than :data:`MAX_YAML_NODES` nodes.
    """
    loader = None
    try:
        loader = _Loader(text)  # (the reader already refuses control characters)
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where} invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_yaml_value(raw: str, what: str) -> Any:
    """A flag's ``KEY=VALUE`` value read as YAML (``--set epochs=3`` gives the int 3).

    Raises:
        ConfigError: naming ``what`` (e.g. ``--set x``) when the value is not plain YAML (a python
            tag, an unclosed bracket, an alias bomb).
    """
    return parse_yaml(raw, f"{what}: {raw!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a mapping from the YAML file ``path`` (safe: no python tags, no alias bombs).

    Raises:
        ConfigError: a missing or non-regular file, a file that is not UTF-8 text, bad YAML, a
            top level that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    data = parse_yaml(text, str(path))
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


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check that ``path`` is, or can become, a folder this process writes into; creates nothing.

    Args:
        path: the output folder a command will create and fill.
        flag: the option that named it (for the message).

    Returns:
        ``Path(path)``.

    Raises:
        ConfigError: ``path`` exists but is not a folder (a file, ``/dev/null``), or its nearest
            existing parent is not a folder or cannot hold new folders (``/proc/x``, a read-only or
            foreign file system, no permission).
    """
    import errno
    import os
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "not a folder (a device, pipe or socket)"
        raise ConfigError(f"{flag} {path} exists and is {kind}; give a folder (it is created when missing)")
    probe = path if path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link
            raise ConfigError(f"{flag} {path}: {probe} is a broken symbolic link; give another folder")
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is not a folder, so no folder can be created under it")
    try:
        made = tempfile.mkdtemp(prefix=".archlab-probe-", dir=probe)
    except OSError as exc:
        why = {errno.EACCES: "no permission", errno.EROFS: "a read-only file system",
               errno.ENOSPC: "the disk is full"}.get(exc.errno, exc.strerror or str(exc))
        raise ConfigError(f"{flag} {path}: cannot create folders in {probe} ({why}); give another folder") from None
    try:
        os.rmdir(made)
    except OSError:
        pass
    return path

