"""Benchmark: rotation-invariant convolution, fwd+bwd (SPEC §9).

Three contestants on the same input (8 rotations, 64 -> 64 channels, 16x16, batch 32, 3x3 "same"):

- ``archlab``: :class:`archlab.layers.RotationInvariantConv2d` (stacked kernels, one conv call).
- ``seed_loop``: the blog's implementation (seed 002 ``exp2/layers.py``) in PyTorch: 8 rotated
  kernels, 8 convolutions, stack, max over rotations, bias.
- ``plain_wide``: one ``nn.Conv2d`` with 8x the output channels (the FLOP-equivalent limit).

Each runs forward and backward (a fixed upstream gradient of the output's shape), interleaved
round by round. Targets: archlab not slower than the loop, within 1.2x of the plain wide conv. The
archlab / plain-wide ratio is also reported per round (both timed back to back), so its spread
shows whether a difference between the two is real or noise.
Also checks that archlab and the loop agree (outputs and gradients). Writes
``bench/results/rotation_conv.json``.

Run: ``python bench/rotation_conv.py [--repeats 15] [--threads 2] [--device cuda] [--tiny]``
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from _common import parse_args, time_interleaved, write_result  # type: ignore[import-not-found]
from archlab.layers.rotation_conv import RotationInvariantConv2d


def seed_loop(x: torch.Tensor, layer: RotationInvariantConv2d) -> torch.Tensor:
    """The blog's loop: one convolution per rotated kernel, max over the stack, then the bias."""
    w = layer.weight
    outs = [
        F.conv2d(x, w.flatten(2)[:, :, p].view_as(w), None, layer.stride, layer.padding)  # (B, O, H, W)
        for p in layer.perm
    ]
    return torch.stack(outs).amax(0) + layer.bias.view(1, -1, 1, 1)  # (B, O, H, W)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    B, C, S, R = (2, 8, 8, 8) if args.tiny else (32, 64, 16, 8)
    repeats, warmup = (1, 1) if args.tiny else (args.repeats, 2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, S, S, generator=g).to(dev).requires_grad_()
    torch.manual_seed(0)
    layer = RotationInvariantConv2d(C, C, rotations=R, padding=1).to(dev)
    wide = torch.nn.Conv2d(C, C * R, 3, padding=1).to(dev)
    grad = torch.randn(B, C, S, S, generator=g).to(dev)
    grad_wide = torch.randn(B, C * R, S, S, generator=g).to(dev)

    def zero() -> None:
        for t in (x, layer.weight, layer.bias, wide.weight, wide.bias):
            t.grad = None

    # Correctness first: same outputs and gradients as the loop.
    out_a = layer(x)
    out_a.backward(grad)
    ga = (x.grad.clone(), layer.weight.grad.clone())
    zero()
    out_l = seed_loop(x, layer)
    out_l.backward(grad)
    gl = (x.grad.clone(), layer.weight.grad.clone())
    zero()
    diff = {
        "output": float((out_a - out_l).detach().abs().max()),
        "grad_input": float((ga[0] - gl[0]).abs().max()),
        "grad_weight": float((ga[1] - gl[1]).abs().max()),
    }

    def run_archlab() -> None:
        layer(x).backward(grad)
        zero()

    def run_loop() -> None:
        seed_loop(x, layer).backward(grad)
        zero()

    def run_wide() -> None:
        wide(x).backward(grad_wide)
        zero()

    samples: dict[str, list[float]] = {}
    timings = time_interleaved(
        {"archlab": run_archlab, "seed_loop": run_loop, "plain_wide": run_wide},
        repeats=repeats, warmup=warmup, device=args.device, samples_out=samples,
    )  # fmt: skip
    paired = [a / w for a, w in zip(samples["archlab"], samples["plain_wide"])]  # same round: same machine load
    med = {k: v["median_ms"] for k, v in timings.items()}
    ratios = {
        "archlab_over_seed_loop": med["archlab"] / med["seed_loop"],
        "archlab_over_plain_wide": med["archlab"] / med["plain_wide"],
    }
    data = {
        "device": args.device,
        "config": {"batch": B, "channels": C, "size": S, "rotations": R, "threads": args.threads, "repeats": repeats},
        "timings": timings,
        "ratios": ratios,
        "targets": {"archlab_over_seed_loop": "<= 1.0", "archlab_over_plain_wide": "<= 1.2"},
        "targets_met": {
            "archlab_over_seed_loop": ratios["archlab_over_seed_loop"] <= 1.0,
            "archlab_over_plain_wide": ratios["archlab_over_plain_wide"] <= 1.2,
        },
        "max_abs_diff_vs_seed_loop": diff,
        # the ratio round by round (both timed back to back): its spread says whether a difference is real
        "per_round_ratio_archlab_over_plain_wide": {
            "median": statistics.median(paired), "min": min(paired), "max": max(paired), "n": len(paired),
            "per_round": paired,
        },  # fmt: skip
    }
    path = write_result("rotation_conv", data, args.out, tiny=args.tiny)
    print(f"rotation_conv: {', '.join(f'{k} {v:.1f} ms' for k, v in med.items())}; "
          f"{', '.join(f'{k} {v:.2f}' for k, v in ratios.items())}; max diff {max(diff.values()):.2e} -> {path}")


if __name__ == "__main__":
    main()
