"""bench/readme_table.py: rows for every result file and an idempotent --write into the README."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import readme_table  # noqa: E402

HW = {"cpu_count": 2, "torch": "2.x", "torch_threads": 1}


def _results(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    timing = {k: {"median_s": m, "min_s": m, "max_s": m, "images_per_s": 1000 / m, "n": 3}
              for k, m in [("archlab", 1.0), ("archlab_contiguous", 0.8), ("reference_workers0", 3.0), ("reference_workers2", 2.5)]}
    engine = {"hardware": HW, "threads": 1, "cases": {"c": {
        "config": {"model": {"name": "mnist_cnn"}, "data": {"name": "digits", "augment": "spinal_mnist"}, "batch_size": 64},
        "train_images_per_run": 1000, "timing": timing, "reference": "reference_workers2",
        "test_accuracy": {k: {"mean": 0.9} for k in timing}, "speedup": 2.5, "speedup_contiguous": 3.125,
        "target": 2.0, "met": True}}}
    study = {"hardware": HW, "runs": 6, "ratio": 1.4, "met": True, "runner_choice": {"workers": 2, "threads_per_worker": 1},
             "one_process": {"workers": 1, "threads": 2},
             "timing": {"runner": {"median_s": 10.0}, "one_process": {"median_s": 14.0}}}
    other = {"hardware": HW, "threads": 2, "cases": {"x": {"timing": {"archlab": {"median_s": 2.0}, "ref": {"median_s": 8.0}},
                                                          "speedup": 4.0, "target": "< 60 s", "meets_target": True}}}
    (res / "engine.json").write_text(json.dumps(engine))
    (res / "study.json").write_text(json.dumps(study))
    (res / "zzz_other.json").write_text(json.dumps(other))
    (res / "engine.tiny.json").write_text("{not json, never read")
    return res


def test_rows_for_every_result_file(tmp_path):
    rows = readme_table.rows(_results(tmp_path))
    text = "\n".join(rows)
    assert rows[0].startswith("| benchmark |") and len(rows) == 2 + 2 + 1 + 1
    assert "1000 img/s" in text and "DataLoader loop (workers2) 400 img/s" in text and "2.50x faster" in text
    assert "Study wall time, 6 small runs" in text and "1.40x faster" in text
    assert "| zzz_other x | 2 s | ref 8 s | 4.00x | < 60 s | yes |" in text


def test_write_replaces_placeholder_then_markers(tmp_path):
    res = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nBENCH_TABLE\n\n## Layout\n")
    cmd = [sys.executable, str(ROOT / "bench" / "readme_table.py"), "--write", "--readme", str(readme), "--results", str(res)]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    first = readme.read_text()
    assert "BENCH_TABLE" not in first and readme_table.START in first and readme_table.END in first
    assert first.startswith("# x\n\n## Benchmarks\n\n<!-- bench:start -->\n| benchmark |") and first.endswith("<!-- bench:end -->\n\n## Layout\n")
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert readme.read_text() == first  # idempotent
    readme.write_text("no table here\n")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "BENCH_TABLE" in proc.stderr


def test_study_cost_table_is_cost_times_images_and_goes_between_its_markers(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    cost = {"hardware": {**HW, "load_average_1_5_15min": [1.0, 1.0, 1.0]}, "batch": 8, "steps": 2, "studies": {
        "s": {"runs": 10, "max_epochs": 360, "cpu_s": 3.5 * 86400, "datasets": {"d": {"train_images": 2015}},
              "variants": {"d/a": {"cpu_s_per_image": 0.19}, "d/b": {"cpu_s_per_image": 0.05}}}}}
    (res / "study_cost.json").write_text(json.dumps(cost))
    table = readme_table.study_cost_table(res)
    assert table[2] == "| `s` | 10 | 360 | 2,015 | 50..190 | 3.5 |"
    assert readme_table.rows(res) == readme_table.HEADER  # not a row of the benchmark table
    text = readme_table.replace_cost("a\n<!-- study-cost:start -->\nold\n<!-- study-cost:end -->\nb\n", table)
    assert "old" not in text and "| `s` | 10 |" in text and text.startswith("a\n") and text.endswith("\nb\n")
    assert readme_table.study_cost_table(tmp_path) == [
        "No `bench/results/study_cost.json` yet: `python bench/study_cost.py` writes it."]


def test_study_cost_training_images_follow_the_split():
    import study_cost
    from archlab.train.config import DataConfig

    assert study_cost.train_images(DataConfig(name="cifar10", val_fraction=0.1)) == 45000
    assert study_cost.train_images(DataConfig(name="mnist", options={"subset": {"train": 10000, "test": 1000}},
                                              val_fraction=0.1)) == 9000
    # seed 000: 20 % test and 15 % val carved from 15,662 images, then classes balanced to the smallest
    assert study_cost.train_images(DataConfig(name="image_folder", val_fraction=0.15, test_fraction=0.2,
                                              balance=True)) == round(2 * 3100 * 0.65)
    assert study_cost.train_images(DataConfig(name="quickdraw", options={"per_class": 10000}, val_fraction=0.1,
                                              test_fraction=0.2)) == 24 * 7000
