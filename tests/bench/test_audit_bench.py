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

    ver = json.loads((tmp_path / "audit_verified.json").read_text())  # --tiny: 3,000 shipped MNIST digits
    assert ver["name"] == "audit_verified" and ver["tiny"] is True and ver["images"] == 3000
    assert 0 < ver["candidates"] <= ver["defaults"]["neighbours"] * ver["images"]  # the speed shape of issue 24
    assert set(ver["stage_seconds"]) == set(ver["stage_cpu_seconds"]) == {"prepare", "describe", "search", "verify"}
    assert ver["verify_ms_per_pair"] > 0 and ver["verify_budget_ms_per_pair"] > 0 and ver["cpu_seconds"] > 0
    assert ver["planted"]["pairs"] == 6 * 5 and ver["planted"]["recall"] >= 0.9
    assert set(ver["load_average_1min"]) == {"before", "after"} and ver["target_seconds"] == 120.0
