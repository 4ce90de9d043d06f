"""Tests of archlab.train.optim: optimizers, schedule shapes and exact resume."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from torch import nn

from archlab.errors import CheckpointError, ConfigError, UnknownNameError
from archlab.train.optim import (
    build_optimizer,
    build_scheduler,
    list_optimizers,
    list_schedulers,
)

LR = 0.1


def _opt(name: str = "sgd", **kw: Any) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    return build_optimizer(name, nn.Linear(3, 2).parameters(), lr=LR, **kw)


def test_build_optimizer_kinds_and_hyperparameters() -> None:
    assert list_optimizers() == ["adam", "adamw", "sgd"]
    sgd = _opt("sgd", momentum=0.8, nesterov=True, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (LR, 0.8, True, 1e-4)
    adamw = _opt("adamw", weight_decay=0.05, betas=(0.8, 0.99))
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["betas"] == (0.8, 0.99)
    assert adamw.param_groups[0]["weight_decay"] == 0.05
    assert type(_opt("adam")) is torch.optim.Adam


def test_build_optimizer_errors() -> None:
    with pytest.raises(UnknownNameError, match="adamw"):
        _opt("adamww")
    with pytest.raises(ConfigError, match="lr"):
        build_optimizer("adam", nn.Linear(2, 2).parameters(), lr=0.0)
    with pytest.raises(ConfigError, match="nesterov"):
        _opt("sgd", momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match="sgd only"):
        _opt("adam", nesterov=True)
    with pytest.raises(ConfigError, match="betas"):
        _opt("adam", betas=(0.9, 1.5))


def _lrs(sched: Any, epochs: int, spe: int, metrics: list[float] | None = None) -> list[float]:
    """LR used by every optimizer step of an epochs x spe run."""
    out = []
    for e in range(epochs):
        for _ in range(spe):
            out.append(sched.lr)
            sched.optimizer.step()
            sched.step_batch()
        sched.step_epoch(None if metrics is None else metrics[e])
    return out


def test_cosine_restarts_is_smooth_and_restarts_every_period() -> None:
    opt = _opt()
    sched = build_scheduler("cosine_restarts", opt, epochs=6, steps_per_epoch=4, period=2,
                            eta_min=0.001)
    lrs = _lrs(sched, 6, 4)
    T = 2 * 4  # period in optimizer steps
    expected = [0.001 + (LR - 0.001) * (1 + math.cos(math.pi * (i % T) / T)) / 2
                for i in range(24)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[1] < lrs[0]  # falls within the first epoch (per step, not per epoch)
    assert lrs[8] == pytest.approx(LR) and lrs[16] == pytest.approx(LR)  # restarts


def test_cosine_restarts_default_period_and_t_mult() -> None:
    sched = build_scheduler("cosine_restarts", _opt(), epochs=40, steps_per_epoch=1)
    lrs = _lrs(sched, 40, 1)
    assert lrs[10] == pytest.approx(LR) and lrs[20] == pytest.approx(LR)  # seed 000: 10 epochs
    sched = build_scheduler("cosine_restarts", _opt(), epochs=7, steps_per_epoch=1,
                            period=1, T_mult=2)
    lrs = _lrs(sched, 7, 1)
    restarts = [i for i, v in enumerate(lrs) if v == pytest.approx(LR)]
    assert restarts == [0, 1, 3]  # cycles of 1, 2, 4 epochs


def test_plateau_mode_follows_the_monitored_metric() -> None:
    opt = _opt()
    sched = build_scheduler("plateau", opt, epochs=10, steps_per_epoch=2, monitor="accuracy",
                            patience=2)
    assert sched.monitor == "accuracy"
    for acc in [0.5, 0.6, 0.7, 0.8]:  # improving accuracy: no reduction
        sched.step_epoch(acc)
    assert sched.lr == pytest.approx(LR)
    for _ in range(3):  # flat for patience + 1 epochs -> x 0.1
        sched.step_epoch(0.8)
    assert sched.lr == pytest.approx(LR * 0.1)
    sched.step_batch()  # per-epoch schedule: batch steps do not move it
    assert sched.lr == pytest.approx(LR * 0.1)

    loss_sched = build_scheduler("plateau", _opt(), epochs=10, steps_per_epoch=2, patience=1)
    for v in [1.0, 0.9, 0.8, 0.7]:  # default monitor is the validation loss (min)
        loss_sched.step_epoch(v)
    assert loss_sched.lr == pytest.approx(LR)
    with pytest.raises(ConfigError, match="validation"):
        loss_sched.step_epoch(None)


def test_plateau_accepts_an_explicit_mode_that_agrees() -> None:
    sched = build_scheduler("plateau", _opt(), epochs=5, steps_per_epoch=1, mode="max",
                            patience=0)
    sched.step_epoch(0.5)
    sched.step_epoch(0.6)  # higher is better under mode="max"
    assert sched.lr == pytest.approx(LR)
    sched.step_epoch(0.6)
    assert sched.lr == pytest.approx(LR * 0.1)
    build_scheduler("plateau", _opt(), epochs=5, steps_per_epoch=1, monitor="loss", mode="min")
    with pytest.raises(ConfigError, match="contradicts"):
        build_scheduler("plateau", _opt(), epochs=5, steps_per_epoch=1, monitor="accuracy",
                        mode="min")
    with pytest.raises(ConfigError, match="mode"):
        build_scheduler("plateau", _opt(), epochs=5, steps_per_epoch=1, mode="up")


def test_step_and_none() -> None:
    sched = build_scheduler("step", _opt(), epochs=6, steps_per_epoch=3, step_size=2, gamma=0.5)
    lrs = _lrs(sched, 6, 3)
    assert lrs == pytest.approx([LR] * 6 + [LR / 2] * 6 + [LR / 4] * 6)
    none = build_scheduler("none", _opt(), epochs=3, steps_per_epoch=3)
    assert _lrs(none, 3, 3) == [LR] * 9


def test_onecycle_peaks_at_optimizer_lr_and_survives_extra_steps() -> None:
    sched = build_scheduler("onecycle", _opt(), epochs=4, steps_per_epoch=5)
    lrs = _lrs(sched, 4, 5)
    assert len(lrs) == 20
    assert max(lrs) == pytest.approx(LR)  # max_lr defaults to the optimizer's lr
    assert lrs[0] == pytest.approx(LR / 25)
    assert lrs[-1] == pytest.approx(LR / 25 / 1e4)
    sched.step_batch()  # one step past the end keeps the final value instead of raising
    assert sched.lr == pytest.approx(LR / 25 / 1e4)
    custom = build_scheduler("onecycle", _opt(), epochs=2, steps_per_epoch=5, max_lr=0.5)
    assert max(_lrs(custom, 2, 5)) == pytest.approx(0.5)


def test_scheduler_errors() -> None:
    assert list_schedulers() == ["cosine_restarts", "none", "onecycle", "plateau", "step"]
    with pytest.raises(UnknownNameError, match="cosine_restarts"):
        build_scheduler("cosine_restart", _opt(), epochs=2, steps_per_epoch=2)
    with pytest.raises(ConfigError, match="'periode'"):
        build_scheduler("cosine_restarts", _opt(), epochs=2, steps_per_epoch=2, periode=3)
    with pytest.raises(ConfigError, match="period"):
        build_scheduler("cosine_restarts", _opt(), epochs=2, steps_per_epoch=2, period=0)
    with pytest.raises(ConfigError, match="epochs"):
        build_scheduler("step", _opt(), epochs=0, steps_per_epoch=2)
    with pytest.raises(UnknownNameError, match="metric"):
        build_scheduler("plateau", _opt(), epochs=2, steps_per_epoch=2, monitor="acc")


CASES = {
    "none": {},
    "cosine_restarts": {"period": 2, "T_mult": 2},
    "plateau": {"patience": 1, "monitor": "loss"},
    "step": {"step_size": 2},
    "onecycle": {},
}


def _roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", list(CASES))
def test_resume_gives_the_same_schedule(name: str) -> None:
    epochs, spe, cut = 8, 3, 3
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]  # plateau reduces mid-run

    def fresh() -> Any:
        opt = _opt("sgd")
        return build_scheduler(name, opt, epochs=epochs, steps_per_epoch=spe, **CASES[name])

    full = _lrs(fresh(), epochs, spe, metrics)

    first = fresh()
    head = _lrs(first, cut, spe, metrics[:cut])
    saved = _roundtrip({"opt": first.optimizer.state_dict(), "sched": first.state_dict()})

    resumed = fresh()  # rebuilt exactly as a new process would
    resumed.optimizer.load_state_dict(saved["opt"])
    resumed.load_state_dict(saved["sched"])
    assert (resumed.batch_steps, resumed.epochs_done) == (cut * spe, cut)
    tail = _lrs(resumed, epochs - cut, spe, metrics[cut:])
    assert head + tail == full
    if name != "none":
        assert len(set(full)) > 1  # the schedule really moves


def test_load_state_of_another_schedule_is_refused() -> None:
    a = build_scheduler("step", _opt(), epochs=2, steps_per_epoch=2)
    b = build_scheduler("cosine_restarts", _opt(), epochs=2, steps_per_epoch=2)
    with pytest.raises(CheckpointError, match="'step'"):
        b.load_state_dict(a.state_dict())
