"""`archlab analyze ...` on real (tiny) trained runs."""

import pytest

from archlab.cli import main
from archlab.train import engine
from archlab.train.config import TrainConfig

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 90, "image_size": 16, "channels": 3}}


@pytest.fixture(scope="module")
def mini_vgg_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    engine.train(TrainConfig.model_validate({"data": DATA, "model": {"name": "mini_vgg"}, "epochs": 1, "batch_size": 16}), out)
    return out


def test_analyze_rotation_and_transplant(mini_vgg_run, tmp_path, capsys):
    assert main(["analyze", "rotation", str(mini_vgg_run), "--images", "4", "--step", "30", "--out", str(tmp_path / "r")]) == 0
    for f in ("rotation_curve.csv", "rotation_curve.png", "rotation_boxplot.png", "rotation_summary.csv"):
        assert (tmp_path / "r" / f).is_file()
    assert main(["analyze", "transplant", str(mini_vgg_run), "--images", "4", "--step", "90", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "transplant_accuracy.csv").is_file()
    assert "test accuracy" in capsys.readouterr().out


def test_analyze_connections(tmp_path, capsys):
    run = tmp_path / "run"
    res = engine.train(
        TrainConfig.model_validate({"data": DATA, "model": {"name": "connected_net"}, "epochs": 2, "batch_size": 16}), run
    )
    assert len(res.extras["gates"]) == 2
    assert main(["analyze", "connections", str(run), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "connection_gates.csv").is_file()


def test_pruned_variant_trains_in_the_same_study(tmp_path, capsys):
    import yaml

    from archlab.study.config import load_study
    from archlab.study.runner import run_study

    study = {"name": "conn", "data": DATA, "model": {"name": "connected_net"}, "seeds": [0],
             "train": {"epochs": 2, "batch_size": 16}, "baseline": "full", "variants": {"full": {}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    run_study(load_study(path), tmp_path / "s")
    run = tmp_path / "s" / "runs" / "synthetic16" / "full" / "seed0"
    # a threshold above every gate keeps only the strongest input of each connection
    assert main(["analyze", "connections", str(run), "--threshold", "1.0", "--out", str(tmp_path / "c")]) == 0
    assert "parameters; add this variant" in capsys.readouterr().out
    study["variants"].update(yaml.safe_load((tmp_path / "c" / "pruned_variant.yaml").read_text()))
    path.write_text(yaml.safe_dump(study))
    store = run_study(load_study(path), tmp_path / "s")  # the full run is kept, the pruned one trains
    rows = {r.variant: r for r in store.rows(with_predictions=False)}
    assert set(rows) == {"full", "pruned_1"} and all(r.status == "done" for r in rows.values())
    model = engine.load_run(run)[0]
    pruned = model.prune(1.0)
    assert rows["pruned_1"].params == sum(p.numel() for p in pruned.parameters()) != rows["full"].params
    assert sum(len(c) for c in pruned.build_kwargs["connections"]) < sum(len(c) for c in model.backbone.pattern)


def test_analyze_errors(tmp_path, mini_vgg_run, capsys):
    assert main(["analyze", "rotation", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["analyze", "connections", str(mini_vgg_run)]) == 2
    assert "recorded no gate values" in capsys.readouterr().err


def test_analyze_profile(tmp_path, capsys):
    assert main(["analyze", "profile", "mnist_cnn", "crnet", "--input-size", "32", "--latency-runs", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "profile.csv").read_text().count("\n") == 3


def test_analyze_feature_reuse_and_excitation(tmp_path, capsys):
    densenet = tmp_path / "dense"
    engine.train(TrainConfig.model_validate({
        "data": DATA, "model": {"name": "densenet_bc", "kwargs": {"depth": 10, "growth_rate": 4}},
        "epochs": 1, "batch_size": 30}), densenet)
    assert main(["analyze", "feature-reuse", str(densenet), "--out", str(tmp_path / "fr")]) == 0
    assert (tmp_path / "fr" / "feature_reuse.png").is_file()
    assert "mean_abs_weight" in (tmp_path / "fr" / "feature_reuse.csv").read_text()
    se = tmp_path / "se"
    engine.train(TrainConfig.model_validate({
        "data": DATA, "model": {"name": "resnet18", "kwargs": {"cifar_stem": True, "se": True}},
        "epochs": 1, "batch_size": 30}), se)
    assert main(["analyze", "excitation", str(se), "--classes", "0,2", "--images", "20",
                 "--out", str(tmp_path / "ex")]) == 0
    rows = (tmp_path / "ex" / "excitation.csv").read_text().splitlines()
    assert {r.split(",")[1] for r in rows[1:]} == {"0", "2"}
    assert main(["analyze", "excitation", str(se), "--classes", "a,b"]) == 2
    assert main(["analyze", "feature-reuse", str(se)]) == 2  # no dense block: a clear error
