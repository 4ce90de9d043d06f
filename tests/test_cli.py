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


# --- issue 17: errors that point at what the user wrote -------------------------------------

SYNTH = "data.options={num_classes: 3, num_samples: 90, image_size: 28, channels: 1}"


def test_bad_set_value_is_blamed_on_the_set_flag_not_the_file(capsys, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 1\noptim: {name: adam}\n")
    code, _, err = run(capsys, "train", "--config", str(cfg), "--set", "optim.lr=abc", "--out", str(tmp_path / "r"))
    assert code == 2
    assert "--set optim.lr: key 'optim.lr'" in err and "'abc'" in err and "run.yaml" not in err
    code, _, err = run(capsys, "train", "--config", str(cfg), "--epochs", "0", "--out", str(tmp_path / "r"))
    assert code == 2 and "--epochs: key 'epochs'" in err
    cfg.write_text("epochs: zero\n")  # the file's own mistakes stay the file's
    code, _, err = run(capsys, "train", "--config", str(cfg), "--set", "optim.lr=0.1", "--out", str(tmp_path / "r"))
    assert code == 2 and f"{cfg}: key 'epochs'" in err and "--set" not in err


def test_image_folder_without_root_names_the_flag(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "image_folder", "--out", str(tmp_path / "r"))
    assert code == 2 and "--data-root" in err and "root=" not in err
    code, _, err = run(capsys, "train", "--dataset", "image_folder", "--data-root", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "r"))
    assert code == 2 and "is not a folder" in err and "--data-root" in err


def test_patches_without_a_size_names_the_yaml_key(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "synthetic", "--set", SYNTH, "--head", "ncp",
                       "--set", "model.head_kwargs={sequence: patches}", "--out", str(tmp_path / "r"))
    assert code == 2 and "head_kwargs.patch_size" in err and "mode=" not in err


def test_failed_download_exits_1(capsys, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(capsys, "data", "download", "cifar10", "--root", str(tmp_path), "--mirror", f"http://127.0.0.1:{port}")
    assert code == 1 and "cannot reach" in err
    code, _, _ = run(capsys, "data", "download", "cifarr10", "--root", str(tmp_path))
    assert code == 2  # a typo stays a usage error


def test_resume_with_another_head_points_at_no_resume(capsys, tmp_path):
    out = str(tmp_path / "r")
    args = ["train", "--dataset", "synthetic", "--set", SYNTH, "--epochs", "1", "-q", "--out", out]
    assert run(capsys, *args, "--head", "linear")[0] == 0
    code, _, err = run(capsys, *args, "--head", "mlp")
    assert code == 2 and "--no-resume" in err and "another --out" in err and "strict=False" not in err
    code, text, err = run(capsys, *args, "--head", "mlp", "--no-resume")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "result.json").read_text())["config"]["model"]["head"] == "mlp"


# --- issue 17: templates and schemas --------------------------------------------------------


def test_print_config_is_a_valid_commented_template_of_the_defaults(capsys):
    import yaml

    from archlab.train.config import TrainConfig

    code, text, _ = run(capsys, "train", "--print-config")
    assert code == 0
    from archlab._cli.schema import RUN_TEMPLATE_DATA

    # the defaults, but for the image size the default model needs on the default data
    assert TrainConfig.model_validate(yaml.safe_load(text)) == TrainConfig(data=RUN_TEMPLATE_DATA)
    assert "# the embedded dataset: runs anywhere with no download" in text  # the source's reason comments
    for name in TrainConfig.model_fields:
        assert f"\n{name}:" in text, name


def test_a_train_block_in_a_run_file_gets_the_flat_hint(capsys, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: {name: mnist_cnn}\ntrain: {epochs: 3, optim: {lr: 0.01}}\n")
    code, _, err = run(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 2 and "run file is flat" in err and "epochs, optim" in err and "--print-config" in err
    cfg.write_text("name: s\nseeds: 3\nbaseline: a\nvariants: {a: {}}\n")
    code, _, err = run(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 2 and "study file" in err and "archlab study run" in err


def test_a_flat_study_file_gets_the_train_block_hint(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndata: {name: digits}\nepochs: 3\nseeds: 2\nbaseline: a\nvariants: {a: {}}\n")
    code, _, err = run(capsys, "study", "run", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and "epochs belong under `train:`" in err


def test_study_new_writes_a_template_that_validates(capsys, tmp_path, monkeypatch):
    from archlab.study.config import load_study

    monkeypatch.chdir(tmp_path)
    code, text, _ = run(capsys, "study", "new", "heads")
    assert code == 0 and "heads.yaml" in text
    study = load_study(tmp_path / "heads.yaml")
    assert study.name == "heads" and study.baseline == "linear" and set(study.variants) == {"linear", "mlp"}
    assert len(study.grid()) == 6 and study.train["epochs"] == 5
    assert load_study(tmp_path / "heads.yaml", smoke=True).dataset_configs()  # --smoke works too
    code, _, err = run(capsys, "study", "new", "heads")
    assert code == 2 and "--force" in err
    assert run(capsys, "study", "new", "bad/name")[0] == 2


def test_committed_schema_docs_equal_the_generated_ones():
    from pathlib import Path

    from archlab._cli.schema import render_docs

    docs = Path(__file__).resolve().parents[1] / "docs"
    for name, text in render_docs().items():
        assert (docs / name).read_text() == text, f"docs/{name} is stale: python -m archlab._cli.schema docs"


def _all_commands():
    import typer

    from archlab.cli import app

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path", [p for p, _ in _all_commands()], ids=lambda p: " ".join(p) or "archlab")
def test_help_shows_no_bool_type(capsys, path):
    code, text, _ = run(capsys, *path, "--help")
    assert code == 0 and "<bool>" not in text


def test_every_train_option_has_help_text():
    cmd = dict((" ".join(p), c) for p, c in _all_commands())["train"]
    missing = [p.name for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert not missing, missing


def test_cli_modules_do_not_import_the_entry_point():
    """archlab/_cli/* take their consoles from _cli/console.py: no cli.py <-> _cli import circle."""
    import ast
    from pathlib import Path

    import archlab._cli

    for path in Path(archlab._cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert "archlab.cli" not in names, f"{path.name} imports archlab.cli"


def test_command_entry_runs_exit_handlers_and_keeps_the_exit_code():
    """`archlab` (cli.entry) skips the interpreter's module teardown, not the exit handlers or the code."""
    code = ("import atexit, sys; atexit.register(lambda: print('exit handler ran', flush=True)); "
            "sys.argv = ['archlab', *sys.argv[1:]]; from archlab.cli import entry; entry()")
    ok = subprocess.run([sys.executable, "-c", code, "models", "mini*"], capture_output=True, text=True)
    assert ok.returncode == 0 and "mini_vgg" in ok.stdout and ok.stdout.rstrip().endswith("exit handler ran")
    bad = subprocess.run([sys.executable, "-c", code, "study", "run", "/no/such/study.yaml"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "exit handler ran" in bad.stdout


def test_plain_train_with_the_defaults_runs(capsys, tmp_path, monkeypatch):
    """Issue 26.1: `archlab train --epochs 1 --out runs/x` with the defaults (mnist_cnn on digits)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "--epochs", "1", "--out", "runs/x")
    assert code == 0, err
    assert "mnist_cnn (head default) on digits" in out and "test accuracy" in out
    cfg = json.loads((tmp_path / "runs/x/result.json").read_text())["config"]
    assert cfg["data"]["name"] == "digits" and cfg["data"]["options"] == {"image_size": 28}


def test_a_named_dataset_is_not_resized_behind_the_users_back(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(tmp_path))
    assert code == 2
    assert "mnist_cnn cannot take 1x8x8 inputs" in err and "image_size=28" in err and "--image-size 28" in err


@pytest.mark.parametrize("flag", ["--data-root", "--root"])
def test_train_and_download_share_the_data_root_flag(capsys, tmp_path, flag):
    """Issue 26.8: one name (--data-root) for one thing in both commands, --root kept as the alias."""
    code, _, err = run(capsys, "train", "--dataset", "mnist", flag, str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert code == 2 and f"{tmp_path}/mnist/" in err and f"--data-root {tmp_path}" in err
    code, _, err = run(capsys, "data", "download", "minst", flag, str(tmp_path))
    assert code == 2 and "minst" in err and "No such option" not in err


def test_readme_states_the_on_disk_layout_of_every_dataset():
    from pathlib import Path

    from archlab.data import list_datasets
    from archlab.data.datasets import dataset_loader

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    layout = readme.split("On-disk layout under the data root", 1)[1].split("\n\n", 2)[1]
    assert "`ROOT/mnist/*.gz`" in layout
    for name in list_datasets():
        if name in ("digits", "synthetic", "synthetic_masks"):  # generated or bundled: no files
            continue
        if not dataset_loader(name).__module__.startswith("archlab."):  # a test's own dataset
            continue
        assert f"`{name}`" in layout, name
