"""Tests of archlab.study.report: content, escaping, self-containment, partial studies."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from archlab.errors import ConfigError, UnknownNameError
from archlab.study.report import REPORT_HTML, REPORT_MD, markdown_table, write_report

EVIL = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(variant, seed, acc=0.9, *, dataset="digits", status="done", error=None, epochs=4,
             n_test=60):
    """A run row as the runner stores it, with predictions and a learning curve."""
    if status != "done":
        return {"dataset": dataset, "variant": variant, "seed": seed, "status": status,
                "error": error, "params": None, "flops": None, "train_seconds": None,
                "test": None, "val": None, "best_epoch": None, "history": [],
                "test_predictions": None, "test_targets": None}
    targets = np.random.default_rng(seed).integers(0, 10, n_test)  # same split per seed
    rng = np.random.default_rng([seed, len(variant), int(acc * 1000)])
    correct = rng.random(n_test) < acc
    preds = np.where(correct, targets, (targets + 1) % 10)
    a = float(correct.mean())
    history = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": a * (1 - 0.5**e),
                "val_accuracy": a * (1 - 0.5**e), "val_f1_macro": a, "val_dice": a,
                "val_loss": 1 - a, "lr": 0.1, "seconds": 0.5} for e in range(1, epochs + 1)]
    metrics = {"accuracy": a, "f1_macro": a - 0.01, "dice": a - 0.01, "loss": 1 - a}
    return {"dataset": dataset, "variant": variant, "seed": seed, "status": "done", "error": None,
            "params": 10_000 + 1000 * len(variant), "flops": 2_500_000, "train_seconds": 3.0 + seed,
            "test": metrics, "val": metrics, "best_epoch": epochs, "history": history,
            "test_predictions": preds.tolist(), "test_targets": targets.tolist()}


def study_runs():
    runs = [make_run(v, s, acc) for v, acc in
            (("linear", 0.93), ("mlp", 0.93), (EVIL, 0.3), ("spinal", 0.95)) for s in range(5)]
    runs[-1] = make_run("spinal", 4, status="failed", error="TrainingFailed: loss is NaN at epoch 3")
    runs[-2] = make_run("spinal", 3, 0.95, epochs=2)  # stopped early: shorter learning curve
    runs.append(make_run("ncp", 0, 0.9))
    runs.append(make_run("ncp", 1, status="pending"))
    return runs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    md, html = write_report(study_runs(), out, study_name="quick <b>start</b>", baseline="linear")
    return out, md, html, md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")


def cells(md: str, first: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first``."""
    for line in md.splitlines():
        parts = re.split(r"(?<!\\)\|", line)
        if line.startswith("|") and parts[1].strip() == first:
            return [p.strip() for p in parts[1:-1]]
    raise AssertionError(f"no row {first!r}")


def test_files_written(report):
    out, md, html, _, _ = report
    assert (md.name, html.name) == (REPORT_MD, REPORT_HTML)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["digits_accuracy_distribution.png", "digits_f1_macro_distribution.png",
                    "digits_learning_curves.png"]
    for p in pngs:
        assert (out / p).read_bytes().startswith(PNG_MAGIC)


def test_markdown_tables(report):
    _, _, _, md, _ = report
    assert md.startswith("# Study report: quick \\<b\\>start\\</b\\>")
    assert "## Dataset: digits" in md
    assert "22 runs: 20 done, 1 failed, 1 pending." in md  # 4 * 5 + 2 rows
    assert "- spinal seed 4: TrainingFailed: loss is NaN at epoch 3" in md
    # Overview row: runs, params (exact), FLOPs, mean train time, both metrics.
    row = cells(md, "spinal")
    assert row[:5] == ["spinal", "4/5 (1 failed)", "16,000", "2.50M", "4.5"]  # time (3+4+5+6)/4
    assert all(re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d %", c) for c in row[5:7])
    acc = md.split("### Test accuracy vs baseline")[1]
    worse = cells(acc, "\\<script\\>alert(1)\\</script\\>")
    assert "significantly worse" in worse[-1] and "paired t" in worse[-1]
    assert "McNemar p<0.001" in worse[-1]
    assert cells(acc, "mlp")[-1].startswith("no significant difference at n=5")
    assert cells(acc, "ncp")[-1] == "inconclusive: only 1 paired seed (need at least 3)"
    assert cells(acc, "linear")[-1] == "baseline"
    assert "### Test accuracy vs baseline" in md and "### Test f1_macro vs baseline" in md
    assert "![Learning curves (digits)](digits_learning_curves.png)" in md


def test_comparison_columns(report):
    _, _, _, md, _ = report
    head = md.split("### Test accuracy vs baseline")[1].splitlines()[2]
    for col in ("95 % CI (t)", "95 % CI (bootstrap)", "Δ vs baseline", "d_z", "p (t)",
                "p (Wilcoxon)", "p (McNemar)", "p (t, Holm)", "Verdict"):
        assert col in head
    f1_head = md.split("### Test f1_macro vs baseline")[1].splitlines()[2]
    assert "McNemar" not in f1_head  # McNemar is about correctness, i.e. accuracy only
    n_cols = head.count("|") - 1
    for line in md.split("### Test accuracy vs baseline")[1].split("###")[0].splitlines():
        if line.startswith("|"):
            assert len(re.split(r"(?<!\\)\|", line)) - 2 == n_cols


def test_html_escapes_names(report):
    _, _, _, _, html = report
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "quick &lt;b&gt;start&lt;/b&gt;" in html and "<b>start" not in html


def test_html_escapes_errors_datasets_and_baseline(tmp_path):
    """Everything a study or a failing run can put into the page is text, not markup."""
    img = '<img src=x onerror="alert(1)">'
    runs = [make_run(EVIL, s, dataset=f"d{img}") for s in range(3)]
    runs += [make_run("v", 0, dataset=f"d{img}", status="failed", error=f"OSError: {img}"),
             make_run("v", 1, dataset=f"d{img}", status="failed", error=f"ValueError: {EVIL}\n  {img}")]
    _, html = write_report(runs, tmp_path, study_name=EVIL, baseline=EVIL)
    page = html.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img src=x" not in page and "onerror=\"" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 3  # dataset, both errors
    assert "<title>Study report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page


def test_html_is_self_contained(report):
    out, _, _, _, html = report
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 holds '/'
    assert not re.search(r"(?i)(https?:|ftp:)?//[a-z0-9]", text)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert embedded == {p.read_bytes() for p in out.glob("*.png")}  # same bytes as the files
    assert "Content-Security-Policy" in html


def test_html_tables(report):
    _, _, _, _, html = report
    assert html.count("<table>") == 3  # overview + one per metric
    assert 'class="verdict worse"' in html and 'class="verdict no_difference"' in html
    assert 'class="verdict inconclusive"' in html
    assert "TrainingFailed: loss is NaN at epoch 3" in html


def test_report_is_deterministic(report, tmp_path):
    _, _, _, md, html = report
    md2, html2 = write_report(study_runs(), tmp_path, study_name="quick <b>start</b>",
                              baseline="linear")
    assert md2.read_text(encoding="utf-8") == md and html2.read_text(encoding="utf-8") == html


def test_markdown_table_for_the_cli():
    runs = study_runs()
    text = markdown_table(runs, "linear")
    assert text.startswith("**Dataset: digits** (22 runs: 20 done, 1 failed, 1 pending)")
    head = text.splitlines()[2]
    assert head.startswith("| Variant | Runs done | Params | FLOPs | Time (s) | accuracy")
    assert cells(text, "linear")[-1] == "baseline"
    assert "significantly worse" in cells(text, "\\<script\\>alert(1)\\</script\\>")[-1]
    f1 = markdown_table(runs, "linear", metric="f1_macro")
    assert "f1_macro (mean ± std)" in f1 and "McNemar" not in f1
    assert markdown_table([], "linear") == "(no runs)"
    two = [r for r in runs if r["seed"] < 2]
    assert "inconclusive: only 2" in cells(markdown_table(two, "linear"), "mlp")[-1]
    assert "inconclusive" not in cells(markdown_table(two, "linear", min_pairs=2), "mlp")[-1]


def test_markdown_escapes_table_syntax():
    runs = [make_run(v, s) for v in ("base", "a|b*c", "x_y") for s in range(3)]
    text = markdown_table(runs, "base")
    assert "| a\\|b\\*c |" in text and "| x_y |" in text  # x_y: intraword, no escape needed
    assert all(len(re.split(r"(?<!\\)\|", ln)) == 12 for ln in text.splitlines() if ln.startswith("|"))


def test_single_seed_single_variant(tmp_path):
    md, html = write_report([make_run("base", 0)], tmp_path, study_name="one", baseline="base",
                            metrics=("accuracy",))
    text = md.read_text(encoding="utf-8")
    assert "(n=1)" in text and "| base | 1/1 |" in text
    assert "<table>" in html.read_text(encoding="utf-8")


def test_multiple_datasets(tmp_path):
    runs = [make_run(v, s, dataset=d) for d in ("mnist", "fashion/mnist") for v in ("b", "v")
            for s in range(3)]
    md, html = write_report(runs, tmp_path, study_name="two", baseline="b", metrics=("accuracy",))
    text = md.read_text(encoding="utf-8")
    assert "## Dataset: mnist" in text and "## Dataset: fashion/mnist" in text
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(names) == 4 and all("/" not in n for n in names)  # safe, distinct file names


def test_partial_and_empty_studies(tmp_path):
    runs = [make_run("base", s, status="pending") for s in range(3)]
    runs += [make_run("v", 0, status="failed", error="RuntimeError: out of memory\n  at line 3")]
    md, html = write_report(runs, tmp_path / "p", study_name="p", baseline="base")
    text = md.read_text(encoding="utf-8")
    assert "4 runs: 1 failed, 3 pending" in text
    assert "- v seed 0: RuntimeError: out of memory\n" in text  # the reason; traceback in HTML
    page = html.read_text(encoding="utf-8")
    assert "<summary>v seed 0: RuntimeError: out of memory</summary>" in page
    assert "at line 3</pre>" in page
    assert not list((tmp_path / "p").glob("*.png"))  # nothing finished: no plots
    md, html = write_report([], tmp_path / "e", study_name="e", baseline="base")
    assert "No runs yet." in md.read_text(encoding="utf-8")
    assert "No runs yet." in html.read_text(encoding="utf-8")


def test_mathtext_in_names_does_not_break_plots(tmp_path):
    runs = [make_run(v, s) for v in ("base", r"$\notacommand$") for s in range(2)]
    md, _ = write_report(runs, tmp_path, study_name="m", baseline="base", metrics=("accuracy",))
    assert (tmp_path / "digits_learning_curves.png").read_bytes().startswith(PNG_MAGIC)


def test_bad_arguments(tmp_path):
    runs = [make_run("base", 0)]
    with pytest.raises(ConfigError, match="at least one metric"):
        write_report(runs, tmp_path, study_name="x", baseline="base", metrics=())
    with pytest.raises(UnknownNameError, match="metric"):
        write_report(runs, tmp_path, study_name="x", baseline="base", metrics=("acc",))
    with pytest.raises(UnknownNameError, match="baseline"):
        write_report(runs, tmp_path, study_name="x", baseline="nope")
    with pytest.raises(ConfigError, match="alpha"):
        markdown_table(runs, "base", alpha=1.0)
    assert not (tmp_path / REPORT_HTML).exists()  # nothing written on bad input
