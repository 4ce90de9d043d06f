"""U-Net with the has_mask gate (seed 002), the segmentation data formats, and segmentation runs."""

import numpy as np
import pytest
import torch
from PIL import Image

import archlab
from archlab.data import load_dataset
from archlab.errors import ConfigError, DataError, IncompatibleError
from archlab.models.unet import SegmentationOutput, gate_masks
from archlab.train.config import TrainConfig
from archlab.train.engine import train

RUN = {
    "data": {"name": "synthetic_masks", "options": {"num_samples": 240, "image_size": 24}},
    "model": {"name": "unet", "kwargs": {"widths": [8, 16, 32]}},
    "loss": "bce_dice",
    "monitor": "dice",
    "epochs": 4,
    "batch_size": 16,
    "optim": {"lr": 0.005},
    "device": "cpu",
    "threads": 1,
}


def _cfg(**model_kwargs):
    run = {**RUN, "model": {"name": "unet", "kwargs": {**RUN["model"]["kwargs"], **model_kwargs}}}
    return TrainConfig.model_validate(run)


def test_gate_raises_mean_dice_over_the_plain_unet():
    """Same data, seed and training; only the inference gate differs (seed 002's trick)."""
    plain = train(_cfg(gate=False))
    gated = train(_cfg(gate=True))
    assert plain.test["loss"] == gated.test["loss"]  # the same trained weights were tested
    assert gated.test["dice"] > plain.test["dice"] + 0.3, (plain.test, gated.test)
    # the plain net paints pixels on empty images; the gated one calls them empty
    assert gated.test["accuracy"] > plain.test["accuracy"]
    assert set(gated.test_targets) == {0, 1} and len(gated.test_predictions) == len(gated.test_targets)
    assert gated.history[-1]["val_dice"] > 0.7


def test_gate_masks_zeroes_low_has_mask_images():
    masks = torch.full((3, 1, 4, 4), 4.0)  # confident foreground everywhere
    has = torch.tensor([[3.0], [-3.0], [0.0]])  # p = 0.95, 0.05, 0.5
    out = SegmentationOutput(masks, has)
    gated = gate_masks(out, gate=True, threshold=0.5)
    assert gated[0].min() > 0.9 and gated[1].abs().max() == 0 and gated[2].min() > 0.9
    assert torch.equal(gate_masks(out, gate=False), torch.sigmoid(masks))
    assert gate_masks(out, gate=True, threshold=0.6)[2].abs().max() == 0


def test_unet_shapes_and_surface():
    m = archlab.create_model("unet", num_classes=2, in_chans=3, input_size=32, widths=(8, 16, 32))
    out = m(torch.randn(2, 3, 33, 37))  # odd sizes: the mask keeps the input size
    assert out.masks.shape == (2, 1, 33, 37) and out.has_mask.shape == (2, 1)
    assert m.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 32, 8, 8) and m.num_features == 32
    m.eval()
    p = m.predict_masks(torch.randn(2, 3, 32, 32))
    assert p.shape == (2, 1, 32, 32) and 0 <= float(p.min()) and float(p.max()) <= 1
    assert archlab.profile(m, (1, 3, 32, 32)).flops > 0


def test_archlab_info_unet(capsys):
    from archlab.cli import main

    assert main(["info", "unet", "--num-classes", "2", "--in-chans", "1", "--latency-runs", "0"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 482,578" in out and "has_mask_head" in out
    assert main(["info", "unet"]) == 2  # 10 classes: a usage error naming the fix
    assert "--num-classes 2" in capsys.readouterr().err


def test_unet_bad_options():
    with pytest.raises(IncompatibleError, match="at least 8x8"):
        archlab.create_model("unet", num_classes=2, in_chans=1, input_size=4, widths=(4, 8, 16, 32))
    with pytest.raises(IncompatibleError, match="one binary mask"):
        archlab.create_model("unet", num_classes=10, in_chans=1)
    with pytest.raises(IncompatibleError, match="no classification head"):
        archlab.create_model("unet", num_classes=2, in_chans=1, head="linear")
    with pytest.raises(ConfigError, match="gates"):
        archlab.create_model("unet", num_classes=2, in_chans=1, gates=True)  # close match: gate


def test_synthetic_masks_are_60_percent_empty_and_reproducible():
    a = load_dataset("synthetic_masks", num_samples=200, image_size=32)["train"]
    b = load_dataset("synthetic_masks", num_samples=200, image_size=32)["train"]
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    empty = ~a.masks.flatten(1).bool().any(1)
    assert int(empty.sum()) == 120 and torch.equal(a.labels, (~empty).long())
    assert a.classes == ("empty", "mask") and a.masks.shape == (200, 1, 32, 32)
    # the nerve is brighter than the background on average inside its mask
    fg = a.images[a.masks.bool()].float().mean()
    bg = a.images[~a.masks.bool() & (~empty)[:, None, None, None]].float().mean()
    assert fg > bg + 40
    with pytest.raises(ConfigError, match="empty_fraction"):
        load_dataset("synthetic_masks", empty_fraction=1.5)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


def _seg_folder(root, n=6, size=(20, 24)):
    rng = np.random.default_rng(0)
    for k in range(n):
        _png(root / "images" / f"{k:03d}.png", rng.integers(0, 255, size))
        mask = np.zeros(size, np.uint8)
        if k % 2:
            mask[3:9, 4:12] = 255
        _png(root / "masks" / f"{k:03d}.png", mask)


def test_segmentation_folder_loads_images_and_masks(tmp_path):
    _seg_folder(tmp_path)
    ds = load_dataset("segmentation", root=tmp_path)["train"]
    assert ds.images.shape == (6, 1, 20, 24) and ds.masks.shape == (6, 1, 20, 24)
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and set(ds.masks.unique().tolist()) == {0, 1}
    assert int(ds.masks[1].sum()) == 6 * 8
    resized = load_dataset("segmentation", root=tmp_path, image_size=10)["train"]
    assert resized.masks.shape == (6, 1, 10, 10) and set(resized.masks.unique().tolist()) == {0, 1}


def test_mask_of_another_size_names_both_files(tmp_path):
    _seg_folder(tmp_path)
    _png(tmp_path / "masks" / "002.png", np.zeros((21, 24)))
    with pytest.raises(DataError) as err:
        load_dataset("segmentation", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "masks" / "002.png") in msg and str(tmp_path / "images" / "002.png") in msg
    assert "24x21" in msg and "24x20" in msg


def test_missing_mask_missing_image_and_kaggle_layout(tmp_path):
    _seg_folder(tmp_path / "a")
    (tmp_path / "a" / "masks" / "004.png").unlink()
    with pytest.raises(DataError, match="004.png has no mask"):
        load_dataset("segmentation", root=tmp_path / "a")
    _seg_folder(tmp_path / "b")
    (tmp_path / "b" / "images" / "001.png").unlink()
    with pytest.raises(DataError, match="001.png has no image"):
        load_dataset("segmentation", root=tmp_path / "b")
    with pytest.raises(DataError, match="images/<id>.png"):
        load_dataset("segmentation", root=tmp_path / "b" / "images")
    kag = tmp_path / "kaggle"
    for k in range(3):
        _png(kag / f"1_{k}.tif", np.full((8, 8), 100 + k))
        _png(kag / f"1_{k}_mask.tif", np.eye(8) * 255 * (k == 1))
    ds = load_dataset("segmentation", root=kag, layout="kaggle_nerve")["train"]
    assert ds.labels.tolist() == [0, 1, 0] and ds.images[2, 0, 0, 0] == 102


def test_segmentation_run_errors():
    with pytest.raises(IncompatibleError, match="no masks"):
        train(TrainConfig.model_validate({**RUN, "data": {"name": "synthetic", "options": {"num_classes": 2}}}))
    with pytest.raises(ConfigError, match="classification loss"):
        train(TrainConfig.model_validate({**RUN, "loss": "ce"}))
    with pytest.raises(ConfigError, match="augment"):
        train(TrainConfig.model_validate({**RUN, "data": {**RUN["data"], "augment": "cifar"}}))


def test_loader_yields_masks_aligned_with_shuffled_images():
    from archlab.data import DeviceLoader

    ds = load_dataset("synthetic_masks", num_samples=40, image_size=16)["train"]
    loader = DeviceLoader(ds, 8, shuffle=True, seed=3, targets="masks")
    order = loader.order(2)
    for step, (x, y) in enumerate(loader.epoch(2)):
        idx = order[step * 8 : (step + 1) * 8]
        assert y.dtype == torch.float32 and y.shape == (len(idx), 1, 16, 16)
        assert torch.equal(y, ds.masks[idx].float()) and torch.equal(x, ds.images[idx].float() / 255)
    with pytest.raises(ConfigError, match="masks"):
        DeviceLoader(load_dataset("synthetic", num_samples=8)["train"], 4, shuffle=False, seed=0, targets="masks")


class _Kill(Exception):
    pass


def test_segmentation_run_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = TrainConfig.model_validate(
        {**RUN, "data": {"name": "synthetic_masks", "options": {"num_samples": 96, "image_size": 16}},
         "model": {"name": "unet", "kwargs": {"widths": [4, 8]}}, "epochs": 2, "checkpoint_every_steps": 2}
    )
    full = train(cfg, tmp_path / "full")

    def killer(step):
        if step == 5:
            raise _Kill()

    with pytest.raises(_Kill):
        train(cfg, tmp_path / "killed", on_step=killer)
    resumed = train(cfg, tmp_path / "killed")
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test == full.test and resumed.test_predictions == full.test_predictions


def test_archlab_train_a_unet_reports_dice(tmp_path, capsys):
    from archlab.cli import main

    args = ["train", "-m", "unet", "-d", "synthetic_masks", "--loss", "bce_dice", "--epochs", "1",
            "--batch-size", "16", "--set", "monitor=dice", "--set", "data.options.num_samples=64",
            "--set", "data.options.image_size=16", "--set", "model.kwargs.widths=[4,8]", "--set", "threads=1",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    assert "dice" in capsys.readouterr().out
    assert (tmp_path / "run" / "best.safetensors").is_file()
