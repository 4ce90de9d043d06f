"""bench/verdicts.py keeps working: the --tiny simulation of the verdict rule writes its JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_verdicts_bench_tiny(tmp_path):
    out = tmp_path / "verdicts.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "verdicts.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    data = json.loads(out.read_text())
    assert data["name"] == "verdicts" and data["tiny"] is True and data["reps"] == 200
    assert proc.returncode == (0 if data["false_difference_rate"]["met"] else 1), proc.stderr
    s = data["scenarios"]
    assert s["delta_2sd"]["rates"]["better"] > 0.95 and s["delta_2sd"]["mean_seeds"] < 20
    assert s["no_difference"]["mean_seeds"] <= 20 and s["delta_0.8sd"]["fixed_design_seeds_same_power"] >= 3
    assert data["images"]["false_positive_rate"]["pooled_mcnemar"] > data["images"]["false_positive_rate"]["seeds_x_images"]
