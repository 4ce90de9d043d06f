"""The study database: SQLite in WAL mode, one transaction per change (SPEC §5, §11).

Tables:
    study(key, value)                      -- name, spec JSON, creation time
    runs(id, dataset, variant, seed, status, config, provenance, error, attempts, started,
         finished, params, flops, train_seconds, best_epoch, epochs_run)   UNIQUE(dataset, variant, seed)
    epoch_metrics(run_id, epoch, key, value)
    final_metrics(run_id, split, key, value)       -- split: val | test
    predictions(run_id, preds, targets)            -- int32 arrays as BLOBs (per-sample test results)
    analysis_data(run_id, analysis, data)          -- per-run analysis curves (JSON); its numbers are
                                                      final_metrics rows with split 'analysis'
                                                      (archlab.study.analyses)

Every SQL statement of archlab lives here: the runner and the analysis phase write through
:class:`StudyStore`'s methods, and only the study runner's main process writes (workers and Ray
tasks send their results back to it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from archlab.errors import ArchlabError, DataError
from archlab.study.record import RunRecord

__all__ = ["StudyStore", "StoreWriteError", "DB_NAME", "STATUSES"]

DB_NAME = "results.sqlite"
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL, variant TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    config TEXT NOT NULL, provenance TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL, params INTEGER, flops INTEGER, train_seconds REAL,
    best_epoch INTEGER, epochs_run INTEGER,
    UNIQUE (dataset, variant, seed)
);
CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id), epoch INTEGER NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, epoch, key)
);
CREATE TABLE IF NOT EXISTS final_metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id), split TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, split, key)
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id), preds BLOB NOT NULL, targets BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS analysis_data (
    run_id INTEGER NOT NULL REFERENCES runs(id), analysis TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, analysis)
);
"""


class StoreWriteError(ArchlabError):
    """The study database could not be written (disk full, I/O error); the change was rolled back."""

    exit_code = 1


class StudyStore:
    """Access to ``DIR/results.sqlite``.

    Args:
        path: the database file (created with its schema when missing).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise DataError(f"{self.path} is not a regular file; a study database is a file: move it away")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise DataError(
                f"{self.path} is empty (0 bytes): the study's results are gone (a failed copy or a full "
                "disk?); it was left untouched — restore it from a backup, or delete it to start afresh "
                "(finished runs are then read back from their run folders)"
            )
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self._check_schema()  # before anything writes: another application's database stays as it is
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.tx():
                for statement in _statements():
                    self.conn.execute(statement)
            check = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"{self.path} is not a readable study database ({exc}); it was left untouched — "
                "move it away to start the study afresh, or restore it from a backup"
            ) from None
        if check != "ok":
            raise DataError(f"{self.path} failed SQLite's integrity check ({check}); it was left untouched")
        self._check_runs()

    def _check_runs(self) -> None:
        """Every stored run row and study value is what archlab writes (types, JSON), checked on
        opening: a damaged row stops every command (status, report, export, run) before anything is
        written."""
        try:
            runs = self.conn.execute(_RUN_COLUMNS).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged("table runs", f"cannot be read ({exc})") from None
        for key, value in self.conn.execute("SELECT key, value FROM study"):
            self._json(value, f"table study, key {key!r}, column value")
        for r in runs:
            self._check_run_row(r)
            self._json(r[11], f"table runs, id {r[0]}, column config")
            if r[12] is not None:
                self._json(r[12], f"table runs, id {r[0]}, column provenance")

    def _check_schema(self) -> None:
        """Refuse a database that is not a study database (another application's SQLite file).

        An empty database (a new study) passes; otherwise the ``study`` and ``runs`` tables must
        exist and every archlab table present must have archlab's columns.
        """
        tables = {
            name: {row[1] for row in self.conn.execute(f"PRAGMA table_info({_quote(name)})")}
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(name).startswith("sqlite_")
        }
        if not tables:
            return
        foreign = (
            f"{self.path} is not an archlab study database (its tables: {', '.join(sorted(tables))}); it was "
            "left untouched — give the study another --out folder"
        )
        if not {"study", "runs"} <= set(tables):
            raise DataError(foreign)
        for name, columns in _COLUMNS.items():
            if name in tables and not columns <= tables[name]:
                missing = ", ".join(sorted(columns - tables[name]))
                raise DataError(
                    f"{self.path}: table {name!r} lacks the column(s) {missing}; it is not a study database of "
                    "this archlab version (or was edited); it was left untouched — give the study another "
                    "--out folder, or restore the file from a backup"
                )

    def _damaged(self, where: str, problem: str) -> DataError:
        """The error for a stored value that cannot be what archlab wrote (an edited or damaged db)."""
        return DataError(
            f"{self.path}: {where}: {problem}; the database was edited or damaged and was left untouched — "
            "restore it from a backup, or move it away and run the study again (finished runs are read back "
            "from their run folders' result.json)"
        )

    def _json(self, text: Any, where: str) -> Any:
        if not isinstance(text, str):
            raise self._damaged(where, f"expected JSON text, found {type(text).__name__} {text!r:.40}")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise self._damaged(where, f"not valid JSON ({exc})") from None

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing.

        Raises:
            StoreWriteError: SQLite could not write (``database or disk is full``, ``disk I/O
                error``, ...); the transaction was rolled back, earlier ones are intact.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # also after a failed COMMIT
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise StoreWriteError(
                f"{self.path}: could not write the study database ({exc}); this change was rolled back "
                "and nothing recorded before is lost. Free disk space (or stop the other writer) and run "
                "the study again: finished runs are kept, and a run whose result did not get in is read "
                "back from its run folder"
            ) from exc

    # -- study ---------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO study(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        try:
            row = self.conn.execute("SELECT value FROM study WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._damaged("table study", f"cannot be read ({exc})") from None
        return self._json(row[0], f"table study, key {key!r}, column value") if row else default

    # -- runs ----------------------------------------------------------------------------------
    def ensure_run(self, dataset: str, variant: str, seed: int, config: dict[str, Any]) -> tuple[int, str, dict]:
        """Insert the run as pending unless present; returns (id, status, stored config)."""
        cfg = json.dumps(config, sort_keys=True)
        with self.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO runs(dataset, variant, seed, status, config) VALUES (?, ?, ?, 'pending', ?)",
                (dataset, variant, seed, cfg),
            )
            row = c.execute(
                "SELECT id, status, config FROM runs WHERE dataset = ? AND variant = ? AND seed = ?",
                (dataset, variant, seed),
            ).fetchone()
        return int(row[0]), str(row[1]), self._json(row[2], f"table runs, id {row[0]}, column config")

    def replace_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Give a run that has no result a new config (the runner checks that nothing was computed)."""
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET config = ?, status = CASE status WHEN 'failed' THEN 'pending' ELSE status END, "
                "error = NULL WHERE id = ? AND status != 'done'",
                (json.dumps(config, sort_keys=True), run_id),
            )

    def migrate_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Rewrite a run's recorded config in today's schema (the same computation, new defaults spelt out)."""
        with self.tx() as c:
            c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config, sort_keys=True), run_id))

    def mark_running(self, run_id: int) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started = COALESCE(started, ?), "
                "error = NULL WHERE id = ?",
                (time.time(), run_id),
            )

    def mark_interrupted(self, run_ids: list[int]) -> None:
        """Put runs that were stopped mid-way (Ctrl-C) back to pending: resumable, not failed."""
        with self.tx() as c:
            c.executemany("UPDATE runs SET status = 'pending' WHERE id = ? AND status = 'running'", [(i,) for i in run_ids])

    def mark_failed(self, run_id: int, error: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE id = ?", (error, time.time(), run_id)
            )

    def record_result(self, run_id: int, result: dict[str, Any]) -> None:
        """Store a finished run (a :class:`RunResult` dict) atomically and mark it done."""
        with self.tx() as c:
            c.execute("DELETE FROM epoch_metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM final_metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM analysis_data WHERE run_id = ?", (run_id,))  # analyses of the old result
            c.executemany(
                "INSERT INTO epoch_metrics(run_id, epoch, key, value) VALUES (?, ?, ?, ?)",
                [
                    (run_id, int(row["epoch"]), k, float(v))
                    for row in result["history"]
                    for k, v in row.items()
                    if k != "epoch" and v is not None
                ],
            )
            c.executemany(
                "INSERT INTO final_metrics(run_id, split, key, value) VALUES (?, ?, ?, ?)",
                [(run_id, split, k, float(v)) for split in ("val", "test") for k, v in result[split].items()],
            )
            c.execute(
                "INSERT INTO predictions(run_id, preds, targets) VALUES (?, ?, ?)",
                (
                    run_id,
                    np.asarray(result["test_predictions"], dtype="<i4").tobytes(),
                    np.asarray(result["test_targets"], dtype="<i4").tobytes(),
                ),
            )
            c.execute(
                "UPDATE runs SET status = 'done', error = NULL, finished = ?, params = ?, flops = ?, "
                "train_seconds = ?, best_epoch = ?, epochs_run = ?, provenance = ? WHERE id = ?",
                (
                    time.time(),
                    int(result["params"]),
                    int(result["flops"]),
                    float(result["train_seconds"]),
                    int(result["best_epoch"]),
                    int(result["epochs_run"]),
                    json.dumps(result.get("provenance", {}), sort_keys=True),
                    run_id,
                ),
            )

    # -- analyses ------------------------------------------------------------------------------
    def record_analysis(self, run_id: int, analysis: str, metrics: dict[str, float], data: dict[str, Any]) -> None:
        """One transaction: the numbers, the curves and the done mark of one (run, analysis).

        The numbers become ``final_metrics`` rows with split ``'analysis'`` and key
        ``<analysis>.<metric>``; ``data`` (JSON, with the options it was computed with) becomes the
        ``analysis_data`` row that marks the result done. A result computed with other options is
        replaced (its numbers and curves) in the same transaction, so a run never holds numbers of
        two option sets.
        """
        blob = json.dumps(data, sort_keys=True, allow_nan=False)
        prefix = f"{analysis}."
        with self.tx() as c:
            c.execute("DELETE FROM analysis_data WHERE run_id = ? AND analysis = ?", (run_id, analysis))
            c.execute("DELETE FROM final_metrics WHERE run_id = ? AND split = 'analysis' AND substr(key, 1, ?) = ?",
                      (run_id, len(prefix), prefix))
            c.executemany(
                "INSERT INTO final_metrics(run_id, split, key, value) VALUES (?, 'analysis', ?, ?)",
                [(run_id, f"{analysis}.{k}", float(v)) for k, v in metrics.items()],
            )
            c.execute("INSERT INTO analysis_data(run_id, analysis, data) VALUES (?, ?, ?)", (run_id, analysis, blob))

    def analysis_data(self) -> dict[tuple[int, str], dict[str, Any]]:
        """``{(run_id, analysis): data}`` of every stored analysis result (its curves and ``options``)."""
        try:
            rows = self.conn.execute("SELECT run_id, analysis, data FROM analysis_data").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged("table analysis_data", f"cannot be read ({exc})") from None
        return {(int(r), str(a)): self._json(d, f"table analysis_data, run id {r}, {a!r}, column data")
                for r, a, d in rows}

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            counts[status] = n
        return counts

    def rows(self, *, with_predictions: bool = True, with_history: bool = True) -> list[RunRecord]:
        """Every run as a :class:`~archlab.study.record.RunRecord`."""
        try:
            return self._rows(with_predictions, with_history)
        except sqlite3.DatabaseError as exc:
            raise self._damaged("the runs tables", f"cannot be read ({exc})") from None

    def _rows(self, with_predictions: bool, with_history: bool) -> list[RunRecord]:
        out = []
        runs = self.conn.execute(_RUN_COLUMNS).fetchall()
        finals: dict[int, dict[str, dict[str, float]]] = {}
        for run_id, split, key, value in self.conn.execute("SELECT run_id, split, key, value FROM final_metrics"):
            _check_number(self, value, f"table final_metrics, run id {run_id}, {split} {key!r}, column value")
            finals.setdefault(run_id, {}).setdefault(split, {})[key] = value
        history: dict[int, dict[int, dict[str, float]]] = {}
        if with_history:
            for run_id, epoch, key, value in self.conn.execute(
                "SELECT run_id, epoch, key, value FROM epoch_metrics ORDER BY run_id, epoch"
            ):
                _check_number(self, value, f"table epoch_metrics, run id {run_id}, epoch {epoch}, {key!r}, column value")
                history.setdefault(run_id, {}).setdefault(epoch, {"epoch": epoch})[key] = value
        preds: dict[int, tuple[list[int], list[int]]] = {}
        if with_predictions:
            for run_id, p, t in self.conn.execute("SELECT run_id, preds, targets FROM predictions"):
                preds[run_id] = self._predictions(run_id, p, t)
        for r in runs:
            run_id = r[0]
            self._check_run_row(r)
            f = finals.get(run_id, {})
            p = preds.get(run_id)
            out.append(
                RunRecord(
                    id=run_id,
                    dataset=r[1],
                    variant=r[2],
                    seed=r[3],
                    status=r[4],
                    error=r[5],
                    params=r[6],
                    flops=r[7],
                    train_seconds=r[8],
                    best_epoch=r[9],
                    epochs_run=r[10],
                    config=self._json(r[11], f"table runs, id {run_id}, column config"),
                    provenance=self._json(r[12], f"table runs, id {run_id}, column provenance") if r[12] else None,
                    attempts=r[13],
                    started=r[14],
                    finished=r[15],
                    val=f.get("val"),
                    test=f.get("test"),
                    analysis=f.get("analysis"),  # {"rotation.mean_prob": ...} (archlab.study.analyses)
                    history=[history[run_id][e] for e in sorted(history.get(run_id, {}))],
                    test_predictions=p[0] if p else None,
                    test_targets=p[1] if p else None,
                )
            )
        return out


    def _predictions(self, run_id: int, preds: Any, targets: Any) -> tuple[list[int], list[int]]:
        """Decode a predictions row: two int32 BLOBs of the same length."""
        where = f"table predictions, run id {run_id}"
        arrays = []
        for column, blob in (("preds", preds), ("targets", targets)):
            if not isinstance(blob, bytes):
                raise self._damaged(f"{where}, column {column}", f"expected int32 bytes, found {type(blob).__name__}")
            if len(blob) % 4:
                raise self._damaged(
                    f"{where}, column {column}", f"{len(blob)} bytes is not a whole number of int32 values (truncated)"
                )
            arrays.append(np.frombuffer(blob, "<i4"))
        if len(arrays[0]) != len(arrays[1]):
            raise self._damaged(
                where, f"{len(arrays[0])} predictions but {len(arrays[1])} targets (truncated)"
            )
        return arrays[0].tolist(), arrays[1].tolist()

    def _check_run_row(self, r: tuple) -> None:
        """Every column of a ``runs`` row has the type archlab writes (SQLite itself does not enforce it)."""
        where = f"table runs, id {r[0]}"
        expected = (
            ("dataset", 1, str, False), ("variant", 2, str, False), ("seed", 3, int, False),
            ("status", 4, str, False), ("error", 5, str, True), ("params", 6, int, True), ("flops", 7, int, True),
            ("train_seconds", 8, (int, float), True), ("best_epoch", 9, int, True), ("epochs_run", 10, int, True),
            ("attempts", 13, int, False), ("started", 14, (int, float), True), ("finished", 15, (int, float), True),
        )
        for column, i, kind, nullable in expected:
            value = r[i]
            if (value is None and nullable) or (isinstance(value, kind) and not isinstance(value, bool)):
                continue
            want = {str: "text", int: "an integer"}.get(kind, "a number")  # type: ignore[call-overload]
            raise self._damaged(
                f"{where}, column {column}", f"expected {want}{' or NULL' if nullable else ''}, found {value!r:.40}"
            )
        if r[4] not in STATUSES:
            raise self._damaged(f"{where}, column status", f"{r[4]!r} is not one of {', '.join(STATUSES)}")


_RUN_COLUMNS = (
    "SELECT id, dataset, variant, seed, status, error, params, flops, train_seconds, best_epoch, "
    "epochs_run, config, provenance, attempts, started, finished FROM runs ORDER BY id"
)


def _check_number(store: StudyStore, value: Any, where: str) -> None:
    if value is not None and not isinstance(value, (int, float)):
        raise store._damaged(where, f"expected a number, found {value!r:.40}")


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


#: The columns of each archlab table (a database lacking one is not a study database of this version).
_COLUMNS: dict[str, set[str]] = {
    "study": {"key", "value"},
    "runs": {
        "id", "dataset", "variant", "seed", "status", "config", "provenance", "error", "attempts", "started",
        "finished", "params", "flops", "train_seconds", "best_epoch", "epochs_run",
    },
    "epoch_metrics": {"run_id", "epoch", "key", "value"},
    "final_metrics": {"run_id", "split", "key", "value"},
    "predictions": {"run_id", "preds", "targets"},
    "analysis_data": {"run_id", "analysis", "data"},
}


def _statements() -> list[str]:
    return [s.strip() for s in _SCHEMA.split(";") if s.strip()]
