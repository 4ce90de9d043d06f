"""Live progress of a run in flight: ``RUN_DIR/progress.json``, written by the process training it.

The run executing in a worker (or a Ray task, or the study process itself) writes its position
atomically (temp file + ``os.replace``) at most about once a second; ``archlab study run`` and
``archlab study status`` read it to show every run in flight with its epoch and step. It is a
display aid only: nothing reads it to decide anything, and the study database stays the source of
truth.

File format (JSON object)::

    {"epoch": 3, "epochs": 15, "step": 41, "steps_per_epoch": 101, "global_step": 243,
     "total_steps": 1515, "elapsed": 12.5, "updated": 1767000000.0}

``epoch`` is the 1-based epoch in progress, ``step`` the steps done inside it, ``elapsed`` the
seconds since this attempt of the run started (a resumed run starts counting again), ``updated``
the wall-clock time of the write.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["PROGRESS_FILE", "ProgressWriter", "read_progress", "steps_per_epoch"]

PROGRESS_FILE = "progress.json"


def steps_per_epoch(num_train: int, batch_size: int, drop_last: bool) -> int:
    """Optimizer steps in one epoch of ``num_train`` samples (the engine's loader length)."""
    return num_train // batch_size if drop_last else -(-num_train // batch_size)


class ProgressWriter:
    """An ``on_step(global_step)`` callback that keeps ``RUN_DIR/progress.json`` current.

    Args:
        run_dir: the run folder (created if missing).
        steps_per_epoch: optimizer steps per epoch.
        epochs: epochs of the run.
        min_interval: seconds between writes (the last step is always written).
    """

    def __init__(self, run_dir: str | Path, steps_per_epoch: int, epochs: int, *, min_interval: float = 1.0):
        self.path = Path(run_dir) / PROGRESS_FILE
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.epochs = int(epochs)
        self.min_interval = min_interval
        self.start = time.monotonic()
        self._last = -float("inf")

    def __call__(self, global_step: int) -> None:
        now = time.monotonic()
        total = self.steps_per_epoch * self.epochs
        if now - self._last < self.min_interval and global_step < total:
            return
        self._last = now
        done_epochs, step = divmod(global_step, self.steps_per_epoch)
        if step == 0 and global_step > 0:  # the last step of an epoch: report it as that epoch, full
            done_epochs, step = done_epochs - 1, self.steps_per_epoch
        self.write(
            {
                "epoch": min(done_epochs + 1, self.epochs),
                "epochs": self.epochs,
                "step": step,
                "steps_per_epoch": self.steps_per_epoch,
                "global_step": global_step,
                "total_steps": total,
                "elapsed": round(now - self.start, 3),
                "updated": time.time(),
            }
        )

    def write(self, record: dict[str, Any]) -> None:
        """Write ``record`` atomically (readers never see a half-written file)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{PROGRESS_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError:  # a full disk must not fail the run over a display aid
            pass


def read_progress(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's last progress record, or None (no file yet, or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "global_step" in data else None
