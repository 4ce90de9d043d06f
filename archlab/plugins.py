"""User components from outside the package: a study's ``imports:`` and the ``archlab.plugins`` entry points.

A study (or run) file names the code that registers its own components::

    imports: [my_heads.py, mypkg.blocks]   # files relative to the study file, or module names
    model: {name: mnist_cnn, head: gated_mlp}   # registered by my_heads.py (or head: my_heads:GatedMLP)

Installed packages can also declare modules in the ``archlab.plugins`` entry-point group; those
are imported with every study. :func:`import_plugins` imports them in the study process *before*
the study is validated and returns one record per module, ``{module, path, sha256}`` (installed
distributions add ``version``). The records become part of every run's config
(:attr:`archlab.train.config.TrainConfig.plugins`, stored only when there are plugins, so a
study without imports keeps byte-identical configs). Wherever a run executes — the study process,
a local worker forked from the fork server, a Ray worker — :func:`ensure_plugins` imports the same
files from the same paths first and checks their hashes, so a run never trains with code other
than what its config records; an edited plugin under a finished run is a config change, refused on
resume with the file named (:func:`describe_plugin_change`).

Errors are one line naming the plugin file and the line of the failure
(:class:`PluginError`, exit 2 on the CLI): an exception at import, a name registered twice.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from archlab import _registry
from archlab.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "import_plugins", "ensure_plugins", "source_sha256",
           "describe_plugin_change", "entry_point_modules", "recorded_plugins"]

ENTRY_POINT_GROUP = "archlab.plugins"


class PluginError(ConfigError):
    """A plugin could not be found, imported or verified (the message names the file and line)."""


def source_sha256(path: str | Path) -> str:
    """SHA-256 of a plugin's source: the file, or every ``.py`` file of a package folder (sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.rglob("*.py")):
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    else:
        h.update(p.read_bytes())
    return h.hexdigest()


def entry_point_modules() -> list[str]:
    """Module names declared in the ``archlab.plugins`` entry-point group of installed packages."""
    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.append(ep.value.split(":")[0].strip())
    return sorted(set(names))


def _failure(exc: BaseException, path: Path, where: str) -> PluginError:
    """One line: the plugin file, the line in it where ``exc`` was raised, and the error."""
    root = path.parent if path.name == "__init__.py" else path
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        fp = Path(frame.filename)
        if fp == path or (root.is_dir() and root in fp.parents):
            line = f"{fp}, line {frame.lineno}"
    if line is None and isinstance(exc, SyntaxError) and exc.lineno:
        line = f"{exc.filename or path}, line {exc.lineno}"
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return PluginError(f"{where}: plugin {line or path} failed to import: {type(exc).__name__}: {msg}")


def _load_file(path: Path, where: str) -> dict[str, Any]:
    name = path.stem
    digest = source_sha256(path)
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) is not None:
        if Path(loaded.__file__).resolve() != path:
            raise PluginError(f"{where}: plugin {path} has the module name {name!r}, which is already "
                              f"{loaded.__file__}; rename the file")
        if getattr(loaded, "__archlab_sha256__", None) == digest:
            return {"module": name, "path": str(path), "sha256": digest}
    folder = str(path.parent)
    if folder not in sys.path:  # the plugin's siblings import as in a script next to it
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{where}: plugin {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    module.__archlab_sha256__ = digest  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        sys.modules.pop(name, None)
        raise _failure(exc, path, where) from None
    return {"module": name, "path": str(path), "sha256": digest}


def _load_module(name: str, where: str) -> dict[str, Any]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        spec, why = None, str(exc)
    else:
        why = "no such module on sys.path"
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        raise PluginError(f"{where}: plugin module {name!r} cannot be imported ({why}); give a file path "
                          "(my_heads.py, relative to the study file) or install the package")
    origin = Path(spec.origin).resolve()
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise _failure(exc, origin, where) from None
    source = origin.parent if origin.name == "__init__.py" else origin
    rec: dict[str, Any] = {"module": name, "path": str(source), "sha256": source_sha256(source)}
    top = name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    if dists:
        rec["version"] = f"{dists[0]} {importlib.metadata.version(dists[0])}"
    return rec


def _load_builtins() -> None:
    # the built-in components register first, so a plugin's clash with one is caught at its line
    _registry.ensure_loaded()


def import_plugins(imports: Sequence[str], base: str | Path | None, where: str, *,
                   entry_points: bool = True) -> list[dict[str, Any]]:
    """Import a study's ``imports`` (and the installed entry-point plugins); their records.

    Args:
        imports: entries of ``imports:``: ``*.py`` files (relative to ``base``) or module names.
        base: the folder of the study/run file (``None``: the working folder).
        where: the file named in errors.
        entry_points: also import the ``archlab.plugins`` entry points.

    Returns:
        ``[{module, path, sha256}]`` in import order (entry points first), without duplicates.

    Raises:
        PluginError: a missing file, an import that raised, a name registered twice.
    """
    if not isinstance(imports, (list, tuple)) or not all(isinstance(i, str) and i for i in imports):
        raise PluginError(f"{where}: imports must be a list of file paths or module names, got {imports!r}")
    names = (entry_point_modules() if entry_points else []) + list(imports)
    if not names:
        return []
    _load_builtins()
    base_dir = Path(base) if base is not None else Path.cwd()
    records: list[dict[str, Any]] = []
    for item in names:
        if item.endswith(".py") or "/" in item or "\\" in item:
            path = (base_dir / Path(item).expanduser()).resolve()
            if not path.is_file():
                raise PluginError(f"{where}: imports: plugin file {item!r} not found (looked at {path})")
            rec = _load_file(path, where)
        else:
            rec = _load_module(item, where)
        if rec not in records:
            records.append(rec)
    return records


def ensure_plugins(records: Iterable[Mapping[str, Any]], where: str = "run") -> None:
    """Import the plugins a run's config records, from the same paths, and verify their hashes.

    Called wherever a run executes (a local worker, a Ray task) before its config is validated;
    the plugin files must be on a path this machine sees (the study folder's assumption).

    Raises:
        PluginError: a file missing here, or whose source differs from the recorded hash.
    """
    records = list(records)
    if records:
        _load_builtins()
    for rec in records:
        module, path, digest = rec.get("module"), rec.get("path"), rec.get("sha256")
        if not isinstance(module, str) or not isinstance(path, str) or not isinstance(digest, str):
            raise PluginError(f"{where}: a plugin record must have module, path and sha256, got {dict(rec)!r}")
        p = Path(path)
        if not p.exists():
            raise PluginError(f"{where}: plugin file {path} is not on this machine (plugins must be on a path "
                              "every worker sees, like the study folder)")
        now = source_sha256(p)
        if now != digest:
            raise PluginError(f"{where}: plugin {path} changed since the study started (sha256 {digest[:12]} -> "
                              f"{now[:12]}); restore it, or start the study again to record the new version")
        if p.is_file() and p.suffix == ".py" and Path(p).stem == module:
            _load_file(p.resolve(), where)
        else:
            _load_module(module, where)


def recorded_plugins(configs: Iterable[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """The distinct plugin records of stored run configs (what a report or ``load_study`` imports
    so the plugins' metrics and analyses are known there too)."""
    out: list[dict[str, Any]] = []
    for cfg in configs:
        for rec in (cfg or {}).get("plugins") or []:
            if isinstance(rec, Mapping) and dict(rec) not in out:
                out.append(dict(rec))
    return out


def describe_plugin_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The plugin files whose recorded source differs between two run configs (for resume errors)."""
    a = {r.get("path"): r.get("sha256") for r in old.get("plugins") or []}
    b = {r.get("path"): r.get("sha256") for r in new.get("plugins") or []}
    out = []
    for path in sorted(set(a) | set(b), key=str):
        if a.get(path) != b.get(path):
            if path not in a:
                out.append(f"plugin {path} added")
            elif path not in b:
                out.append(f"plugin {path} removed")
            else:
                out.append(f"plugin {path} changed (sha256 {str(a[path])[:12]} -> {str(b[path])[:12]})")
    return out
