"""archlab.plugins units: every extension point registers from a file outside the package; hashes;
run files' `imports:`; the metric registry is what verdicts read."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import yaml

from archlab.cli import main
from archlab.errors import ConfigError
from archlab.plugins import describe_plugin_change, ensure_plugins, import_plugins, source_sha256

PARTS = textwrap.dedent('''
    import numpy as np
    import torch
    import torch.nn as nn

    import archlab
    from archlab.data._dataset import ImageDataset


    @archlab.register_loss("pu_scaled_ce", options=("scale",))
    def scaled_ce(num_classes, scale: float = 2.0):
        ce = nn.CrossEntropyLoss()
        return lambda logits, target: scale * ce(logits, target)


    class Flip(nn.Module):
        def forward(self, x):
            return x.flip(-1)  # (B, C, H, W)


    @archlab.register_augment("pu_flip")
    def flip(*, image_size, in_chans):
        return Flip()


    @archlab.register_dataset("pu_stripes")
    def stripes(root=None, n: int = 40):
        rng = np.random.default_rng(0)
        def part(k):
            y = rng.integers(0, 2, k)
            x = np.zeros((k, 1, 8, 8), np.uint8)  # (N, C, H, W) uint8
            for i, c in enumerate(y):
                x[i, :, :, c::2] = 255
            return ImageDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), ("even", "odd"), "pu_stripes")
        return {"train": part(n), "test": part(n // 2)}


    archlab.register_metric("pu_metric", higher_is_better=False, unit="ms", margin=3.0)
''')


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("pu")
    (root / "pu_parts.py").write_text(PARTS)
    [rec] = import_plugins(["pu_parts.py"], root, "test.yaml", entry_points=False)
    return root, rec


def test_every_extension_point_registers_from_outside(parts):
    from archlab.data.augment import build_augment, build_eval_transform
    from archlab.data.datasets import load_dataset
    from archlab.study.metrics import metric_direction, metric_spec
    from archlab.study.config import Study
    from archlab.train.losses import build_loss

    loss = build_loss("pu_scaled_ce", num_classes=3, scale=3.0)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(loss(logits, target), 3 * torch.nn.functional.cross_entropy(logits, target))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(build_augment("pu_flip", image_size=(8, 8), in_chans=1)(x), x.flip(-1))
    assert build_eval_transform("pu_flip", image_size=(8, 8), in_chans=1) is None
    ds = load_dataset("pu_stripes", n=10)
    assert len(ds["train"]) == 10
    assert metric_direction("pu_metric") == (False, False) and metric_spec("pu_metric").unit == "ms"
    s = Study.model_validate({"name": "s", "data": {}, "variants": {"a": {}}, "seeds": 2, "baseline": "a"})
    assert s.margin("pu_metric") == 3.0 and s.margin("accuracy") == 0.01 and s.margin("loss") is None


def test_record_and_hash(parts):
    root, rec = parts
    assert rec == {"module": "pu_parts", "path": str(root / "pu_parts.py"), "sha256": source_sha256(root / "pu_parts.py")}
    ensure_plugins([rec])  # same file, same hash: nothing to do
    bad = {**rec, "sha256": "0" * 64}
    with pytest.raises(ConfigError, match=r"plugin .*pu_parts.py changed since the study started"):
        ensure_plugins([bad])
    assert describe_plugin_change({"plugins": [bad]}, {"plugins": [rec]}) == [
        f"plugin {rec['path']} changed (sha256 000000000000 -> {rec['sha256'][:12]})"]
    assert describe_plugin_change({}, {}) == []


def test_twice_registered_metric_and_module_name_clash(tmp_path, parts):
    (tmp_path / "pu_other.py").write_text("import archlab\narchlab.register_metric('accuracy', higher_is_better=False)\n")
    with pytest.raises(ConfigError, match=r"pu_other.py, line 2 failed to import: ConfigError: metric 'accuracy' is "
                                          r"registered twice"):
        import_plugins(["pu_other.py"], tmp_path, "s.yaml", entry_points=False)
    (tmp_path / "pu_parts.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="has the module name 'pu_parts', which is already"):
        import_plugins(["pu_parts.py"], tmp_path, "s.yaml", entry_points=False)


def test_run_file_imports_train_with_plugin_dataset_loss_augment(parts, tmp_path, capsys):
    root, rec = parts
    run = {"imports": [str(root / "pu_parts.py")], "data": {"name": "pu_stripes", "augment": "pu_flip", "options": {"image_size": 28}},
           "model": {"name": "mnist_cnn", "head": "linear"}, "loss": "pu_scaled_ce", "epochs": 1, "batch_size": 8,
           "device": "cpu"}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    code = main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["plugins"] == [rec]


def test_study_new_with_plugin_writes_both_files_that_validate(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from archlab._cli.plugin_template import plugin_head_file
    from archlab.study.config import load_study

    monkeypatch.chdir(tmp_path)
    assert main(["study", "new", "pn_mine", "--with-plugin"]) == 0
    assert (tmp_path / "pn_mine_heads.py").read_text() == plugin_head_file()
    assert len(plugin_head_file().splitlines()) <= 21  # the README's "20-line head file"
    study = load_study(tmp_path / "pn_mine.yaml", smoke=True)
    assert study.imports == ["pn_mine_heads.py"] and study.plugins[0]["module"] == "pn_mine_heads"
    assert main(["study", "new", "pn_mine", "--with-plugin"]) == 2  # exists: refused, not overwritten
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = plugin_head_file().split("import math", 1)[1]
    assert body in readme  # the README shows the file the command writes


def test_entry_point_and_module_name_imports(tmp_path, monkeypatch):
    import archlab.plugins as plugins

    pkg = tmp_path / "pu_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "blocks.py").write_text("import archlab\narchlab.register_metric('pu_pkg_metric', higher_is_better=True)\n")
    (tmp_path / "pu_ep.py").write_text("import archlab\narchlab.register_metric('pu_ep_metric', higher_is_better=True)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "entry_point_modules", lambda: ["pu_ep"])
    recs = import_plugins(["pu_pkg.blocks"], tmp_path, "s.yaml")
    assert [r["module"] for r in recs] == ["pu_ep", "pu_pkg.blocks"]  # entry points first
    assert recs[1]["path"] == str(pkg / "blocks.py") and recs[1]["sha256"] == source_sha256(pkg / "blocks.py")
    from archlab.study.metrics import list_metrics

    assert {"pu_ep_metric", "pu_pkg_metric"} <= set(list_metrics())
    assert import_plugins([], tmp_path, "s.yaml", entry_points=False) == []
    with pytest.raises(ConfigError, match="plugin module 'pu_nope' cannot be imported"):
        import_plugins(["pu_nope"], tmp_path, "s.yaml", entry_points=False)
