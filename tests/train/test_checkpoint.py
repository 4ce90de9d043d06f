"""Tests of archlab.train.checkpoint: round trips, RNG, bad checkpoints, atomic writes."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from archlab.errors import CheckpointError
from archlab.train import checkpoint as ckpt
from archlab.train.checkpoint import (
    MODEL_FILE,
    capture_rng_state,
    load_checkpoint,
    load_state_dict_file,
    restore_rng_state,
    save_checkpoint,
)


class Net(nn.Module):
    """Conv + BatchNorm (int64 buffer) + Linear, with a tied and a non-contiguous tensor."""

    def __init__(self, hidden: int = 8, tied: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, hidden)
        self.out = nn.Linear(hidden, 4)
        if tied:
            self.back = nn.Linear(4, hidden, bias=False)
            self.back.weight = self.fc.weight  # tied (shared storage)
        self.register_buffer("proj", torch.randn(4, 4).t())  # non-contiguous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).mean(dim=(2, 3)) @ self.proj  # (B, 4)
        return self.out(torch.relu(self.fc(h)))  # (B, 4)


def _trained(seed: int = 0) -> tuple[Net, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(6, 1, 5, 5), torch.randint(0, 4, (6,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


CONFIG = {"model": "net", "lr": 0.01, "epochs": 3, "path": Path("/data/x")}


def _state(opt: torch.optim.Optimizer) -> dict:
    return {"optimizer": opt.state_dict(), "epoch": 3, "step": 9, "best": 0.75,
            "history": [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}]}


def test_round_trip_gives_identical_outputs_and_optimizer_state(tmp_path: Path) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path / "ck", model=model, config=CONFIG, state=_state(opt))
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "COMPLETE", "config.json", "model.safetensors", "train_state.pt"]
    text = (tmp_path / "ck" / "config.json").read_text()
    assert list(json.loads(text)) == sorted(CONFIG)  # sorted keys
    torch.load(tmp_path / "ck" / "train_state.pt", weights_only=True)  # plain data only

    fresh, _ = _trained(1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    x = torch.randn(2, 1, 5, 5)
    fresh.eval(), model.eval()
    assert not torch.equal(fresh(x), model(x))
    config, state = load_checkpoint(tmp_path / "ck", model=fresh)
    assert torch.equal(fresh(x), model(x))
    assert fresh.back.weight is fresh.fc.weight  # tying survives loading
    assert config == {**CONFIG, "path": "/data/x"}
    assert state["history"] == _state(opt)["history"] and state["step"] == 9
    assert "checkpoint_id" not in state

    fresh_opt.load_state_dict(state["optimizer"])
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name, v in a["state"][k].items():
            assert torch.equal(v, b["state"][k][name]), (k, name)


def test_rng_restore_repeats_random_numbers() -> None:
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    state = capture_rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(2))
    restore_rng_state(state)
    second = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(first[0], second[0])
    assert first[1] == second[1]
    assert np.array_equal(first[2], second[2])
    with pytest.raises(CheckpointError, match="RNG"):
        restore_rng_state({"torch": "nope"})


def test_rng_state_survives_a_checkpoint(tmp_path: Path) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path, model=model, config=CONFIG, state=_state(opt))  # captures rng
    expected = (torch.rand(4), random.random(), np.random.rand(3))
    torch.manual_seed(999), random.seed(999), np.random.seed(999)
    _, state = load_checkpoint(tmp_path, model=Net())
    restore_rng_state(state["rng"])
    assert torch.equal(torch.rand(4), expected[0])
    assert random.random() == expected[1]
    assert np.array_equal(np.random.rand(3), expected[2])


class Other(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 16)  # other shape
        self.head = nn.Linear(16, 4)  # other name


def test_wrong_architecture_is_explained(tmp_path: Path) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path, model=model, config=CONFIG, state=_state(opt))
    other = Other()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, model=other)
    msg = str(info.value)
    assert "missing keys" in msg and "head.weight" in msg
    assert "unexpected keys" in msg and "bn.running_mean" in msg
    assert "fc.weight: checkpoint (8, 4) vs model (16, 4)" in msg
    assert "model='net'" in msg and "strict=False" in msg
    before = other.fc.weight.clone()
    load_checkpoint(tmp_path, model=other, strict=False)  # loads what fits
    assert torch.equal(other.conv.weight, model.conv.weight)
    assert torch.equal(other.fc.weight, before)


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    model, opt = _trained(0)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing", model=model)
    for name, damage in [("config.json", "delete"), ("train_state.pt", "delete"),
                         ("model.safetensors", "delete"), ("model.safetensors", "garbage"),
                         ("config.json", "garbage"), ("train_state.pt", "garbage")]:
        d = tmp_path / f"{name}-{damage}"
        save_checkpoint(d, model=model, config=CONFIG, state=_state(opt))
        if damage == "delete":
            (d / name).unlink()
        else:
            (d / name).write_bytes(b"\x00not a real file" * 3)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_checkpoint(d, model=Net())


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path, model=model, config=CONFIG, state=_state(opt))
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    changed, opt2 = _trained(1)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)  # the last file written fails
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model=changed, config={"model": "changed"}, state=_state(opt2))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # no tmp files left
    fresh = Net()
    config, _ = load_checkpoint(tmp_path, model=fresh)
    assert config["model"] == "net"
    assert torch.equal(fresh.fc.weight, model.fc.weight)


@pytest.mark.parametrize("killed_after", [0, 1])  # save_checkpoint renames twice
def test_a_kill_during_the_swap_leaves_a_complete_checkpoint(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            killed_after: int) -> None:
    model, opt = _trained(0)
    ckpt_dir = tmp_path / "ckpt"
    save_checkpoint(ckpt_dir, model=model, config=CONFIG, state=_state(opt))
    new_model = _trained(1)[0]
    real_replace, calls = os.replace, []

    def replace_then_die(src: str, dst: str) -> None:
        if len(calls) >= killed_after:
            raise KeyboardInterrupt  # the process dies here
        calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt_dir, model=new_model, config=CONFIG, state=_state(opt))
    monkeypatch.undo()
    fresh = Net()
    load_checkpoint(ckpt_dir, model=fresh)  # never torn: the old or the new checkpoint, complete
    x = torch.randn(3, 1, 5, 5)
    expected = new_model if killed_after >= 1 else model
    fresh.eval(), expected.eval()
    torch.testing.assert_close(fresh(x), expected(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_mixed_files_are_detected_as_torn(tmp_path: Path) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path / "a", model=model, config=CONFIG, state=_state(opt))
    save_checkpoint(tmp_path / "b", model=_trained(1)[0], config=CONFIG, state=_state(opt))
    os.replace(tmp_path / "b" / MODEL_FILE, tmp_path / "a" / MODEL_FILE)
    with pytest.raises(CheckpointError, match="torn"):
        load_checkpoint(tmp_path / "a", model=Net())


def test_non_plain_state_is_refused_before_writing(tmp_path: Path) -> None:
    model, opt = _trained(0)
    bad = {**_state(opt), "history": [{"acc": np.float64(0.5)}]}
    with pytest.raises(CheckpointError, match=r"state\['history'\]\[0\]\['acc'\].*numpy"):
        save_checkpoint(tmp_path / "ck", model=model, config=CONFIG, state=bad)
    assert not (tmp_path / "ck").exists()


class Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_load_state_dict_file(tmp_path: Path) -> None:
    sd = {"a.weight": torch.randn(3, 2), "a.bias": torch.zeros(3)}
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pth", "w.pt"):
        got = load_state_dict_file(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd), name

    torch.save({"w": torch.ones(1), "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict_file(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_file(tmp_path / "none.pth")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="suffix"):
        load_state_dict_file(tmp_path / "w.npz")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage!" * 4)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        load_state_dict_file(tmp_path / "bad.safetensors")
