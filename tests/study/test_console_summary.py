"""The end-of-study summary fits the terminal (issue 26 item 4): no line over the width, verdicts under the table."""

from __future__ import annotations

import pytest

from archlab._cli.study import PIPE_WIDTH, print_markdown
from archlab.study.report import markdown_table

from .test_report import META, study_runs


def _printed(capsys, monkeypatch, columns: str | None) -> list[str]:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    print_markdown(markdown_table(study_runs(), "linear", settings=META))
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("columns, width", [("120", 120), ("80", 80), (None, PIPE_WIDTH)])
def test_no_line_over_the_width(capsys, monkeypatch, columns, width):
    lines = _printed(capsys, monkeypatch, columns)
    assert max(len(ln) for ln in lines) <= width
    text = "\n".join(lines)
    # every verdict is under the table, whole (words wrapped at the width, never cut)
    starts = [i for i, ln in enumerate(lines) if ln.startswith("- ")]
    assert [lines[i].split(":")[0] for i in starts] == ["- mlp", "- <script>alert(1)</script>", "- spinal", "- ncp"]
    assert " ".join(text.split()).count("inconclusive") >= 1
    assert "\x1b[" not in text  # piped: no colour codes


def test_a_verdict_takes_few_lines_at_120_columns(capsys, monkeypatch):
    lines = _printed(capsys, monkeypatch, "120")
    starts = [i for i, ln in enumerate(lines) if ln.startswith("- ")]
    ends = starts[1:] + [len(lines)]
    assert max(e - s for s, e in zip(starts, ends)) <= 3  # was a 14-line table cell
    rows = [ln for ln in lines if ln.lstrip().startswith(("linear", "mlp", "spinal", "ncp"))]
    assert len(rows) == 4  # one line per variant at this width
