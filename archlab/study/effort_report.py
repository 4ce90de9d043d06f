"""The report's "Equal effort" sections: the tuning budget (expected validation performance) and
the capacity matches.

Reads what the runner recorded in the study database's meta: ``tuning``
(:func:`archlab.study.tune_phase.tuning_summary`) and ``matches`` (one entry per matched
(dataset, variant)). The curves are :func:`archlab.study.evp.evp_curve` of each variant's trial
values; a change of the leading variant with the budget is named (:func:`archlab.study.evp.ranking_flips`).
Sentences come from :mod:`archlab.study.wording`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from matplotlib.figure import Figure

from archlab.study import wording
from archlab.study.analyses import Section
from archlab.study.evp import EVPCurve, evp_curve, ranking_flips
from archlab.study.metrics import metric_direction
from archlab.study.stats import VariantStats

__all__ = ["effort_sections", "tuning_curves", "budget_section"]


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[str, str]:
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    md = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    html = ['<div class="scroll"><table><thead><tr>'] + [f'<th scope="col">{escape(h)}</th>' for h in head]
    html.append("</tr></thead><tbody>")
    html += ["<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
    html.append("</tbody></table></div>")
    return "\n".join(md), "".join(html)


def tuning_curves(tuning: Mapping[str, Any]) -> dict[str, dict[str, EVPCurve]]:
    """Expected-validation-performance curves by dataset and variant (scored trials only)."""
    higher, _ = metric_direction(tuning["metric"])
    out: dict[str, dict[str, EVPCurve]] = {}
    for cell in tuning["cells"]:
        values = [t["value"] for t in cell["trials"] if t["value"] is not None]
        if values:
            out.setdefault(cell["dataset"], {})[cell["variant"]] = evp_curve(cell["variant"], values,
                                                                              higher_is_better=higher)
    return out


def _figure(dataset: str, curves: Mapping[str, EVPCurve], metric: str) -> tuple[str, bytes, str, str]:
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    for name, c in curves.items():
        mean = [m for m in c.mean]
        ax.plot(c.ks, mean, marker="o", ms=3, label=name)
        ax.fill_between(c.ks, [m - s for m, s in zip(mean, c.std)], [m + s for m, s in zip(mean, c.std)], alpha=0.2)
    ax.set_xlabel("tuning budget k (trials)")
    ax.set_ylabel(f"expected best validation {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    file = f"evp_{''.join(ch if ch.isalnum() else '_' for ch in dataset)}.png"
    return (file, buf.getvalue(), f"Expected validation performance ({dataset})",
            "Expected best validation score after k trials (Dodge et al. 2019), ±1 std.")


def effort_sections(tuning: Mapping[str, Any] | None, matches: Sequence[Mapping[str, Any]] | None) -> list[Section]:
    """The sections "Equal effort: tuning" and "Equal effort: capacity" (empty when neither was used)."""
    sections = []
    if tuning and tuning.get("cells"):
        metric = tuning["metric"]
        md, html, figs = [wording.equal_budget_line(tuning)], [f"<p>{escape(wording.equal_budget_line(tuning))}</p>"], []
        rows = []
        curves = tuning_curves(tuning)
        for cell in tuning["cells"]:
            n = len(cell["trials"])
            best = cell["trials"][cell["best"]] if cell["best"] is not None else None
            c = curves.get(cell["dataset"], {}).get(cell["variant"])
            evp = (lambda k: f"{c.mean[k - 1]:.4f} ± {c.std[k - 1]:.4f}") if c else (lambda k: "—")
            rows.append([cell["variant"], cell["dataset"], str(n),
                         str(sum(t["value"] is None for t in cell["trials"])),
                         "—" if best is None else f"{best['value']:.4f}",
                         "—" if best is None else ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                            for k, v in best["params"].items()),
                         evp(1) if c else "—", evp(len(c.ks)) if c else "—"])
        t_md, t_html = _table(["Variant", "Dataset", "Trials", "Failed", f"Best val {metric}", "Chosen config",
                               "E[best] k=1", "E[best] k=all"], rows)
        md += ["", t_md, ""]
        html.append(t_html)
        for ds, by_var in curves.items():
            flips = ranking_flips(by_var, tol=1e-12)
            line = wording.budget_flips_line(ds, flips, len(next(iter(by_var.values())).ks))
            md += [line, ""]
            html.append(f"<p>{escape(line)}</p>")
            figs.append(_figure(ds, by_var, metric))
        for file, png, title, caption in figs:
            md += [f"![{title}]({file})", "", caption, ""]
            b64 = base64.b64encode(png).decode("ascii")
            html.append(f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{b64}">'
                        f"<figcaption>{escape(caption)}</figcaption></figure>")
        sections.append(Section("Equal effort: tuning budget", "\n".join(md), "\n".join(html), figs))
    if matches:
        rows = [[m["variant"], m["dataset"], f"{m['key']} = {m['value']}", f"{m['count']:,}",
                 f"{m['target']:,} ({m['measure']} of {m['reference']})", f"{(m['count'] - m['target']) / m['target']:+.2%}"]
                for m in matches]
        t_md, t_html = _table(["Variant", "Dataset", "Resolved knob", "Size", "Target", "Off by"], rows)
        sections.append(Section("Equal effort: capacity-matched variants", t_md, t_html, []))
    return sections


def budget_section(verdicts: Mapping[int, Sequence[VariantStats]], metric: str) -> Section:
    """"Budget curves": each variant's verdict against the baseline at every declared budget."""
    budgets = sorted(verdicts)
    cells: dict[tuple[str, str], dict[int, VariantStats]] = {}
    for b in budgets:
        for vs in verdicts[b]:
            if not vs.is_baseline:
                cells.setdefault((vs.dataset, vs.variant), {})[b] = vs
    rows = [[var, ds, *(wording.verdict_text(by_b[b]) if b in by_b else "—" for b in budgets)]
            for (ds, var), by_b in cells.items()]
    t_md, t_html = _table(["Variant", "Dataset", *(f"{b} epochs" for b in budgets)], rows)
    lines = [wording.budget_trend_line(ds, var, [by_b[b].outcome for b in budgets if b in by_b], budgets)
             for (ds, var), by_b in cells.items()]
    intro = wording.budget_intro_line(metric, budgets)
    md = "\n".join([intro, "", t_md, "", *lines])
    html = f"<p>{escape(intro)}</p>" + t_html + "".join(f"<p>{escape(x)}</p>" for x in lines)
    return Section("Budget curves: the verdict per training budget", md, html, [])
