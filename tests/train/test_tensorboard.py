"""TensorBoard event files per run: written when asked, the same results with and without."""

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from archlab.cli import main  # noqa: E402
from archlab.train.config import TrainConfig  # noqa: E402
from archlab.train.engine import train  # noqa: E402
from archlab.train.tensorboard import epoch_scalars  # noqa: E402

DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 120, "image_size": 16, "channels": 1}}


def _cfg(**over):
    return TrainConfig.model_validate({"data": DATA, "model": {"name": "mnist_cnn", "head": "mlp"}, "epochs": 3,
                                       "batch_size": 16, "seed": 3, "threads": 1, **over})


def _scalars(folder):
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_same_results_with_and_without_tensorboard(tmp_path):
    plain = train(_cfg(), tmp_path / "plain")
    logged = train(_cfg(tensorboard=True), tmp_path / "tb")
    assert not (tmp_path / "plain" / "tensorboard").exists()
    assert logged.config["tensorboard"] is True and plain.config["tensorboard"] is False  # recorded
    assert logged.test == plain.test and logged.val == plain.val
    assert logged.test_predictions == plain.test_predictions
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(logged.history) == strip(plain.history)

    curves = _scalars(tmp_path / "tb" / "tensorboard")
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "f1_macro/val", "lr"):
        assert [s for s, _ in curves[tag]] == [1, 2, 3], tag
    for row in logged.history:  # the event files hold exactly the stored history
        for tag, value in epoch_scalars(row).items():
            assert dict(curves[tag])[row["epoch"]] == pytest.approx(value, rel=1e-6)


def test_resumed_run_purges_the_epochs_it_trains_again(tmp_path, monkeypatch):
    from archlab.train import engine

    out, calls = tmp_path / "run", []
    real = engine.save_checkpoint

    def failing(dir, **kw):  # the epoch-3 checkpoint fails (disk full) after epoch 3 was logged
        calls.append(kw["state"]["progress"]["epoch"])
        if kw["state"]["progress"]["epoch"] == 3:
            raise OSError(28, "No space left on device")
        return real(dir, **kw)

    monkeypatch.setattr(engine, "save_checkpoint", failing)
    with pytest.raises(OSError):
        train(_cfg(tensorboard=True), out)
    monkeypatch.setattr(engine, "save_checkpoint", real)
    assert _scalars(out / "tensorboard")["loss/train"][-1][0] == 3  # logged, then lost with the checkpoint
    resumed = train(_cfg(tensorboard=True), out)  # resumes after epoch 2 and trains epoch 3 again
    curves = _scalars(out / "tensorboard")
    assert [s for s, _ in curves["loss/train"]] == [1, 2, 3]  # epoch 3 once: the stale point was purged
    assert curves["loss/train"][-1][1] == pytest.approx(resumed.history[-1]["train_loss"], rel=1e-6)


def test_cli_flag_writes_event_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "synthetic", "--set", "data.options={num_classes: 3, num_samples: 90, "
                 "image_size: 16, channels: 1}", "--epochs", "2", "--tensorboard", "-q", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"tensorboard --logdir {out / 'tensorboard'}" in capsys.readouterr().out
    assert [s for s, _ in _scalars(out / "tensorboard")["accuracy/val"]] == [1, 2]
