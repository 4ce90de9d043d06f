"""The study report: a Markdown file and one self-contained HTML page (SPEC §5).

:func:`write_report` turns a study's run rows into ``report.md`` and ``report.html`` (plus the
figures as PNG files next to them); :func:`markdown_table` gives the compact table the CLI prints
at the end of ``archlab study run``. All numbers come from :mod:`archlab.study.stats`,
:mod:`archlab.study.sequential` and :mod:`archlab.study.aggregate`.

The report leads with the answer — one line per variant and dataset on the primary metric
("spinal: equivalent to linear within ±1 pp (n=12)") — then gives the context a reader needs (the
study's and variants' descriptions, split sizes with a warning for small test sets, epochs,
optimizer, schedule, threads and hardware), how many seeds each comparison used and why it stopped
(adaptive seeds), the across-dataset summary (two or more datasets), and per dataset: run status
and failures, an overview, one comparison table per metric, learning curves and per-seed
distributions. It ends with a Methods section that a paper can cite.

The report is one :class:`Document`: the title line and a sequence of :class:`Section` (heading
and blocks: :class:`Paragraph`, :class:`Bullets`, :class:`Failures`, :class:`Table`,
:class:`Heading`, :class:`Image`, and :class:`Rendered` for an analysis that renders itself), built
once by :func:`_document` and rendered by :func:`render_markdown` and :func:`render_html` (same
content). The study's analyses are sections placed before the Methods. Every sentence about a
verdict comes from :mod:`archlab.study.wording`; this module only lays them out.

Settings come from the study (:class:`ReportSettings`, read from the stored study meta), with
defaults, so folders written by older versions still report.

Safety (SPEC §11): the page needs no network — no external CSS, fonts or scripts; plots are
embedded as base64 PNG ``data:`` URIs. Every string that comes from a study (study, dataset and
variant names, descriptions, error messages) is HTML-escaped, and a Content-Security-Policy forbids
scripts even if something slipped through. In Markdown those strings are backslash-escaped so that a
renderer cannot read them as HTML or table syntax. Matplotlib runs on the Agg canvas through
:class:`matplotlib.figure.Figure` (no ``pyplot``, so no global backend or figure state).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from archlab import __version__
from archlab.errors import ConfigError, OutputWriteError
from archlab.study.aggregate import Ranking, VariantAggregate, aggregate_variants
from archlab.study.config import DEFAULT_MARGINS  # the one source of the default margins (and their reason)
from archlab.study import wording
from archlab.study.metrics import default_margin, metric_direction, metric_spec
from archlab.study.record import RunRecord
from archlab.study.sequential import LEGACY_SPENDING, plan_looks
from archlab.study.stats import VariantStats, compare_variants
from archlab.study.wording import format_diff, format_margin, format_p

__all__ = ["write_report", "markdown_table", "comparisons", "render_markdown", "render_html", "Document", "Section",
           "ReportSettings", "REPORT_MD", "REPORT_HTML",
           "DEFAULT_MARGINS", "SMALL_TEST_SET",
           "study_verdicts"]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"

_DASH = "—"

#: Below this many test images the report warns: one image moves accuracy by more than 0.5 pp.
SMALL_TEST_SET = 200
_CURVE_BAND = "±1 std band over seeds"


# ------------------------------------------------------------------------------------------------
# Formatting


def _is_percent(metric: str) -> bool:
    return metric_direction(metric)[1]  # accuracy, f1_macro, dice (and rate analyses) are fractions


def _fmt_value(v: float | None, metric: str) -> str:
    if v is None or not math.isfinite(v):
        return _DASH
    return f"{v * 100:.2f}" if _is_percent(metric) else f"{v:.4g}"


def _unit(metric: str) -> str:
    if _is_percent(metric):
        return " %"
    unit = metric_spec(metric).unit  # the registered unit (epochs, s, a plugin's own)
    return f" {unit}" if unit else ""


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
    if with_ci and vs.ci is not None:
        lo, hi = vs.ci
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


def _fmt_image_test(vs: VariantStats) -> str:
    it = vs.image_test
    if it is None:
        return _DASH
    return f"{format_p(it.p)}\n({it.seeds}×{it.images})"


def _fmt_aso(vs: VariantStats) -> str:
    p = vs.paired
    if p is None or p.aso_variant is None or p.aso_baseline is None:
        return _DASH
    return f"{p.aso_variant:.2f} / {p.aso_baseline:.2f}"


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
# Settings


@dataclass(frozen=True)
class ReportSettings:
    """What the report reads from the study (all optional: an old study folder gets the defaults).

    Attributes:
        alpha: the study's family-wise error rate of its primary verdicts.
        margins: equivalence margin per metric (missing ones from :data:`DEFAULT_MARGINS`).
        primary_metric: the confirmatory metric (``None``: the monitor when it is a reported
            metric, else the first metric).
        seeds_plan: ``{min, max, step, until}`` of an adaptive study (``None``: fixed seeds).
        description: the study's description.
        variants: variant -> ``{"description": str, "model": {...}, "train": {...}}`` overrides.
        monitor: the validation metric the runs selected on.
        split: ``fixed`` or ``per_seed``.
    """

    alpha: float = 0.05
    margins: Mapping[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    seeds_plan: Mapping[str, Any] | None = None
    description: str = ""
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    monitor: str | None = None
    split: str = "fixed"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.alpha) < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {self.alpha!r}")
        for m, v in self.margins.items():
            metric_direction(m)  # a test metric or an analysis number (rotation.mean_prob)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                raise ConfigError(f"margins.{m} must be a positive number, got {v!r}")
        if self.primary_metric is not None:
            metric_direction(self.primary_metric)
        if self.seeds_plan is not None:
            self.looks()  # validates min/max/step

    def margin(self, metric: str) -> float | None:
        """The equivalence margin of ``metric``."""
        v = self.margins.get(metric, default_margin(metric))
        return None if v is None else float(v)

    def spending(self) -> str:
        """The alpha-spending function of an adaptive study (a study stored before the option
        existed ran with :data:`~archlab.study.sequential.LEGACY_SPENDING`)."""
        return str((self.seeds_plan or {}).get("spending", LEGACY_SPENDING))

    def looks(self) -> list[int] | None:
        """The planned looks of an adaptive study, else ``None``."""
        p = self.seeds_plan
        if not p:
            return None
        try:
            return plan_looks(int(p["min"]), int(p["max"]), int(p.get("step", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"seeds_plan must be {{min, max, step}}, got {dict(p)!r} ({exc})") from None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> ReportSettings:
        """Settings from the stored study meta (``store.get_meta("study")``); defaults if absent."""
        if not isinstance(meta, Mapping):
            return cls()
        train = meta.get("train") if isinstance(meta.get("train"), Mapping) else {}
        variants = meta.get("variants") if isinstance(meta.get("variants"), Mapping) else {}
        return cls(
            alpha=float(meta.get("alpha") or 0.05),
            margins=dict(meta.get("margins") or {}),
            primary_metric=meta.get("primary_metric") or None,
            seeds_plan=meta.get("seeds_plan") or None,
            description=str(meta.get("description") or ""),
            variants={str(k): (v if isinstance(v, Mapping) else {}) for k, v in variants.items()},
            monitor=train.get("monitor"),
            split=str(meta.get("split") or "fixed"),
        )


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
    split_sizes: dict[str, int | None]


@dataclass
class _Analysis:
    metrics: tuple[str, ...]
    primary: str
    family: int
    settings: ReportSettings
    datasets: list[_Dataset]
    aggregates: list[VariantAggregate]
    ranking: Ranking | None
    context: list[str]
    warnings: list[str]


def _validate(metrics: Sequence[str], alpha: float) -> tuple[str, ...]:
    metrics = tuple(dict.fromkeys(metrics))  # in order, without repeats
    if not metrics:
        raise ConfigError("the report needs at least one metric, e.g. metrics=('accuracy',)")
    for m in metrics:
        metric_direction(m)  # raises UnknownNameError with the known metrics
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    return metrics


def _primary(metrics: tuple[str, ...], settings: ReportSettings) -> tuple[str, tuple[str, ...]]:
    if settings.primary_metric:
        p = settings.primary_metric
    elif settings.monitor in metrics:
        p = settings.monitor
    else:
        p = metrics[0]
    return p, (p,) + tuple(m for m in metrics if m != p)


def _split_sizes(runs: Sequence[RunRecord], ds: str) -> dict[str, int | None]:
    """Train/val/test sizes of a dataset from the first finished run that recorded them."""
    out: dict[str, int | None] = {"train": None, "val": None, "test": None}
    for r in runs:
        if str(r.dataset) != ds or r.status != "done":
            continue
        prov = r.provenance if isinstance(r.provenance, Mapping) else {}
        sizes = prov.get("split_sizes") if isinstance(prov.get("split_sizes"), Mapping) else {}
        for k in out:
            if out[k] is None and isinstance(sizes.get(k), int):
                out[k] = int(sizes[k])
        if out["test"] is None and r.test_targets:
            out["test"] = len(r.test_targets)
        if all(v is not None for v in out.values()):
            break
    return out


def _describe_train(cfg: Mapping[str, Any]) -> str:
    parts = []
    if cfg.get("epochs") is not None:
        parts.append(f"{cfg['epochs']} epochs")
    if cfg.get("batch_size") is not None:
        parts.append(f"batch size {cfg['batch_size']}")
    opt = cfg.get("optim") if isinstance(cfg.get("optim"), Mapping) else None
    if opt:
        o = f"optimizer {opt.get('name', '?')} (lr {opt.get('lr', '?')}"
        if opt.get("weight_decay"):
            o += f", weight decay {opt['weight_decay']}"
        if opt.get("name") == "sgd":
            o += f", momentum {opt.get('momentum')}" + (", Nesterov" if opt.get("nesterov") else "")
        parts.append(o + ")")
    sch = cfg.get("scheduler") if isinstance(cfg.get("scheduler"), Mapping) else None
    if sch:
        kw = sch.get("kwargs") or {}
        parts.append(f"schedule {sch.get('name', 'none')}"
                     + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else ""))
    if cfg.get("monitor"):
        parts.append(f"best epoch by validation {cfg['monitor']}")
    if cfg.get("early_stopping_patience"):
        parts.append(f"early stopping after {cfg['early_stopping_patience']} epochs")
    if cfg.get("threads") is not None:
        parts.append(f"{cfg['threads']} thread{'s' if cfg['threads'] != 1 else ''} per run")
    return ", ".join(parts)


def _hardware(runs: Sequence[RunRecord]) -> str | None:
    seen = []
    for r in runs:
        prov = r.provenance
        if r.status != "done" or not isinstance(prov, Mapping):
            continue
        bits = []
        if prov.get("gpu"):
            bits.append(f"GPU {prov['gpu']}")
        if prov.get("cpu"):
            bits.append(f"CPU {prov['cpu']}" + (f" ({prov['cpu_count']} cores)" if prov.get("cpu_count") else ""))
        if prov.get("device"):
            bits.append(f"device {prov['device']}")
        if prov.get("threads") is not None:
            bits.append(f"torch threads {prov['threads']}")
        if prov.get("torch"):
            bits.append(f"torch {prov['torch']}")
        if prov.get("archlab"):
            bits.append(f"archlab {prov['archlab']}")
        if prov.get("git_commit"):
            bits.append(f"commit {str(prov['git_commit'])[:10]}")
        text = ", ".join(bits)
        if text and text not in seen:
            seen.append(text)
    if not seen:
        return None
    return seen[0] + (f" (and {len(seen) - 1} other setup{'s' if len(seen) > 2 else ''})" if len(seen) > 1 else "")


def _context(runs: Sequence[RunRecord], baseline: str, settings: ReportSettings,
             datasets: list[_Dataset]) -> tuple[list[str], list[str]]:
    lines, warnings = [], []
    if settings.description:
        lines.append(f"Study: {settings.description}")
    for name, v in settings.variants.items():
        desc = str(v.get("description") or "")
        over = []
        for part in ("model", "train", "data"):
            if isinstance(v.get(part), Mapping) and v[part]:
                over.append(f"{part} {json.dumps(v[part], sort_keys=True)}")
        text = f"Variant {name}" + (" (baseline)" if name == baseline else "")
        text += f": {desc}" if desc else ""
        text += f" [{'; '.join(over)}]" if over else ""
        lines.append(text)
    base_cfg = next((r.config for r in runs if str(r.variant) == baseline
                     and isinstance(r.config, Mapping)), None)
    if base_cfg:
        lines.append(f"Training ({baseline}): {_describe_train(base_cfg)}")
    plugins = {(p.get("module"), p.get("path"), p.get("sha256"), p.get("version")) for r in runs
               if isinstance(r.config, Mapping) for p in (r.config.get("plugins") or [])}
    for module, path, sha, version in sorted(plugins, key=str):  # user code the runs imported (archlab.plugins)
        lines.append(f"Plugin {module}: {path}" + (f" ({version})" if version else "") + f", sha256 {str(sha)[:12]}")
    if settings.split == "per_seed":
        lines.append("Split: train/val redrawn per seed (identical across the variants of a seed)")
    sizes = {str(r.variant): r.config["data"].get("resize") for r in runs
             if isinstance(r.config, Mapping) and isinstance(r.config.get("data"), Mapping)}
    if any(v is not None for v in sizes.values()):  # vary: [resolution] (archlab.data.resolution)
        lines.append(wording.resolution_note(sizes))
    for d in datasets:
        # which data a dataset label stands for (two image folders of one size differ by root only)
        data_cfg = next((r.config["data"] for r in runs if str(r.dataset) == d.name
                         and isinstance(r.config, Mapping) and isinstance(r.config.get("data"), Mapping)),
                        None)
        if data_cfg:
            opts = ", ".join(f"{k}={v}" for k, v in sorted((data_cfg.get("options") or {}).items()))
            lines.append(f"Dataset {d.name}: {data_cfg.get('name')}"
                         + (f" from {data_cfg['root']}" if data_cfg.get("root") else "")
                         + (f" ({opts})" if opts else ""))
        s = d.split_sizes
        if any(v is not None for v in s.values()):
            lines.append(f"Split sizes ({d.name}): " + ", ".join(
                f"{k} {_fmt_count(v)}" for k, v in s.items() if v is not None) + " images")
        # a variant that cleans its training split (variants.X.data.clean) trains on fewer images
        trains: dict[bool, dict[str, Any]] = {True: {}, False: {}}  # cleaned? -> variant -> train size
        for r in runs:
            if (str(r.dataset) == d.name and r.status == "done" and isinstance(r.provenance, Mapping)
                    and isinstance(r.provenance.get("split_sizes"), Mapping) and isinstance(r.config, Mapping)
                    and isinstance(r.config.get("data"), Mapping)):
                trains[bool(r.config["data"].get("clean"))][str(r.variant)] = r.provenance["split_sizes"].get("train")
        full = next((n for n in trains[False].values() if isinstance(n, int)), None)
        for v, n in sorted(trains[True].items()):
            if isinstance(n, int) and full is not None:
                lines.append(f"Cleaning ({d.name}, {v}): {_fmt_count(n)} of {_fmt_count(full)} training "
                             "images kept (validation and test unchanged)")
        if s.get("test") is not None and s["test"] < SMALL_TEST_SET:
            warnings.append(
                f"small test set on {d.name}: {s['test']} images — one image moves accuracy by "
                f"{100 / s['test']:.2g} pp, so per-seed accuracies are coarse and differences below a "
                "few images are noise")
    hw = _hardware(runs)
    if hw:
        lines.append(f"Hardware and software: {hw}")
    return lines, warnings


def comparisons(
    runs: Sequence[RunRecord],
    baseline: str,
    metrics: Sequence[str],
    settings: ReportSettings | Mapping[str, Any] | None = None,
    *,
    min_pairs: int = 3,
) -> dict[str, list[VariantStats]]:
    """The report's comparisons: metric -> one :class:`VariantStats` per (dataset, variant).

    The same verdicts as the report's (primary metric from ``settings``, Bonferroni over every
    (dataset, variant) against the baseline, the sequential design on the primary metric of an
    adaptive study); :mod:`archlab.study.tables` exports them.
    """
    st = _settings(settings, None)
    primary, metrics = _primary(_validate(metrics, st.alpha), st)
    family = max(1, len({(str(r.dataset), str(r.variant)) for r in runs if str(r.variant) != baseline}))
    looks = st.looks()
    return {
        m: compare_variants(
            runs, baseline=baseline, metric=m, alpha=st.alpha, margin=st.margin(m),
            primary=m == primary, family=family, looks=looks if m == primary else None,
            min_pairs=min_pairs, spend=st.spending(),
        )
        for m in metrics
    }


def _analyse(
    runs: Sequence[RunRecord],
    baseline: str,
    metrics: tuple[str, ...],
    settings: ReportSettings,
    min_pairs: int,
    with_figures: bool,
) -> _Analysis:
    primary, metrics = _primary(metrics, settings)
    family = max(1, len({(str(r.dataset), str(r.variant)) for r in runs if str(r.variant) != baseline}))
    per_metric = comparisons(runs, baseline, metrics, settings, min_pairs=min_pairs)
    names = list(dict.fromkeys(vs.dataset for vs in per_metric[metrics[0]]))
    datasets = []
    for ds in names:
        tables = {m: [vs for vs in per_metric[m] if vs.dataset == ds] for m in metrics}
        first = tables[metrics[0]]
        counts: dict[str, int] = {}
        failures, notes = [], []
        for vs in first:
            for k, n in vs.status_counts.items():
                counts[k] = counts.get(k, 0) + n
            failures += [(vs.variant, s, why) for s, why in vs.failures]
        by_note: dict[str, list[str]] = {}  # a note shared by several variants is said once
        for m in metrics:
            for vs in tables[m]:
                for n in wording.notes(vs):
                    names = by_note.setdefault(n, [])
                    if vs.variant not in names:
                        names.append(vs.variant)
        notes = [f"{', '.join(names)}: {n}" for n, names in by_note.items()]
        figures = _figures(runs, ds, tables, metrics) if with_figures else []
        datasets.append(_Dataset(ds, tables, counts, failures, notes, figures, _split_sizes(runs, ds)))
    aggregates: list[VariantAggregate] = []
    ranking = None
    if len(datasets) >= 2:
        values: dict[str, dict[str, list[float]]] = {}
        for vs in per_metric[primary]:
            values.setdefault(vs.variant, {})[vs.dataset] = list(vs.values.values())
        aggregates, ranking = aggregate_variants(
            values, baseline, higher_is_better=metric_direction(primary)[0], alpha=settings.alpha)
    context, warnings = _context(runs, baseline, settings, datasets)
    return _Analysis(metrics, primary, family, settings, datasets, aggregates, ranking, context, warnings)


# ------------------------------------------------------------------------------------------------
# Figures


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _learning_curves(
    runs: Sequence[RunRecord], ds: str, variants: list[str], metric: str, key: str | None = None,
    label: str | None = None,
) -> Figure | None:
    """Per-epoch ``key`` (default ``val_<metric>``) of every variant: mean over seeds and ±1 std band."""
    key = key or f"val_{metric}"
    scale = 100.0 if _is_percent(metric) else 1.0
    fig = Figure(figsize=(7.5, 4.2))
    # Fixed margins instead of a layout engine: one draw pass instead of several.
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.12)
    ax = fig.subplots()
    drawn = False
    for i, var in enumerate(variants):
        curves = []
        for r in runs:
            if (str(r.dataset), str(r.variant), r.status) != (ds, var, "done"):
                continue
            ys = [
                float(row[key]) if row.get(key) is not None else math.nan
                for row in (r.history or [])
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
            lo, hi = mean - std, mean + std
            if _is_percent(metric):  # a rate's band stays inside [0, 100] %
                lo, hi = np.clip(lo, 0.0, 100.0), np.clip(hi, 0.0, 100.0)
            ax.fill_between(epochs[ok], lo[ok], hi[ok], color=color, alpha=0.18, linewidth=0)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label or (f"validation {metric}" + (" (%)" if _is_percent(metric) else "")))
    ax.set_title(f"{'Training loss' if key == 'train_loss' else 'Learning curves'}: {_mpl_text(ds, 40)} "
                 f"(mean, {_CURVE_BAND})", fontsize=10)
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
    # Fixed margins (see _learning_curves); the bottom one fits the longest label at 20 degrees
    # (28 characters at most), so short names leave no empty band under the axis.
    longest = max(len(_mpl_text(vs.variant)) for _, vs in shown)
    fig.subplots_adjust(left=0.5 / width + 0.05, right=0.98, top=0.92,
                        bottom=min(0.3, 0.1 + 0.0075 * longest))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only; fixed so the report is reproducible
    data = [np.array(list(vs.values.values())) * scale for _, vs in shown]
    pos = np.arange(1, len(shown) + 1)
    # A box only where it summarises something (>= 3 seeds); fewer seeds are shown as dots.
    boxed = [(p, ys) for p, ys in zip(pos, data) if ys.size >= 3]
    if boxed:
        ax.boxplot([ys for _, ys in boxed], positions=[p for p, _ in boxed], widths=0.5,
                   showfliers=False, medianprops={"color": "black"}, boxprops={"color": "0.4"},
                   whiskerprops={"color": "0.4"}, capprops={"color": "0.4"})
    for p, (i, vs), ys in zip(pos, shown, data):
        xs = p + rng.uniform(-0.12, 0.12, size=ys.size)
        ax.scatter(xs, ys, s=22, color=f"C{i % 10}", zorder=3, edgecolors="white", linewidths=0.5)
    base = next((vs for vs in stats if vs.is_baseline and vs.summary), None)
    if base is not None:
        ax.axhline(base.summary.mean * scale, color="0.5", linestyle="--", linewidth=1,
                   label="baseline mean")
        ax.legend(fontsize=8, loc="best")
    # Tight y range around the data: no empty band between the axis and the points.
    allv = np.concatenate(data)
    lo, hi = float(allv.min()), float(allv.max())
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.01, 0.5 if _is_percent(metric) else 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(0.4, len(shown) + 0.6)
    ax.set_xticks(pos)
    ax.set_xticklabels([_mpl_text(vs.variant) for _, vs in shown], rotation=20, ha="right",
                       fontsize=8)
    ax.set_ylabel(f"test {metric}" + (" (%)" if _is_percent(metric) else ""))
    ax.set_title(f"Test {metric} per seed: {_mpl_text(stats[0].dataset, 40)}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _paired_differences(stats: list[VariantStats], metric: str) -> Figure | None:
    """Per-seed paired differences variant − baseline (the design is paired), with the deciding
    interval of the mean difference and the equivalence margin."""
    base = next((vs for vs in stats if vs.is_baseline), None)
    shown = [vs for vs in stats if not vs.is_baseline and vs.paired_seeds and base is not None]
    if not shown:
        return None
    scale = 100.0 if _is_percent(metric) else 1.0
    width = max(5.0, 1.2 * len(shown) + 2.5)
    fig = Figure(figsize=(width, 4.4))
    longest = max(len(_mpl_text(vs.variant)) for vs in shown)
    fig.subplots_adjust(left=0.5 / width + 0.07, right=0.98, top=0.92, bottom=min(0.3, 0.1 + 0.0075 * longest))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only; fixed so the report is reproducible
    margin = next((vs.margin for vs in shown if vs.margin is not None), None)
    if margin is not None:
        ax.axhspan(-margin * scale, margin * scale, color="0.85", alpha=0.5, linewidth=0,
                   label=f"equivalence margin {format_margin(margin, _is_percent(metric))}")
    ax.axhline(0.0, color="0.4", linewidth=1)
    for i, vs in enumerate(shown, start=1):
        d = np.array([vs.values[s] - base.values[s] for s in vs.paired_seeds]) * scale  # (pairs,)
        ax.scatter(i + rng.uniform(-0.1, 0.1, d.size), d, s=22, color=f"C{i % 10}", zorder=3,
                   edgecolors="white", linewidths=0.5)
        if vs.ci is not None:
            lo, hi = vs.ci[0] * scale, vs.ci[1] * scale
            # (max: a zero-width interval can come out a rounding error below its own mean)
            ax.errorbar([i + 0.25], [d.mean()], yerr=[[max(0.0, d.mean() - lo)], [max(0.0, hi - d.mean())]], fmt="D", color="black",
                        markersize=5, capsize=4, linewidth=1.4, zorder=4)
    ax.set_xlim(0.4, len(shown) + 0.6)
    ax.set_xticks(np.arange(1, len(shown) + 1))
    ax.set_xticklabels([_mpl_text(vs.variant) for vs in shown], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"Δ test {metric} vs {_mpl_text(base.variant)}" + (" (pp)" if _is_percent(metric) else ""))
    ax.set_title(f"Paired differences per seed: {_mpl_text(stats[0].dataset, 40)}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if margin is not None:
        ax.legend(fontsize=8, loc="best")
    return fig


def _metric_vs_cost(stats: list[VariantStats], metric: str) -> Figure | None:
    """Test ``metric`` (mean and its 95 % CI) against parameters and against FLOPs, one point per variant."""
    shown = [vs for vs in stats if vs.summary is not None and vs.params]
    if len(shown) < 2:
        return None
    scale = 100.0 if _is_percent(metric) else 1.0
    fig = Figure(figsize=(9.0, 3.8))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.16, wspace=0.25)
    axes = fig.subplots(1, 2)
    for ax, attr, xlabel in ((axes[0], "params", "parameters"), (axes[1], "flops", "FLOPs per image (2 × MACs)")):
        for i, vs in enumerate(shown):
            x = getattr(vs, attr)
            if not x:
                continue
            m = vs.summary.mean * scale
            ci = vs.summary.ci_t
            yerr = None if ci is None else [[max(0.0, m - ci[0] * scale)], [max(0.0, ci[1] * scale - m)]]
            ax.errorbar([x], [m], yerr=yerr, fmt="o", color=f"C{i % 10}", capsize=3, label=_mpl_text(vs.variant))
        ax.set_xscale("log")
        ax.minorticks_off()  # (minor log ticks cost more drawing time than the rest of the plot)
        ax.margins(x=0.15)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"test {metric}" + (" (%)" if _is_percent(metric) else ""))
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Test {metric} against size and compute: {_mpl_text(stats[0].dataset, 40)} "
                 "(mean, 95 % CI)", fontsize=10)
    return fig


#: at most this many classes get a confusion matrix (beyond it the cells are too small to read)
MAX_CONFUSION_CLASSES = 20


def _confusions(runs: Sequence[RunRecord], ds: str, variants: list[str]) -> Figure | None:
    """Row-normalised test confusion matrices, one per variant, summed over its finished seeds."""
    mats: list[tuple[str, np.ndarray]] = []
    for var in variants:
        pairs = [(r.test_predictions, r.test_targets) for r in runs
                 if (str(r.dataset), str(r.variant), r.status) == (ds, var, "done")
                 and r.test_predictions and r.test_targets]
        if not pairs:
            continue
        p = np.concatenate([np.asarray(a, dtype=np.int64) for a, _ in pairs])  # (seeds * N,)
        t = np.concatenate([np.asarray(b, dtype=np.int64) for _, b in pairs])  # (seeds * N,)
        k = int(max(t.max(), p.max())) + 1
        if k > MAX_CONFUSION_CLASSES or p.min() < 0 or t.min() < 0:
            return None
        cm = np.zeros((k, k))
        np.add.at(cm, (t, p), 1.0)  # rows: true class, columns: predicted
        mats.append((var, cm / np.maximum(cm.sum(axis=1, keepdims=True), 1.0)))
    if not mats:
        return None
    k = max(m.shape[0] for _, m in mats)
    # one axes holding the matrices side by side (a column of blanks between them): one draw pass,
    # several times faster than a grid of subplots
    mosaic = np.full((k, len(mats) * (k + 1) - 1), np.nan)  # (true, variants x predicted)
    for i, (_, cm) in enumerate(mats):
        mosaic[: cm.shape[0], i * (k + 1): i * (k + 1) + cm.shape[1]] = cm
    fig = Figure(figsize=(min(16.0, 1.0 + 0.28 * mosaic.shape[1] + 0.9), 0.28 * k + 1.6))
    fig.subplots_adjust(left=0.06, right=0.92, top=0.86, bottom=0.14)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    im = ax.imshow(mosaic, vmin=0.0, vmax=1.0, cmap=cmap, aspect="equal")
    for i, (var, _) in enumerate(mats):
        ax.text(i * (k + 1) + (k - 1) / 2, -0.9, _mpl_text(var, 24), ha="center", va="bottom", fontsize=8)
    ax.set_xticks([i * (k + 1) + j for i in range(len(mats)) for j in range(k)] if k <= 10 else [])
    ax.set_xticklabels([str(j) for _ in mats for j in range(k)] if k <= 10 else [], fontsize=6)
    ax.set_yticks(range(k) if k <= 10 else [])
    ax.tick_params(labelsize=6, length=2)
    ax.set_xlabel("predicted class", fontsize=8)
    ax.set_ylabel("true class", fontsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.suptitle(f"Test confusion matrices (rows sum to 1, all seeds): {_mpl_text(ds, 40)}", fontsize=10)
    return fig


def _figures(
    runs: Sequence[RunRecord],
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
    fig = _learning_curves(runs, ds, variants, "loss", key="train_loss", label="training loss")
    if fig is not None:
        out.append(_Figure(
            f"Training loss ({ds})", f"Training loss per epoch: mean over finished seeds, {_CURVE_BAND}.",
            f"{slug}_train_loss.png", _png(fig),
        ))
    fig = _paired_differences(tables[metrics[0]], metrics[0])
    if fig is not None:
        out.append(_Figure(
            f"Paired differences ({ds})",
            f"Test {metrics[0]} of each variant minus the baseline's on the same seed (dots); diamond and bars: "
            "the mean difference and the interval that decided the verdict; grey band: the equivalence margin.",
            f"{slug}_paired_differences.png", _png(fig),
        ))
    for m in metrics:
        fig = _distribution(tables[m], m)
        if fig is not None:
            out.append(_Figure(
                f"Test {m} distribution ({ds})",
                f"Test {m} of every finished seed (dots), box plots from 3 seeds; dashed: baseline mean.",
                f"{slug}_{_slug(m)}_distribution.png", _png(fig),
            ))
    fig = _metric_vs_cost(tables[metrics[0]], metrics[0])
    if fig is not None:
        out.append(_Figure(
            f"Test {metrics[0]} against parameters and FLOPs ({ds})",
            f"Mean test {metrics[0]} and its 95 % t interval per variant against its parameter count and its "
            "forward FLOPs per image (a multiply-accumulate counted as 2 FLOPs; MACs = FLOPs / 2); log scale.",
            f"{slug}_cost.png", _png(fig),
        ))
    fig = _confusions(runs, ds, variants)
    if fig is not None:
        out.append(_Figure(
            f"Confusion matrices ({ds})",
            "Test predictions of all finished seeds of each variant; row i: the images of true class i, "
            "column j: the share predicted as class j.",
            f"{slug}_confusion.png", _png(fig),
        ))
    return out


# ------------------------------------------------------------------------------------------------
# Tables (shared cell contents for Markdown and HTML)


def _overview_rows(d: _Dataset, metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    head = ["Variant", "Runs done", "Params", "FLOPs (2×MACs)", "Train time (s)"]
    head += [f"{m} (mean ± std)" for m in metrics]
    rows = []
    first = d.per_metric[metrics[0]]
    for i, vs in enumerate(first):
        row = [vs.variant, _fmt_runs(vs), _fmt_count(vs.params), _fmt_flops(vs.flops),
               _fmt_seconds(vs.train_seconds)]
        row += [_fmt_mean_std(d.per_metric[m][i]) for m in metrics]
        rows.append(row)
    return head, rows


def _fmt_tost(vs: VariantStats) -> str:
    return _DASH if vs.tost_p is None else format_p(vs.tost_p)


def _comparison_rows(stats: list[VariantStats], metric: str) -> tuple[list[str], list[list[str]]]:
    with_images = any(vs.image_test is not None for vs in stats)
    with_aso = any(vs.paired is not None and vs.paired.aso_variant is not None for vs in stats)
    margin = next((vs.margin for vs in stats if vs.margin is not None), None)
    tost_head = f"p (TOST {format_margin(margin, _is_percent(metric))})" if margin is not None else None
    head = ["Variant", "n", "Mean ± std", "95 % CI (t)", "Δ vs baseline [CI]", "d_z", "p (t)"]
    head += [tost_head] if tost_head else []
    head += ["p (Wilcoxon)"]
    head += ["p (seeds × images)"] if with_images else []
    head += ["ASO ε_min v≻b / b≻v"] if with_aso else []
    head += ["Verdict"]
    rows = []
    for vs in stats:
        s, p = vs.summary, vs.paired
        ci = _fmt_ci(s.ci_t if s else None, metric) + (" ‡" if s is not None and s.clipped else "")
        row = [vs.variant, str(s.n if s else 0), _fmt_mean_std(vs), ci,
               _fmt_delta(vs, with_ci=True), _fmt_dz(vs), format_p(p.t_p if p else None)]
        row += [_fmt_tost(vs)] if tost_head else []
        row += [format_p(p.wilcoxon_p if p else None)]
        row += [_fmt_image_test(vs)] if with_images else []
        row += [_fmt_aso(vs)] if with_aso else []
        row += [wording.verdict_text(vs)]
        rows.append(row)
    return head, rows


def _compact_rows(stats: list[VariantStats], metric: str) -> tuple[list[str], list[list[str]]]:
    # no verdict column: a verdict is a sentence, printed under the table (a cell of it would
    # wrap into a dozen lines in a 120-column terminal)
    head = ["Variant", "Runs", "Params", "FLOPs (2×MACs)", "Time (s)", f"{metric} (mean ± std)",
            "95 % CI", "Δ vs baseline [CI]"]
    rows = [
        [vs.variant, _fmt_runs(vs), _fmt_count(vs.params), _fmt_flops(vs.flops),
         _fmt_seconds(vs.train_seconds), _fmt_mean_std(vs),
         _fmt_ci(vs.summary.ci_t if vs.summary else None, metric), _fmt_delta(vs, with_ci=True)]
        for vs in stats
    ]
    return head, rows


def _verdict_lines(stats: list[VariantStats]) -> str:
    """The verdicts under the compact table, one Markdown bullet per compared variant."""
    return "\n".join(f"- {_md(vs.variant)}: {_md_cell(wording.verdict_text(vs))}" for vs in stats
                     if not vs.is_baseline)


#: why two intervals stand side by side in the comparison tables
_CI_LEGEND = ("The “95 % CI (t)” column is each variant's own mean, unadjusted and descriptive; the Δ "
              "column's interval is that of the paired difference to the baseline at the level that decides "
              "the verdict (adjusted when several comparisons share α), so it may be wider, and it is the one "
              "to read for a difference.")


def _per_seed_rows(stats: list[VariantStats], metric: str) -> tuple[list[str], list[list[str]]]:
    """One row per variant, one column per seed: the test metric of each finished run."""
    seeds = sorted({s for vs in stats for s in vs.values})
    if not seeds:
        return [], []
    head = ["Variant"] + [f"seed {s}" for s in seeds]
    rows = [[vs.variant] + [_fmt_value(vs.values.get(s), metric) for s in seeds] for vs in stats]
    return head, rows


def _sequential_rows(a: _Analysis) -> tuple[list[str], list[list[str]], list[VariantStats]]:
    head = ["Variant", "Dataset", "Seeds used", "Pairs", "Lost seeds", "Verdict", "Why it stopped"]
    rows, stats = [], []
    for d in a.datasets:
        for vs in d.per_metric[a.primary]:
            dec = vs.sequential
            if vs.is_baseline or dec is None:
                continue
            rows.append([vs.variant, d.name, str(dec.look), str(dec.n_pairs),
                         ", ".join(map(str, dec.lost_seeds)) or _DASH, str(vs.outcome),
                         wording.sequential_reason(dec, vs.margin, vs.metric)])
            stats.append(vs)
    return head, rows, stats


def _aggregate_rows(a: _Analysis) -> tuple[list[str], list[list[str]]]:
    m = a.primary
    ranks = dict(zip(a.ranking.variants, a.ranking.avg_ranks)) if a.ranking else {}
    head = ["Variant", "Runs", f"IQM {m} [95 % CI]", "P(better than baseline) [95 % CI]", "Average rank"]
    rows = []
    for ag in a.aggregates:
        iqm = f"{_fmt_value(ag.iqm, m)}{_unit(m)}\n{_fmt_ci(ag.iqm_ci, m)}"
        poi = _DASH if ag.poi is None else f"{ag.poi:.2f}\n[{ag.poi_ci[0]:.2f}, {ag.poi_ci[1]:.2f}]"
        rank = f"{ranks[ag.variant]:.2f}" if ag.variant in ranks else _DASH
        rows.append([ag.variant, str(ag.runs), iqm, poi, rank])
    return head, rows


def _ranking_text(r: Ranking) -> str:
    text = f"Average ranks over {r.datasets} datasets (1 = best)"
    if r.p is not None:
        text += f"; Friedman χ²({len(r.variants) - 1}) = {r.chi2:.2f}, p = {format_p(r.p)}"
    text += f"; Nemenyi critical difference at α = {r.alpha:g}: {r.cd:.2f} ranks (Demšar 2006)."
    groups = r.groups()
    if groups:
        text += " Not told apart (ranks within one CD): " + "; ".join("{" + ", ".join(g) + "}" for g in groups) + "."
    else:
        text += " Every pair of average ranks differs by at least one CD."
    return text


_LEFT_COLUMNS = ("Variant", "Verdict", "Why it stopped", "Dataset")


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
# Methods


def _methods(a: _Analysis, min_pairs: int) -> list[str]:
    s = a.settings
    return wording.methods(primary=a.primary, metrics=a.metrics, margins={m: s.margin(m) for m in a.metrics},
                           alpha=s.alpha, family=a.family, looks=s.looks(), seeds_plan=s.seeds_plan,
                           min_pairs=min_pairs, datasets=len(a.datasets))


# ------------------------------------------------------------------------------------------------
# The document: sections of blocks, one model for both renderers


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; ``escape=False`` for generated text that may use Markdown punctuation as is."""

    text: str
    cls: str = ""  # the HTML class
    lead: str = ""  # a bold lead-in ("Warning:")
    escape: bool = True


@dataclass(frozen=True)
class Bullets:
    """A bullet list; ``item_classes`` colour the items in HTML (the answer lines by verdict)."""

    items: tuple[str, ...]
    cls: str = ""
    item_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failures:
    """The failed runs of a dataset: ``(variant, seed, error)``; HTML folds each traceback."""

    items: tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class Table:
    """A table; column 0 holds a study-provided name, ``stats`` (one per row) marks the baseline row
    and colours the verdict column."""

    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    stats: tuple[VariantStats, ...] | None = None


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Image:
    """A figure: a PNG written next to the report (Markdown) and embedded (HTML)."""

    figure: _Figure


@dataclass(frozen=True)
class Rendered:
    """Content an analysis already rendered in both formats."""

    markdown: str
    html: str


Block = Paragraph | Bullets | Failures | Table | Heading | Image | Rendered


@dataclass(frozen=True)
class Section:
    """A top-level section: a heading and its blocks (``anchor``: the HTML id)."""

    title: str
    blocks: tuple[Block, ...]
    anchor: str = ""


@dataclass(frozen=True)
class Document:
    """The whole report: the title line, then sections (and loose blocks: warnings, "no runs")."""

    study_name: str
    baseline: str
    primary: str
    metrics: tuple[str, ...]
    alpha: float
    body: tuple[Section | Block, ...]


def _dataset_section(k: int, d: _Dataset, a: _Analysis) -> Section:
    blocks: list[Block] = [Paragraph(_status_line(d.status_counts) + ".", cls="status")]
    if d.failures:
        blocks += [Paragraph("Failed runs:"), Failures(tuple(d.failures))]
    if d.notes:
        blocks += [Paragraph("Notes:"), Bullets(tuple(d.notes), cls="notes")]
    head, rows = _overview_rows(d, a.metrics)
    blocks += [Heading("Overview"), Table(tuple(head), tuple(map(tuple, rows)), tuple(d.per_metric[a.metrics[0]]))]
    for m in a.metrics:
        unit = " (values in %, differences in percentage points)" if _is_percent(m) else ""
        tag = " — primary" if m == a.primary else " — exploratory"
        stats = d.per_metric[m]
        blocks.append(Heading(f"Test {m} vs baseline{unit}{tag}"))
        if stats:
            blocks.append(Paragraph(f"Δ column: {wording.interval_label(stats[0])}. {_CI_LEGEND}", cls="cilabel"))
        head, rows = _comparison_rows(stats, m)
        blocks.append(Table(tuple(head), tuple(map(tuple, rows)), tuple(stats)))
    head, rows = _per_seed_rows(d.per_metric[a.primary], a.primary)
    if rows:
        blocks += [Heading(f"Test {a.primary} per seed"), Table(tuple(head), tuple(map(tuple, rows)),
                                                                 tuple(d.per_metric[a.primary]))]
    if d.figures:
        blocks += [Heading("Plots")] + [Image(f) for f in d.figures]
    return Section(f"Dataset: {d.name}", tuple(blocks), f"dataset-{k}")


def _document(study_name: str, baseline: str, a: _Analysis, min_pairs: int,
              analyses: Sequence[Section] = ()) -> Document:
    """The report as sections: answer, warnings, context, seeds used, across datasets, one per
    dataset, then the study's analyses and the Methods."""
    body: list[Section | Block] = []
    if not a.datasets:
        body = [Paragraph("No runs yet."), *analyses]
        return Document(study_name, baseline, a.primary, a.metrics, a.settings.alpha, tuple(body))
    answers = _answer_lines(a)
    body.append(Section("Answer", (Bullets(tuple(t for _, t in answers) or ("only the baseline was run",),
                                           cls="answer", item_classes=tuple(o for o, _ in answers)),), "answer"))
    body += [Paragraph(w, cls="warning", lead="Warning:") for w in a.warnings]
    if a.context:
        body.append(Section("Context", (Bullets(tuple(a.context), cls="context"),), "context"))
    head, rows, stats = _sequential_rows(a)
    if rows:
        body.append(Section("Seeds used (sequential design)",
                            (Table(tuple(head), tuple(map(tuple, rows)), tuple(stats)),), "seeds"))
    if a.aggregates:
        head, rows = _aggregate_rows(a)
        blocks: list[Block] = [Table(tuple(head), tuple(map(tuple, rows)))]
        if a.ranking is not None:
            blocks.append(Paragraph(_ranking_text(a.ranking)))
        body.append(Section(f"Across datasets ({a.primary})", tuple(blocks), "across"))
    body += [_dataset_section(k, d, a) for k, d in enumerate(a.datasets)]
    body += list(analyses)
    methods = tuple(Paragraph(p, cls="method", escape=False) for p in _methods(a, min_pairs))
    body.append(Section("Methods", methods, "methods"))
    return Document(study_name, baseline, a.primary, a.metrics, a.settings.alpha, tuple(body))


def _answer_lines(a: _Analysis) -> list[tuple[str, str]]:
    multi = len(a.datasets) > 1
    out = []
    for d in a.datasets:
        for vs in d.per_metric[a.primary]:
            if vs.is_baseline:
                continue
            out.append((str(vs.outcome), wording.answer_line(vs, with_dataset=multi)))
    return out


# ------------------------------------------------------------------------------------------------
# Markdown


def _md_block(b: Block) -> list[str]:
    """The lines of one block, each block followed by an empty line."""
    if isinstance(b, Paragraph):
        text = _md(b.text) if b.escape else b.text
        return [f"**{b.lead}** {text}" if b.lead else text, ""]
    if isinstance(b, Bullets):
        return [f"- {_md(t)}" for t in b.items] + [""]
    if isinstance(b, Failures):
        return [f"- {_md(v)} seed {s}: {_md(_reason(why))}" for v, s, why in b.items] + [""]
    if isinstance(b, Table):
        return [_md_table(list(b.head), [list(r) for r in b.rows]), ""]
    if isinstance(b, Heading):
        return [f"### {_md(b.text)}", ""]
    if isinstance(b, Image):
        return [f"![{_md(b.figure.title)}]({b.figure.file})", "", _md(b.figure.caption), ""]
    return [b.markdown.rstrip(), ""]


def render_markdown(doc: Document) -> str:
    """``report.md``: the document in CommonMark (study-provided strings backslash-escaped)."""
    out = [f"# Study report: {_md(doc.study_name)}", "",
           f"Baseline: **{_md(doc.baseline)}** · primary metric: {doc.primary} · metrics: "
           f"{', '.join(doc.metrics)} · α = {doc.alpha:g} · archlab {__version__}", ""]
    for part in doc.body:
        if isinstance(part, Section):
            out += [f"## {_md(part.title)}", ""]
            for b in part.blocks:
                out += _md_block(b)
        else:
            out += _md_block(part)
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;
color:#1d2430;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.3em;margin-top:32px;border-bottom:2px solid #dfe3ea;
padding-bottom:4px}h3{font-size:1.05em;margin:22px 0 8px}
.meta{color:#5a6478;margin:0 0 12px}.method{font-size:.9em;color:#3a4456;max-width:1100px}
.answer{font-size:1.05em;background:#f5f7fa;border-left:4px solid #9aa7bd;padding:8px 12px 8px 28px;
max-width:1100px}.answer li{margin:2px 0}
.warning{background:#fff4e0;border-left:4px solid #d08a00;padding:6px 12px;max-width:1100px}
.context li{font-size:.92em}.cilabel{font-size:.88em;color:#5a6478}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.84em;margin:4px 0 8px}
th,td{border:1px solid #d5dae3;padding:4px 8px;text-align:right;white-space:nowrap;vertical-align:top}
td:first-child{white-space:normal;max-width:200px;overflow-wrap:anywhere}
th{background:#eef1f6;text-align:center;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
td.verdict{text-align:left;white-space:normal;min-width:220px;max-width:380px}
tr.baseline td{background:#fafbfd;font-weight:600}
.better{color:#0b6b2f}.worse{color:#a4161a}.equivalent{color:#1f4f8a}.inconclusive{color:#8a5a00}
.failures li,.notes li{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
.failures pre{background:#f5f7fa;padding:6px 8px;white-space:pre-wrap;margin:4px 0}
figure{margin:12px 0 20px}figure img{max-width:100%;border:1px solid #e2e6ee}
figcaption{font-size:.85em;color:#5a6478}
"""


def _html_table(t: Table, verdict_col: str = "Verdict") -> str:
    out = ['<div class="scroll"><table>', "<thead><tr>"]
    out += [f'<th scope="col">{_h(h)}</th>' for h in t.head]
    out += ["</tr></thead><tbody>"]
    vcol = t.head.index(verdict_col) if verdict_col in t.head else -1
    for i, row in enumerate(t.rows):
        vs = t.stats[i] if t.stats is not None else None
        cls = ' class="baseline"' if vs is not None and vs.is_baseline else ""
        out.append(f"<tr{cls}>")
        for j, cell in enumerate(row):
            if j == vcol and vs is not None:
                out.append(f'<td class="verdict {_h(vs.outcome)}">{_h(cell)}</td>')
            else:
                out.append(f"<td>{_h(cell).replace(chr(10), '<br>')}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_failure(v: str, s: int, why: str) -> str:
    head = f"{_h(v)} seed {s}: {_h(_reason(why))}"
    if "\n" in why.strip():  # the traceback, folded (no script needed)
        return f"<li><details><summary>{head}</summary><pre>{_h(why.strip()[:4000])}</pre></details></li>"
    return f"<li>{head}</li>"


def _html_block(b: Block) -> list[str]:
    if isinstance(b, Paragraph):
        cls = f' class="{b.cls}"' if b.cls else ""
        lead = f"<strong>{_h(b.lead)}</strong> " if b.lead else ""
        return [f"<p{cls}>{lead}{_h(b.text)}</p>"]
    if isinstance(b, Bullets):
        classes = b.item_classes or ("",) * len(b.items)
        items = [f'<li class="{_h(c)}">{_h(t)}</li>' if c else f"<li>{_h(t)}</li>"
                 for t, c in zip(b.items, classes)]
        return [f'<ul class="{b.cls}">', *items, "</ul>"]
    if isinstance(b, Failures):
        return ['<ul class="failures">', *(_html_failure(*f) for f in b.items), "</ul>"]
    if isinstance(b, Table):
        return [_html_table(b)]
    if isinstance(b, Heading):
        return [f"<h3>{_h(b.text)}</h3>"]
    if isinstance(b, Image):
        b64 = base64.b64encode(b.figure.png).decode("ascii")
        return [f'<figure><img alt="{_h(b.figure.title)}" src="data:image/png;base64,{b64}">'
                f"<figcaption>{_h(b.figure.caption)}</figcaption></figure>"]
    return [b.html]


def render_html(doc: Document) -> str:
    """``report.html``: the same document as one self-contained page (every name escaped, no scripts)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network, no scripts: only inline styles and data: images are allowed.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Study report: {_h(doc.study_name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Study report: {_h(doc.study_name)}</h1>",
        f'<p class="meta">Baseline <strong>{_h(doc.baseline)}</strong> · primary metric {_h(doc.primary)} · '
        f"metrics {_h(', '.join(doc.metrics))} · α = {doc.alpha:g} · archlab {_h(__version__)}</p>",
    ]
    for part in doc.body:
        if isinstance(part, Section):
            anchor = f' id="{_h(part.anchor)}"' if part.anchor else ""
            out.append(f"<section{anchor}><h2>{_h(part.title)}</h2>")
            for b in part.blocks:
                out += _html_block(b)
            out.append("</section>")
        else:
            out += _html_block(part)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------
# Public API


def _settings(settings: ReportSettings | Mapping[str, Any] | None, alpha: float | None) -> ReportSettings:
    if settings is None:
        settings = ReportSettings()
    elif not isinstance(settings, ReportSettings):
        settings = ReportSettings.from_meta(settings)
    if alpha is not None:
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
        settings = replace(settings, alpha=alpha)
    return settings


def markdown_table(
    runs: Sequence[RunRecord],
    baseline: str,
    *,
    metric: str = "accuracy",
    alpha: float | None = None,
    min_pairs: int = 3,
    settings: ReportSettings | Mapping[str, Any] | None = None,
) -> str:
    """The compact comparison table (one per dataset) that ``archlab study run`` prints.

    Columns: variant, finished runs, parameters, FLOPs, mean train time, ``metric`` mean ± std,
    its 95 % t-CI, difference to the baseline with the interval that decided; under the table one
    line per compared variant with its verdict (``- mlp: inconclusive (n=3): ...``). The verdicts
    are the report's when ``metric`` is the primary metric and ``settings`` are the study's.

    Args:
        runs: the study's run records (:meth:`archlab.study.store.StudyStore.rows`).
        baseline: the baseline variant.
        metric: the test metric shown.
        alpha: overrides ``settings.alpha``.
        min_pairs: fewest paired seeds for a verdict in a fixed design.
        settings: :class:`ReportSettings` or the stored study meta dict.

    Returns:
        Markdown text; ``"(no runs)"`` when ``runs`` is empty.
    """
    st = _settings(settings, alpha)
    metrics = _validate((metric,), st.alpha)
    if not runs:
        return "(no runs)"
    a = _analyse(runs, baseline, metrics, st, min_pairs, with_figures=False)
    blocks = []
    for d in a.datasets:
        head, rows = _compact_rows(d.per_metric[metric], metric)
        verdicts = _verdict_lines(d.per_metric[metric])
        blocks.append(f"**Dataset: {_md(d.name)}** ({_status_line(d.status_counts)})\n\n"
                      + _md_table(head, rows) + (f"\n\n{verdicts}" if verdicts else ""))
    return "\n\n".join(blocks)


def study_verdicts(
    runs: Sequence[RunRecord],
    baseline: str,
    *,
    metrics: Sequence[str] = ("accuracy",),
    min_pairs: int = 3,
    settings: ReportSettings | Mapping[str, Any] | None = None,
) -> list[VariantStats]:
    """The report's comparisons as numbers: one :class:`VariantStats` per (dataset, variant, metric).

    The same analysis as the report's tables (the first metric is primary unless ``settings``
    name one), for the Python API's DataFrames (:func:`archlab.api.load_study`).
    """
    st = _settings(settings, None)
    checked = _validate(tuple(metrics), st.alpha)
    if not runs:
        return []
    a = _analyse(runs, baseline, checked, st, min_pairs, with_figures=False)
    return [vs for d in a.datasets for m in a.metrics for vs in d.per_metric[m]]


def write_report(
    runs: Sequence[RunRecord],
    out_dir: Path,
    *,
    study_name: str,
    baseline: str,
    metrics: Sequence[str] = ("accuracy", "f1_macro"),
    alpha: float | None = None,
    min_pairs: int = 3,
    settings: ReportSettings | Mapping[str, Any] | None = None,
    sections: Sequence[Any] = (),
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the figures (PNG) into ``out_dir``.

    Works on partial studies: pending, running and failed runs are counted and listed, statistics
    use the finished ones, a single seed gives means without intervals and "inconclusive"
    verdicts, a single variant gives the baseline rows only. The output is deterministic for
    the same rows.

    Args:
        runs: the study's run records (:meth:`archlab.study.store.StudyStore.rows`).
        out_dir: folder to write into (created if missing).
        study_name: shown in the title.
        baseline: the baseline variant.
        metrics: test metrics to compare; the primary metric (settings) is put first; the first
            also drives the learning curves.
        alpha: overrides ``settings.alpha`` (default 0.05).
        min_pairs: fewest paired seeds for a verdict in a fixed design.
        settings: :class:`ReportSettings`, or the stored study meta dict
            (``store.get_meta("study")``); ``None``: defaults.
        sections: ``(title, markdown, html, figures)`` appended before the Methods, figures
            ``(file, png, ...)`` already embedded in their html
            (:func:`archlab.study.analyses.analysis_sections`).

    Returns:
        ``(markdown_path, html_path)``.

    Raises:
        ConfigError: no metrics, an unknown metric, ``alpha`` outside (0, 1), bad settings.
        UnknownNameError: ``baseline`` is not a variant of any run.
        DataError: duplicated runs or paired runs with different test targets.
        OutputWriteError: the folder or a file cannot be written (a file is all or nothing).
    """
    st = _settings(settings, alpha)
    metrics = _validate(metrics, st.alpha)
    out_dir = Path(out_dir)
    if runs:
        a = _analyse(runs, baseline, metrics, st, min_pairs, with_figures=True)
    else:
        primary, ms = _primary(metrics, st)
        a = _Analysis(ms, primary, 1, st, [], [], None, [], [])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    for d in a.datasets:
        for f in d.figures:
            write_atomic(out_dir / f.file, f.png)
    extra = []
    for title, sec_md, sec_html, figs in sections:  # the study's analyses, before the Methods
        for file, png, *_ in figs:
            write_atomic(out_dir / file, png)
        extra.append(Section(title, (Rendered(sec_md, sec_html),)))
    doc = _document(study_name, baseline, a, min_pairs, extra)
    md_path, html_path = out_dir / REPORT_MD, out_dir / REPORT_HTML
    md, page = render_markdown(doc), render_html(doc)
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
