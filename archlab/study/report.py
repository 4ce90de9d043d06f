"""The study report: a Markdown file and one self-contained HTML page (SPEC §5).

:func:`write_report` turns a study's run rows into ``report.md`` and ``report.html`` (plus the
figures as PNG files next to them); :func:`markdown_table` gives the compact table the CLI prints
at the end of ``archlab study run``. All numbers come from :mod:`archlab.study.stats`.

Per dataset the report shows: run status counts and the reason of every failed run; an overview
of the variants (parameters, FLOPs, mean train time, each metric mean ± std); per metric a
comparison table (mean ± std, t and bootstrap 95 % CIs, difference to the baseline with its CI,
Cohen's d_z, p-values of the paired t, Wilcoxon and McNemar tests, the Holm-adjusted p-value, ASO
when ``deepsig`` is installed, and the verdict); learning curves (validation metric per epoch,
mean over seeds with a ±1 std band) and metric distributions (box plot with every seed as a dot).

Safety (SPEC §11): the page needs no network — no external CSS, fonts or scripts; plots are
embedded as base64 PNG ``data:`` URIs. Every string that comes from a study (study, dataset and
variant names, error messages) is HTML-escaped, and a Content-Security-Policy forbids scripts even
if something slipped through. In Markdown those strings are backslash-escaped so that a renderer
cannot read them as HTML or table syntax. Matplotlib runs on the Agg canvas through
:class:`matplotlib.figure.Figure` (no ``pyplot``, so no global backend or figure state).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from archlab import __version__
from archlab.errors import ConfigError, OutputWriteError
from archlab.study.stats import VariantStats, compare_variants, format_diff, format_p
from archlab.train.metrics import metric_mode

__all__ = ["write_report", "markdown_table", "REPORT_MD", "REPORT_HTML"]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"

_DASH = "—"
_CURVE_BAND = "±1 std band over seeds"


# ------------------------------------------------------------------------------------------------
# Formatting


def _is_percent(metric: str) -> bool:
    return metric != "loss"  # accuracy, f1_macro, dice are fractions in [0, 1]


def _fmt_value(v: float | None, metric: str) -> str:
    if v is None or not math.isfinite(v):
        return _DASH
    return f"{v * 100:.2f}" if _is_percent(metric) else f"{v:.4g}"


def _unit(metric: str) -> str:
    return " %" if _is_percent(metric) else ""


def _fmt_mean_std(vs: VariantStats) -> str:
    s = vs.summary
    if s is None:
        return _DASH
    if s.std is None:
        return f"{_fmt_value(s.mean, vs.metric)}{_unit(vs.metric)} (n=1)"
    return f"{_fmt_value(s.mean, vs.metric)} ± {_fmt_value(s.std, vs.metric)}{_unit(vs.metric)}"


def _fmt_ci(ci: tuple[float, float] | None, metric: str) -> str:
    if ci is None:
        return _DASH
    return f"[{_fmt_value(ci[0], metric)}, {_fmt_value(ci[1], metric)}]"


def _fmt_delta(vs: VariantStats, with_ci: bool) -> str:
    if vs.is_baseline:
        return "baseline"
    p = vs.paired
    if p is None:
        return _DASH
    text = format_diff(p.mean_diff, _is_percent(vs.metric))
    if with_ci and p.ci_diff is not None:
        lo, hi = p.ci_diff
        # "\n": a line break in HTML, a space in Markdown (keeps the HTML table narrow).
        if _is_percent(vs.metric):
            text += f"\n[{lo * 100:+.2f}, {hi * 100:+.2f}]"
        else:
            text += f"\n[{lo:+.4g}, {hi:+.4g}]"
    return text


def _fmt_count(n: int | None) -> str:
    return _DASH if n is None else f"{n:,}"


def _fmt_flops(n: int | None) -> str:
    if n is None:
        return _DASH
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)


def _fmt_seconds(s: float | None) -> str:
    return _DASH if s is None else f"{s:.1f}"


def _fmt_runs(vs: VariantStats) -> str:
    c = vs.status_counts
    total = sum(c.values())
    text = f"{c.get('done', 0)}/{total}"
    extra = [f"{c[k]} {k}" for k in c if k != "done" and c[k]]
    return text + (f" ({', '.join(extra)})" if extra else "")


def _fmt_dz(vs: VariantStats) -> str:
    if vs.paired is None or vs.paired.effect_size is None:
        return _DASH
    return f"{vs.paired.effect_size:+.2f}"


def _fmt_mcnemar(vs: VariantStats) -> str:
    if vs.mcnemar is None:
        return _DASH
    m = vs.mcnemar
    return f"{format_p(m.p)}\n(b={m.b}, c={m.c})"


def _fmt_aso(vs: VariantStats) -> str:
    if vs.paired is None or vs.paired.aso_eps_min is None:
        return _DASH
    return f"{vs.paired.aso_eps_min:.2f}"


def _reason(error: str) -> str:
    """The one-line reason of a failed run: the first non-empty line (the runner stores
    ``"Type: message"`` first and the traceback after it)."""
    for line in str(error).splitlines():
        if line.strip():
            return _one_line(line)
    return "no reason recorded"


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#&])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md(text: Any) -> str:
    """Escape a study-provided string (a name, an error) for Markdown text or a table cell."""
    # CommonMark treats a backslash before ASCII punctuation as a literal character, so
    # `<script>` becomes text, `|` cannot split a cell and `*`/`_` cannot start emphasis. An
    # underscore between two letters or digits (ncp_ltc) cannot start emphasis and stays as is.
    text = _MD_SPECIAL.sub(r"\\\1", _one_line(str(text)))
    return _MD_UNDERSCORE.sub(r"\\_", text)


def _md_cell(text: str) -> str:
    """A generated cell (numbers, verdicts): only the cell separator needs escaping."""
    return _one_line(text).replace("|", "\\|")


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _mpl_text(text: str, limit: int = 28) -> str:
    """A label safe for matplotlib: ``$`` would start mathtext; long names are shortened."""
    text = _one_line(text, limit)
    return text.replace("$", r"\$")


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40] or "dataset"
    if slug != name:  # keep file names of different datasets apart
        slug += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return slug


# ------------------------------------------------------------------------------------------------
# Analysis shared by Markdown and HTML


@dataclass
class _Figure:
    title: str
    caption: str
    file: str
    png: bytes


@dataclass
class _Dataset:
    name: str
    per_metric: dict[str, list[VariantStats]]
    status_counts: dict[str, int]
    failures: list[tuple[str, int, str]]
    notes: list[str]
    figures: list[_Figure]


def _validate(metrics: Sequence[str], alpha: float) -> tuple[str, ...]:
    metrics = tuple(dict.fromkeys(metrics))  # in order, without repeats
    if not metrics:
        raise ConfigError("the report needs at least one metric, e.g. metrics=('accuracy',)")
    for m in metrics:
        metric_mode(m)  # raises UnknownNameError with the known metrics
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    return metrics


def _analyse(
    runs: Sequence[Mapping[str, Any]],
    baseline: str,
    metrics: Sequence[str],
    alpha: float,
    min_pairs: int,
    with_figures: bool,
) -> list[_Dataset]:
    per_metric = {
        m: compare_variants(runs, baseline=baseline, metric=m, alpha=alpha, min_pairs=min_pairs)
        for m in metrics
    }
    datasets = list(dict.fromkeys(vs.dataset for vs in per_metric[metrics[0]]))
    out = []
    for ds in datasets:
        tables = {m: [vs for vs in per_metric[m] if vs.dataset == ds] for m in metrics}
        first = tables[metrics[0]]
        counts: dict[str, int] = {}
        failures, notes = [], []
        for vs in first:
            for k, n in vs.status_counts.items():
                counts[k] = counts.get(k, 0) + n
            failures += [(vs.variant, s, why) for s, why in vs.failures]
        for m in metrics:
            notes += [f"{vs.variant}: {n}" for vs in tables[m] for n in vs.notes]
        notes = list(dict.fromkeys(notes))
        figures = _figures(runs, ds, tables, metrics) if with_figures else []
        out.append(_Dataset(ds, tables, counts, failures, notes, figures))
    return out


# ------------------------------------------------------------------------------------------------
# Figures


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _learning_curves(
    runs: Sequence[Mapping[str, Any]], ds: str, variants: list[str], metric: str
) -> Figure | None:
    key = f"val_{metric}"
    scale = 100.0 if _is_percent(metric) else 1.0
    fig = Figure(figsize=(7.5, 4.2))
    # Fixed margins instead of a layout engine: one draw pass instead of several.
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.12)
    ax = fig.subplots()
    drawn = False
    for i, var in enumerate(variants):
        curves = []
        for r in runs:
            if (str(r.get("dataset")), str(r.get("variant")), r.get("status")) != (ds, var, "done"):
                continue
            ys = [
                float(row[key]) if row.get(key) is not None else math.nan
                for row in (r.get("history") or [])
            ]
            if ys:
                curves.append(ys)
        if not curves:
            continue
        length = max(len(c) for c in curves)
        grid = np.full((len(curves), length), np.nan)  # (seeds, epochs); shorter = early stop
        for j, c in enumerate(curves):
            grid[j, : len(c)] = c
        epochs = np.arange(1, length + 1)
        seen = ~np.isnan(grid)
        counts = seen.sum(axis=0)  # (epochs,) seeds that reached each epoch
        filled = np.where(seen, grid, 0.0)
        with np.errstate(all="ignore"):
            mean = filled.sum(axis=0) / counts  # (epochs,) NaN where no seed
            variance = (np.where(seen, grid - mean, 0.0) ** 2).sum(axis=0) / (counts - 1)
        std = np.where(counts > 1, np.sqrt(variance), np.nan)  # (epochs,)
        mean, std = mean * scale, std * scale
        color = f"C{i % 10}"
        label = f"{_mpl_text(var)} (n={len(curves)})"
        ax.plot(epochs, mean, color=color, marker="o", markersize=3, linewidth=1.6, label=label)
        ok = ~np.isnan(std)
        if ok.any():
            ax.fill_between(epochs[ok], (mean - std)[ok], (mean + std)[ok], color=color, alpha=0.18,
                            linewidth=0)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric}" + (" (%)" if _is_percent(metric) else ""))
    ax.set_title(f"Learning curves: {_mpl_text(ds, 40)} (mean, {_CURVE_BAND})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _distribution(stats: list[VariantStats], metric: str) -> Figure | None:
    shown = [(i, vs) for i, vs in enumerate(stats) if vs.values]
    if not shown:
        return None
    scale = 100.0 if _is_percent(metric) else 1.0
    width = max(5.0, 1.2 * len(shown) + 2.5)
    fig = Figure(figsize=(width, 4.4))
    # Fixed margins (see _learning_curves); the bottom one fits 28-character labels at 20 degrees.
    fig.subplots_adjust(left=0.5 / width + 0.05, right=0.98, top=0.92, bottom=0.24)
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only; fixed so the report is reproducible
    data = [np.array(list(vs.values.values())) * scale for _, vs in shown]
    pos = np.arange(1, len(shown) + 1)
    ax.boxplot(data, positions=pos, widths=0.5, showfliers=False,
               medianprops={"color": "black"}, boxprops={"color": "0.4"},
               whiskerprops={"color": "0.4"}, capprops={"color": "0.4"})
    for p, (i, vs), ys in zip(pos, shown, data):
        xs = p + rng.uniform(-0.12, 0.12, size=ys.size)
        ax.scatter(xs, ys, s=22, color=f"C{i % 10}", zorder=3, edgecolors="white", linewidths=0.5)
    base = next((vs for vs in stats if vs.is_baseline and vs.summary), None)
    if base is not None:
        ax.axhline(base.summary.mean * scale, color="0.5", linestyle="--", linewidth=1,
                   label="baseline mean")
        ax.legend(fontsize=8, loc="best")
    ax.set_xticks(pos)
    ax.set_xticklabels([_mpl_text(vs.variant) for _, vs in shown], rotation=20, ha="right",
                       fontsize=8)
    ax.set_ylabel(f"test {metric}" + (" (%)" if _is_percent(metric) else ""))
    ax.set_title(f"Test {metric} per seed: {_mpl_text(stats[0].dataset, 40)}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _figures(
    runs: Sequence[Mapping[str, Any]],
    ds: str,
    tables: dict[str, list[VariantStats]],
    metrics: Sequence[str],
) -> list[_Figure]:
    slug = _slug(ds)
    variants = [vs.variant for vs in tables[metrics[0]]]
    out = []
    fig = _learning_curves(runs, ds, variants, metrics[0])
    if fig is not None:
        out.append(_Figure(
            f"Learning curves ({ds})",
            f"Validation {metrics[0]} per epoch: mean over finished seeds, {_CURVE_BAND}.",
            f"{slug}_learning_curves.png", _png(fig),
        ))
    for m in metrics:
        fig = _distribution(tables[m], m)
        if fig is not None:
            out.append(_Figure(
                f"Test {m} distribution ({ds})",
                f"Test {m} of every finished seed (dots) with box plots; dashed: baseline mean.",
                f"{slug}_{_slug(m)}_distribution.png", _png(fig),
            ))
    return out


# ------------------------------------------------------------------------------------------------
# Tables (shared cell contents for Markdown and HTML)


def _overview_rows(d: _Dataset, metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    head = ["Variant", "Runs done", "Params", "FLOPs", "Train time (s)"]
    head += [f"{m} (mean ± std)" for m in metrics]
    rows = []
    first = d.per_metric[metrics[0]]
    for i, vs in enumerate(first):
        row = [vs.variant, _fmt_runs(vs), _fmt_count(vs.params), _fmt_flops(vs.flops),
               _fmt_seconds(vs.train_seconds)]
        row += [_fmt_mean_std(d.per_metric[m][i]) for m in metrics]
        rows.append(row)
    return head, rows


def _comparison_rows(
    stats: list[VariantStats], metric: str, merge_ci: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Rows of the per-metric comparison; ``merge_ci`` puts both CIs in one two-line cell (HTML)."""
    with_mcnemar = metric == "accuracy"
    with_aso = any(vs.paired is not None and vs.paired.aso_eps_min is not None for vs in stats)
    ci_head = ["95 % CI t / bootstrap"] if merge_ci else ["95 % CI (t)", "95 % CI (bootstrap)"]
    head = ["Variant", "n", "Mean ± std", *ci_head, "Δ vs baseline [95 % CI]", "d_z", "p (t)",
            "p (Wilcoxon)"]
    head += ["p (McNemar)"] if with_mcnemar else []
    head += ["p (t, Holm)"]
    head += ["ASO ε_min"] if with_aso else []
    head += ["Verdict"]
    rows = []
    for vs in stats:
        s, p = vs.summary, vs.paired
        cis = [_fmt_ci(s.ci_t if s else None, metric), _fmt_ci(s.ci_boot if s else None, metric)]
        if merge_ci:
            cis = [cis[0] if cis == [_DASH, _DASH] else "\n".join(cis)]
        row = [
            vs.variant, str(s.n if s else 0), _fmt_mean_std(vs), *cis,
            _fmt_delta(vs, with_ci=True), _fmt_dz(vs),
            format_p(p.t_p if p else None), format_p(p.wilcoxon_p if p else None),
        ]
        row += [_fmt_mcnemar(vs)] if with_mcnemar else []
        row += [format_p(vs.t_p_holm)]
        row += [_fmt_aso(vs)] if with_aso else []
        row += [vs.verdict]
        rows.append(row)
    return head, rows


def _compact_rows(stats: list[VariantStats], metric: str) -> tuple[list[str], list[list[str]]]:
    head = ["Variant", "Runs done", "Params", "FLOPs", "Time (s)", f"{metric} (mean ± std)",
            "95 % CI", "Δ vs baseline", "p (t, Holm)", "Verdict"]
    rows = [
        [vs.variant, _fmt_runs(vs), _fmt_count(vs.params), _fmt_flops(vs.flops),
         _fmt_seconds(vs.train_seconds), _fmt_mean_std(vs),
         _fmt_ci(vs.summary.ci_t if vs.summary else None, metric), _fmt_delta(vs, with_ci=False),
         format_p(vs.t_p_holm), vs.verdict]
        for vs in stats
    ]
    return head, rows


_LEFT_COLUMNS = ("Variant", "Verdict")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; column 0 holds the (escaped) variant name, the rest is generated."""
    align = ["---" if h in _LEFT_COLUMNS else "---:" for h in head]  # numbers right-aligned
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join([_md(row[0])] + [_md_cell(c) for c in row[1:]]) + " |"
              for row in rows]
    return "\n".join(lines)


def _status_line(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{n} {k}" for k, n in counts.items() if n]
    return f"{total} runs: " + (", ".join(parts) if parts else "none")


# ------------------------------------------------------------------------------------------------
# Public API


def markdown_table(
    runs: Sequence[Mapping[str, Any]],
    baseline: str,
    *,
    metric: str = "accuracy",
    alpha: float = 0.05,
    min_pairs: int = 3,
) -> str:
    """The compact comparison table (one per dataset) that ``archlab study run`` prints.

    Columns: variant, finished runs, parameters, FLOPs, mean train time, ``metric`` mean ± std,
    its 95 % t-CI, difference to the baseline, Holm-adjusted paired t p-value, verdict.

    Args:
        runs: the study's run rows (see :func:`archlab.study.stats.compare_variants`).
        baseline: the baseline variant.
        metric: the test metric shown.
        alpha: significance level of the verdicts.
        min_pairs: fewest paired seeds for a verdict other than "inconclusive".

    Returns:
        Markdown text; ``"(no runs)"`` when ``runs`` is empty.
    """
    metrics = _validate((metric,), alpha)
    if not runs:
        return "(no runs)"
    blocks = []
    for d in _analyse(runs, baseline, metrics, alpha, min_pairs, with_figures=False):
        head, rows = _compact_rows(d.per_metric[metric], metric)
        blocks.append(f"**Dataset: {_md(d.name)}** ({_status_line(d.status_counts)})\n\n"
                      + _md_table(head, rows))
    return "\n\n".join(blocks)


_METHOD_NOTE = (
    "Every number is over seeds: mean ± sample std, 95 % confidence intervals (Student t and "
    "percentile bootstrap). Differences are variant − baseline over seeds that finished for both "
    "(paired by seed: same split, batch order and augmentation). The verdict is decided by the "
    "paired t-test over seeds, Holm-adjusted across the variants of a dataset; for accuracy, when "
    "per-sample predictions were stored, the exact McNemar test (per-seed tables pooled by "
    "summing) must agree. Wilcoxon is shown but never decides: at n=5 its smallest two-sided "
    "p-value is 0.0625. Fewer than {min_pairs} paired seeds give “inconclusive” unless the results are "
    "identical on every paired seed. d_z is Cohen's effect size "
    "of the paired differences. ASO ε_min (Almost Stochastic Order, shown when deepsig is "
    "installed): below 0.2 the variant almost stochastically dominates the baseline."
)


def _render_md(study_name: str, baseline: str, metrics: Sequence[str], alpha: float,
               min_pairs: int, datasets: list[_Dataset]) -> str:
    out = [f"# Study report: {_md(study_name)}", "",
           f"Baseline: **{_md(baseline)}** · metrics: {', '.join(metrics)} · "
           f"α = {alpha:g} · archlab {__version__}", "",
           _METHOD_NOTE.replace("{min_pairs}", str(min_pairs)), ""]
    if not datasets:
        out += ["No runs yet.", ""]
    for d in datasets:
        out += [f"## Dataset: {_md(d.name)}", "", _status_line(d.status_counts) + ".", ""]
        if d.failures:
            out += ["Failed runs:", ""]
            out += [f"- {_md(v)} seed {s}: {_md(_reason(why))}" for v, s, why in d.failures]
            out += [""]
        if d.notes:
            out += ["Notes:", ""] + [f"- {_md(n)}" for n in d.notes] + [""]
        out += ["### Overview", "", _md_table(*_overview_rows(d, metrics)), ""]
        for m in metrics:
            unit = " (values in %, differences in percentage points)" if _is_percent(m) else ""
            out += [f"### Test {m} vs baseline{unit}", "",
                    _md_table(*_comparison_rows(d.per_metric[m], m)), ""]
        if d.figures:
            out += ["### Plots", ""]
            for f in d.figures:
                out += [f"![{_md(f.title)}]({f.file})", "", _md(f.caption), ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;
color:#1d2430;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.3em;margin-top:32px;border-bottom:2px solid #dfe3ea;
padding-bottom:4px}h3{font-size:1.05em;margin:22px 0 8px}
.meta{color:#5a6478;margin:0 0 12px}.method{font-size:.9em;color:#3a4456;background:#f5f7fa;
border-left:4px solid #9aa7bd;padding:8px 12px;max-width:1100px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.84em;margin:4px 0 8px}
th,td{border:1px solid #d5dae3;padding:4px 8px;text-align:right;white-space:nowrap;vertical-align:top}
td:first-child{white-space:normal;max-width:200px;overflow-wrap:anywhere}
th{background:#eef1f6;text-align:center;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
td.verdict{text-align:left;white-space:normal;min-width:200px;max-width:360px}
tr.baseline td{background:#fafbfd;font-weight:600}
.better{color:#0b6b2f}.worse{color:#a4161a}.no_difference{color:#4a5568}.inconclusive{color:#8a5a00}
.failures li,.notes li{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
.failures pre{background:#f5f7fa;padding:6px 8px;white-space:pre-wrap;margin:4px 0}
figure{margin:12px 0 20px}figure img{max-width:100%;border:1px solid #e2e6ee}
figcaption{font-size:.85em;color:#5a6478}
"""


def _html_table(head: list[str], rows: list[list[str]], stats: list[VariantStats] | None) -> str:
    out = ['<div class="scroll"><table>', "<thead><tr>"]
    out += [f'<th scope="col">{_h(h)}</th>' for h in head]
    out += ["</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        vs = stats[i] if stats is not None else None
        cls = ' class="baseline"' if vs is not None and vs.is_baseline else ""
        out.append(f"<tr{cls}>")
        for j, cell in enumerate(row):
            if j == len(row) - 1 and head[-1] == "Verdict" and vs is not None:
                out.append(f'<td class="verdict {_h(vs.outcome)}">{_h(cell)}</td>')
            else:
                out.append(f"<td>{_h(cell).replace(chr(10), '<br>')}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _render_html(study_name: str, baseline: str, metrics: Sequence[str], alpha: float,
                 min_pairs: int, datasets: list[_Dataset]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network, no scripts: only inline styles and data: images are allowed.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Study report: {_h(study_name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Study report: {_h(study_name)}</h1>",
        f'<p class="meta">Baseline <strong>{_h(baseline)}</strong> · metrics '
        f"{_h(', '.join(metrics))} · α = {alpha:g} · archlab {_h(__version__)}</p>",
        f'<p class="method">{_h(_METHOD_NOTE.replace("{min_pairs}", str(min_pairs)))}</p>',
    ]
    if not datasets:
        out.append("<p>No runs yet.</p>")
    for k, d in enumerate(datasets):
        out.append(f'<section id="dataset-{k}"><h2>Dataset: {_h(d.name)}</h2>')
        out.append(f'<p class="status">{_h(_status_line(d.status_counts))}.</p>')
        if d.failures:
            out.append('<p>Failed runs:</p><ul class="failures">')
            for v, s, why in d.failures:
                head = f"{_h(v)} seed {s}: {_h(_reason(why))}"
                if "\n" in why.strip():  # the traceback, folded (no script needed)
                    full = _h(why.strip()[:4000])
                    out.append(f"<li><details><summary>{head}</summary><pre>{full}</pre></details></li>")
                else:
                    out.append(f"<li>{head}</li>")
            out.append("</ul>")
        if d.notes:
            out.append('<p>Notes:</p><ul class="notes">')
            out += [f"<li>{_h(n)}</li>" for n in d.notes]
            out.append("</ul>")
        first = d.per_metric[metrics[0]]
        out.append("<h3>Overview</h3>")
        out.append(_html_table(*_overview_rows(d, metrics), first))
        for m in metrics:
            unit = " (values in %, differences in percentage points)" if _is_percent(m) else ""
            out.append(f"<h3>Test {_h(m)} vs baseline{_h(unit)}</h3>")
            out.append(_html_table(*_comparison_rows(d.per_metric[m], m, merge_ci=True),
                                   d.per_metric[m]))
        if d.figures:
            out.append("<h3>Plots</h3>")
            for f in d.figures:
                b64 = base64.b64encode(f.png).decode("ascii")
                out.append(
                    f'<figure><img alt="{_h(f.title)}" src="data:image/png;base64,{b64}">'
                    f"<figcaption>{_h(f.caption)}</figcaption></figure>"
                )
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(
    runs: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    study_name: str,
    baseline: str,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    alpha: float = 0.05,
    min_pairs: int = 3,
    sections: Sequence[Any] = (),
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the figures (PNG) into ``out_dir``.

    Works on partial studies: pending, running and failed runs are counted and listed, statistics
    use the finished ones, a single seed gives means without intervals and "inconclusive"
    verdicts, a single variant gives the baseline rows only. The output is deterministic for
    the same rows.

    Args:
        runs: the study's run rows (see :func:`archlab.study.stats.compare_variants`).
        out_dir: folder to write into (created if missing).
        study_name: shown in the title.
        baseline: the baseline variant.
        metrics: test metrics to compare; the first also drives the learning curves.
        alpha: significance level of the verdicts.
        min_pairs: fewest paired seeds for a verdict other than "inconclusive".

    Returns:
        ``(markdown_path, html_path)``.

    Raises:
        ConfigError: no metrics, an unknown metric, ``alpha`` outside (0, 1).
        UnknownNameError: ``baseline`` is not a variant of any run.
        DataError: duplicated runs or paired runs with different test targets.
    """
    metrics = _validate(metrics, alpha)
    out_dir = Path(out_dir)
    datasets = _analyse(runs, baseline, metrics, alpha, min_pairs, with_figures=True) if runs else []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    for d in datasets:
        for f in d.figures:
            write_atomic(out_dir / f.file, f.png)
    md_path, html_path = out_dir / REPORT_MD, out_dir / REPORT_HTML
    md = _render_md(study_name, baseline, metrics, alpha, min_pairs, datasets)
    page = _render_html(study_name, baseline, metrics, alpha, min_pairs, datasets)
    # `sections`: (title, markdown, html, figures) appended at the end, figures (file, png, ...)
    # already embedded in their html (archlab.study.analyses.analysis_sections)
    for title, sec_md, sec_html, figs in sections:
        for file, png, *_ in figs:
            write_atomic(out_dir / file, png)
        md += f"\n## {_md(title)}\n\n{sec_md.rstrip()}\n"
        page = page.replace("</body></html>", f"<section><h2>{_h(title)}</h2>\n{sec_html}</section>\n</body></html>")
    write_atomic(md_path, md.encode("utf-8"))
    write_atomic(html_path, page.encode("utf-8"))
    return md_path, html_path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: all of it or the old file.

    Raises:
        OutputWriteError: the disk is full (ENOSPC), no permission, ...; the temporary file is
            removed and an existing ``path`` keeps its previous content.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputWriteError(
            f"{path}: could not be written ({exc.strerror or exc}); the study database is unchanged and "
            f"{'the previous file is intact' if path.exists() else 'no partial file was left'}. Free disk space "
            f"and run `archlab study report {path.parent}`"
        ) from None
