"""Speed options change time, not results; ``auto`` resolves by a fixed rule and is recorded.

- ``eval_batch_size`` and a repeated run are exact (same numbers);
- ``channels_last`` changes the convolution algorithm, so it equals the contiguous format only up to
  float rounding: 2 epochs of ``mnist_cnn`` agree to ``rel=1e-3`` in every loss and in >= 95 % of
  the test predictions (measured differences are ~1e-6 relative; the bound leaves room for other
  oneDNN versions while still catching a wrong layout, which changes losses at the 1e-1 level);
- ``auto`` is resolved before the run by :func:`archlab.train.speed.resolve_speed_options`
  (deterministic, no timing), and the stored config says ``true``/``false``;
- the timed probe that the rule was derived with picks the faster format.
"""

import json

import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from archlab import create_model
from archlab.train.config import TrainConfig
from archlab.train.engine import prepare_data, train
from archlab.train.speed import (
    CONV_SHARE_CHANNELS_LAST,
    conv_flop_share,
    needs_resolving,
    resolve_speed_options,
)

BASE = dict(
    data={"name": "synthetic", "options": {"num_samples": 120, "image_size": 28, "channels": 1, "num_classes": 3},
          "augment": "spinal_mnist"},
    model={"name": "mnist_cnn"},
    epochs=2, batch_size=16, seed=5, device="cpu", threads=1, optim={"name": "adam", "lr": 0.003},
)


def _cfg(**over):
    return TrainConfig.model_validate({**BASE, **over})


def _run(**over):
    cfg = _cfg(**over)
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
    a, b = _run(), _run()  # the default: channels_last auto (-> true for mnist_cnn)
    assert a.history == [dict(h, seconds=a.history[i]["seconds"]) for i, h in enumerate(b.history)]
    assert a.test == b.test and a.test_predictions == b.test_predictions


def test_channels_last_equals_up_to_rounding():
    a, b = _run(channels_last=False), _run(channels_last=True)
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-3)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-3)
    assert a.test["loss"] == pytest.approx(b.test["loss"], rel=1e-3)
    agree = sum(p == q for p, q in zip(a.test_predictions, b.test_predictions)) / len(a.test_predictions)
    assert agree >= 0.95


@pytest.mark.parametrize("optim", [{"name": "adam", "lr": 0.003}, {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
                                   {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}])
def test_fused_optimizer_equals_up_to_rounding(optim):
    """The fused kernel computes the same update: 2 epochs agree to rel=1e-3 in every loss (measured
    ~1e-6: a fused multiply-add here and there), and the optimizer really is the fused one."""
    from archlab.train.optim import build_optimizer

    a, b = _run(optim=optim, fused_optimizer=False), _run(optim=optim, fused_optimizer=True)
    assert a.config["fused_optimizer"] is False and b.config["fused_optimizer"] is True
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-3)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-3)
    assert a.test["loss"] == pytest.approx(b.test["loss"], rel=1e-3)
    opt = build_optimizer(optim["name"], [nn.Parameter(torch.zeros(3))], lr=0.1, fused=True)
    assert opt.defaults["fused"] is True


def test_config_recorded_before_fused_optimizer_means_unfused():
    """A config stored before ``fused_optimizer`` existed ran the per-tensor loop: it normalises to
    ``false`` (so it still matches that computation), never to today's ``auto``/``true``."""
    from archlab.train.engine import normalize_config

    old = resolve_speed_options(_cfg(fused_optimizer=False)).model_dump(mode="json")
    del old["fused_optimizer"]
    assert normalize_config(old)["fused_optimizer"] is False


def test_defaults_are_auto_and_resolve_to_booleans():
    cfg = _cfg()
    assert (cfg.channels_last, cfg.compile, cfg.amp, cfg.fused_optimizer) == ("auto",) * 4 and needs_resolving(cfg)
    resolved = resolve_speed_options(cfg, prepare_data(cfg))
    assert resolved.channels_last is True  # mnist_cnn: convolutions are ~97 % of its FLOPs
    assert resolved.compile is False and resolved.amp is False  # CPU
    assert not needs_resolving(resolved)
    assert resolve_speed_options(resolved) == resolved  # idempotent, no data needed once resolved
    assert resolve_speed_options(cfg) == resolved  # deterministic: loads the data itself, same answer
    assert resolved.fused_optimizer is True  # CPU has torch's fused Adam
    explicit = _cfg(channels_last=False, compile=False, amp=True, fused_optimizer=False)
    assert resolve_speed_options(explicit) == explicit  # explicit choices are kept
    assert TrainConfig.model_validate(resolved.model_dump(mode="json")) == resolved


def test_bad_speed_option_names_the_key():
    with pytest.raises(ValidationError, match="channels_last"):
        _cfg(channels_last="fast")
    with pytest.raises(ValidationError, match="compile"):
        _cfg(compile="sometimes")


def test_train_records_the_resolved_choice(tmp_path):
    cfg = _cfg(epochs=1)
    r = train(cfg, tmp_path / "run")
    assert r.config["channels_last"] is True and r.config["compile"] is False and r.config["amp"] is False
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["channels_last"] is True and stored["amp"] is False
    assert r.provenance["speed"] == {"channels_last": True, "fused_optimizer": True, "compile": False, "amp": False,
                                     "cudnn_benchmark": False}
    again = train(cfg, tmp_path / "run")  # the same auto config finds its finished result
    assert again.test == r.test


def test_conv_flop_share_of_the_rule():
    mnist = create_model("mnist_cnn", num_classes=10, in_chans=1, input_size=(28, 28))
    assert conv_flop_share(mnist, (1, 28, 28)) > 0.9
    dense = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    assert conv_flop_share(dense, (1, 28, 28)) == 0.0 < CONV_SHARE_CHANNELS_LAST


def test_compile_cache_folder_is_persistent(tmp_path, monkeypatch):
    from archlab.train.run import enable_compile_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = enable_compile_cache()
    assert folder == str(tmp_path / ".cache" / "archlab" / "inductor") and (tmp_path / ".cache" / "archlab" / "inductor").is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert enable_compile_cache() == str(tmp_path / "mine")  # a user's own setting wins


def test_rule_exception_rotation_conv_reading_the_image():
    """8-rotation rotation-invariant first conv: contiguous (measured 0.93x in channels_last); deeper: channels_last."""
    from archlab.train.speed import channels_last_for

    def vgg(**kw):
        return create_model("mini_vgg", num_classes=10, in_chans=3, input_size=(32, 32), **kw)

    assert channels_last_for(vgg(), (3, 32, 32)) is True
    assert channels_last_for(vgg(rot_convs=4, rotations=8), (3, 32, 32)) is False
    assert channels_last_for(vgg(rot_convs=3, rotations=8), (3, 32, 32)) is True
    assert channels_last_for(vgg(rot_convs=4, rotations=4), (3, 32, 32)) is True
    cfg = _cfg(data={"name": "synthetic", "options": {"num_samples": 60, "image_size": 32, "channels": 3, "num_classes": 3}},
               model={"name": "mini_vgg", "kwargs": {"rot_convs": 4, "rotations": 8}})
    assert resolve_speed_options(cfg).channels_last is False


def test_channels_last_keeps_the_dropout_masks_of_mini_vgg():
    """mini_vgg drops out 4-d conv features: channels_last must not change the masks (rounding only).

    Without :func:`archlab.train.run.layout_stable_dropout` the masks are filled in memory order
    and differ; the losses then move by ~1e-2 after one epoch instead of ~1e-6.
    """
    over = dict(data={"name": "synthetic", "options": {"num_samples": 120, "image_size": 32, "channels": 3,
                                                       "num_classes": 3}, "augment": "cifar"},
                model={"name": "mini_vgg"}, epochs=1, batch_size=32)
    a, b = _run(channels_last=False, **over), _run(channels_last=True, **over)
    assert a.history[0]["train_loss"] == pytest.approx(b.history[0]["train_loss"], rel=1e-4)
    assert a.test["loss"] == pytest.approx(b.test["loss"], rel=1e-4)
    assert a.test_predictions == b.test_predictions
