"""Export: ONNX graphs compute what PyTorch computes (onnxruntime), safetensors exports round-trip."""

import json
import os
import re
import stat

import numpy as np
import pytest
import torch
from torch import nn

import archlab
from archlab.cli import main
from archlab.errors import CheckpointError, ConfigError, ExportError
from archlab.export import (
    export_onnx,
    export_run,
    export_safetensors,
    load_safetensors_export,
)
from archlab.train import engine
from archlab.train.config import TrainConfig

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# (model, input size, head, head kwargs, model kwargs): every family, and every head on mnist_cnn.
# Small inputs and shallow options keep each export to seconds.
CASES = {
    "mnist_cnn": ("mnist_cnn", 28, None, {}, {}),
    "crnet": ("crnet", 32, None, {}, {"channels": [8, 16, 16]}),
    "mini_vgg": ("mini_vgg", 32, None, {}, {}),
    "vgg5": ("vgg5", 28, None, {}, {}),
    "vgg11": ("vgg11", 32, None, {}, {}),
    "resnet18": ("resnet18", 32, None, {}, {}),
    "recurrent_resnet": ("recurrent_resnet", 32, None, {}, {"unroll": 2}),
    "densenet_bc": ("densenet_bc", 32, None, {}, {"depth": 40}),
    "efficientnet_b0": ("efficientnet_b0", 32, None, {}, {}),
    "connected_net": ("connected_net", 16, None, {}, {}),
    "head_linear": ("mnist_cnn", 28, "linear", {}, {}),
    "head_mlp": ("mnist_cnn", 28, "mlp", {"hidden": [32, 16], "batch_norm": True}, {}),
    "head_spinal": ("mnist_cnn", 28, "spinal", {"layer_width": 16}, {}),
    "head_ncp_ltc": ("mnist_cnn", 28, "ncp", {"cell": "ltc"}, {}),
    "head_ncp_cfc": ("mnist_cnn", 28, "ncp", {"cell": "cfc"}, {}),
}


def _run_onnx(path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def _scrambled(model: nn.Module) -> nn.Module:
    """Non-default BatchNorm statistics, so eval-mode normalisation is really exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_onnx_equals_pytorch(case, tmp_path):
    name, size, head, head_kwargs, kwargs = CASES[case]
    torch.manual_seed(0)
    model = _scrambled(archlab.create_model(name, num_classes=5, in_chans=1, input_size=size, head=head,
                                            head_kwargs=head_kwargs, **kwargs))
    path = export_onnx(model, tmp_path / "m.onnx", (1, size, size), check=False)
    x = torch.rand(4, 1, size, size)  # another batch size than the traced one: the batch axis is dynamic
    with torch.no_grad():
        want = model(x).numpy()
    got = _run_onnx(path, x)
    assert got.shape == (4, 5)
    scale = max(1.0, float(np.abs(want).max()))  # recurrent_resnet's untrained logits reach ~1e4
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
    assert not model.training  # the exported copy, not the model, was changed for export


@pytest.mark.slow
def test_segmentation_model_exports_masks_and_has_mask(tmp_path):
    torch.manual_seed(0)
    model = _scrambled(archlab.create_model("unet", num_classes=1, in_chans=1, input_size=32, widths=(8, 16)))
    path = export_onnx(model, tmp_path / "u.onnx", (1, 32, 32), check=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["masks", "has_mask"]
    x = torch.rand(3, 1, 32, 32)
    masks, has_mask = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = model(x)
    np.testing.assert_allclose(masks, want.masks.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(has_mask, want.has_mask.numpy(), rtol=0, atol=1e-4)


def _tiny_run(tmp_path, **model):
    cfg = TrainConfig.model_validate({
        "data": {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 90, "image_size": 28,
                                                    "channels": 1, "seed": 1}},
        "model": {"name": "mnist_cnn", **model},
        "epochs": 1, "batch_size": 32, "seed": 2,
    })
    threads = torch.get_num_threads()
    try:
        engine.train(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    return tmp_path / "run"


@pytest.mark.slow
def test_export_run_onnx_includes_normalisation(tmp_path):
    run = _tiny_run(tmp_path, head="ncp", head_kwargs={"cell": "ltc"})  # the LTC head needs the fallback
    path = export_run(run, "onnx")
    assert path == run / "model.onnx"
    model, config, _, norm = engine.load_run(run)
    x = torch.rand(3, 1, 28, 28)  # images in [0, 1]; the graph normalises them itself
    with torch.no_grad():
        want = model(norm(x)).numpy()
    np.testing.assert_allclose(_run_onnx(path, x), want, rtol=0, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["archlab.config"]) == config.model_dump(mode="json")
    assert json.loads(props["archlab.normalize"])["mean"] == pytest.approx(norm.mean.flatten().tolist())
    assert props["archlab.exporter"] == "TorchScript"  # torch.export cannot trace the LTC layout cache


def test_safetensors_export_round_trips_into_a_fresh_model(tmp_path):
    run = _tiny_run(tmp_path, head="ncp", head_kwargs={"cell": "cfc"})
    path = export_run(run, "safetensors", tmp_path / "out" / "m.safetensors")
    model, config, _, _ = engine.load_run(run)
    fresh, meta = load_safetensors_export(path)  # no run folder, no dataset
    assert meta["config"] == config.model_dump(mode="json")
    assert (meta["num_classes"], meta["in_chans"], meta["input_size"]) == (3, 1, [28, 28])
    assert meta["normalize"] is not None and meta["weights"] == "best"
    a, b = model.state_dict(), fresh.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_export_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_run(tmp_path, "tflite")
    with pytest.raises(CheckpointError, match="no config.json"):
        export_run(tmp_path, "onnx")
    with pytest.raises(CheckpointError, match="no such run folder"):
        export_run(tmp_path / "missing", "onnx")
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no archlab metadata"):
        load_safetensors_export(plain)
    # weights of another architecture under valid metadata
    cfg = TrainConfig.model_validate({"model": {"name": "mnist_cnn"}})
    meta = {"config": cfg.model_dump(mode="json"), "num_classes": 3, "in_chans": 1, "input_size": [28, 28]}
    other = archlab.create_model("mnist_cnn", num_classes=4, in_chans=1)
    export_safetensors(other, tmp_path / "other.safetensors", meta)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_safetensors_export(tmp_path / "other.safetensors")


class _CumMax(nn.Module):
    """A layer with an operator no ONNX exporter supports (aten::cummax)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.cummax(x.flatten(1), 1).values)


def test_unexportable_model_gives_both_exporters_reasons(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(_CumMax(), tmp_path / "m.onnx", (1, 2, 2))
    msg = str(info.value)
    assert "_CumMax cannot be exported to ONNX" in msg
    assert "torch.export exporter:" in msg and "TorchScript exporter:" in msg and "cummax" in msg
    assert "--format safetensors" in msg


def test_export_check_catches_a_graph_that_differs(tmp_path, monkeypatch):
    """An exporter that bakes a value in (here: a batch-dependent branch) is caught by the check."""

    class BatchBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(x.flatten(1))
            return y * 2 if x.shape[0] == 2 else y  # traced at batch 2; checked at batch 3

    monkeypatch.setattr("archlab.export._export_dynamo", _raise)  # force the tracing exporter
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(BatchBranch(), tmp_path / "m.onnx", (1, 2, 2))


def _raise(*_args, **_kw):
    raise RuntimeError("disabled in this test")


def test_cli_export(tmp_path, capsys):
    run = _tiny_run(tmp_path)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "a.onnx")]) == 0
    assert (tmp_path / "a.onnx").is_file()
    assert main(["export", str(run), "--format", "safetensors"]) == 0
    assert (run / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "wrote" in out and "model.safetensors" in out
    assert main(["export", str(run), "--format", "pb"]) == 2
    assert "unknown export format 'pb'" in capsys.readouterr().err


def test_cli_onnx_export_is_one_file_and_says_it_was_checked(tmp_path, capsys):
    run = _tiny_run(tmp_path, head="linear")
    (run / "model.onnx.data").write_text("stale")  # even a leftover from an older export goes
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("model")) == ["model.onnx"]
    m = re.search(r"onnxruntime \S+ ran the graph on a batch of 3: max \|ONNX - PyTorch\| = (\S+)", out)
    assert m, out
    from archlab.export import onnx_check_result

    checked = onnx_check_result(run / "model.onnx")  # the file records its own check
    assert checked["batch"] == 3 and float(m.group(1)) == pytest.approx(checked["max_abs_diff"], rel=0.1)
    assert 0 <= checked["max_abs_diff"] < 1e-4
    model, _, _, norm = engine.load_run(run)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(_run_onnx(run / "model.onnx", x), model(norm(x)).numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_safetensors_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = _tiny_run(tmp_path, head="linear")
        path = export_run(run, "safetensors")
        made = tmp_path / "plain.txt"
        made.write_text("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(made.stat().st_mode)  # what any other file gets
    assert want == 0o666 & ~umask
    for f in (path, run / "best.safetensors", run / "result.json", run / "checkpoint" / "model.safetensors"):
        assert stat.S_IMODE(f.stat().st_mode) == want, f
