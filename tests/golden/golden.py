"""The golden record of two small studies (issue 21): every stored number, prediction and verdict.

``python tests/golden/golden.py write`` records ``golden.json`` from the checked-out code (done once,
on main at 9c56884, before the redesign); ``tests/golden/test_golden.py`` runs the same studies and
compares. Timings, dates, host names and paths are left out: they are the only things allowed to
differ. A deliberate change of a stored value (a statistics fix) re-records the file in the same
commit and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDIES = ("classification.yaml", "segmentation.yaml")
_TIMING = re.compile(r"second|time|wall|duration|started|finished|eta", re.I)


def _cli(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "archlab.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _clean(value):
    """Drop timing keys (recursively) from a JSON value."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _TIMING.search(k)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _config(text: str) -> dict:
    cfg = json.loads(text)
    return _clean(cfg)


def _report_lines(path: Path) -> list[str]:
    """The verdict-bearing lines of report.md: answer lines and table rows, minus timing columns."""
    keep, timed = [], False
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            timed = bool(_TIMING.search(line))  # a section about a timing metric
        elif not timed and re.search(r"\b(better|worse|equivalent|inconclusive)\b", line):
            keep.append(re.sub(r"\d+(\.\d+)?\s*(s|min|h)\b", "<t>", line))
    return keep


def record(study: Path, out: Path) -> dict:
    """Run ``study`` into ``out`` (one worker, then a report) and read back everything stored."""
    _cli("study", "run", str(study), "--out", str(out), "--workers", "1")
    _cli("study", "report", str(out))
    db = sqlite3.connect(out / "results.sqlite")
    runs = {}
    for (rid, dataset, variant, seed, status, config, error, params, flops, best, epochs) in db.execute(
        "SELECT id, dataset, variant, seed, status, config, error, params, flops, best_epoch, epochs_run"
        " FROM runs ORDER BY dataset, variant, seed"
    ):
        history = {}
        for epoch, key, value in db.execute(
            "SELECT epoch, key, value FROM epoch_metrics WHERE run_id=? ORDER BY epoch, key", (rid,)
        ):
            if not _TIMING.search(key):
                history.setdefault(str(epoch), {})[key] = value
        final = {f"{s}/{k}": v for s, k, v in db.execute(
            "SELECT split, key, value FROM final_metrics WHERE run_id=? ORDER BY split, key", (rid,))
            if not _TIMING.search(k)}
        preds = [hashlib.sha256(p).hexdigest() + hashlib.sha256(t).hexdigest()
                 for p, t in db.execute("SELECT preds, targets FROM predictions WHERE run_id=?", (rid,))]
        analyses = {a: _clean(json.loads(d)) for a, d in db.execute(
            "SELECT analysis, data FROM analysis_data WHERE run_id=? ORDER BY analysis", (rid,))}
        runs[f"{dataset}/{variant}/seed{seed}"] = {
            "status": status, "config": _config(config), "error": error, "params": params,
            "flops": flops, "best_epoch": best, "epochs_run": epochs, "history": history,
            "final": final, "predictions": preds, "analyses": analyses,
        }
    db.close()
    return {"runs": runs, "report": _report_lines(out / "report.md")}


def record_all(tmp: Path) -> dict:
    return {name: record(HERE / name, tmp / name.removesuffix(".yaml")) for name in STUDIES}


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["write"]:
        raise SystemExit("usage: python tests/golden/golden.py write")
    with tempfile.TemporaryDirectory() as d:
        data = record_all(Path(d))
    (HERE / "golden.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", HERE / "golden.json")
