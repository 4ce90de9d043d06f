"""Tests of archlab.study.report: content, escaping, self-containment, partial studies."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import numpy as np
import pytest

from archlab.errors import ConfigError, UnknownNameError
from archlab.study.record import RunRecord
from archlab.study.report import REPORT_HTML, REPORT_MD, markdown_table, write_report

EVIL = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(variant, seed, acc=0.9, *, dataset="digits", status="done", error=None, epochs=4,
             n_test=60, split_sizes=True):
    """A run row as the runner stores it, with predictions and a learning curve."""
    if status != "done":
        return RunRecord(**{"dataset": dataset, "variant": variant, "seed": seed, "status": status,
                "error": error, "params": None, "flops": None, "train_seconds": None,
                "test": None, "val": None, "best_epoch": None, "history": [],
                "test_predictions": None, "test_targets": None})
    targets = np.random.default_rng(0).integers(0, 10, n_test)  # the study's fixed test split
    rng = np.random.default_rng([seed, len(variant), int(acc * 1000)])
    correct = rng.random(n_test) < acc
    preds = np.where(correct, targets, (targets + 1) % 10)
    a = float(correct.mean())
    history = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": a * (1 - 0.5**e),
                "val_accuracy": a * (1 - 0.5**e), "val_f1_macro": a, "val_dice": a,
                "val_loss": 1 - a, "lr": 0.1, "seconds": 0.5} for e in range(1, epochs + 1)]
    metrics = {"accuracy": a, "f1_macro": a - 0.01, "dice": a - 0.01, "loss": 1 - a}
    return RunRecord(**{"dataset": dataset, "variant": variant, "seed": seed, "status": "done", "error": None,
            "params": 10_000 + 1000 * len(variant), "flops": 2_500_000, "train_seconds": 3.0 + seed,
            "test": metrics, "val": metrics, "best_epoch": epochs, "history": history,
            "test_predictions": preds.tolist(), "test_targets": targets.tolist(),
            "config": {"epochs": epochs, "batch_size": 32, "optim": {"name": "adam", "lr": 0.001},
                       "data": {"name": "image_folder", "root": "data/clinic_a", "options": {"image_size": 28}},
                       "scheduler": {"name": "cosine_restarts", "kwargs": {"period": 10}},
                       "monitor": "accuracy", "threads": 1},
            "provenance": {"cpu": "x86_64", "cpu_count": 2, "threads": 1, "device": "cpu",
                           "torch": "2.9.0", "archlab": "0.1.0", "git_commit": "abcdef0123456789",
                           **({"split_sizes": {"train": 1200, "val": 140, "test": n_test}}
                              if split_sizes else {})}})


META = {"description": "the quickstart heads", "alpha": 0.05, "margins": {},
        "variants": {"linear": {"description": "a linear head"},
                     "spinal": {"description": "SpinalNet head", "model": {"head": "spinal"}}},
        "train": {"monitor": "accuracy"}}


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
    md, html = write_report(study_runs(), out, study_name="quick <b>start</b>", baseline="linear",
                            settings=META)
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
    assert pngs == ["digits_accuracy_distribution.png", "digits_confusion.png", "digits_cost.png",
                    "digits_f1_macro_distribution.png", "digits_learning_curves.png",
                    "digits_paired_differences.png", "digits_train_loss.png"]
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
    assert worse[-1].startswith("worse by -6") and "(n=5)" in worse[-1]
    assert cells(acc, "mlp")[-1].startswith("inconclusive (n=5): these seeds detect only differences ≥")
    spinal = cells(acc, "spinal")[-1]
    assert "on 4 of 5 seeds" in spinal and spinal.endswith("lost seed 4")
    assert cells(acc, "ncp")[-1] == "inconclusive: only 1 paired seed (need at least 3)"
    assert cells(acc, "linear")[-1] == "baseline"
    assert "### Test accuracy vs baseline (values in %, differences in percentage points) — primary" in md
    assert "### Test f1_macro vs baseline (values in %, differences in percentage points) — exploratory" in md
    assert "Δ column: 98.75 % CI (Bonferroni over 4 comparisons)." in md
    assert "Δ column: 95 % CI, unadjusted (exploratory)." in md
    assert "![Learning curves (digits)](digits_learning_curves.png)" in md


def test_answer_comes_first_then_context_then_tables(report):
    _, _, _, md, _ = report
    answer = md.split("## Answer")[1].split("##")[0]
    lines = [ln for ln in answer.splitlines() if ln.startswith("- ")]
    assert lines[0].startswith("- mlp: inconclusive vs linear (n=5) (detectable ≥")
    assert lines[1] == "- \\<script\\>alert(1)\\</script\\>: worse than linear by 60.33 pp (n=5)"
    assert lines[2].startswith("- spinal: inconclusive vs linear on 4 of 5 seeds") and lines[2].endswith("lost seed 4")
    assert md.index("## Answer") < md.index("## Context") < md.index("## Dataset: digits") < md.index("## Methods")
    assert "**Warning:** small test set on digits: 60 images" in md
    assert "- Split sizes (digits): train 1,200, val 140, test 60 images" in md
    assert "- Dataset digits: image_folder from data/clinic_a (image_size=28)" in md
    assert ("- Training (linear): 4 epochs, batch size 32, optimizer adam (lr 0.001), schedule "
            "cosine_restarts (period=10), best epoch by validation accuracy, 1 thread per run") in md
    assert "- Hardware and software: CPU x86_64 (2 cores), device cpu, torch threads 1" in md
    assert "- Study: the quickstart heads" in md
    assert "- Variant spinal: SpinalNet head \\[model {\"head\": \"spinal\"}\\]" in md


def test_methods_section(report):
    _, _, _, md, html = report
    methods = md.split("## Methods")[1]
    for text in ("Bonferroni (α/4 = 0.0125 each)", "two one-sided tests", "noncentral t",
                 "Boschloo", "seeds × images", "Clark 1973", "no percentile bootstrap", "Fixed seeds."):
        assert text in methods, text
    assert '<section id="methods"><h2>Methods</h2>' in html


def test_comparison_columns(report):
    _, _, _, md, _ = report
    head = md.split("### Test accuracy vs baseline")[1].splitlines()[4]
    for col in ("95 % CI (t)", "Δ vs baseline [CI]", "d_z", "p (t)", "p (TOST ±1 pp)", "p (Wilcoxon)",
                "p (seeds × images)", "ASO ε_min v≻b / b≻v", "Verdict"):
        assert col in head, col
    assert "bootstrap" not in head and "McNemar" not in head
    f1_head = md.split("### Test f1_macro vs baseline")[1].splitlines()[4]
    assert "seeds × images" not in f1_head  # per-image correctness is accuracy only
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
    assert len(srcs) == 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert embedded == {p.read_bytes() for p in out.glob("*.png")}  # same bytes as the files
    assert "Content-Security-Policy" in html


def test_html_tables(report):
    _, _, _, _, html = report
    assert html.count("<table>") == 4  # overview, one per metric, the per-seed table
    assert 'class="verdict worse"' in html and 'class="verdict inconclusive"' in html
    assert '<li class="worse">&lt;script&gt;alert(1)&lt;/script&gt;: worse than linear' in html
    assert '<p class="warning"><strong>Warning:</strong> small test set on digits: 60 images' in html
    assert "TrainingFailed: loss is NaN at epoch 3" in html


def test_report_is_deterministic(report, tmp_path):
    _, _, _, md, html = report
    md2, html2 = write_report(study_runs(), tmp_path, study_name="quick <b>start</b>",
                              baseline="linear", settings=META)
    assert md2.read_text(encoding="utf-8") == md and html2.read_text(encoding="utf-8") == html


def verdict_of(md: str, variant: str) -> str:
    """The verdict line under the compact table (``- variant: verdict``)."""
    for line in md.splitlines():
        if line.startswith(f"- {variant}: "):
            return line[len(variant) + 4:]
    raise AssertionError(f"no verdict line for {variant!r}")


def test_markdown_table_for_the_cli():
    runs = study_runs()
    text = markdown_table(runs, "linear", settings=META)
    assert text.startswith("**Dataset: digits** (22 runs: 20 done, 1 failed, 1 pending)")
    head = text.splitlines()[2]
    assert head == "| Variant | Runs | Params | FLOPs (2×MACs) | Time (s) | accuracy (mean ± std) | 95 % CI | Δ vs baseline [CI] |"
    assert cells(text, "linear")[-1] == "baseline"
    assert not any(ln.startswith("- linear:") for ln in text.splitlines())  # the baseline has no verdict
    assert verdict_of(text, "\\<script\\>alert(1)\\</script\\>").startswith("worse by")
    f1 = markdown_table(runs, "linear", metric="f1_macro")
    assert "f1_macro (mean ± std)" in f1
    assert markdown_table([], "linear") == "(no runs)"
    two = [r for r in runs if r.seed < 2]
    assert "inconclusive: only 2" in verdict_of(markdown_table(two, "linear"), "mlp")
    assert "only 2" not in verdict_of(markdown_table(two, "linear", min_pairs=2), "mlp")


def test_markdown_escapes_table_syntax():
    runs = [make_run(v, s) for v in ("base", "a|b*c", "x_y") for s in range(3)]
    text = markdown_table(runs, "base")
    assert "| a\\|b\\*c |" in text and "| x_y |" in text  # x_y: intraword, no escape needed
    assert all(len(re.split(r"(?<!\\)\|", ln)) == 10 for ln in text.splitlines() if ln.startswith("|"))


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
    assert len(names) == 12 and all("/" not in n for n in names)  # safe, distinct file names


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


# ------------------------------------------------------------------------------------------------
# Settings, sequential seeds, across datasets, old folders


def _strip(runs):
    """Rows as an old study folder stores them: no config, no provenance."""
    return [replace(r, config=None, provenance=None) for r in runs]


def test_old_folder_without_settings_or_provenance(tmp_path):
    runs = _strip([make_run(v, s, acc) for v, acc in (("base", 0.9), ("v", 0.9)) for s in range(3)])
    md, html = write_report(runs, tmp_path, study_name="old", baseline="base")
    text = md.read_text(encoding="utf-8")
    assert "- Split sizes (digits): test 60 images" in text  # from len(test_targets)
    assert "Training (" not in text and "Hardware" not in text and "Study:" not in text
    assert "## Answer" in text and "## Methods" in text


def test_settings_from_study_meta(tmp_path):
    runs = [make_run(v, s, 0.9) for v in ("base", "twin") for s in range(4)]
    runs = [replace(r, test=dict(r.test, f1_macro=0.8 + 0.001 * r.seed)) for r in runs]
    meta = {"alpha": 0.01, "margins": {"f1_macro": 0.02}, "primary_metric": "f1_macro"}
    md, _ = write_report(runs, tmp_path, study_name="s", baseline="base", settings=meta)
    text = md.read_text(encoding="utf-8")
    assert "primary metric: f1_macro" in text and "α = 0.01" in text
    assert "- twin: equivalent to base within ±2 pp (n=4)" in text
    assert "### Test f1_macro vs baseline (values in %, differences in percentage points) — primary" in text
    assert "### Test accuracy vs baseline (values in %, differences in percentage points) — exploratory" in text
    assert "Δ column: 99 % CI." in text


@pytest.mark.parametrize("meta, match", [({"alpha": 2}, "alpha"), ({"margins": {"accuracy": -1}}, "margins.accuracy"),
                                         ({"seeds_plan": {"min": 1, "max": 5}}, "seeds.min"),
                                         ({"primary_metric": "acc"}, "metric")])
def test_bad_settings_name_the_key(tmp_path, meta, match):
    with pytest.raises((ConfigError, UnknownNameError), match=match):
        write_report([make_run("b", 0)], tmp_path, study_name="x", baseline="b", settings=meta)


def test_sequential_seeds_section(tmp_path):
    runs = [make_run("base", s, 0.9) for s in range(5)]
    runs += [make_run("twin", s, 0.9) for s in range(3)]  # identical results: decided at the first look
    runs += [make_run("mid", s, 0.85 + 0.03 * (s % 2)) for s in range(5)]
    meta = {"seeds_plan": {"min": 3, "max": 5, "step": 1, "until": "conclusive"}, "margins": {"accuracy": 0.01}}
    md, html = write_report(runs, tmp_path, study_name="seq", baseline="base", settings=meta,
                            metrics=("accuracy",))
    text = md.read_text(encoding="utf-8")
    seeds = text.split("## Seeds used (sequential design)")[1].split("## ")[0]
    twin = cells(seeds, "twin")
    assert twin[1:6] == ["digits", "3", "3", "—", "equivalent"]
    assert twin[6].startswith("stopped at 3 seeds: equivalent at n=3")
    assert cells(seeds, "mid")[2] == "5" and "max of 5 seeds reached" in cells(seeds, "mid")[6]
    assert "repeated 97.5 % CI (group-sequential, Bonferroni over 2)" in text
    assert "Lan–DeMets alpha spending" in text.split("## Methods")[1]
    assert '<section id="seeds">' in html.read_text(encoding="utf-8")


def test_across_datasets_section(tmp_path):
    runs = []
    for k, d in enumerate(("mnist", "kmnist", "fashion")):
        for v, acc in (("base", 0.7), ("good", 0.95), ("bad", 0.6)):
            for s in range(3):
                # good's offset varies by one of the 60 test images: a constant offset has no
                # spread (float noise is not spread), which only the sign test could decide
                a = acc + 0.01 * k + 0.004 * s + (1 / 60 * (s % 2) if v == "good" else 0.0)
                runs.append(replace(make_run(v, s, acc, dataset=d),
                                    test={"accuracy": a, "f1_macro": a, "dice": a, "loss": 1 - a}))
    md, html = write_report(runs, tmp_path, study_name="multi", baseline="base", metrics=("accuracy",))
    text = md.read_text(encoding="utf-8")
    across = text.split("## Across datasets (accuracy)")[1].split("\n## ")[0]
    assert cells(across, "good")[3].startswith("1.00") and cells(across, "good")[4] == "1.00"
    assert cells(across, "bad")[4] == "3.00" and cells(across, "base")[3] == "—"
    assert "Friedman χ²(2) = 6.00" in across and "Nemenyi critical difference" in across
    assert "- good (mnist): better than base by 25.56 pp (n=3)" in text  # the answer names the dataset
    assert '<section id="across">' in html.read_text(encoding="utf-8")


def test_rate_intervals_are_clipped_at_two_seeds(tmp_path):
    runs = [make_run("base", s, 0.9) for s in range(2)]
    runs += [replace(make_run("top", s, 0.9), test={"accuracy": a, "f1_macro": a, "dice": a, "loss": 0.1})
             for s, a in enumerate((0.99, 1.0))]
    md, _ = write_report(runs, tmp_path, study_name="c", baseline="base", metrics=("accuracy",))
    row = cells(md.read_text(encoding="utf-8").split("### Test accuracy")[1], "top")
    assert row[3].endswith(", 100.00] ‡")


def test_analysis_sections_go_before_methods(tmp_path):
    runs = [make_run(v, s) for v in ("base", "v") for s in range(3)]
    sec = ("Analysis: rotation", "a table", "<p>a table</p>", [])
    md, html = write_report(runs, tmp_path, study_name="a", baseline="base", sections=[sec])
    text = md.read_text(encoding="utf-8")
    assert text.index("## Analysis: rotation") < text.index("## Methods")
    page = html.read_text(encoding="utf-8")
    assert page.index("Analysis: rotation") < page.index('<section id="methods">')
