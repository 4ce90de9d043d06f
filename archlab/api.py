"""The Python API of studies, for notebooks and scripts: the CLI's ``study run`` as objects.

Example::

    import archlab
    study = archlab.Study.from_yaml("compare_heads.yaml")     # or archlab.Study({...}) from a dict
    study.run("runs/compare_heads", workers=2)
    res = archlab.load_study("runs/compare_heads")
    res.runs       # one row per run: dataset, variant, seed, status, test_accuracy, ...
    res.verdicts   # one row per (dataset, variant, metric): mean difference, interval, verdict

``runs`` and ``verdicts`` are pandas DataFrames (``pip install 'archlab[pandas]'``).

Components a notebook defines itself (``@archlab.register_head`` in a cell) live in ``__main__``,
which no worker process can import: such a study runs in the notebook's own process
(``workers=1``); with more workers or Ray, :meth:`Study.run` refuses with the fix (move the class to
a file and list it in ``imports:``; workers then import that file by its recorded path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from archlab._registry import head_entrypoint, model_entrypoint
from archlab.errors import ConfigError
from archlab.plugins import ensure_plugins, recorded_plugins
from archlab.study.config import load_study as load_study_file
from archlab.study.config import study_from_dict
from archlab.study.store import DB_NAME, StudyStore
from archlab.study.tables import history_frame, runs_frame, verdicts_frame

__all__ = ["Study", "StudyResults", "load_study"]

class Study:
    """A validated study, from a study file (:meth:`from_yaml`) or a mapping (``Study({...})``).

    Args:
        spec: the study as a mapping (the keys of a study file); ``imports`` are relative to
            ``base`` (default: the working folder).
        base: the folder ``imports`` are relative to.
        smoke: apply the study's ``smoke:`` section.
    """

    def __init__(self, spec: Mapping[str, Any], *, base: str | Path | None = None, smoke: bool = False) -> None:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"archlab.Study takes a mapping (the keys of a study file), got {type(spec).__name__}")
        raw = dict(spec)
        raw.setdefault("name", "study")
        self.config = study_from_dict(raw, smoke=smoke, base=base)

    @classmethod
    def from_yaml(cls, path: str | Path, *, smoke: bool = False) -> Study:
        """Read and validate a study file (its ``imports`` are imported first)."""
        out = cls.__new__(cls)
        out.config = load_study_file(path, smoke=smoke)
        return out

    @property
    def name(self) -> str:
        return self.config.name

    def run(self, out: str | Path, *, workers: int | str = 1, ray: str | None = None, retry_failed: bool = False,
            report: bool = True, on_event: Callable[..., None] | None = None) -> StudyResults:
        """Run every run not done yet (resumable, as ``archlab study run``); the results.

        Args:
            out: the study folder.
            workers: local worker processes (1: this process; ``"auto"``: one per core).
            ray: a Ray address (``"local"``: a new local instance) instead of local workers.
            retry_failed, report, on_event: as :func:`archlab.study.runner.run_study`.

        Raises:
            ConfigError: a component defined in ``__main__`` with ``workers`` > 1 or Ray, or any
                error the CLI reports.
        """
        from archlab.study.runner import run_study  # torch-backed: imported when a study runs

        if workers != 1 or ray is not None:
            _check_importable(self.config)
        run_study(self.config, out, workers=workers, retry_failed=retry_failed, on_event=on_event,
                  report=report, ray_address=ray).close()
        return load_study(out)


def _check_importable(study: Any) -> None:
    """Refuse components that only this process has (``__main__``: a notebook cell, a script's body)."""
    for key in study.grid()[: len(study.variants) * len(study.dataset_configs())]:
        cfg = study.resolve(key)
        for kind, name, lookup in (("model", cfg.model.name, model_entrypoint), ("head", cfg.model.head, head_entrypoint)):
            if name is None:
                continue
            module = getattr(lookup(name), "__module__", None)
            if module == "__main__":
                raise ConfigError(
                    f"{kind} {name!r} (variant {key.variant!r}) is defined in __main__ (this notebook or script), which "
                    "worker processes cannot import: run with workers=1, or move it to a file (my_heads.py) and "
                    "add imports: [my_heads.py] to the study")


class StudyResults:
    """A study folder's results: ``runs`` and ``verdicts`` as pandas DataFrames.

    Args:
        out: the study folder (``results.sqlite`` inside).
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        db = self.out / DB_NAME
        if not db.is_file():
            raise ConfigError(f"{self.out}: no {DB_NAME} here; run the study first (Study.run(out) or archlab study run)")
        store = StudyStore(db)
        try:
            self.records = store.rows(with_predictions=True)
            self.settings = store.get_meta("study") or {}
        finally:
            store.close()
        # the runs' plugins (verified against their recorded hashes): their metrics get verdicts here too
        ensure_plugins(recorded_plugins(r.config for r in self.records), str(self.out))

    @property
    def runs(self):
        """The **runs** table (:func:`archlab.study.tables.runs_frame`): one row per run with its
        test/val metrics, ``analysis.<name>`` numbers, ``config.*`` and ``provenance.*``."""
        return runs_frame(self.out)

    @property
    def history(self):
        """The **history** table (:func:`archlab.study.tables.history_frame`): one row per run and epoch."""
        return history_frame(self.out)

    @property
    def verdicts(self):
        """The **verdicts** table (:func:`archlab.study.tables.verdicts_frame`): one row per (dataset,
        metric, variant) against the baseline — test metrics and every analysis number, with the
        report's interval, verdict code, sentence and answer line."""
        return verdicts_frame(self.out)


def _monitor_metric(settings: Mapping[str, Any]) -> str:
    monitor = (settings.get("train") or {}).get("monitor")
    return monitor if monitor in ("accuracy", "f1_macro", "dice") else "accuracy"


def load_study(out: str | Path) -> StudyResults:
    """The results of the study folder ``out`` (:class:`StudyResults`: ``.runs``, ``.verdicts``)."""
    return StudyResults(out)
