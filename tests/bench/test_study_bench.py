"""bench/study.py keeps working: the --tiny smoke run runs the study both ways and writes a result."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_study_bench_tiny(tmp_path):
    out = tmp_path / "study.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "study.py"), "--tiny", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "study" and data["tiny"] is True
    assert data["runs"] == 2 and set(data["timing"]) == {"runner", "one_process"}
    assert data["runner_choice"]["workers"] >= 1 and data["runner_choice"]["threads_per_worker"] >= 1
    assert data["ratio"] > 0 and data["met"] == (data["ratio"] > 1.0)
    for acc in data["mean_test_accuracy"].values():
        assert 0.0 <= acc <= 1.0
