"""Adaptive seeds announce each round and why each comparison stops or continues (issue 26 item 7)."""

from __future__ import annotations

import re

import yaml

from archlab.cli import main

from .test_seed_plan import _adaptive


def test_study_run_prints_rounds_and_reasons(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_adaptive()))
    code = main(["study", "run", str(path), "--out", str(tmp_path / "out"), "--workers", "1"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "4 variants x 3-5 seeds (adaptive: 3 first, then 1 more per round until decided) x 1 dataset(s) = at most 20 runs" in text
    lines = text.splitlines()
    assert "round 1/3: seeds 0-2 for 3 undecided comparisons, 12 runs to do (at most 20 in all)" in lines
    # after each round one line per comparison that took part, the decided ones saying so
    assert "  same: stopped at 3 seeds: equivalent at n=3, repeated interval [+0.00 pp, +0.00 pp] inside ±5 pp" in lines
    looked = [ln for ln in lines if re.match(r"  (same|broken|other): ", ln)]
    assert len(looked) >= 3 and all(("stopped at" in ln or "continuing" in ln or "max of 5 seeds" in ln)
                                    for ln in looked)
    rounds = [int(m.group(1)) for ln in lines if (m := re.match(r"round (\d)/3: ", ln))]
    assert rounds == list(range(1, len(rounds) + 1))
    # a comparison that stopped is not looked at again
    assert sum(ln.startswith("  same: ") for ln in lines) == 1
