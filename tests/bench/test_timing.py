"""The benchmarks' memory-format probe (bench/_timing.py) finds the faster format."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from archlab import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _timing import probe_memory_format  # noqa: E402


class _SlowInFormat(nn.Module):
    """A conv net that is made slow in one memory format (a deterministic check of the probe)."""

    def __init__(self, slow_channels_last: bool):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.slow_channels_last = slow_channels_last

    def forward(self, x):
        is_cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if is_cl == self.slow_channels_last:  # real CPU work (the probe may time CPU time, which a sleep does not use)
            w = torch.ones(256, 256)
            for _ in range(6):
                w = (w @ w).clamp_(max=1.0)
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("slow_channels_last", [True, False])
def test_probe_picks_the_faster_format_when_one_is_made_slow(slow_channels_last):
    torch.set_num_threads(1)
    p = probe_memory_format(lambda: _SlowInFormat(slow_channels_last), (2, 8, 8), batch_size=4, num_classes=3,
                            rounds=3, steps=3, warmup=1)
    assert p.faster == ("contiguous" if slow_channels_last else "channels_last")


def test_probe_picks_channels_last_for_mini_vgg_on_cpu():
    """mini_vgg on CPU: channels_last ~1.3-1.5x faster per training step (bench/speed_rule.py)."""

    def build():
        torch.manual_seed(0)
        return create_model("mini_vgg", num_classes=10, in_chans=3, input_size=(32, 32))

    torch.set_num_threads(1)
    p = probe_memory_format(build, (3, 32, 32), batch_size=64, rounds=3, steps=2, warmup=1)
    assert p.faster == "channels_last" and p.rule_choice is True, p.to_dict()
