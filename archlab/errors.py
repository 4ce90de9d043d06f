"""The small error hierarchy of archlab.

Every error a user can cause derives from :class:`ArchlabError` and from the builtin type that
fits it (``ValueError``/``TypeError``), so ``except ValueError`` keeps working. The CLI prints one
line for these and exits with :attr:`ArchlabError.exit_code`; only unexpected bugs show a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArchlabError",
    "ConfigError",
    "UnknownNameError",
    "ConfigMismatch",
    "IncompatibleError",
    "DataError",
    "CheckpointError",
    "TrainingFailed",
    "ExportError",
    "OutputWriteError",
    "close_matches",
    "with_context",
]


class ArchlabError(Exception):
    """Base class of archlab's user-facing errors."""

    #: exit code the CLI uses: 2 = usage error (bad input), 1 = failure while working.
    exit_code = 2


class ConfigError(ArchlabError, ValueError):
    """A bad option, key or value in a config, a flag or a call."""


class UnknownNameError(ConfigError):
    """A name (model, head, dataset, optimizer, ...) that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        hint = close_matches(name, known)
        msg = f"unknown {kind} {name!r}"
        if hint:
            msg += f"; did you mean {', '.join(repr(h) for h in hint)}?"
        else:
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            msg += f"; known {kind}s: {shown}"
        super().__init__(msg)


class ConfigMismatch(ConfigError):
    """Stored state (a checkpoint, a result, a run folder) computed under another config than requested."""


class IncompatibleError(ConfigError):
    """Parts that cannot be combined (a head that cannot fit a backbone, an input too small)."""


class DataError(ArchlabError, ValueError):
    """A data file or array that is missing, truncated, malformed or inconsistent."""


class CheckpointError(ArchlabError, ValueError):
    """A checkpoint that does not fit the model or config it is loaded into."""


class TrainingFailed(ArchlabError, RuntimeError):
    """Training could not go on (NaN/Inf loss, diverged run)."""

    exit_code = 1


class ExportError(ArchlabError, RuntimeError):
    """A model that cannot be exported to the requested format (the exporters' reasons are given)."""

    exit_code = 1


class OutputWriteError(ArchlabError, RuntimeError):
    """An output file (a report, an export) could not be written: disk full, no permission.

    The file is written to a temporary name and renamed, so the previous version (if any) is intact.
    """

    exit_code = 1


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``known`` that look like ``name`` (for 'did you mean')."""
    known = list(known)
    hits = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if not hits:
        low = name.lower()
        hits = [k for k in known if low and (low in k.lower() or k.lower() in low)][:n]
    return hits


def with_context(exc: ArchlabError, prefix: str) -> ArchlabError:
    """A copy of ``exc`` (same class and attributes) whose message starts with ``prefix: ``."""
    new = exc.__class__.__new__(exc.__class__)
    new.__dict__.update(exc.__dict__)
    new.args = (f"{prefix}: {exc}",)
    return new
