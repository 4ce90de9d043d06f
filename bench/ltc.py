"""LTC benchmark: archlab's LTC vs ``ncps.torch.LTC`` (same wiring, same weights), fwd + bwd.

SPEC §9: batch 64, 16 steps, 2 threads, for
  (a) 32 inputs, the original NCP wiring (12 inter, 6 command, 1 motor; 6/4/6/6), and
  (b) 512 inputs, seed 000's custom NCP (48 inter, 24 command, 4 motor; 24/16/24/24).
Targets: archlab >= 3x (a) and >= 5x (b) faster, equal outputs. The input requires grad (the head
case: a backbone sits before the LTC). Outputs, final states and all gradients are checked equal
before timing. Writes ``bench/results/ltc.json``.

    python bench/ltc.py            # full run
    python bench/ltc.py --tiny     # CI smoke run (tiny sizes, one repeat)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, time_interleaved, write_result  # noqa: E402

from archlab.layers.ltc import LTC  # noqa: E402

CASES = {
    "ncp_original_32": (32, (12, 6, 1, 6, 4, 6, 6)),
    "ncp_custom_512": (512, (48, 24, 4, 24, 16, 24, 24)),
}
TARGETS = {"ncp_original_32": 3.0, "ncp_custom_512": 5.0}
NCP_KEYS = ("inter", "command", "motor", "sensory_fanout", "inter_fanout", "recurrent_command_synapses", "motor_fanin")


def _step(module: torch.nn.Module, x: torch.Tensor):
    y, h = module(x)
    (y.sum() + h.sum()).backward()
    return y, h


def _check_equal(ref: torch.nn.Module, new: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest difference (relative to each tensor's scale) of outputs, state and gradients."""
    worst = 0.0
    results = []
    for m in (ref, new):
        m.zero_grad(set_to_none=True)
        x.grad = None
        y, h = _step(m, x)
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        results.append((y.detach(), h.detach(), x.grad.clone(), grads))
    (y1, h1, gx1, g1), (y2, h2, gx2, g2) = results
    pairs = [(y1, y2), (h1, h2), (gx1, gx2)] + [(g1[k], g2[k]) for k in g1]
    if set(g1) != set(g2):
        raise AssertionError(f"gradients differ in keys: {set(g1) ^ set(g2)}")
    for a, b in pairs:
        scale = max(1.0, float(a.abs().max()))
        worst = max(worst, float((a - b).abs().max()) / scale)
    if worst > 1e-5:
        raise AssertionError(f"archlab and ncps disagree: max relative difference {worst:.2e} > 1e-5")
    return worst


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    from ncps.torch import LTC as NcpsLTC
    from ncps.wirings import NCP

    batch, steps = (4, 3) if args.tiny else (64, 16)
    repeats = 1 if args.tiny else args.repeats
    results = {}
    for name, (inputs, ncp_args) in CASES.items():
        if args.tiny:
            inputs = min(inputs, 40)
        torch.manual_seed(0)
        ref = NcpsLTC(inputs, NCP(*ncp_args)).to(args.device)
        new = LTC.from_ncps(ref)
        x = torch.randn(batch, steps, inputs, device=args.device, requires_grad=True)
        diff = _check_equal(ref, new, x)
        timing = time_interleaved(
            {"ncps": lambda: _step(ref, x), "archlab": lambda: _step(new, x)},
            repeats=repeats,
            warmup=0 if args.tiny else 2,
            device=args.device,
        )
        ratio = timing["ncps"]["median_ms"] / timing["archlab"]["median_ms"]
        cell = new.rnn_cell
        results[name] = {
            "inputs": inputs,
            "wiring": dict(zip(NCP_KEYS, ncp_args)),
            "synapses": cell.synapse_count,
            "sensory_synapses": cell.sensory_synapse_count,
            "batch": batch,
            "steps": steps,
            "max_rel_diff": diff,
            "timing": timing,
            "speedup": ratio,
            "target": TARGETS[name],
            "meets_target": ratio >= TARGETS[name],
        }
        print(
            f"{name:16s} ncps {timing['ncps']['median_ms']:8.2f} ms   archlab "
            f"{timing['archlab']['median_ms']:8.2f} ms   speedup {ratio:5.2f}x (target {TARGETS[name]:.0f}x)"
            f"   max rel diff {diff:.1e}"
        )
    path = write_result(
        "ltc",
        {"device": args.device, "threads": args.threads, "repeats": repeats, "mode": "fwd+bwd", "cases": results},
        args.out,
        tiny=args.tiny,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
