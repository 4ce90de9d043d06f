"""Issue 21: the redesign changed no stored number. Two small studies (an adaptive classification
study with analyses, a segmentation study) give exactly the values recorded in golden.json."""

from __future__ import annotations

import json

import pytest

from .golden import HERE, record_all


@pytest.fixture(scope="module")
def now(tmp_path_factory):
    return record_all(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("study", ["classification.yaml", "segmentation.yaml"])
def test_every_stored_value_equals_the_golden_record(now, study):
    golden = json.loads((HERE / "golden.json").read_text())[study]
    got = now[study]
    assert sorted(got["runs"]) == sorted(golden["runs"])
    for key, run in golden["runs"].items():
        for field, value in run.items():
            assert got["runs"][key][field] == value, f"{study} {key} {field} changed"
    assert got["report"] == golden["report"]
