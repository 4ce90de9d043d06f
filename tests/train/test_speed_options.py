"""Speed options change time, not results: each is trained with and without and the metrics compared.

- ``eval_batch_size`` and ``workers="auto"``-style thread pinning are exact (same numbers);
- ``channels_last`` changes the convolution algorithm, so it is equal up to float rounding.
"""

import pytest

from archlab.train.config import TrainConfig
from archlab.train.engine import prepare_data, train

BASE = dict(
    data={"name": "synthetic", "options": {"num_samples": 120, "image_size": 28, "channels": 1, "num_classes": 3},
          "augment": "spinal_mnist"},
    model={"name": "mnist_cnn"},
    epochs=2, batch_size=16, seed=5, device="cpu", threads=1, optim={"name": "adam", "lr": 0.003},
)


def _run(**over):
    cfg = TrainConfig.model_validate({**BASE, **over})
    return train(cfg, splits=prepare_data(cfg))


def test_eval_batch_size_is_exact():
    a, b = _run(eval_batch_size=512), _run(eval_batch_size=7)
    assert [(h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in a.history] == [
        (h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in b.history
    ]
    assert a.test_predictions == b.test_predictions and a.test["accuracy"] == b.test["accuracy"]
    for ha, hb in zip(a.history, b.history):  # the loss is summed per batch: order of float64 adds only
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-6)


def test_same_config_same_numbers():
    a, b = _run(), _run()
    assert a.history == [dict(h, seconds=a.history[i]["seconds"]) for i, h in enumerate(b.history)]
    assert a.test == b.test and a.test_predictions == b.test_predictions


def test_channels_last_equals_up_to_rounding():
    a, b = _run(), _run(channels_last=True)
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-3)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-3)
    assert a.test["loss"] == pytest.approx(b.test["loss"], rel=1e-3)
    agree = sum(p == q for p, q in zip(a.test_predictions, b.test_predictions)) / len(a.test_predictions)
    assert agree >= 0.95
