"""The NCP head and the seed-000 presets: shapes, exact sizes, composition, bidirectional, errors."""

import pytest
import torch

import archlab
from archlab.errors import ConfigError, IncompatibleError
from archlab.heads.ncp import NCPHead
from archlab.layers import wirings as W
from archlab.layers.cfc import CfC
from archlab.layers.ltc import LTC

# (sequence mode) -> (steps, step features) on CRNet's (128, 13, 13) map at 224x224
ORIGINAL_MODES = {"channels": (16, 169), "rows": (8, 32), "columns": (8, 32), "patches": (16, 256), "xy": (16, 32)}


def _crnet(head, **head_kwargs):
    return archlab.create_model("crnet", in_chans=1, num_classes=2, head=head, head_kwargs=head_kwargs)


@pytest.mark.parametrize("mode", list(ORIGINAL_MODES))
def test_ncp_original_each_mode_on_crnet_224(mode):
    model = _crnet("ncp_original", sequence=mode)
    head = model.head
    steps, feats = ORIGINAL_MODES[mode]
    assert (head.adapter.steps, head.adapter.step_features, head.adapter.out_features) == (steps, feats, 32)
    assert head.wiring.units == 19 and head.wiring.input_dim == 32 and head.motor == 1
    assert head.fc.in_features == steps and isinstance(head.drop, torch.nn.Dropout) and head.drop.p == 0.3
    x = torch.randn(1, 1, 224, 224)
    out = model(x)
    assert out.shape == (1, 2)
    out.sum().backward()
    assert head.rnn.rnn_cell.sensory_w.grad.abs().sum() > 0


def test_ncp_original_z_axis_exact_parameter_count():
    head = archlab.create_model("crnet", in_chans=1, num_classes=2, head="ncp_original").head
    conv = 128 * 16 + 16  # 1x1 conv 128 -> 16
    proj = 169 * 32 + 32  # step features -> 32 sensory
    ltc = 3 * 19 + 4 * 19 * 19 + 4 * 32 * 19 + 2 * 32 + 2 * 1  # neurons, synapses, sensory, in/out maps
    fc = 16 * 1 * 2 + 2
    assert sum(p.numel() for p in head.parameters()) == conv + proj + ltc + fc == 11_537


@pytest.mark.parametrize(
    "preset,steps,sensory,motor,units",
    [("ncp_double", 16, 128, 2, 38), ("ncp_custom", 16, 512, 4, 76)],
)
def test_double_and_custom_presets_on_crnet_224(preset, steps, sensory, motor, units):
    model = _crnet(preset)
    head = model.head
    assert head.adapter.mode == "rows" and head.adapter.steps == steps
    assert head.adapter.out_features == sensory and head.adapter.proj is None  # x*z features == sensory
    assert head.wiring.units == units and head.motor == motor
    assert head.fc.in_features == steps * motor
    if preset == "ncp_custom":
        assert head.wiring.sensory_synapse_count == 512 * 24
    out = model(torch.randn(1, 1, 224, 224))
    assert out.shape == (1, 2)


def test_head_is_adapter_cell_flatten_linear():
    head = NCPHead((20, 4, 4), 10, cell="ltc", drop_rate=0.0).eval()
    x = torch.randn(3, 20, 4, 4)
    seq = head.adapter(x)
    assert seq.shape == (3, 20, 32)  # default: channels as steps, projected to 32 sensory
    y, _ = head.rnn(seq)
    torch.testing.assert_close(head(x), head.fc(y.flatten(1)))
    assert head.fc.in_features == 20 * 8  # default wiring: 8 motor neurons


def test_bidirectional_reads_the_reversed_sequence():
    head = NCPHead((8, 4, 4), 3, sequence="rows", sensory=None, bidirectional=True, cell="cfc").eval()
    assert head.fc.in_features == 2 * 4 * 8
    x = torch.randn(2, 8, 4, 4)
    seq = head.adapter(x)
    fwd, _ = head.rnn(seq)
    bwd, _ = head.rnn_reverse(seq.flip(1))
    expected = head.fc(torch.cat([fwd.flatten(1), bwd.flip(1).flatten(1)], 1))
    torch.testing.assert_close(head(x), expected)
    # the two directions have their own weights
    assert head.rnn.rnn_cell.layer_0.ff1.weight.data_ptr() != head.rnn_reverse.rnn_cell.layer_0.ff1.weight.data_ptr()


@pytest.mark.parametrize("cell,cls", [("ltc", LTC), ("cfc", CfC)])
def test_cells_and_options(cell, cls):
    head = NCPHead((20, 4, 4), 10, cell=cell, mixed_memory=True, sequence="xy", wiring={"kind": "auto_ncp", "units": 12, "output_size": 2})
    assert isinstance(head.rnn, cls) and head.rnn.use_mixed
    assert head(torch.randn(2, 20, 4, 4)).shape == (2, 10)
    cfc = NCPHead((20, 4, 4), 10, cell="cfc", cfc_mode="pure")
    assert cfc.rnn.rnn_cell.layer_0.mode == "pure"


def test_generic_head_on_mnist_cnn_and_reset_classifier():
    model = archlab.create_model("mnist_cnn", in_chans=1, num_classes=10, head="ncp", head_kwargs={"cell": "ltc"})
    assert model.feature_shape == (20, 4, 4)
    x = torch.randn(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    model.reset_classifier(3)
    assert model(x).shape == (4, 3) and model.head.num_classes == 3


def test_head_learns_a_toy_problem():
    torch.manual_seed(0)
    x = torch.randn(32, 2, 3, 3)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    head = NCPHead((2, 3, 3), 2, sequence="channels", sensory=None)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]


def test_built_wiring_must_match_the_adapter():
    wiring = W.ncp(12, 6, 1, 6, 4, 6, 6, input_dim=64)
    with pytest.raises(IncompatibleError, match=r"input_dim=64 .* 'channels' sequence gives 32 features"):
        NCPHead((20, 4, 4), 10, wiring=wiring, sensory=32)
    head = NCPHead((20, 4, 4), 10, wiring=wiring)  # sensory="auto" projects to the wiring's size
    assert head.adapter.out_features == 64
    with pytest.raises(IncompatibleError, match=r"input_dim=64 .* gives 16 features"):
        NCPHead((20, 4, 4), 10, wiring=wiring, sensory=None)


def test_bad_head_options():
    with pytest.raises(IncompatibleError, match=r"'ncp' does not fit backbone 'mnist_cnn'.*patch_size=8 is larger than the feature map height 4; use patch_size <= 4"):
        archlab.create_model("mnist_cnn", in_chans=1, num_classes=2, head="ncp", head_kwargs={"sequence": "patches", "patch_size": 8})
    with pytest.raises(ValueError, match=r"motor_fanin=7 is larger than the 6 command neurons"):
        NCPHead((20, 4, 4), 10, wiring={"inter": 12, "command": 6, "motor": 1, "sensory_fanout": 6, "inter_fanout": 4, "recurrent_command_synapses": 6, "motor_fanin": 7})
    with pytest.raises(ValueError, match=r"sensory_fanout=13 is larger than the 12 inter neurons"):
        NCPHead((20, 4, 4), 10, wiring={"inter": 12, "command": 6, "motor": 1, "sensory_fanout": 13, "inter_fanout": 4, "recurrent_command_synapses": 6, "motor_fanin": 6})
    with pytest.raises(ValueError, match="unknown cell 'gru'"):
        NCPHead((20, 4, 4), 10, cell="gru")
    with pytest.raises(ValueError, match="unknown sequence mode 'diagonal'"):
        archlab.create_model("crnet", in_chans=1, num_classes=2, head="ncp_original", head_kwargs={"sequence": "diagonal"}, input_size=64)
    with pytest.raises(ValueError, match="unknown option of head 'ncp_custom' 'sequnce'"):
        archlab.create_model("crnet", in_chans=1, num_classes=2, head="ncp_custom", head_kwargs={"sequnce": "rows"}, input_size=64)
    with pytest.raises(ConfigError, match="drop_rate"):
        NCPHead((20, 4, 4), 10, drop_rate=1.0)
