"""The live display of ``archlab study run``: every run in flight and an ETA for the study.

The runner's ``on_event`` callback says which runs are in flight (``start``) and which ended
(``done``/``failed``); a poller thread reads each in-flight run's ``RUN_DIR/progress.json``
(:mod:`archlab.study.progress`, written by the process training it) twice a second, so the
display moves inside long runs and shows all of them with ``--workers N`` or Ray.

ETA: the mean wall time of the runs finished in this session (start to done, worker start-up
included) times the work left (runs not started + the unfinished fractions of the runs in
flight), divided by the number of runs that ran side by side. Before any run has finished, the
runs in flight extrapolate their own progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from archlab.study.progress import read_progress

__all__ = ["StudyProgress", "format_eta", "estimate_eta"]


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS`` (or ``M:SS``), ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def estimate_eta(
    finished: list[float], in_flight: list[tuple[float, float]], not_started: int, concurrency: int
) -> float | None:
    """Seconds until the study ends.

    Args:
        finished: wall times of the runs finished in this session.
        in_flight: ``(elapsed seconds, fraction done)`` of each run in flight.
        not_started: runs still to start.
        concurrency: runs that go side by side (workers).

    Returns:
        The estimate, or None before anything can be extrapolated.
    """
    if finished:
        per_run = sum(finished) / len(finished)
    else:
        rates = [elapsed / frac for elapsed, frac in in_flight if frac >= 0.02 and elapsed > 0]
        if not rates:
            return None
        per_run = sum(rates) / len(rates)
    left = not_started + sum(max(0.0, 1.0 - frac) for _, frac in in_flight)
    return per_run * left / max(1, concurrency)


class StudyProgress:
    """Context manager drawing the study's progress on ``console`` (a no-op display off a terminal).

    Args:
        console: where to draw (done/failed lines are printed above the bars).
        total: runs in the grid.
        run_dir: maps a run key to its folder (where ``progress.json`` appears).
        workers: runs side by side, for the ETA (``None``: the most seen in flight at once).
        poll: seconds between reads of the progress files.
    """

    def __init__(
        self,
        console: Console,
        total: int,
        run_dir: Callable[[Any], Path],
        *,
        workers: int | None = None,
        poll: float = 0.5,
    ):
        self.console = console
        self.total = total
        self.run_dir = run_dir
        self.workers = workers
        self.poll = poll
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self.overall: TaskID | None = None
        self.completed = 0
        self.finished: list[float] = []
        self.in_flight: dict[Any, tuple[TaskID, float]] = {}  # key -> (task, start time)
        self.fractions: dict[Any, float] = {}
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> StudyProgress:
        self.progress.start()
        self.overall = self.progress.add_task("study", total=self.total, detail="")
        self._render_overall()
        self._thread = threading.Thread(target=self._poll_loop, name="archlab-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.progress.stop()

    # -- events --------------------------------------------------------------------------------
    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print a line above the live display."""
        self.progress.console.print(*args, **kwargs)

    def on_event(self, kind: str, key: Any, info: dict[str, Any]) -> None:
        """The runner's callback: ``skip | start | done | failed | round``."""
        with self._lock:
            if kind == "round":  # adaptive seeds: decided comparisons take no more seeds
                self.total = min(self.total, int(info.get("max_runs", self.total)))
            elif kind == "start":
                task = self.progress.add_task(f"  {key.label}", total=1.0, detail="starting")
                self.in_flight[key] = (task, time.monotonic())
                self.fractions[key] = 0.0
                self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
            elif kind in ("skip", "done", "failed"):
                self.completed += 1
                entry = self.in_flight.pop(key, None)
                self.fractions.pop(key, None)
                if entry is not None:
                    self.progress.remove_task(entry[0])
                    if kind == "done":
                        self.finished.append(time.monotonic() - entry[1])
            self._render_overall()

    # -- drawing -------------------------------------------------------------------------------
    def eta(self) -> float | None:
        now = time.monotonic()
        flying = [(now - start, self.fractions.get(k, 0.0)) for k, (_, start) in self.in_flight.items()]
        not_started = self.total - self.completed - len(self.in_flight)
        concurrency = self.workers or self.max_in_flight or 1
        return estimate_eta(self.finished, flying, not_started, concurrency)

    def _render_overall(self) -> None:
        if self.overall is None:
            return
        running = f", {len(self.in_flight)} running" if self.in_flight else ""
        detail = f"{self.completed}/{self.total} runs{running}  ETA {format_eta(self.eta())}"
        if self.completed >= self.total:
            detail = f"{self.completed}/{self.total} runs  writing the report"
        self.progress.update(self.overall, total=self.total, completed=self.completed, detail=detail)

    def refresh_runs(self) -> None:
        """Read the progress file of every run in flight and update its bar (the poller calls it)."""
        with self._lock:
            flying = list(self.in_flight.items())
        for key, (task, _) in flying:
            rec = read_progress(self.run_dir(key))
            if rec is None:
                continue
            total = max(1, int(rec.get("total_steps") or 1))
            frac = min(1.0, int(rec["global_step"]) / total)
            detail = (f"epoch {rec.get('epoch')}/{rec.get('epochs')}  "
                      f"step {rec.get('step')}/{rec.get('steps_per_epoch')}")
            with self._lock:
                if key not in self.in_flight:  # finished meanwhile
                    continue
                self.fractions[key] = frac
                self.progress.update(task, completed=frac, detail=detail)
        with self._lock:
            self._render_overall()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.refresh_runs()
            except Exception:  # noqa: BLE001 - a display glitch must never stop the study
                pass
