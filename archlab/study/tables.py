"""A study's results as data: runs, per-epoch history and verdicts, as rows, DataFrames and files.

Three tables, the same columns in every form (``archlab study export DIR --what ...`` writes them;
:func:`runs_frame`, :func:`history_frame` and :func:`verdicts_frame` return them as pandas
DataFrames; :func:`run_rows`, :func:`history_rows` and :func:`verdict_rows` as plain dicts):

- **runs** — one row per (dataset, variant, seed): status, the variant's description, every final
  test/val metric (``test_accuracy``, ``val_loss``, ...), ``params``, ``flops`` (forward FLOPs of
  one sample, counting a multiply-accumulate as 2 FLOPs) and ``macs`` (= flops / 2, what many
  papers call "FLOPs"), training time, best epoch, epochs run, attempts, the first line of a
  failure, the per-run analysis numbers (``analysis.rotation.mean_prob``), every resolved
  hyperparameter (``config.optim.lr``, ``config.model.head``, ...; lists and mappings as JSON) and
  the provenance (``provenance.git_commit``, ``provenance.torch``, ...).
- **history** — one row per (dataset, variant, seed, epoch), as Lightning's ``metrics.csv``:
  ``lr``, ``seconds``, ``train_loss``, ``train_accuracy``, ``val_*``. A classification run of an
  older version stored ``val_dice`` equal to ``val_f1_macro``; that copy is left out.
- **verdicts** — one row per (dataset, metric, variant) against the baseline: the verdict and its
  reason codes (:mod:`archlab.study.verdicts`), the paired mean difference and the interval that
  decided it, the interval's label, the margin, the descriptive tests, the seed counts, and the
  report's sentences (``verdict_text``, ``answer``). The same numbers as the report.

Each function takes a :class:`~archlab.study.store.StudyStore`, a study folder or its
``results.sqlite``. pandas is the optional extra ``pandas``; Parquet files need ``pyarrow`` (the
same extra); a missing one raises :class:`~archlab.errors.ConfigError` with the install command.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError, OutputWriteError
from archlab.study import wording
from archlab.study.metrics import report_metrics
from archlab.study.record import RunRecord
from archlab.study.report import ReportSettings, comparisons
from archlab.study.stats import VariantStats
from archlab.study.store import DB_NAME, StudyStore

__all__ = [
    "TABLES",
    "FORMATS",
    "LEGACY_RUN_COLUMNS",
    "open_store",
    "run_rows",
    "history_rows",
    "verdict_rows",
    "runs_frame",
    "history_frame",
    "verdicts_frame",
    "table_rows",
    "write_table",
    "export_tables",
]

#: the tables a study exports
TABLES = ("runs", "history", "verdicts")
#: the file formats (``json``: a list of row objects)
FORMATS = ("csv", "parquet", "json")
#: the columns ``archlab study export DIR`` printed before the full tables (kept first, in order)
LEGACY_RUN_COLUMNS = ("dataset", "variant", "seed", "status", "test_accuracy", "test_f1_macro", "test_loss",
                      "val_accuracy", "params", "flops", "train_seconds", "best_epoch", "epochs_run", "error")

_INSTALL = ".venv/bin/pip install -e '.[pandas]'"
_KEYS = ("dataset", "variant", "seed")


def open_store(source: StudyStore | str | Path) -> StudyStore:
    """A study's store from a :class:`StudyStore`, a study folder or its ``results.sqlite``.

    Raises:
        ConfigError: no study database at ``source``.
    """
    if isinstance(source, StudyStore):
        return source
    path = Path(source)
    db = path / DB_NAME if path.is_dir() else path
    if not db.is_file():
        raise ConfigError(f"{path}: no {DB_NAME} here; run `archlab study run FILE --out {path}` first")
    return StudyStore(db)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """``{"optim": {"lr": 0.1}}`` -> ``{"config.optim.lr": 0.1}``; lists and empty mappings as JSON."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, (list, tuple, Mapping)):
        out[prefix] = json.dumps(value, sort_keys=True)
    else:
        out[prefix] = value


def _descriptions(store: StudyStore) -> dict[str, str]:
    variants = (store.get_meta("study") or {}).get("variants") or {}
    return {str(k): str((v or {}).get("description") or "") for k, v in variants.items() if isinstance(v, Mapping)}


def run_rows(source: StudyStore | str | Path) -> list[dict[str, Any]]:
    """The **runs** table: one dict per run (columns in the module docstring)."""
    store = open_store(source)
    desc = _descriptions(store)
    out = []
    for r in store.rows(with_predictions=False, with_history=False):
        row: dict[str, Any] = {k: None for k in LEGACY_RUN_COLUMNS}
        row.update(dataset=r.dataset, variant=r.variant, seed=r.seed, status=r.status, params=r.params,
                   flops=r.flops, train_seconds=r.train_seconds, best_epoch=r.best_epoch,
                   epochs_run=r.epochs_run, error=(r.error or "").splitlines()[0] if r.error else None)
        for split, metrics in (("test", r.test), ("val", r.val)):
            for k, v in (metrics or {}).items():
                row[f"{split}_{k}"] = v
        row["macs"] = None if r.flops is None else r.flops // 2
        row["description"] = desc.get(r.variant, "")
        row["attempts"] = r.attempts
        for k, v in sorted((r.analysis or {}).items()):
            row[f"analysis.{k}"] = v
        _flatten("config", dict(r.config or {}), row)
        _flatten("provenance", dict(r.provenance or {}), row)
        out.append(row)
    return out


def _duplicate_dice(history: Sequence[Mapping[str, float]]) -> bool:
    """An older classification run's ``val_dice``: the same number as ``val_f1_macro`` every epoch."""
    rows = [h for h in history if "val_dice" in h]
    return bool(rows) and all(h.get("val_f1_macro") == h["val_dice"] for h in rows)


def history_rows(source: StudyStore | str | Path) -> list[dict[str, Any]]:
    """The **history** table: one dict per (run, epoch) (columns in the module docstring)."""
    out = []
    for r in open_store(source).rows(with_predictions=False, with_history=True):
        drop = {"val_dice"} if _duplicate_dice(r.history) else set()
        for h in r.history:
            row: dict[str, Any] = {"dataset": r.dataset, "variant": r.variant, "seed": r.seed,
                                   "status": r.status, "epoch": int(h["epoch"])}
            row.update({k: v for k, v in h.items() if k != "epoch" and k not in drop})
            out.append(row)
    return out


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _verdict_row(vs: VariantStats, primary: str) -> dict[str, Any]:
    s, p, it, dec = vs.summary, vs.paired, vs.image_test, vs.sequential
    return {
        "dataset": vs.dataset, "metric": vs.metric, "primary": vs.metric == primary, "variant": vs.variant,
        "baseline": vs.baseline, "verdict": str(vs.outcome), "reasons": ";".join(map(str, vs.reasons)),
        "n_pairs": len(vs.paired_seeds), "seeds_considered": vs.seeds_considered,
        "lost_seeds": ";".join(map(str, vs.lost_seeds)),
        "mean": _num(s.mean) if s else None, "std": _num(s.std) if s else None,
        "mean_diff": _num(p.mean_diff) if p else None,
        "ci_low": _num(vs.ci[0]) if vs.ci else None, "ci_high": _num(vs.ci[1]) if vs.ci else None,
        "interval": wording.interval_label(vs), "alpha": vs.alpha, "family": vs.family, "margin": vs.margin,
        "effect_size_dz": _num(p.effect_size) if p else None, "p_t": _num(p.t_p) if p else None,
        "p_wilcoxon": _num(p.wilcoxon_p) if p else None, "p_tost": _num(vs.tost_p),
        "p_seeds_images": _num(it.p) if it else None, "test_images": vs.n_test,
        "detectable": _num(vs.detectable), "seeds_detect": vs.seeds_detect,
        "seeds_equivalence": vs.seeds_equivalence, "seeds_used": dec.look if dec is not None else None,
        "verdict_text": wording.verdict_text(vs), "answer": wording.answer_line(vs),
    }


def verdict_rows(source: StudyStore | str | Path, *, min_pairs: int = 3) -> list[dict[str, Any]]:
    """The **verdicts** table: one dict per (dataset, metric, variant), the baseline left out."""
    store = open_store(source)
    meta = store.get_meta("study") or {}
    baseline = store.get_meta("baseline")
    runs: list[RunRecord] = store.rows(with_history=False)
    if not runs or baseline is None:
        return []
    settings = ReportSettings.from_meta(meta)
    analysis = sorted({k for r in runs for k in (r.analysis or {})})  # built-in and plugin analyses alike
    metrics = (*report_metrics(settings.monitor), *analysis)
    per_metric = comparisons(runs, baseline, metrics, settings, min_pairs=min_pairs)
    primary = next(iter(per_metric))
    return [_verdict_row(vs, primary) for stats in per_metric.values() for vs in stats if not vs.is_baseline]


def table_rows(source: StudyStore | str | Path, what: str) -> list[dict[str, Any]]:
    """The rows of table ``what`` (``runs``, ``history`` or ``verdicts``).

    Raises:
        ConfigError: an unknown table.
    """
    if what not in TABLES:
        raise ConfigError(f"unknown table {what!r}; allowed: {', '.join(TABLES)}")
    return {"runs": run_rows, "history": history_rows, "verdicts": verdict_rows}[what](source)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _pandas():
    try:
        import pandas  # optional extra: imported only where a DataFrame is asked for
    except ImportError:
        raise ConfigError(f"DataFrames need pandas: {_INSTALL}") from None
    return pandas


def _frame(rows: list[dict[str, Any]]):
    return _pandas().DataFrame(rows, columns=_columns(rows))


def runs_frame(source: StudyStore | str | Path):
    """The **runs** table as a :class:`pandas.DataFrame` (needs the extra ``pandas``)."""
    return _frame(run_rows(source))


def history_frame(source: StudyStore | str | Path):
    """The **history** table as a :class:`pandas.DataFrame` (needs the extra ``pandas``)."""
    return _frame(history_rows(source))


def verdicts_frame(source: StudyStore | str | Path):
    """The **verdicts** table as a :class:`pandas.DataFrame` (needs the extra ``pandas``)."""
    return _frame(verdict_rows(source))


def _csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({c: r.get(c) for c in columns} for r in rows)
    return buf.getvalue()


def write_table(rows: list[dict[str, Any]], path: Path | None, fmt: str) -> str | None:
    """Write ``rows`` to ``path`` as csv, parquet or json; ``path=None``: return the text (csv, json).

    Raises:
        ConfigError: an unknown format, parquet to stdout, parquet without pandas/pyarrow.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    columns = _columns(rows)
    if fmt == "parquet":
        if path is None:
            raise ConfigError("--format parquet writes files: pass --out DIR")
        try:
            import pyarrow  # noqa: F401 - optional: only Parquet needs it
        except ImportError:
            raise ConfigError(f"Parquet files need pyarrow: {_INSTALL}") from None
        _pandas().DataFrame(rows, columns=columns).to_parquet(path, index=False)
        return None
    text = json.dumps(rows, indent=1) + "\n" if fmt == "json" else _csv_text(rows, columns)
    if path is None:
        return text
    path.write_text(text)
    return None


def export_tables(source: StudyStore | str | Path, out_dir: Path, what: Sequence[str] = TABLES,
                  fmt: str = "csv") -> list[Path]:
    """Write each table of ``what`` to ``out_dir/<table>.<fmt>``; returns the paths written.

    Raises:
        ConfigError: an unknown table or format, a missing optional package.
        OutputWriteError: ``out_dir`` cannot be created.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for w in what:
        if w not in TABLES:
            raise ConfigError(f"--what {w!r} is not a table; allowed: {', '.join(TABLES)} (or all)")
    store = open_store(source)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out_dir}: cannot create the export folder ({exc.strerror or exc})") from None
    paths = []
    for w in what:
        path = out_dir / f"{w}.{fmt}"
        write_table(table_rows(store, w), path, fmt)
        paths.append(path)
    return paths
