"""The command line: output, exit codes (0 ok / 1 failure / 2 usage error), no tracebacks."""

import json
import subprocess
import sys

import pytest

from archlab.cli import main


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_registry(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name in ("crnet", "mini_vgg", "mnist_cnn", "vgg5"):
        assert name in out
    code, out, _ = run(capsys, "models", "vgg*")
    assert code == 0 and "vgg5" in out and "crnet" not in out


def test_models_no_match_is_usage_error(capsys):
    code, _, err = run(capsys, "models", "zzz*")
    assert code == 2 and "no model matches" in err


def test_info_json(capsys):
    code, out, _ = run(capsys, "info", "crnet", "--in-chans", "1", "--num-classes", "2", "--latency-runs", "0", "--json")
    assert code == 0
    prof = json.loads(out)
    assert prof["params_total"] == 546_882
    assert prof["stage_shapes"]["backbone.pool"] == [128, 13, 13]


def test_info_table(capsys):
    code, out, _ = run(capsys, "info", "mnist_cnn", "--in-chans", "1", "--latency-runs", "1")
    assert code == 0 and "parameters: 21,840" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "crnett"], "did you mean 'crnet'"),
        (["train", "--model", "mnist_cnnn"], "did you mean 'mnist_cnn'"),
        (["train", "--head", "linaer", "--dataset", "synthetic"], "did you mean 'linear'"),
        (["train", "--dataset", "digitz"], "did you mean 'digits'"),
        (["train", "--set", "optim.lrr=0.1"], "unknown key 'optim.lrr'; did you mean 'lr'"),
        (["train", "--set", "epochs=ten"], "key 'epochs'"),
        (["train", "--set", "nokeyvalue"], "KEY=VALUE"),
        (["train", "--dataset", "digits", "--image-size", "8"], "mnist_cnn cannot take"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, tmp_path, args, message):
    code, _, err = run(capsys, *args, "--out", str(tmp_path)) if args[0] == "train" else run(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_train_config_file_typo(capsys, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  name: mnist_cnn\n  haed: linear\nepochs: 1\n")
    code, _, err = run(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 2
    assert "run.yaml" in err and "unknown key 'model.haed'" in err and "did you mean 'head'" in err


def test_train_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err


def test_train_prints_metrics_and_writes_run(capsys, tmp_path):
    code, out, err = run(
        capsys, "train", "--dataset", "synthetic", "--set", "data.options={num_classes: 3, num_samples: 120, image_size: 28, channels: 1}",
        "--epochs", "1", "--quiet", "--out", str(tmp_path),
    )
    assert code == 0, err
    assert "test accuracy" in out
    assert (tmp_path / "result.json").is_file()


def test_unknown_flag_is_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "archlab.cli", "train", "--epochs-typo", "3"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
