"""The engine: determinism, exact resume, val-only selection, NaN handling, early stopping."""

import pytest
import torch

from archlab.errors import TrainingFailed
from archlab.train import engine
from archlab.train import task as task_module
from archlab.train.config import TrainConfig
from archlab.train.task import ClassificationTask


def small_config(**kw):
    base = {
        "data": {
            "name": "synthetic",
            "options": {"num_classes": 3, "num_samples": 240, "image_size": 28, "channels": 1, "seed": 1},
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        },
        "model": {"name": "mnist_cnn"},
        "epochs": 3,
        "batch_size": 32,
        "seed": 5,
    }
    for k, v in kw.items():
        base[k] = v
    return TrainConfig.model_validate(base)


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_same_config_same_seed_same_metrics():
    a = engine.train(small_config())
    b = engine.train(small_config())
    assert _strip(a.history) == _strip(b.history)
    assert a.test == b.test
    assert a.test_predictions == b.test_predictions
    c = engine.train(small_config(seed=6))
    assert _strip(c.history) != _strip(a.history)


class Kill(Exception):
    pass


@pytest.mark.parametrize("kill_at", [4, 8, 14])
def test_resume_equals_uninterrupted(tmp_path, kill_at):
    # 240 samples -> 144 train -> 5 steps/epoch; checkpoints every 3 steps and at epoch ends
    cfg = small_config(checkpoint_every_steps=3, data={**small_config().data.model_dump(), "augment": "spinal_mnist"})
    full = engine.train(cfg, tmp_path / "full")

    def killer(step):
        if step == kill_at:
            raise Kill()

    with pytest.raises(Kill):
        engine.train(cfg, tmp_path / "killed", on_step=killer)
    assert not (tmp_path / "killed" / "result.json").exists()
    resumed = engine.train(cfg, tmp_path / "killed")
    assert _strip(resumed.history) == _strip(full.history)
    assert resumed.test == full.test
    assert resumed.test_predictions == full.test_predictions
    a = torch.load(tmp_path / "full" / "checkpoint" / "train_state.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint" / "train_state.pt", weights_only=True)
    assert a["progress"]["global_step"] == b["progress"]["global_step"]


def test_finished_run_is_not_retrained(tmp_path):
    first = engine.train(small_config(epochs=1), tmp_path)
    calls = []
    again = engine.train(small_config(epochs=1), tmp_path, on_step=calls.append)
    assert calls == []
    assert again.test == first.test


def test_test_split_evaluated_once_with_best_val_weights(monkeypatch):
    seen = []
    real = ClassificationTask.evaluate

    def spy(self, model, loader, *a, **kw):
        seen.append(loader.dataset)
        return real(self, model, loader, *a, **kw)

    monkeypatch.setattr(ClassificationTask, "evaluate", spy)
    cfg = small_config()
    splits = engine.prepare_data(cfg)
    res = engine.train(cfg, splits=splits)
    assert sum(d is splits.test for d in seen) == 1 and seen[-1] is splits.test
    assert all(d is splits.val for d in seen[:-1]) and len(seen) == cfg.epochs + 1
    best = max(range(cfg.epochs), key=lambda i: res.history[i]["val_accuracy"])
    assert res.best_epoch == best + 1
    assert res.val["accuracy"] == res.history[best]["val_accuracy"]


def test_nan_loss_fails_clearly(monkeypatch):
    real = task_module.build_loss

    def nan_loss(name, **kw):
        inner = real(name, **kw)
        count = {"n": 0}

        def f(logits, y):
            count["n"] += 1
            out = inner(logits, y)
            return out * float("nan") if count["n"] > 3 else out

        return f

    monkeypatch.setattr(task_module, "build_loss", nan_loss)
    with pytest.raises(TrainingFailed, match="loss became nan"):
        engine.train(small_config())


def test_early_stopping_reads_val():
    cfg = small_config(epochs=6, early_stopping_patience=1, optim={"name": "sgd", "lr": 1e-12, "momentum": 0.0})
    res = engine.train(cfg)
    # with a negligible learning rate val accuracy cannot improve after the first epoch
    assert res.epochs_run == 2
    assert res.best_epoch == 1


def test_result_has_provenance_and_sizes(tmp_path):
    res = engine.train(small_config(epochs=1), tmp_path)
    assert res.params == 5_280 - 260 + 260 + 16_560 - 50 * 10 - 10 + 50 * 3 + 3
    assert res.flops > 0
    assert res.provenance["torch"] == torch.__version__
    assert (tmp_path / "result.json").is_file() and (tmp_path / "config.json").is_file()
    assert len(res.test_predictions) == len(res.test_targets) > 0


def test_mnist_cnn_on_digits_reaches_95_percent():
    # the Foundation acceptance run (make demo's original job): mnist_cnn on digits at 28 px
    cfg = TrainConfig.model_validate(
        {"data": {"name": "digits", "options": {"image_size": 28}}, "model": {"name": "mnist_cnn"}, "epochs": 12}
    )
    res = engine.train(cfg)
    assert res.test["accuracy"] >= 0.95
