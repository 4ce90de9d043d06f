"""User components from outside the package (archlab.plugins): a plugin head, backbone, metric and
analysis in a temporary folder, used by a study inline, on 2 local workers and on Ray, from the
CLI and the Python API; provenance refuses an edited plugin; a broken plugin is one line, exit 2."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

import archlab
from archlab.cli import main
from archlab.errors import ConfigError
from archlab.study.store import StudyStore

PLUGIN = textwrap.dedent('''
    """A user's head, backbone, metric and analysis."""
    import torch
    import torch.nn as nn

    import archlab
    from archlab.models import build_classifier


    @archlab.register_head("pt_gated")
    class Gated(nn.Module):
        def __init__(self, in_shape, num_classes, hidden: int = 8):
            super().__init__()
            n = 1
            for s in in_shape:
                n *= s
            self.value, self.gate = nn.Linear(n, hidden), nn.Linear(n, hidden)
            self.out = nn.Linear(hidden, num_classes)

        def forward(self, x):
            x = x.flatten(1)  # (B, F)
            return self.out(self.value(x) * torch.sigmoid(self.gate(x)))


    class Tiny(nn.Module):
        def __init__(self, in_chans):
            super().__init__()
            self.conv = nn.Conv2d(in_chans, 4, 3, stride=2)

        def forward(self, x):
            return torch.relu(self.conv(x))  # (B, 4, 13, 13)


    @archlab.register_model
    def pt_tiny(*, num_classes, in_chans, head=None, head_kwargs=None, input_size=None):
        return build_classifier(Tiny(in_chans), num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                                head=head, head_kwargs=head_kwargs, default_input_size=28, model_name="pt_tiny")


    archlab.register_metric("pt_norm.l2", higher_is_better=False, margin=0.5)


    @archlab.register_analysis("pt_norm", options={"power": (int, 2)})
    def weight_norm(run, options, ctx):
        model = run.load()[0]
        total = sum(float(p.detach().abs().pow(options["power"]).sum()) for p in model.parameters())
        return {"l2": total ** (1 / options["power"])}, {}
''')

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 60, "image_size": 28, "channels": 1, "seed": 1}}


def study(**over):
    d = {"name": "plug", "imports": ["parts/pt_parts.py"], "data": DATA, "model": {"name": "pt_tiny"},
         "train": {"epochs": 1, "batch_size": 16}, "seeds": [0, 1], "baseline": "lin",
         "variants": {"lin": {"model": {"head": "linear"}}, "gated": {"model": {"head": "pt_gated"}},
                      "dotted": {"model": {"head": "pt_parts:Gated", "head_kwargs": {"hidden": 4}}}},
         "analyses": {"pt_norm": {}}}
    d.update(over)
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("plug")
    (root / "parts").mkdir()
    (root / "parts" / "pt_parts.py").write_text(PLUGIN)
    (root / "study.yaml").write_text(yaml.safe_dump(study()))
    return root


def _numbers(out):
    store = StudyStore(out / "results.sqlite")
    try:
        return {(r.dataset, r.variant, r.seed): (r.status, r.test, r.test_predictions, dict(r.analysis or {}))
                for r in store.rows()}
    finally:
        store.close()


@pytest.fixture(scope="module")
def inline(folder):
    res = archlab.Study.from_yaml(folder / "study.yaml").run(folder / "inline", workers=1, report=False)
    return res


def test_plugin_study_inline_api(inline, folder):
    pytest.importorskip("pandas")
    runs = inline.runs
    assert set(runs["variant"]) == {"lin", "gated", "dotted"} and (runs["status"] == "done").all()
    assert runs["analysis.pt_norm.l2"].notna().all()  # the plugin analysis ran on every run
    verdicts = inline.verdicts
    assert {"accuracy", "pt_norm.l2"} <= set(verdicts["metric"])
    row = verdicts[(verdicts.metric == "pt_norm.l2") & (verdicts.variant == "gated")].iloc[0]
    assert row["margin"] == 0.5 and isinstance(row["verdict_text"], str) and row["verdict_text"]
    cfg = json.loads(json.dumps(StudyStore(folder / "inline" / "results.sqlite").rows()[0].config))
    [rec] = cfg["plugins"]
    assert rec["module"] == "pt_parts" and rec["path"] == str(folder / "parts" / "pt_parts.py")
    assert len(rec["sha256"]) == 64


def test_two_workers_cli_equal_inline(inline, folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    code = main(["study", "run", "study.yaml", "--out", str(folder / "w2"), "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    assert _numbers(folder / "w2") == _numbers(folder / "inline")
    report = (folder / "w2" / "report.md").read_text()
    assert "Plugin pt_parts" in report and "pt_norm.l2" in report


def test_report_and_load_study_in_a_fresh_process_know_the_plugin_metric(inline, folder):
    import os
    import subprocess
    import sys

    code = ("import archlab, sys; from archlab.cli import main; r = main(['study', 'report', sys.argv[1]]); "
            "v = archlab.load_study(sys.argv[1]).verdicts; print('METRICS', sorted(set(v.metric))); sys.exit(r)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code, str(folder / "inline")], capture_output=True, text=True,
                          env=env, cwd=folder, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "'pt_norm.l2'" in proc.stdout
    assert "#### pt_norm.l2" in (folder / "inline" / "report.md").read_text()


def test_python_api_from_dict_two_workers(inline, folder):
    res = archlab.Study(study(), base=folder).run(folder / "api2", workers=2, report=False)
    assert _numbers(folder / "api2") == _numbers(folder / "inline")
    assert len(res.records) == 6


@pytest.mark.slow
def test_ray_equal_inline(inline, folder, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["study", "run", str(folder / "study.yaml"), "--out", str(folder / "ray"), "--ray", "local"])
    finally:
        ray.shutdown()
    assert code == 0, capsys.readouterr().err
    assert _numbers(folder / "ray") == _numbers(folder / "inline")


def test_edited_plugin_is_refused_with_the_file_named(inline, folder, capsys):
    path = folder / "parts" / "pt_parts.py"
    original = path.read_text()
    try:
        path.write_text(original.replace("hidden: int = 8", "hidden: int = 9"))
        code = main(["study", "run", str(folder / "study.yaml"), "--out", str(folder / "inline"), "--workers", "1"])
        err = capsys.readouterr().err
        assert code == 2
        assert f"plugin {path} changed" in " ".join(err.split())
    finally:
        path.write_text(original)
        archlab.Study.from_yaml(folder / "study.yaml")  # the original registered again for later tests


@pytest.mark.parametrize("body, expect", [
    ("import archlab\n\nx = 1\nraise RuntimeError('boom')\n", "boom.py, line 4 failed to import: RuntimeError: boom"),
    ("import archlab\n\n\n@archlab.register_head('linear')\nclass H:\n    pass\n",
     "boom.py, line 4 failed to import: ConfigError: head 'linear' is registered twice"),
])
def test_broken_plugin_is_one_line_exit_2(tmp_path, capsys, body, expect):
    (tmp_path / "boom.py").write_text(body)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study(imports=["boom.py"])))
    code = main(["study", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert expect in err and "Traceback" not in err


def test_missing_plugin_file_and_bad_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"plugin file 'nope.py' not found"):
        archlab.Study(study(imports=["nope.py"]), base=tmp_path)
    from archlab._registry import head_entrypoint

    with pytest.raises(ConfigError, match="module 'no_such_mod' cannot be imported"):
        head_entrypoint("no_such_mod:Head")


def test_component_in_main_refused_with_workers(folder, monkeypatch):
    import torch.nn as nn

    class Local(nn.Module):
        def __init__(self, in_shape, num_classes):
            super().__init__()

    Local.__module__ = "__main__"
    archlab.register_head("pt_in_main")(Local)
    s = archlab.Study(study(variants={"lin": {"model": {"head": "pt_in_main"}}}), base=folder)
    with pytest.raises(ConfigError, match="defined in __main__"):
        s.run(folder / "main", workers=2)


def test_study_without_imports_stores_no_plugins_key():
    from archlab.train.config import TrainConfig

    assert "plugins" not in TrainConfig().model_dump_json()
    assert "imports" not in archlab.Study(study(imports=[], model={"name": "mnist_cnn"},
                                                analyses={})).config.model_dump()
