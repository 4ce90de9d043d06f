"""`archlab study run|status|report|export`: output and exit codes."""

import csv
import io
import json

import yaml

from archlab.cli import main

from .conftest import study_dict


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_study_commands(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(seeds=[0, 1], train={"epochs": 1, "batch_size": 30})))
    out = tmp_path / "out"
    code, text, err = run(capsys, "study", "run", path, "--out", out)
    assert code == 0, err
    # the summary is a table (not raw Markdown): one row per variant, the baseline marked
    assert "Variant" in text and "baseline" in text and "|---" not in text and "**Dataset" not in text
    assert (out / "report.html").is_file()

    code, text, _ = run(capsys, "study", "status", out)
    assert code == 0 and "4/4 done" in text

    code, text, _ = run(capsys, "study", "export", out, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    for col in ("dataset", "variant", "seed", "status", "test_accuracy", "params", "train_seconds"):
        assert col in rows[0]
    assert {r["status"] for r in rows} == {"done"}

    code, text, _ = run(capsys, "study", "export", out, "--format", "json")
    assert code == 0 and len(json.loads(text)) == 4

    code, text, _ = run(capsys, "study", "report", out)
    assert code == 0 and "report.html" in text


def test_study_usage_errors(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(baseline="nope")))
    code, _, err = run(capsys, "study", "run", path, "--out", tmp_path / "o")
    assert code == 2 and "baseline 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing run

    code, _, err = run(capsys, "study", "status", tmp_path / "missing")
    assert code == 2 and "no results.sqlite" in err

    path.write_text(yaml.safe_dump(study_dict()))
    code, _, err = run(capsys, "study", "export", tmp_path, "--format", "xml")
    assert code == 2


def test_failed_runs_exit_1(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(
        seeds=[0], train={"epochs": 1, "batch_size": 30},
        variants={"a": {}, "boom": {"train": {"optim": {"name": "sgd", "lr": 1e12}}}},
    )))
    code, _, err = run(capsys, "study", "run", path, "--out", tmp_path / "o")
    assert code == 1 and "1 run(s) failed" in err
