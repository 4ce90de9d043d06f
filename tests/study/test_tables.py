"""Results as data (issue 26 item 5): runs, per-epoch history and verdicts as files and DataFrames."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import sys

import pytest
import yaml

from archlab.cli import main
from archlab.errors import ConfigError
from archlab.study.config import load_study
from archlab.study.runner import run_study
from archlab.study.store import DB_NAME, StudyStore
from archlab.study.tables import (
    LEGACY_RUN_COLUMNS,
    export_tables,
    history_frame,
    history_rows,
    run_rows,
    runs_frame,
    verdict_rows,
    verdicts_frame,
)

from .conftest import study_dict


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A finished 2 variants x 3 seeds x 2 epochs study with a variant description."""
    tmp = tmp_path_factory.mktemp("tables")
    d = study_dict(seeds=[0, 1, 2])
    d["variants"]["b"]["description"] = "an MLP head of 16 units"
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(d))
    out = tmp / "out"
    run_study(load_study(path), out, workers=1)
    return out


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_runs_table_carries_config_description_and_macs(study_dir):
    rows = run_rows(study_dir)
    assert len(rows) == 6 and list(rows[0])[: len(LEGACY_RUN_COLUMNS)] == list(LEGACY_RUN_COLUMNS)
    b = next(r for r in rows if r["variant"] == "b")
    assert b["description"] == "an MLP head of 16 units"
    assert b["config.model.head"] == "mlp" and b["config.model.head_kwargs.hidden"] == "[16]"
    assert b["config.optim.lr"] == pytest.approx(1e-3) and b["config.epochs"] == 2
    assert b["macs"] * 2 == b["flops"] and b["provenance.archlab"]
    store = StudyStore(study_dir / DB_NAME)
    rec = next(r for r in store.rows() if (r.variant, r.seed) == ("b", b["seed"]))
    assert b["test_accuracy"] == rec.test["accuracy"] and b["params"] == rec.params


def test_history_has_every_epoch_and_no_classification_dice(study_dir):
    rows = history_rows(study_dir)
    assert len(rows) == 6 * 2 and {r["epoch"] for r in rows} == {1, 2}
    assert all("val_dice" not in r for r in rows) and all("val_f1_macro" in r and "train_loss" in r for r in rows)
    store = StudyStore(study_dir / DB_NAME)
    assert all("val_dice" not in h and "dice" not in (r.test or {}) for r in store.rows() for h in r.history)


def test_an_old_database_with_val_dice_still_reads(study_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(study_dir, old)
    db = sqlite3.connect(old / DB_NAME)
    with db:  # what a classification run of an older version stored: val_dice = val_f1_macro
        db.execute("INSERT INTO epoch_metrics (run_id, epoch, key, value) SELECT run_id, epoch, 'val_dice', value "
                   "FROM epoch_metrics WHERE key = 'val_f1_macro'")
    db.close()
    store = StudyStore(old / DB_NAME)
    assert all("val_dice" in h for r in store.rows() for h in r.history)  # the store reads it as stored
    assert all("val_dice" not in r for r in history_rows(old))  # the export leaves the copy out
    assert len(run_rows(old)) == 6


def test_verdicts_are_the_reports(study_dir):
    rows = verdict_rows(study_dir)
    assert [(r["metric"], r["variant"], r["primary"]) for r in rows] == [("accuracy", "b", True), ("f1_macro", "b", False)]
    acc = rows[0]
    report = (study_dir / "report.md").read_text()
    assert f"- {acc['answer']}" in report.splitlines()
    assert acc["verdict"] in ("better", "worse", "equivalent", "inconclusive") and acc["baseline"] == "a"
    assert acc["ci_low"] <= acc["mean_diff"] <= acc["ci_high"] and acc["n_pairs"] == 3
    assert acc["interval"] == "95 % CI" and acc["margin"] == pytest.approx(0.01)


def test_frames_and_files_round_trip(study_dir, tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import pandas as pd

    runs, hist, verd = runs_frame(study_dir), history_frame(study_dir), verdicts_frame(study_dir)
    assert runs.shape[0] == 6 and hist.shape[0] == 12 and verd.shape[0] == 2
    paths = export_tables(study_dir, tmp_path / "pq", fmt="parquet")
    assert [p.name for p in paths] == ["runs.parquet", "history.parquet", "verdicts.parquet"]
    back = pd.read_parquet(tmp_path / "pq" / "history.parquet")
    pd.testing.assert_frame_equal(back, hist)
    export_tables(study_dir, tmp_path / "js", ["verdicts"], fmt="json")
    assert json.loads((tmp_path / "js" / "verdicts.json").read_text())[0]["answer"] == verd["answer"][0]


def test_missing_pandas_names_the_install_command(study_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[pandas\]'"):
        runs_frame(study_dir)


def test_cli_export_stdout_files_and_errors(study_dir, tmp_path, capsys):
    code, text, _ = _cli(capsys, "study", "export", study_dir)  # as before: runs as CSV on stdout
    assert code == 0
    header = next(csv.reader(io.StringIO(text)))
    assert header[: len(LEGACY_RUN_COLUMNS)] == list(LEGACY_RUN_COLUMNS) and "config.optim.lr" in header
    code, text, _ = _cli(capsys, "study", "export", study_dir, "--what", "history", "--format", "json")
    assert code == 0 and len(json.loads(text)) == 12
    code, text, _ = _cli(capsys, "study", "export", study_dir, "--what", "all", "--out", tmp_path / "t")
    assert code == 0 and sorted(p.name for p in (tmp_path / "t").iterdir()) == ["history.csv", "runs.csv", "verdicts.csv"]
    for argv, msg in ((("--what", "bogus"), "--what 'bogus': expected one of runs, history, verdicts"),
                      (("--what", "all"), "pass --out DIR"),
                      (("--format", "parquet"), "--format parquet writes files: pass --out DIR"),
                      (("--format", "xml"), "--format must be one of csv, parquet, json, got 'xml'")):
        code, _, err = _cli(capsys, "study", "export", study_dir, *argv)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_monitor_dice_on_a_classification_run_is_one_clear_line(tmp_path, capsys):
    code, _, err = _cli(capsys, "train", "--dataset", "synthetic", "--set", "monitor=dice", "--set", "epochs=1",
                        "--out", tmp_path / "run")
    assert code == 2 and "monitor = 'dice' is a segmentation metric" in err and "Traceback" not in err
