"""bench/audit.py keeps working: calibration on real images and the speed comparison, in --tiny form."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_audit_bench_tiny(tmp_path):
    out = tmp_path / "audit.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "audit.py"), "--tiny", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "audit" and data["tiny"] is True and data["images"] == 3000
    assert data["planted_pairs"] > 0 and data["planted_missed"] == 0
    check = data["subsample_check"]
    assert check["max_hash_diff"] < 1e-5
    # the compared subsample holds planted pairs: "the same pairs" is not a comparison of empty sets
    assert check["planted_pairs_inside"] > 0 and check["pairs"] >= check["planted_pairs_inside"]
    assert set(data["reference_seconds_extrapolated"]) == {"seed_numpy", "sklearn_radius"}
    assert all(v > 0 for v in data["speedup"].values())
    # pruning and implementation gains are reported apart
    assert data["pruning_full"]["gain"] > 0 and set(data["pruning_full"]["timing"]) == {"pruned", "unpruned"}
    assert all(v > 0 for v in data["implementation_gain_on_subsample"].values())
    assert data["archlab_seconds"]["median"] > 0 and "torch" in data["hardware"]

    cal = json.loads((tmp_path / "audit_calibration.json").read_text())
    assert cal["name"] == "audit_calibration" and cal["tiny"] is True
    assert set(cal["sets"]) == {"digits", "photos", "handwriting", "handwriting_heldout"}
    for s in cal["sets"].values():
        for setting in ("archlab_default", "no_ratio_test", "seed_histogram_hash"):
            r = s["settings"][setting]
            assert set(r["per_transformation"]) == set(cal["transformations"])
            assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    assert cal["pooled"]["archlab_default"]["planted"] == 4 * 6 * cal["per_kind"]
    assert cal["target"]["handwriting_heldout"] == {"precision": 0.9, "recall": 0.9}
