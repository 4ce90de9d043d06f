"""`archlab bench`: discovery, running scripts, the summary table, errors."""

import json
import textwrap

from archlab._cli.bench import discover, find_bench_dir, summary_rows
from archlab.cli import main


def test_discovers_every_benchmark_script():
    names = discover(find_bench_dir())
    assert {"engine", "study", "ltc", "rotation_conv"} <= set(names)
    assert "readme_table" not in names and not any(n.startswith("_") for n in names)


def test_bench_study_tiny_writes_json_and_prints_table(tmp_path, capsys):
    code = main(["bench", "study", "--tiny", "--threads", "1", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "study.tiny.json").read_text())
    assert data["tiny"] is True and data["name"] == "study"
    assert "runner" in out and "one_process" in out and "ratio" in out


def test_unknown_benchmark_is_a_usage_error(capsys):
    assert main(["bench", "engin"]) == 2
    assert "unknown benchmark 'engin'; did you mean 'engine'" in capsys.readouterr().err


def test_missing_bench_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--bench-dir", str(tmp_path / "nowhere")]) == 2
    assert "no benchmark folder" in capsys.readouterr().err


def _fake_bench(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "_common.py").write_text("")
    (bench / "readme_table.py").write_text("raise SystemExit(3)\n")
    (bench / "fast.py").write_text(textwrap.dedent("""
        import argparse, json
        p = argparse.ArgumentParser()
        p.add_argument("--tiny", action="store_true"); p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--threads"); p.add_argument("--device"); p.add_argument("--out")
        a = p.parse_args()
        t = {"archlab": {"median_ms": 2.0, "min_ms": 1.5, "max_ms": 2.5, "n": a.repeats},
             "reference": {"median_ms": 6.0, "min_ms": 5.0, "max_ms": 7.0, "n": a.repeats}}
        json.dump({"name": "fast", "tiny": a.tiny, "cases": {"c1": {"timing": t, "speedup": 3.0, "target": 2.0, "met": True}}},
                  open(a.out, "w"))
    """))
    (bench / "boom.py").write_text("raise RuntimeError('broken benchmark')\n")
    return bench


def test_runs_scripts_passes_flags_and_reports_failures(tmp_path, capsys):
    bench = _fake_bench(tmp_path)
    assert discover(bench) == ["boom", "fast"]
    code = main(["bench", "fast", "--repeats", "4", "--bench-dir", str(bench), "--out-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads((tmp_path / "r" / "fast.json").read_text())
    assert data["cases"]["c1"]["timing"]["archlab"]["n"] == 4 and data["tiny"] is False
    assert "c1: archlab" in out and "3.00x (target 2.0, met)" in out
    code = main(["bench", "--tiny", "--bench-dir", str(bench), "--out-dir", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 1
    assert "bench boom failed" in captured.err and "broken benchmark" in captured.err
    assert (tmp_path / "r" / "fast.tiny.json").is_file()  # the others still ran


def test_summary_rows_of_the_result_layouts():
    rows = summary_rows("study", {
        "timing": {"runner": {"median_s": 10.0, "min_s": 9.0, "max_s": 11.0, "n": 5},
                   "one_process": {"median_s": 15.0, "min_s": 14.0, "max_s": 16.0, "n": 5}},
        "ratio": 1.5, "target": 1.0, "met": True, "hardware": {"cpu_count": 2},
    })
    assert ("study", "runner", "10 s", "9..11 s (n=5)") in rows
    assert ("study", "ratio", "1.50x (target 1.0, met)", "") in rows
    rot = summary_rows("rotation_conv", {"ratios": {"a_over_b": 0.5}, "targets_met": {"a_over_b": True},
                                         "timings": {"a": {"median_ms": 1.0, "min_ms": 1.0, "max_ms": 1.0, "n": 1}}})
    assert ("rotation_conv", "a_over_b", "0.50x (met)", "") in rot


def test_a_smoke_result_claims_nothing():
    """`archlab bench --tiny` times nothing worth a claim: no "NOT met" for what it did not time (issue 17)."""
    data = {"tiny": True, "cases": {"c": {"speedup": 0.4, "target": 2.0, "met": False,
                                          "efficiency": 0.5}},
            "ratios": {"a_over_b": 3.0}, "targets_met": {"a_over_b": False}}
    rows = summary_rows("x", data)
    text = "\n".join(" ".join(r) for r in rows)
    assert "NOT met" not in text and "(target" not in text
    assert ("x", "cases/c: speedup", "0.40x (smoke run: no claim)", "") in rows
    assert ("x", "a_over_b", "3.00x (smoke run: no claim)", "") in rows
    full = summary_rows("x", {**data, "tiny": False})
    assert ("x", "cases/c: speedup", "0.40x (target 2.0, NOT met)", "") in full
    eff = summary_rows("efficiency", {"tiny": False, "cases": {"m": {"efficiency": 0.9712, "target": 0.95, "met": True}}})
    assert ("efficiency", "cases/m: efficiency", "0.971 (target 0.95, met)", "") in eff
