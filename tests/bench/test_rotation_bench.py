"""bench/rotation_conv.py keeps working: the --tiny smoke run writes a result and agrees with the seed loop."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rotation_bench_tiny(tmp_path):
    out = tmp_path / "rotation_conv.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rotation_conv.py"), "--tiny", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["name"] == "rotation_conv" and data["tiny"] is True
    assert set(data["timings"]) == {"archlab", "seed_loop", "plain_wide"}
    assert data["config"]["rotations"] == 8
    assert set(data["ratios"]) == {"archlab_over_seed_loop", "archlab_over_plain_wide"}
    assert max(data["max_abs_diff_vs_seed_loop"].values()) < 1e-4
    assert "torch" in data["hardware"]
