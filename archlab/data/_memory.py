"""How much memory a load may take: checked before decoding, so a too-large input is one clear error.

A dataset loads into memory in full (decoded uint8 tensors). Before allocating, loaders estimate the
bytes they will hold at the peak and compare them with the memory available now
(``MemAvailable`` of ``/proc/meminfo`` on Linux, else free physical pages). The environment
variable ``ARCHLAB_MAX_LOAD_BYTES`` caps it further (e.g. on a shared machine, or for tests).
"""

from __future__ import annotations

import os

from archlab.errors import DataError

__all__ = ["available_memory", "check_fits", "MAX_LOAD_ENV", "human_bytes"]

MAX_LOAD_ENV = "ARCHLAB_MAX_LOAD_BYTES"


def available_memory() -> int | None:
    """Bytes a new allocation can take now (``MemAvailable``), capped by ``$ARCHLAB_MAX_LOAD_BYTES``.

    Returns:
        The byte count, or None when neither the system nor the environment says.
    """
    found: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            found = None
    cap = os.environ.get(MAX_LOAD_ENV, "").strip()
    if cap:
        try:
            limit = int(float(cap))
        except ValueError:
            raise DataError(f"${MAX_LOAD_ENV} must be a number of bytes, got {cap!r}") from None
        found = limit if found is None else min(found, limit)
    return found


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover - unreachable


def check_fits(nbytes: int, what: str, fix: str) -> None:
    """DataError when ``nbytes`` exceed :func:`available_memory`.

    Args:
        nbytes: the estimated peak bytes of the load.
        what: the load and how the estimate was made, e.g. ``"x/train: 1,000 images x 3x512x512"``.
        fix: what the user can do (a smaller ``image_size``, ``per_class``, ...).
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise DataError(
            f"{what}; loading needs about {human_bytes(nbytes)} of memory but only {human_bytes(avail)} is "
            f"available, so nothing was loaded. {fix}"
        )
