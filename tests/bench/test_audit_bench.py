"""bench/audit.py keeps working: the --tiny run checks hashes and pairs against the references."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_audit_bench_tiny(tmp_path):
    out = tmp_path / "audit.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "audit.py"), "--tiny", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "audit" and data["tiny"] is True and data["images"] == 3000
    assert data["planted_pairs"] > 0 and data["planted_missed"] == 0
    assert data["subsample_check"]["max_hash_diff"] < 1e-5
    assert set(data["reference_seconds_extrapolated"]) == {"seed_numpy", "sklearn_radius"}
    assert all(v > 0 for v in data["speedup"].values())
    assert data["archlab_seconds"]["median"] > 0 and "torch" in data["hardware"]
