"""The HTML report rendered by a real headless Chromium: table text present, names inert, plots shown.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with the reason when it is missing.
"""

from __future__ import annotations

import html as html_lib
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archlab.study.record import RunRecord
from archlab.study.report import write_report

EVIL = "<script>alert(1)</script>"
WINDOW = (1280, 2000)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install -y chromium); .ci/run installs it",
)


def _run(variant, seed, acc, n_test=80, epochs=5):
    targets = np.random.default_rng(0).integers(0, 10, n_test)  # one fixed test split
    correct = np.random.default_rng([seed, len(variant)]).random(n_test) < acc
    preds = np.where(correct, targets, (targets + 1) % 10)
    a = float(correct.mean())
    history = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": a, "val_accuracy": a * (1 - 0.5**e),
                "val_f1_macro": a, "val_dice": a, "val_loss": 1 - a, "lr": 0.1, "seconds": 0.5}
               for e in range(1, epochs + 1)]
    m = {"accuracy": a, "f1_macro": a, "dice": a, "loss": 1 - a}
    return RunRecord(**{"dataset": "digits", "variant": variant, "seed": seed, "status": "done", "error": None,
            "params": 12_345, "flops": 1_000_000, "train_seconds": 2.0, "test": m, "val": m,
            "best_epoch": epochs, "history": history, "test_predictions": preds.tolist(),
            "test_targets": targets.tolist(),
            "config": {"epochs": epochs, "batch_size": 32, "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                       "scheduler": {"name": "onecycle"}, "threads": 1},
            "provenance": {"cpu": "x86_64", "cpu_count": 2, "threads": 1, "device": "cpu",
                           "split_sizes": {"train": 1000, "val": 100, "test": n_test}}})


META = {"description": "Heads on digits <i>quick</i>", "margins": {"accuracy": 0.02},
        "variants": {"linear": {"description": "the linear head"},
                     "twin": {"description": "the same head again"}}}


def _chromium_cmd(profile: Path, *extra: str, window: tuple[int, int] = WINDOW) -> list[str]:
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", *extra,
    ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Write a report, then dump its DOM and take a screenshot in headless Chromium."""
    root = tmp_path_factory.mktemp("chromium")
    runs = [_run(v, s, acc) for v, acc in (("linear", 0.95), ("mlp", 0.95), (EVIL, 0.3))
            for s in range(5)]
    runs += [replace(r, variant="twin") for r in runs if r.variant == "linear"]  # identical results
    _, html_path = write_report(runs, root / "report", study_name="chromium check",
                                baseline="linear", metrics=("accuracy",), settings=META)
    url = html_path.resolve().as_uri()
    dom = subprocess.run(_chromium_cmd(root / "profile-dom", "--dump-dom", url),
                         capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = root / "screenshot.png"
    res = subprocess.run(_chromium_cmd(root / "profile-shot", f"--screenshot={shot}", url),
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return dom.stdout, shot, html_path


def test_table_text_in_rendered_dom(rendered):
    dom, *_ = rendered
    assert "Study report: chromium check" in dom
    assert "Dataset: digits" in dom and "20 runs: 20 done." in dom
    assert "Test accuracy vs baseline" in dom
    for text in ("linear", "mlp", "p (seeds × images)", "p (TOST ±2 pp)", "baseline", "worse by -6",
                 "inconclusive (n=5): these seeds detect only differences"):
        assert text in dom, text


def test_new_sections_in_rendered_dom(rendered):
    """Answer first, then context (descriptions, split sizes, warning), tables, Methods last."""
    dom, *_ = rendered
    order = [dom.index(t) for t in ('id="answer"', 'class="warning"', 'id="context"', 'id="dataset-0"',
                                    'id="methods"')]
    assert order == sorted(order)
    assert "twin: equivalent to linear within ±2 pp (n=5)" in dom
    assert "Study: Heads on digits &lt;i&gt;quick&lt;/i&gt;" in dom  # a description is text, not markup
    assert "Variant twin: the same head again" in dom
    assert "Split sizes (digits): train 1,000, val 100, test 80 images" in dom
    assert "small test set on digits: 80 images" in dom
    assert "optimizer sgd (lr 0.1, momentum 0.9)" in dom and "1 thread per run" in dom
    assert "Hardware and software: CPU x86_64 (2 cores)" in dom
    assert "Bonferroni" in dom and "<i>" not in dom


def test_config_names_are_text_in_the_browser(rendered):
    dom, *_ = rendered
    # The serialized DOM escapes text nodes: the name is there as text and never as an element.
    assert html_lib.escape(EVIL, quote=False) in dom
    assert "<script" not in dom.lower()


def test_screenshot_shows_the_page_and_plots(rendered):
    _, shot, _ = rendered
    img = Image.open(shot).convert("RGB")
    assert img.size == WINDOW
    px = np.asarray(img, dtype=np.int16)  # (H, W, 3)
    assert (px.min(axis=2) < 100).mean() > 0.005  # dark text drawn, not a blank page
    # The embedded PNG plots were decoded: matplotlib's first colour (#1f77b4) is on screen.
    c0 = np.abs(px - np.array([0x1F, 0x77, 0xB4])).sum(axis=2) < 30
    assert c0.sum() > 50


def test_sequential_and_across_dataset_sections_in_the_browser(tmp_path):
    """An adaptive study on two datasets: the seeds-used table and the across-datasets summary render."""
    runs = []
    for d in ("digits", "letters"):
        for v, acc in (("linear", 0.95), ("twin", 0.95), ("weak", 0.5)):
            for s in range(4 if v != "twin" else 3):
                r = _run("linear" if v == "twin" else v, s, acc)  # twin: the same results as linear
                runs.append(replace(r, dataset=d, variant=v))
    meta = {**META, "seeds_plan": {"min": 3, "max": 4, "step": 1, "until": "conclusive"}}
    _, html_path = write_report(runs, tmp_path / "report", study_name="adaptive", baseline="linear",
                                metrics=("accuracy",), settings=meta)
    dom = subprocess.run(_chromium_cmd(tmp_path / "profile", "--dump-dom", html_path.resolve().as_uri()),
                         capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert 'id="seeds"' in page and "Seeds used (sequential design)" in page
    assert "stopped at 3 seeds: equivalent at n=3" in page  # the twin, decided at the first look
    assert "Across datasets (accuracy)" in page and "Nemenyi critical difference" in page
    assert "twin (letters): equivalent to linear within ±2 pp (n=3)" in page
    assert "Lan–DeMets" in page


def test_new_figures_render_in_the_browser(rendered, tmp_path):
    """Issue 26: the paired differences, training loss, accuracy vs cost and confusion matrices are in
    the page, and Chromium decodes them (the confusion matrices' dark blue is on a full-page screenshot)."""
    dom, _, html_path = rendered
    for alt in ("Paired differences (digits)", "Training loss (digits)",
                "Test accuracy against parameters and FLOPs (digits)", "Confusion matrices (digits)"):
        assert f'alt="{alt}"' in dom, alt
    assert "Test accuracy per seed" in dom and "FLOPs (2×MACs)" in dom
    assert "each variant's own mean, unadjusted" in dom
    shot = tmp_path / "tall.png"
    res = subprocess.run(_chromium_cmd(tmp_path / "profile", f"--screenshot={shot}", html_path.resolve().as_uri(),
                                       window=(1280, 9000)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)  # (H, W, 3)
    navy = np.abs(px - np.array([0x08, 0x30, 0x6B])).sum(axis=2) < 60  # the "Blues" colormap's top end
    assert navy.sum() > 200
