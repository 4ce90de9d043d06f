"""Print the README's benchmark table from bench/results/*.json (never from hand-typed numbers)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rows() -> list[str]:
    out = ["| benchmark | archlab (median) | reference (median) | ratio | target | met | hardware |", "|---|---:|---:|---:|---|---|---|"]
    ltc = RESULTS / "ltc.json"
    if ltc.is_file():
        d = json.loads(ltc.read_text())
        hw = f"{d['hardware']['cpu_count']} CPU cores, {d['threads']} threads, torch {d['hardware']['torch']}"
        for name, c in sorted(d["cases"].items()):
            t = c["timing"]
            out.append(
                f"| LTC fwd+bwd, {name} (batch {c['batch']}, {c['steps']} steps) | {t['archlab']['median_ms']:.1f} ms | "
                f"ncps {t['ncps']['median_ms']:.1f} ms | {c['speedup']:.2f}x faster | >= {c['target']:.0f}x | "
                f"{'yes' if c['meets_target'] else 'no'} | {hw} |"
            )
    rot = RESULTS / "rotation_conv.json"
    if rot.is_file():
        d = json.loads(rot.read_text())
        t, r, cfg = d["timings"], d["ratios"], d["config"]
        hw = f"{d['hardware']['cpu_count']} CPU cores, {cfg['threads']} threads, torch {d['hardware']['torch']}"
        size = f"{cfg['rotations']} rotations, {cfg['channels']}->{cfg['channels']}, {cfg['size']}x{cfg['size']}, batch {cfg['batch']}"
        out.append(
            f"| Rotation-invariant conv fwd+bwd vs the seed's loop ({size}) | {t['archlab']['median_ms']:.1f} ms | "
            f"{t['seed_loop']['median_ms']:.1f} ms | {r['archlab_over_seed_loop']:.2f}x the time | <= 1.0x | "
            f"{'yes' if d['targets_met']['archlab_over_seed_loop'] else 'no'} | {hw} |"
        )
        out.append(
            f"| Rotation-invariant conv vs one plain conv with 8x the outputs | {t['archlab']['median_ms']:.1f} ms | "
            f"{t['plain_wide']['median_ms']:.1f} ms | {r['archlab_over_plain_wide']:.2f}x the time | <= 1.2x | "
            f"{'yes' if d['targets_met']['archlab_over_plain_wide'] else 'no'} | {hw} |"
        )
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
