"""Small file helpers shared by the writers of run folders and exports."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["chmod_like_open", "current_umask"]


def current_umask() -> int:
    """The process umask (read from /proc where possible: ``os.umask`` can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read by setting, then restore at once
    os.umask(mask)
    return mask


def chmod_like_open(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would (0666 minus the umask).

    safetensors' ``save_file`` writes through a ``mkstemp`` file (mode 0600), so its files would
    be readable by their owner only, unlike every other file of a run folder.
    """
    os.chmod(path, 0o666 & ~current_umask())
