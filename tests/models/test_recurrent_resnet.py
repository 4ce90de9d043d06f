"""Recurrent ResNet (Liao & Poggio): weight sharing, equivalence with the untied deep ResNet."""

import pytest
import torch

import archlab
from archlab.analysis.profile import count_parameters
from archlab.errors import ConfigError
from archlab.models.recurrent_resnet import PreActUnit, RecurrentResNet


def _warm(backbone):
    """A few train-mode passes so BatchNorm statistics are not at their init values."""
    backbone.train()
    for _ in range(2):
        backbone(torch.randn(4, 3, 16, 16))


@pytest.mark.parametrize("unroll", [1, 3, 7])
def test_parameter_count_does_not_depend_on_unroll(unroll):
    model = archlab.create_model("recurrent_resnet", num_classes=10, unroll=unroll)
    ref = archlab.create_model("recurrent_resnet", num_classes=10, unroll=1)
    assert count_parameters(model) == count_parameters(ref)
    # one residual unit (2 convs + 2 BNs) per stage: stem + units + transitions + final BN + head
    widths = (16, 32, 64)
    unit = sum(2 * (9 * c * c) + 4 * c for c in widths)
    transitions = sum(2 * a + 9 * a * b for a, b in zip(widths, widths[1:]))
    assert count_parameters(model) == 27 * 16 + unit + transitions + 2 * 64 + 64 * 10 + 10


def test_per_step_batchnorm_adds_only_bn_parameters():
    shared = archlab.create_model("recurrent_resnet", num_classes=10, unroll=4, norm="shared")
    per_step = archlab.create_model("recurrent_resnet", num_classes=10, unroll=4, norm="per_step")
    assert count_parameters(per_step) - count_parameters(shared) == 3 * 4 * (16 + 32 + 64)
    convs = [n for n, _ in per_step.named_parameters() if "conv" in n]
    assert convs == [n for n, _ in shared.named_parameters() if "conv" in n]


def test_untied_deep_resnet_has_unroll_blocks_per_stage():
    model = archlab.create_model("recurrent_resnet", num_classes=10, unroll=3, tie_weights=False)
    units = [m for m in model.modules() if isinstance(m, PreActUnit)]
    assert len(units) == 9 and len({id(u.conv1.weight) for u in units}) == 9


@pytest.mark.parametrize("norm", ["shared", "per_step"])
def test_output_equals_the_untied_resnet_with_copied_blocks(norm):
    torch.manual_seed(1)
    bb = RecurrentResNet(widths=(4, 8), unroll=3, norm=norm)
    _warm(bb)
    deep = bb.untied()
    assert not deep.tie_weights
    assert all(len(s.recurrent.blocks) == 3 for s in deep.stages)
    x = torch.randn(3, 3, 16, 16)
    bb.eval(), deep.eval()
    torch.testing.assert_close(bb(x), deep(x), rtol=0, atol=0)
    bb.train(), deep.train()  # batch statistics: the same per step in both
    torch.testing.assert_close(bb(x), deep(x), rtol=0, atol=0)


def test_untied_blocks_are_independent_copies():
    bb = RecurrentResNet(widths=(8,), unroll=3)
    deep = bb.untied()
    b0, b1 = deep.stages[0].recurrent.blocks[:2]
    torch.testing.assert_close(b0.conv1.weight, bb.stages[0].recurrent.block.conv1.weight)
    with torch.no_grad():
        b0.conv1.weight.add_(1.0)
    assert not torch.equal(b0.conv1.weight, b1.conv1.weight)
    assert not torch.equal(b0.conv1.weight, bb.stages[0].recurrent.block.conv1.weight)


def test_shared_block_is_applied_unroll_times():
    bb = RecurrentResNet(widths=(4,), unroll=5).eval()
    calls = []
    bb.stages[0].recurrent.block.register_forward_hook(lambda *a: calls.append(1))
    bb(torch.randn(1, 3, 8, 8))
    assert len(calls) == 5


def test_update_is_x_plus_f_of_x_and_residual_false_is_plain():
    bb = RecurrentResNet(widths=(4,), unroll=2).eval()
    stage = bb.stages[0].recurrent
    x = torch.randn(2, 4, 6, 6)
    x1 = x + stage.block(x, 0)
    torch.testing.assert_close(stage(x), x1 + stage.block(x1, 1))
    stage.residual = False
    torch.testing.assert_close(stage(x), stage.block(stage.block(x, 0), 1))


def test_per_stage_unroll_and_gradients_flow():
    model = archlab.create_model("recurrent_resnet", num_classes=10, unroll=[1, 2, 3], norm="per_step")
    assert [s.recurrent.unroll for s in model.backbone.stages] == [1, 2, 3]
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    shared = model.backbone.stages[2].recurrent.block
    assert shared.conv1.weight.grad is not None and all(bn.weight.grad is not None for bn in shared.bn1)


@pytest.mark.parametrize("kw, match", [
    ({"unroll": 0}, "unroll"), ({"unroll": [1, 2]}, "unroll"), ({"norm": "batch"}, "norm"),
    ({"widths": []}, "widths"),
])
def test_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        archlab.create_model("recurrent_resnet", num_classes=10, **kw)
