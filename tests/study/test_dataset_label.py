"""A dataset entry's `label:` (two image folders of one size in one study) and $ARCHLAB_CACHE."""

import numpy as np
import pytest
import yaml
from PIL import Image

from archlab.cli import main
from archlab.errors import ConfigError
from archlab.study.config import load_study


def _image_folder(root, seed, per_class=12):
    rng = np.random.default_rng(seed)
    for c, level in enumerate((40, 130, 220)):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(rng.normal(level, 25, (10, 14)), 0, 255).astype(np.uint8)  # other size than 16
            Image.fromarray(img, mode="L").save(root / f"class{c}" / f"{i}.png")
    return root


def _study(tmp_path, labels):
    a, b = _image_folder(tmp_path / "clinic_a", 1), _image_folder(tmp_path / "clinic_b", 2)
    datasets = [{"name": "image_folder", "root": str(root), "options": {"image_size": 16, "mode": "L"},
                 "val_fraction": 0.2, "test_fraction": 0.25} for root in (a, b)]
    for d, label in zip(datasets, labels):
        if label is not None:
            d["label"] = label
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "two_folders", "datasets": datasets, "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1, "batch_size": 16}, "seeds": [0], "baseline": "lin",
        "variants": {"lin": {"model": {"head": "linear"}}, "mlp": {"model": {"head": "mlp", "head_kwargs": {"hidden": [8]}}}},
    }))
    return path, a, b


def test_two_image_folders_of_one_size_need_labels(tmp_path):
    path, _, _ = _study(tmp_path, [None, None])
    with pytest.raises(ConfigError, match=r"datasets repeat: \['image_folder16', 'image_folder16'\].*label"):
        load_study(path)


@pytest.mark.parametrize("bad", ["a/b", "../up", "", "-x", "has space"])
def test_bad_labels_name_the_key(tmp_path, bad):
    path, _, _ = _study(tmp_path, [bad, "ok"])
    with pytest.raises(ConfigError, match=r"datasets\.0\.label"):
        load_study(path)


def test_labelled_folders_run_side_by_side_and_the_report_names_their_roots(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ARCHLAB_CACHE", str(cache))
    path, a, b = _study(tmp_path, ["clinic_a", "clinic_b"])
    study = load_study(path)
    assert list(study.dataset_configs()) == ["clinic_a", "clinic_b"]
    out = tmp_path / "out"
    assert main(["study", "run", str(path), "--out", str(out)]) == 0, capsys.readouterr().err
    for label in ("clinic_a", "clinic_b"):
        for variant in ("lin", "mlp"):
            assert (out / "runs" / label / variant / "seed0" / "result.json").is_file()
    report = (out / "report.md").read_text()
    assert f"Dataset clinic\\_a: image\\_folder from {a}" in report or f"Dataset clinic_a: image_folder from {a}" in report
    assert str(b) in report
    # $ARCHLAB_CACHE moved the decoded-image cache out of both data folders
    assert not (a / ".archlab_cache").exists() and not (b / ".archlab_cache").exists()
    assert len(list((cache / "image_folder").glob("*.npz"))) == 2  # one per folder (train part only)


def test_data_audit_picks_a_study_dataset_by_label(tmp_path, capsys):
    import json

    path, a, b = _study(tmp_path, ["clinic_a", "clinic_b"])
    out = tmp_path / "audit"
    assert main(["data", "audit", "clinic_b", "--study", str(path), "--out", str(out)]) == 0, capsys.readouterr().err
    text = json.dumps(json.loads((out / "summary.json").read_text()))
    assert str(b) in text and str(a) not in text
    assert main(["data", "audit", "clinic_c", "--study", str(path)]) == 2
    assert "its datasets: clinic_a, clinic_b" in capsys.readouterr().err
