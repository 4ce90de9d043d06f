"""The issue-16 benchmarks keep working: each --tiny run goes end to end and writes its result (no timing claims)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def _run(script: str, out: Path, *extra: str, timeout: int = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--tiny", "--threads", "1", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["tiny"] is True and "torch" in data["hardware"]
    return data


def test_speed_rule_tiny(tmp_path):
    data = _run("speed_rule.py", tmp_path / "speed_rule.json")
    assert set(data["cases"]) == {"mnist_cnn", "mini_vgg"}
    for c in data["cases"].values():
        assert c["rule_choice"] is True and c["conv_flop_share"] > 0.9  # conv nets: the rule picks channels_last
        assert c["contiguous_s"] > 0 and c["channels_last_s"] > 0 and c["faster"] in ("contiguous", "channels_last")
    assert data["threshold_conv_flop_share"] == 0.1


def test_efficiency_tiny(tmp_path):
    data = _run("efficiency.py", tmp_path / "efficiency.json")
    assert set(data["cases"]) == {"mnist_cnn", "mini_vgg", "resnet18_cifar"}
    for c in data["cases"].values():
        assert c["met"] is None  # a smoke run claims nothing
        assert c["efficiency"] > 0 and c["engine_images_per_s"] > 0 and c["limit_images_per_s"] > 0
        assert c["config"]["channels_last"] is True and c["efficiency_measure"] == "cpu_time"


def test_engine_rates_count_the_training_steps():
    """The engine's rate is measured between its own steps: one on_step per optimizer step."""
    from efficiency import engine_rates

    from archlab.train.config import TrainConfig
    from archlab.train.engine import prepare_data

    cfg = TrainConfig.model_validate({
        "data": {"name": "synthetic", "options": {"num_samples": 60, "image_size": 28, "channels": 1, "num_classes": 2}},
        "model": {"name": "mnist_cnn"}, "epochs": 2, "batch_size": 10, "device": "cpu", "threads": 1,
    })  # fmt: skip
    rates = engine_rates(cfg, prepare_data(cfg))
    assert set(rates) == {"median", "cpu", "mean", "end_to_end"} and all(v > 0 for v in rates.values())
    with pytest.raises(ValueError, match="steps per epoch"):
        engine_rates(cfg.model_copy(update={"batch_size": 40}), prepare_data(cfg))


@pytest.mark.slow
def test_seed002_study_tiny(tmp_path):
    data = _run("seed002_study.py", tmp_path / "seed002_study.json")
    assert data["runs"] == 2 and set(data["timing"]) == {"main_c88f8a6", "now", "now_contiguous", "main_1thread"}
    assert data["speedup"] > 0 and set(data["max_diff_vs_main"]) == set(data["timing"]) - {"main_c88f8a6"}
    for run in data["per_run"].values():
        assert run["now"]["channels_last"] is True and run["now_contiguous"]["channels_last"] is False
    assert set(data["tolerance"]["rounding_envelope_of_main"]) == {
        "max_abs_test_accuracy", "max_rel_test_loss", "max_rel_epoch1_train_loss"}
    # the same code with the same settings: exact (the emulated main pins one thread, so OMP_NUM_THREADS=1 is no change)
    if data["baseline"]["kind"].startswith("emulated"):
        assert data["max_diff_vs_main"]["main_1thread"] == {
            "max_abs_test_accuracy": 0.0, "max_rel_test_loss": 0.0, "max_rel_epoch1_train_loss": 0.0}


@pytest.mark.slow
def test_gpu_bench_tiny_runs_on_cpu(tmp_path):
    data = _run("gpu.py", tmp_path / "gpu.json", "--device", "cpu")
    assert data["device"] == "cpu" and set(data["efficiency"]) == {"mnist_cnn", "mini_vgg"}
    assert set(data["formats"]) == {"mini_vgg", "resnet18_cifar"}
    assert set(data["vmap_seeds"]) == {"mnist_cnn_2_seeds", "mini_vgg_2_seeds"}
    for v in data["vmap_seeds"].values():
        assert v["together_s"] > 0 and v["one_after_another_s"] > 0 and 0 <= v["max_abs_test_accuracy_diff"] <= 1
    assert data["study"]["runs"] == 6
