"""The channels_last rule, checked by timing: which memory format is faster, per model, on this machine.

``archlab.train.speed.resolve_speed_options`` picks ``channels_last`` for a model whose forward
FLOPs are at least ``CONV_SHARE_CHANNELS_LAST`` convolutions — a fixed rule, so a run's result
depends only on its config. This benchmark times one training step (fwd + bwd + Adam on a resident
batch) of each model in both formats with :func:`_timing.probe_memory_format`
(interleaved rounds, alternating which format goes first) and reports, per model, the conv FLOP
share, the rule's choice, the measured speed-up and whether the rule picked the faster format
(``agrees``; a model where the two formats are within 5 % counts as agreeing either way). With one
thread the probe times this process's CPU time, so other jobs on the machine do not decide it.

Models: the registry's conv nets at their usual input sizes (seed-002 mini-VGG variants included)
plus ``mnist_cnn`` with the NCP head (a model whose FLOPs are mostly not convolutions).
Writes ``bench/results/speed_rule.json``.

    python bench/speed_rule.py [--threads 1] [--repeats 3]
    python bench/speed_rule.py --tiny      # CI smoke run (two small models, one short round)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write_result  # noqa: E402
from _timing import probe_memory_format  # noqa: E402

from archlab import create_model  # noqa: E402
from archlab.train.speed import CONV_SHARE_CHANNELS_LAST  # noqa: E402

# name -> (model, in_chans, size, batch, options)
CASES: dict[str, tuple[str, int, int, int, dict[str, Any]]] = {
    "mnist_cnn": ("mnist_cnn", 1, 28, 64, {}),
    "mnist_cnn_ncp_head": ("mnist_cnn", 1, 28, 64, {"head": "ncp"}),
    "mnist_cnn_spinal_head": ("mnist_cnn", 1, 28, 64, {"head": "spinal"}),
    "mini_vgg": ("mini_vgg", 3, 32, 32, {}),
    "mini_vgg_norm_conv_dense": ("mini_vgg", 3, 32, 32, {"kwargs": {"norm_conv": True, "norm_dense": True}}),
    "mini_vgg_4_rot_2": ("mini_vgg", 3, 32, 32, {"kwargs": {"rot_convs": 2, "rotations": 4}}),
    "mini_vgg_8_rot_4": ("mini_vgg", 3, 32, 32, {"kwargs": {"rot_convs": 4, "rotations": 8}}),
    "connected_net": ("connected_net", 3, 32, 32, {}),
    "resnet18_cifar": ("resnet18", 3, 32, 16, {"kwargs": {"cifar_stem": True}}),
    "crnet": ("crnet", 1, 28, 64, {}),
}
TINY = ("mnist_cnn", "mini_vgg")
AGREE_WITHIN = 0.05  # formats this close are a tie: either choice is right


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    names = TINY if args.tiny else tuple(CASES)
    rounds, steps = (1, 1) if args.tiny else (args.repeats, 4)
    cases = {}
    for key in names:
        name, c, s, batch, opts = CASES[key]

        def build(name=name, c=c, s=s, opts=opts):
            torch.manual_seed(0)
            return create_model(name, num_classes=10, in_chans=c, input_size=(s, s), head=opts.get("head"),
                                **opts.get("kwargs", {}))

        p = probe_memory_format(build, (c, s, s), batch_size=batch, device=args.device, rounds=rounds, steps=steps,
                                warmup=1 if args.tiny else 2)
        tie = abs(p.speedup - 1.0) <= AGREE_WITHIN
        cases[key] = {
            "model": name, "input": [c, s, s], "batch": batch, "options": opts, **p.to_dict(),
            "agrees": tie or p.rule_choice == (p.faster == "channels_last"),
        }  # fmt: skip
        print(f"{key:26s} conv share {p.conv_flop_share:5.3f}  rule {'channels_last' if p.rule_choice else 'contiguous':13s} "
              f"contiguous {p.contiguous_s * 1e3:7.1f} ms  channels_last {p.channels_last_s * 1e3:7.1f} ms  "
              f"{p.speedup:4.2f}x  {'agrees' if cases[key]['agrees'] else 'DISAGREES'}", flush=True)
    data = {
        "device": args.device,
        "threads": args.threads,
        "rounds": rounds,
        "steps_per_round": steps,
        "threshold_conv_flop_share": CONV_SHARE_CHANNELS_LAST,
        "tie_within": AGREE_WITHIN,
        "cases": cases,
        "rule_agrees_everywhere": all(c["agrees"] for c in cases.values()),
    }
    print(f"wrote {write_result('speed_rule', data, args.out, tiny=args.tiny)}")


if __name__ == "__main__":
    main()
