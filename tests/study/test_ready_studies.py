"""Every ready study in studies/ validates, and runs end to end in --smoke mode."""

from pathlib import Path

import pytest

from archlab.study.config import load_study
from archlab.study.runner import run_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


def test_there_are_studies():
    assert any(p.name == "quickstart.yaml" for p in STUDIES)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_validates(path):
    study = load_study(path)
    assert study.baseline in study.variants
    assert study.smoke is not None, f"{path.name} needs a smoke section"


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_smoke_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh folder: the smoke run needs no file the tests make
    study = load_study(path, smoke=True)
    store = run_study(study, tmp_path)
    rows = store.rows(with_predictions=False)
    assert len(rows) == len(study.grid())
    assert all(r.status == "done" for r in rows), [r.error for r in rows if r.status != "done"]
    assert (tmp_path / "report.html").is_file()
