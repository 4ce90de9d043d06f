"""bench/ltc.py keeps working: the --tiny smoke run checks equality with ncps and writes a result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("ncps")


def test_ltc_bench_tiny(tmp_path):
    out = tmp_path / "ltc.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ltc.py"), "--tiny", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "ltc" and data["tiny"] is True and data["mode"] == "fwd+bwd"
    assert set(data["cases"]) == {"ncp_original_32", "ncp_custom_512"}
    for case in data["cases"].values():
        assert set(case["timing"]) == {"ncps", "archlab"}
        assert case["max_rel_diff"] < 1e-5
        assert case["speedup"] > 0 and case["target"] in (3.0, 5.0)
    assert "torch" in data["hardware"]
