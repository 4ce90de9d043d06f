"""archlab.analysis.flops counts what torch.utils.flop_counter.FlopCounterMode counts, without torch._dynamo."""

import subprocess
import sys

import pytest
import torch

import archlab
from archlab.analysis.flops import FlopCounter, count_flops


def _reference(model, x) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        model(x)
    return {str(k): int(v) for k, v in mode.get_flop_counts().get("Global", {}).items()}


def _build(name: str, size: int):
    classes = 2 if name == "unet" else 5  # unet segments one binary mask
    try:
        return archlab.create_model(name, num_classes=classes, in_chans=3, input_size=(size, size)).eval()
    except archlab.errors.ConfigError:
        return None


@pytest.mark.parametrize("name", archlab.list_models())
def test_every_model_counts_as_flop_counter_mode(name):
    for size in (32, 64, 96, 224):  # the smallest input the model accepts
        model = _build(name, size)
        if model is not None:
            break
    assert model is not None, f"{name}: no input size between 32 and 224 builds"
    x = torch.zeros(1, 3, *getattr(model, "input_size", (size, size)))
    with torch.no_grad():
        got, ref = count_flops(model, x), _reference(model, x)
    assert got == ref and sum(got.values()) > 0


@pytest.mark.parametrize("head", archlab.list_heads())
def test_every_head_counts_as_flop_counter_mode(head):
    model = archlab.create_model("mnist_cnn", num_classes=10, in_chans=1, head=head).eval()
    x = torch.zeros(2, 1, 28, 28)
    with torch.no_grad():
        assert count_flops(model, x) == _reference(model, x)


def test_backward_and_training_mode_too():
    model = archlab.create_model("mini_vgg", num_classes=4, in_chans=3, input_size=(32, 32)).train()
    x = torch.randn(2, 3, 32, 32)
    with FlopCounter() as mine:
        model(x).sum().backward()
    from torch.utils.flop_counter import FlopCounterMode

    ref = FlopCounterMode(display=False)
    with ref:
        model(x).sum().backward()
    assert mine.total == ref.get_total_flops() > 0


def test_counting_does_not_import_dynamo():
    code = ("import sys, torch, archlab; from archlab.analysis.flops import count_flops; "
            "m = archlab.create_model('mini_vgg', num_classes=4, input_size=(32, 32)).eval(); "
            "count_flops(m, torch.zeros(1, 3, 32, 32)); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
