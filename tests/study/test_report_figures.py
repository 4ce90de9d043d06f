"""What a researcher draws next (issue 26 item 6): paired differences, training loss, accuracy vs
cost, a per-seed table, confusion matrices, labelled FLOPs and the two intervals explained."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from archlab.study.report import MAX_CONFUSION_CLASSES, write_report

from .test_report import META, cells, make_run, study_runs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    md, html = write_report(study_runs(), out, study_name="figures", baseline="linear", settings=META)
    return out, md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")


def test_new_figures_are_written_embedded_and_captioned(written):
    out, md, html = written
    for file, title in (("digits_paired_differences.png", "Paired differences (digits)"),
                        ("digits_train_loss.png", "Training loss (digits)"),
                        ("digits_cost.png", "Test accuracy against parameters and FLOPs (digits)"),
                        ("digits_confusion.png", "Confusion matrices (digits)")):
        img = Image.open(out / file)
        assert img.size[0] >= 400 and img.size[1] >= 300
        assert f"![{title}]({file})" in md and f'alt="{title}"' in html
    assert "a multiply-accumulate counted as 2 FLOPs; MACs = FLOPs / 2" in md


def test_confusion_matrix_reads_the_predictions(written):
    """mlp predicts (t + 1) % 10 when wrong: the matrix has colour on the diagonal and the next column only."""
    out, _, _ = written
    px = np.asarray(Image.open(out / "digits_confusion.png").convert("RGB"), dtype=np.int16)
    dark = (px.sum(axis=2) < 250)  # the darkest blues: the diagonal of ~90 % accuracy
    assert dark.sum() > 100


def test_paired_differences_plot_has_the_margin_band_and_points(written):
    out, _, _ = written
    px = np.asarray(Image.open(out / "digits_paired_differences.png").convert("RGB"), dtype=np.int16)
    c1 = np.abs(px - np.array([0xFF, 0x7F, 0x0E])).sum(axis=2) < 40  # C1: the first compared variant's dots
    assert c1.sum() > 20


def test_per_seed_table_flops_label_and_interval_legend(written):
    _, md, _ = written
    assert "### Test accuracy per seed" in md
    row = cells(md.split("### Test accuracy per seed", 1)[1], "linear")
    assert row[0] == "linear" and len(row) == 1 + 5 and all(re.fullmatch(r"\d+\.\d\d", c) for c in row[1:])
    assert "| FLOPs (2×MACs) |" in md
    assert "“95 % CI (t)” column is each variant's own mean, unadjusted" in md
    assert "adjusted when several comparisons share α" in md


def test_many_classes_get_no_confusion_matrix(tmp_path):
    runs = []
    for v in ("base", "other"):
        for s in range(3):
            r = make_run(v, s)
            k = MAX_CONFUSION_CLASSES + 1
            t = list(range(k)) * 2
            runs.append(type(r)(**{**r.__dict__, "test_predictions": t, "test_targets": t}))
    write_report(runs, tmp_path, study_name="many", baseline="base", settings=META)
    assert not (tmp_path / "digits_confusion.png").exists() and (tmp_path / "digits_paired_differences.png").exists()
