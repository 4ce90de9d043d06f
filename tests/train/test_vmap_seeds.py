"""Seeds trained together with torch.func equal the same seeds trained one after another (CPU)."""

import pytest
import torch
from safetensors.torch import load_file

from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.engine import BEST_WEIGHTS, prepare_data, train
from archlab.train.vmap_seeds import train_seeds

SEEDS = [0, 3, 7]


def _config(**over):
    d = dict(
        data={"name": "synthetic", "options": {"num_samples": 96, "image_size": 28, "channels": 1, "num_classes": 3},
              "augment": "cifar"},
        model={"name": "mnist_cnn", "head": "linear", "kwargs": {"drop_rate": 0.0}},
        epochs=3, batch_size=16, optim={"name": "adam", "lr": 0.003}, scheduler={"name": "cosine_restarts", "kwargs": {"period": 2}},
        device="cpu", threads=1,
    )
    d.update(over)
    return TrainConfig.model_validate(d)


def test_vmap_seeds_equal_sequential_runs(tmp_path):
    config = _config()
    splits = prepare_data(config)
    results, best = train_seeds(config, SEEDS, splits=splits)
    assert [r.config["seed"] for r in results] == SEEDS
    for k, seed in enumerate(SEEDS):
        ref = train(config.model_copy(update={"seed": seed}), tmp_path / f"s{seed}", splits=splits)
        got = results[k]
        assert got.best_epoch == ref.best_epoch
        for a, b in zip(got.history, ref.history):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (seed, a["epoch"], key)
        assert got.test["loss"] == pytest.approx(ref.test["loss"], rel=1e-4, abs=1e-5)
        assert got.test["accuracy"] == ref.test["accuracy"]
        assert got.test_predictions == ref.test_predictions
        weights = load_file(str(tmp_path / f"s{seed}" / BEST_WEIGHTS))
        for name, w in weights.items():
            torch.testing.assert_close(best[name][k], w, rtol=1e-4, atol=1e-5, msg=f"seed {seed} {name}")
    # the seeds really differ (their own init, order and augmentation streams)
    assert results[0].history[0]["train_loss"] != results[1].history[0]["train_loss"]


@pytest.mark.parametrize(
    "over, match",
    [
        ({"scheduler": {"name": "plateau"}}, "plateau"),
        ({"early_stopping_patience": 2}, "early"),
        ({"grad_clip": 1.0}, "clip"),
    ],
)
def test_vmap_seeds_refuses_per_seed_control(over, match):
    with pytest.raises(ConfigError, match=match):
        train_seeds(_config(**over), [0, 1])


def test_vmap_seeds_refuses_batch_norm():
    cfg = _config(model={"name": "resnet18", "kwargs": {}}, data={"name": "synthetic", "options": {
        "num_samples": 40, "image_size": 32, "channels": 3, "num_classes": 2}})
    with pytest.raises(ConfigError, match="batch norm"):
        train_seeds(cfg, [0, 1])
